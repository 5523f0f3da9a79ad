"""SMS arrival alerts and client invitations on a real PostgreSQL region database, with the
region's real SMS client talking to local stand-ins of Sinch (an EU region) and Twilio (a
US region), the in-process task runner, and a real SMTP server (aiosmtpd) for e-mail.

What a user would notice: the expert gets "Someone is waiting in room X" (never the
visitor's name) through their region's provider; a provider outage delays the text but
never the visitor's check-in, and the text goes out once the provider is back; a second
arrival within two minutes sends no second text; a number that cannot get texts is
refused with a clear message; a client invitation goes out by SMS or e-mail and nothing
keeps the address."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import msgspec
import pytest
from aiosmtpd.controller import Controller

from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.platform.core import database, errors
from konsil.platform.core.mail import SmtpMailer
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import RegionSettings, Settings, SmtpSettings
from konsil.regions.container import build_region
from konsil.regions.tables import REGION_TABLES
from konsil.regions.tasks import TASKS, InProcessRunner, InProcessScheduler, celery_app
from konsil.tenants import members, records, visits
from konsil.tenants.actors import SYSTEM, Actor
from konsil.tenants.auth import Principal
from konsil.tenants.messaging import alerts, client_invitations, member_settings
from konsil.tenants.messaging.client_invitations import ClientInvitationIn
from konsil.tenants.messaging.member_settings import SmsAlertsIn
from konsil.tenants.messaging.tables import ClientInvitation, SmsAlert
from konsil.tenants.schemas import MemberIn
from konsil.tenants.tables import Member, Organisation, Room, Visit
from tests.conftest import bindings_restored, free_port, wait_until_async
from tests.tenants.messaging.stand_ins import ACCOUNT, NUMBER, PLAN, SINCH_TOKEN, TWILIO_TOKEN, StandIn

VISITOR = "Kari Nordmann"
ROOM_TITLE = "Konsultasjon"


@pytest.fixture(scope="module")
def messaging_dsn(pg_database: Callable[[str, str], str]) -> str:
    return pg_database("messaging_region", "region")


def sms_settings(kind: str, url: str) -> dict[str, str]:
    if kind == "sinch":
        return {
            "provider": "sinch",
            "service_plan_id": PLAN,
            "sender": "Konsil",
            "api_token": SINCH_TOKEN,
            "base_url": url,
        }
    return {
        "provider": "twilio",
        "account_sid": ACCOUNT,
        "sender": "+15005550006",
        "auth_token": TWILIO_TOKEN,
        "base_url": url,
    }


@dataclass
class Region:
    ctx: RegionContext
    runner: InProcessRunner
    stand_in: StandIn


@pytest.fixture
async def make_region(messaging_dsn: str, tmp_path: Path, serve: Any) -> AsyncIterator[Callable[..., Any]]:
    """A region ("eu" with Sinch or "us" with Twilio, or none) built from its settings as the
    region service builds it, with the in-process task runner; emptied for each test."""
    made: list[Region] = []

    async def make(kind: str | None = "sinch") -> Region:
        stand_in = serve(kind or "sinch")
        region_id = "us" if kind == "twilio" else "eu"
        raw = {
            "id": region_id,
            "jurisdiction": "US" if region_id == "us" else "EU/EEA",
            "public_url": "https://eu.konsil.example",
            "listen": "127.0.0.1:9",
            "database": messaging_dsn,
            "internal_secret": "region-secret-for-tests-only",
            "vault": {"backend": "local", "keyring_path": str(tmp_path / f"keyring-{region_id}")},
        }
        if kind is not None:
            raw["sms"] = sms_settings(kind, stand_in.url)
        region = msgspec.convert(raw, RegionSettings)
        settings = Settings(mode="embedded", discovery_key="discovery-key-for-tests", regions=[region])
        ctx = build_region(settings, region, service_name="test")
        database.bind(REGION_TABLES, ctx.engine)
        await database.start(ctx.engine)
        for table in (SmsAlert, ClientInvitation, Visit, Room, Member, Organisation):
            await table.delete(force=True)
        runner = InProcessRunner(ctx)
        ctx.tasks = runner
        made.append(Region(ctx, runner, stand_in))
        return made[-1]

    with bindings_restored(REGION_TABLES):
        yield make
        for region in made:
            await region.runner.stop(grace_seconds=5)
            await region.ctx.keys.provider.close()
            await database.stop(region.ctx.engine)


def found(row: dict[str, Any] | None) -> dict[str, Any]:
    assert row is not None
    return row


@dataclass
class Org:
    org: records.Organisation
    room: records.Room
    expert_id: uuid.UUID


async def new_org(ctx: RegionContext, phone: str | None = NUMBER, alerts_on: bool = True, locale: str = "nb") -> Org:
    org_id = uuid.uuid4()
    await Organisation.insert(
        Organisation(
            id=org_id, slug=f"org-{org_id.hex[:8]}", name="Legesenteret", retention_days=30, country="NO", locale=locale
        )
    )
    await ctx.keys.provision(org_id)
    expert = await members.insert(
        ctx,
        SYSTEM,
        org_id,
        MemberIn(name="Dr. Berg", email=f"{org_id.hex[:8]}@klinikk.example", role="expert", phone=phone),
    )
    await Member.update({Member.sms_alerts: alerts_on}).where(Member.id == expert.id)
    room_id = uuid.uuid4()
    await Room.insert(Room(id=room_id, org_id=org_id, slug="konsultasjon", title=ROOM_TITLE, expert_id=expert.id))
    org = records.Organisation.of(found(await Organisation.select().where(Organisation.id == org_id).first()))
    room = records.Room.of(found(await Room.select().where(Room.id == room_id).first()))
    return Org(org, room, expert.id)


async def arrive(ctx: RegionContext, org: Org) -> uuid.UUID:
    visit_id, _token = await visits.arrive(
        ctx, org.org, org.room, visits.VisitorForm(name=VISITOR, consent=True), "127.0.0.1"
    )
    return visit_id


async def alert_of(visit_id: uuid.UUID) -> dict[str, Any]:
    row = await SmsAlert.select().where(SmsAlert.visit_id == visit_id).first()
    assert row is not None
    return row


async def status_becomes(visit_id: uuid.UUID, status: str, within: float = 15) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        row = await alert_of(visit_id)
        return row if row["status"] == status else None

    found: dict[str, Any] = await wait_until_async(check, f"the alert {status}", within=within)
    return found


@pytest.mark.parametrize("kind", ["sinch", "twilio"])
async def test_the_expert_is_texted_through_the_regions_provider(make_region: Any, kind: str) -> None:
    region = await make_region(kind)
    org = await new_org(region.ctx)
    visit_id = await arrive(region.ctx, org)
    alert = await status_becomes(visit_id, "sent")
    assert alert["attempts"] == 1 and alert["provider"] == kind and alert["provider_message_id"]
    [request] = region.stand_in.seen
    raw = request["body"].decode()
    if kind == "sinch":
        assert request["headers"]["Authorization"] == f"Bearer {SINCH_TOKEN}"
        assert json.loads(raw) == {"from": "Konsil", "to": [NUMBER], "body": "Noen venter i rommet Konsultasjon."}
    else:
        basic = base64.b64encode(f"{ACCOUNT}:{TWILIO_TOKEN}".encode()).decode()
        assert request["headers"]["Authorization"] == f"Basic {basic}"
        assert request["headers"]["I-Twilio-Idempotency-Token"] == str(alert["id"])
        form = parse_qs(raw)
        assert form["To"] == [NUMBER] and form["Body"] == ["Noen venter i rommet Konsultasjon."]
    assert "Kari" not in raw and "Nordmann" not in raw
    # The system's read of the expert's number is in the access log, under the alert's purpose.
    reads = await AccessLogEntry.select().where(
        (AccessLogEntry.org_id == org.org.id) & (AccessLogEntry.purpose == "arrival alert by SMS")
    )
    assert [(r["actor"], r["action"], r["subject_ref"]) for r in reads] == [
        ("system", "read", members.subject(org.expert_id))
    ]


async def test_an_outage_delays_the_text_but_never_the_check_in(
    make_region: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alerts, "RETRY_DELAYS", (0.5,) * 9)
    region = await make_region("sinch")
    region.stand_in.status = 503
    org = await new_org(region.ctx)
    started = time.monotonic()
    visit_id = await arrive(region.ctx, org)
    assert time.monotonic() - started < 1.5  # the check-in did not wait for the provider
    assert found(await Visit.select(Visit.status).where(Visit.id == visit_id).first())["status"] == "waiting"

    async def tried_twice() -> bool:
        return len(region.stand_in.seen) >= 2

    await wait_until_async(tried_twice, "two tries during the outage")
    queued = await alert_of(visit_id)
    assert queued["status"] == "queued" and "answered 503" in queued["reason"] and NUMBER not in queued["reason"]
    region.stand_in.status = None  # the provider is back
    sent = await status_becomes(visit_id, "sent")
    assert sent["attempts"] >= 3 and len(region.stand_in.seen) == sent["attempts"]


async def test_an_alert_whose_provider_never_comes_back_fails_after_its_tries(
    make_region: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alerts, "RETRY_DELAYS", (0.1, 0.1))
    monkeypatch.setattr(alerts, "MAX_ATTEMPTS", 3)
    region = await make_region("twilio")
    region.stand_in.status = 500
    org = await new_org(region.ctx)
    visit_id = await arrive(region.ctx, org)
    failed = await status_becomes(visit_id, "failed")
    assert failed["attempts"] == 3 and failed["reason"].startswith("gave up after 3 tries")
    assert len(region.stand_in.seen) == 3


async def test_a_second_arrival_within_two_minutes_sends_no_second_text(make_region: Any) -> None:
    region = await make_region("sinch")
    org = await new_org(region.ctx)
    first = await arrive(region.ctx, org)
    await status_becomes(first, "sent")
    second = await arrive(region.ctx, org)
    skipped = await alert_of(second)
    assert skipped["status"] == "skipped_rate_limit" and "2 minutes" in skipped["reason"]
    assert len(region.stand_in.seen) == 1


async def test_no_text_without_the_setting_a_number_or_a_provider(make_region: Any) -> None:
    region = await make_region("sinch")
    off = await new_org(region.ctx, alerts_on=False)
    no_phone = await new_org(region.ctx, phone=None)
    for org in (off, no_phone):
        await arrive(region.ctx, org)
    assert await SmsAlert.count() == 0
    plain = await make_region(None)
    assert plain.ctx.sms is None
    await arrive(plain.ctx, await new_org(plain.ctx))
    assert await SmsAlert.count() == 0


async def test_an_alert_whose_task_was_lost_is_handed_out_at_the_next_arrival(make_region: Any) -> None:
    region = await make_region("sinch")
    org = await new_org(region.ctx)
    # The broker was down: the first alert's task never ran (no runner took it).
    region.ctx.tasks = None
    first = await arrive(region.ctx, org)
    assert (await alert_of(first))["status"] == "queued" and region.stand_in.seen == []
    past = (await alert_of(first))["created_at"] - alerts.LOST_AFTER * 2
    await SmsAlert.update({SmsAlert.next_attempt_at: past, SmsAlert.created_at: past}).where(SmsAlert.visit_id == first)
    region.ctx.tasks = region.runner
    other_room = await new_org(region.ctx)  # an arrival elsewhere in the region does not touch it
    await arrive(region.ctx, other_room)
    await arrive(region.ctx, org)  # the next arrival in the organisation hands it out
    await status_becomes(first, "sent")


# --- the member's setting ---------------------------------------------------------------------


def me(org: Org) -> Actor:
    who = f"member:{org.expert_id}"
    return Actor(who, "expert", who, "127.0.0.1")


async def test_the_setting_takes_a_national_number_and_shows_it_masked(make_region: Any) -> None:
    region = await make_region("sinch")
    org = await new_org(region.ctx, phone=None, alerts_on=False)
    shown = await member_settings.change(
        region.ctx, me(org), org.org, org.expert_id, SmsAlertsIn(enabled=True, phone="412 34 567")
    )
    assert shown == member_settings.SmsAlertsOut(enabled=True, phone="+47 *** ** 567", available=True)
    row = found(await Member.select(Member.phone, Member.sms_alerts).where(Member.id == org.expert_id).first())
    assert row["sms_alerts"] and row["phone"] and "41234567" not in row["phone"]  # sealed
    cipher = await region.ctx.keys.cipher(org.org.id)
    assert (
        cipher.open(
            members._ref(
                records.Member.of(found(await Member.select().where(Member.id == org.expert_id).first())), "phone"
            ),
            row["phone"],
        )
        == NUMBER
    )
    assert await member_settings.read(region.ctx, me(org), org.org, org.expert_id) == shown
    entries = await AccessLogEntry.select().where(
        (AccessLogEntry.org_id == org.org.id) & (AccessLogEntry.purpose == "own SMS alert setting")
    )
    assert {(e["action"], e["actor"]) for e in entries} == {
        ("update", f"member:{org.expert_id}"),
        ("read", f"member:{org.expert_id}"),
    }


@pytest.mark.parametrize("number", ["12345", "+47 000 00 000", "4741234567890", "call me", "+1 555"])
async def test_a_number_that_cannot_get_texts_is_refused_clearly(make_region: Any, number: str) -> None:
    region = await make_region("sinch")
    org = await new_org(region.ctx, phone=None, alerts_on=False)
    with pytest.raises(errors.AppError) as refused:
        await member_settings.change(
            region.ctx, me(org), org.org, org.expert_id, SmsAlertsIn(enabled=True, phone=number)
        )
    assert (refused.value.status, refused.value.code) == (400, "invalid_phone")
    assert "mobile number" in refused.value.message and number not in refused.value.message
    assert (
        found(await Member.select(Member.sms_alerts).where(Member.id == org.expert_id).first())["sms_alerts"] is False
    )


async def test_alerts_need_a_number_and_a_region_that_texts(make_region: Any) -> None:
    region = await make_region("sinch")
    org = await new_org(region.ctx, phone=None, alerts_on=False)
    with pytest.raises(errors.AppError, match="add the number") as refused:
        await member_settings.change(region.ctx, me(org), org.org, org.expert_id, SmsAlertsIn(enabled=True))
    assert refused.value.status == 400
    plain = await make_region(None)
    org = await new_org(plain.ctx, alerts_on=False)
    with pytest.raises(errors.AppError, match="no SMS provider") as refused:
        await member_settings.change(plain.ctx, me(org), org.org, org.expert_id, SmsAlertsIn(enabled=True))
    assert refused.value.status == 409


# --- client invitations -----------------------------------------------------------------------


def expert(org: Org) -> Principal:
    return Principal("member", org.org.id, org.expert_id, "expert")


async def stored_anywhere(value: str) -> bool:
    """Whether any column of the send records holds ``value`` (or its digits)."""
    rows = [*await ClientInvitation.select(), *await SmsAlert.select()]
    return any(value in str(v) for row in rows for v in row.values())


async def test_a_client_invitation_by_sms_sends_the_rooms_link_and_keeps_no_number(make_region: Any) -> None:
    region = await make_region("twilio")
    org = await new_org(region.ctx)
    sent = await client_invitations.send(
        region.ctx,
        me(org),
        expert(org),
        org.org,
        org.room.id,
        ClientInvitationIn(channel="sms", to="+47 412 34 567", language="de"),
    )
    assert sent.status == "sent" and sent.channel == "sms"
    [request] = region.stand_in.seen
    form = parse_qs(request["body"].decode())
    assert form["To"] == [NUMBER]
    assert form["Body"] == [
        "Legesenteret lädt Sie zu einer Videosprechstunde ein (Konsultasjon). "
        f"Hier teilnehmen: https://eu.konsil.example/{org.org.slug}/konsultasjon"
    ]
    row = found(await ClientInvitation.select().where(ClientInvitation.id == sent.id).first())
    cipher = await region.ctx.keys.cipher(org.org.id)
    assert row["recipient_hash"] == members.phone_index(cipher, NUMBER) and row["status"] == "sent"
    assert not await stored_anywhere(NUMBER[1:]) and not await stored_anywhere("41234567")
    [entry] = await AccessLogEntry.select().where(
        (AccessLogEntry.org_id == org.org.id) & (AccessLogEntry.object_type == "client_invitation")
    )
    assert (entry["action"], entry["outcome"], entry["actor"]) == ("create", "success", f"member:{org.expert_id}")


async def test_a_provider_down_sends_nothing_and_says_so(make_region: Any) -> None:
    region = await make_region("sinch")
    region.stand_in.status = 503
    org = await new_org(region.ctx)
    with pytest.raises(errors.AppError) as refused:
        await client_invitations.send(
            region.ctx, me(org), expert(org), org.org, org.room.id, ClientInvitationIn(channel="sms", to="41234567")
        )
    assert (refused.value.status, refused.value.code) == (503, "sms_unavailable")
    assert "nothing was sent" in refused.value.message
    assert len(region.stand_in.seen) == client_invitations.TRIES  # the second try within the request
    [row] = await ClientInvitation.select()
    assert row["status"] == "failed" and not await stored_anywhere("41234567")


@pytest.mark.parametrize(
    ("channel", "to", "code"), [("sms", "555", "invalid_phone"), ("email", "kari@", "invalid_email")]
)
async def test_a_bad_address_is_refused_before_anything_is_sent(
    make_region: Any, channel: str, to: str, code: str
) -> None:
    region = await make_region("sinch")
    org = await new_org(region.ctx)
    with pytest.raises(errors.AppError) as refused:
        await client_invitations.send(
            region.ctx,
            me(org),
            expert(org),
            org.org,
            org.room.id,
            ClientInvitationIn(channel=channel, to=to),  # type: ignore[arg-type]
        )
    assert (refused.value.status, refused.value.code) == (400, code) and to not in refused.value.message
    assert region.stand_in.seen == [] and await ClientInvitation.count() == 0


@dataclass
class Inbox:
    received: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_a_client_invitation_by_e_mail_keeps_no_address(make_region: Any, smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    region = await make_region("sinch")
    region.ctx.mail = SmtpMailer(
        SmtpSettings(host="127.0.0.1", port=port, security="none", from_address="Konsil <no-reply@eu.konsil.example>")
    )
    org = await new_org(region.ctx)
    address = "kari.nordmann@example.org"
    sent = await client_invitations.send(
        region.ctx, me(org), expert(org), org.org, org.room.id, ClientInvitationIn(channel="email", to=f" {address} ")
    )
    assert sent.status == "sent"
    [mail] = inbox.received
    assert mail["To"] == address and mail["Subject"] == "Videokonsultasjon med Legesenteret"
    assert f"https://eu.konsil.example/{org.org.slug}/konsultasjon" in mail.get_body(("plain",)).get_content()
    assert not await stored_anywhere(address) and not await stored_anywhere("kari.nordmann")
    assert region.stand_in.seen == []
    # A mail server that is down: nothing sent, a clear 503.
    region.ctx.mail = SmtpMailer(
        SmtpSettings(
            host="127.0.0.1",
            port=free_port(),
            security="none",
            from_address="Konsil <no-reply@eu.konsil.example>",
            timeout_seconds=2,
        )
    )
    with pytest.raises(errors.AppError) as refused:
        await client_invitations.send(
            region.ctx, me(org), expert(org), org.org, org.room.id, ClientInvitationIn(channel="email", to=address)
        )
    assert (refused.value.status, refused.value.code) == (503, "mail_unavailable")


def smtp_mailer(port: int) -> SmtpMailer:
    return SmtpMailer(
        SmtpSettings(
            host="127.0.0.1",
            port=port,
            security="none",
            from_address="Konsil <no-reply@eu.konsil.example>",
            timeout_seconds=10,
        )
    )


@dataclass
class Recipients:
    """A mail server's answer to RCPT: ``answer`` at once, or (``stall``) wait until
    released and then say "try later"; ``asked`` counts the RCPTs."""

    answer: str = "250 OK"
    stall: bool = False
    asked: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.asked += 1
        self.reached.set()
        if self.stall:
            for _ in range(200):
                if self.released.is_set():
                    break
                await asyncio.sleep(0.05)
            return "451 4.3.0 Try again later"
        return self.answer


@pytest.fixture
def recipients() -> Iterator[tuple[Recipients, int]]:
    handler, port = Recipients(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        handler.released.set()
        controller.stop()


async def test_an_address_the_mail_server_refuses_is_a_400_not_try_again(
    make_region: Any, recipients: tuple[Recipients, int]
) -> None:
    handler, port = recipients
    handler.answer = "550 5.1.1 No such mailbox here"
    region = await make_region("sinch")
    region.ctx.mail = smtp_mailer(port)
    org = await new_org(region.ctx)
    address = "nobody@klinikk.example"
    with pytest.raises(errors.AppError) as refused:
        await client_invitations.send(
            region.ctx, me(org), expert(org), org.org, org.room.id, ClientInvitationIn(channel="email", to=address)
        )
    assert (refused.value.status, refused.value.code) == (400, "email_refused")
    assert "this e-mail address was refused" in refused.value.message and address not in refused.value.message
    assert handler.asked == 1  # sending again cannot help: no second try
    [row] = await ClientInvitation.select()
    assert row["status"] == "failed" and not await stored_anywhere(address)


async def test_a_send_cut_short_leaves_its_record_failed_not_sending(
    make_region: Any, recipients: tuple[Recipients, int]
) -> None:
    handler, port = recipients
    handler.stall = True
    region = await make_region("sinch")
    region.ctx.mail = smtp_mailer(port)
    org = await new_org(region.ctx)
    sending = asyncio.create_task(
        client_invitations.send(
            region.ctx,
            me(org),
            expert(org),
            org.org,
            org.room.id,
            ClientInvitationIn(channel="email", to="kari.nordmann@example.org"),
        )
    )
    assert await asyncio.to_thread(handler.reached.wait, 10)
    sending.cancel()  # the request is cancelled while the mail server has not answered
    with pytest.raises(asyncio.CancelledError):
        await sending
    [row] = await ClientInvitation.select()
    assert row["status"] == "failed"
    [entry] = await AccessLogEntry.select().where(
        (AccessLogEntry.org_id == org.org.id) & (AccessLogEntry.object_type == "client_invitation")
    )
    assert (entry["action"], entry["outcome"]) == ("create", "failure")


async def test_with_the_key_service_down_nothing_is_sent_and_the_expert_is_told(
    make_region: Any, tmp_path: Path
) -> None:
    region = await make_region("sinch")
    org = await new_org(region.ctx)
    keyring = tmp_path / "keyring-eu"
    keyring.rename(tmp_path / "keyring-away")  # the key service does not answer
    region.ctx.keys.evict(org.org.id)
    with pytest.raises(errors.AppError) as refused:
        await client_invitations.send(
            region.ctx, me(org), expert(org), org.org, org.room.id, ClientInvitationIn(channel="sms", to=NUMBER)
        )
    assert (refused.value.status, refused.value.code) == (503, "unavailable")
    assert "nothing was sent" in refused.value.message and "retry-after" in refused.value.headers
    assert region.stand_in.seen == [] and await ClientInvitation.count() == 0


async def test_an_expert_sees_the_invitations_of_their_own_rooms_only(make_region: Any) -> None:
    region = await make_region("sinch")
    org = await new_org(region.ctx)
    sent = await client_invitations.send(
        region.ctx, me(org), expert(org), org.org, org.room.id, ClientInvitationIn(channel="sms", to=NUMBER)
    )
    assert [i.id for i in await client_invitations.sent_for_room(expert(org), org.org, org.room.id)] == [sent.id]
    other = await members.insert(
        region.ctx,
        SYSTEM,
        org.org.id,
        MemberIn(name="Dr. Lund", email=f"lund-{org.org.id.hex[:8]}@klinikk.example", role="expert"),
    )
    colleague = Principal("member", org.org.id, other.id, "expert")
    with pytest.raises(errors.AppError) as refused:
        await client_invitations.sent_for_room(colleague, org.org, org.room.id)
    assert refused.value.status == 403
    with pytest.raises(errors.AppError) as refused:
        await client_invitations.send(
            region.ctx, me(org), colleague, org.org, org.room.id, ClientInvitationIn(channel="sms", to=NUMBER)
        )
    assert refused.value.status == 403
    with pytest.raises(errors.AppError) as missing:
        await client_invitations.sent_for_room(expert(org), org.org, uuid.uuid4())
    assert missing.value.status == 404
    elsewhere = await new_org(region.ctx)  # a room of another organisation is no room here
    with pytest.raises(errors.AppError) as missing:
        await client_invitations.sent_for_room(expert(org), org.org, elsewhere.room.id)
    assert missing.value.status == 404
    for role in ("owner", "admin"):
        manager = Principal("member", org.org.id, other.id, role)
        assert [i.id for i in await client_invitations.sent_for_room(manager, org.org, org.room.id)] == [sent.id]


async def test_invitations_are_limited_per_member(make_region: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_invitations, "PER_HOUR", 2)
    region = await make_region("sinch")
    org = await new_org(region.ctx)
    for _ in range(2):
        await client_invitations.send(
            region.ctx, me(org), expert(org), org.org, org.room.id, ClientInvitationIn(channel="sms", to=NUMBER)
        )
    with pytest.raises(errors.AppError) as refused:
        await client_invitations.send(
            region.ctx, me(org), expert(org), org.org, org.room.id, ClientInvitationIn(channel="sms", to=NUMBER)
        )
    assert refused.value.status == 429 and "retry-after" in refused.value.headers
    assert len(region.stand_in.seen) == 2


# --- the sweep, and arrivals at the same moment -------------------------------------------------


async def lost_alert(region: Region, org: Org) -> uuid.UUID:
    """An arrival whose alert's task was never taken (the broker was down), overdue now."""
    region.ctx.tasks = None
    visit_id = await arrive(region.ctx, org)
    assert (await alert_of(visit_id))["status"] == "queued" and region.stand_in.seen == []
    past = (await alert_of(visit_id))["created_at"] - alerts.LOST_AFTER * 2
    await SmsAlert.update({SmsAlert.next_attempt_at: past, SmsAlert.created_at: past}).where(
        SmsAlert.visit_id == visit_id
    )
    region.ctx.tasks = region.runner
    return visit_id


async def test_the_regions_sweep_sends_a_lost_alert_without_another_arrival(make_region: Any) -> None:
    region = await make_region("sinch")
    org = await new_org(region.ctx)
    visit_id = await lost_alert(region, org)
    assert alerts.SWEEP_TASK in TASKS
    scheduler = InProcessScheduler(region.runner, every_seconds=3600, sweep_every_seconds=0.2).start()
    try:
        sent = await status_becomes(visit_id, "sent")
        await asyncio.sleep(0.6)  # more sweeps: the sent alert is not sent again
    finally:
        for loop in scheduler._loops:
            loop.cancel()
    assert sent["attempts"] == 1 and len(region.stand_in.seen) == 1
    assert "Kari" not in region.stand_in.seen[0]["body"].decode()


async def test_the_sweep_on_celery_beat_is_the_same_task_every_minute() -> None:
    region = msgspec.convert(
        {
            "id": "eu",
            "jurisdiction": "EU/EEA",
            "public_url": "https://eu.konsil.example",
            "listen": "127.0.0.1:9",
            "database": "sqlite:///tmp/unused.db",
            "internal_secret": "region-secret-for-tests-only",
            "broker_url": "amqp://guest:guest@127.0.0.1:5672/konsil-eu",
        },
        RegionSettings,
    )
    app = celery_app(Settings(mode="services", discovery_key="k", regions=[region]), "eu")
    entry = app.conf.beat_schedule["messaging-sweep"]
    assert entry["task"] == alerts.SWEEP_TASK and entry["kwargs"] == {"region": "eu"}
    assert entry["schedule"].total_seconds() == alerts.SWEEP_EVERY_SECONDS == 60
    assert alerts.SWEEP_TASK in app.tasks


async def test_two_sweeps_at_once_hand_a_lost_alert_out_once(make_region: Any) -> None:
    region = await make_region("sinch")
    org = await new_org(region.ctx)
    visit_id = await lost_alert(region, org)
    handed = await asyncio.gather(*(alerts.resubmit_lost(region.ctx, None, 10) for _ in range(4)))
    assert sum(handed) == 1
    await status_becomes(visit_id, "sent")
    assert len(region.stand_in.seen) == 1


async def visits_entering_at_once(region: Region, org: Org, rooms: list[Org]) -> list[dict[str, Any]]:
    """Visits in ``rooms`` that all enter their waiting lists at the same moment (the
    waiting list's hook called concurrently, as two check-ins finishing together would);
    their alerts."""
    await Member.update({Member.sms_alerts: False}).where(Member.id == org.expert_id)
    visit_ids = [await arrive(region.ctx, room) for room in rooms]
    await Member.update({Member.sms_alerts: True}).where(Member.id == org.expert_id)
    await asyncio.gather(
        *(alerts.visitor_waiting(region.ctx, room.org, room.room, v) for room, v in zip(rooms, visit_ids, strict=True))
    )
    return [await alert_of(v) for v in visit_ids]


async def test_arrivals_at_the_same_moment_send_one_text(make_region: Any) -> None:
    region = await make_region("sinch")
    org = await new_org(region.ctx)
    statuses = [a["status"] for a in await visits_entering_at_once(region, org, [org] * 8)]
    assert statuses.count("skipped_rate_limit") == 7, statuses

    async def one_sent() -> bool:
        return bool(await SmsAlert.count().where(SmsAlert.status == "sent") == 1)

    await wait_until_async(one_sent, "the one text sent")
    assert len(region.stand_in.seen) == 1


async def test_the_hourly_limit_holds_for_arrivals_at_the_same_moment_in_many_rooms(
    make_region: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alerts, "PER_HOUR", 3)
    region = await make_region("sinch")
    org = await new_org(region.ctx)
    rooms = []
    for n in range(7):
        room_id = uuid.uuid4()
        await Room.insert(
            Room(id=room_id, org_id=org.org.id, slug=f"rom-{n}", title=f"Rom {n}", expert_id=org.expert_id)
        )
        room = records.Room.of(found(await Room.select().where(Room.id == room_id).first()))
        rooms.append(Org(org.org, room, org.expert_id))
    statuses = [a["status"] for a in await visits_entering_at_once(region, org, rooms)]
    assert statuses.count("skipped_rate_limit") == 4, statuses
