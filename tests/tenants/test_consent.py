"""Consent records (P13, P15) on a real PostgreSQL region database, through the region
app's own routes, with a real SMTP server (aiosmtpd): a visitor device's choices, a
member's e-mail preferences, e-mails sent only on a current grant, and every decision
in the access log."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from litestar.testing import AsyncTestClient

from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import RegionSettings, Settings, SmtpSettings, VaultSettings
from konsil.regions.app import create_region_app
from konsil.regions.tables import REGION_TABLES
from konsil.tenants import consent, member_emails, organisations, records, rooms
from konsil.tenants.actors import Actor
from konsil.tenants.auth import Principal
from konsil.tenants.consent import ConsentEvent, ConsentMail
from konsil.tenants.schemas import NewOrganisation, OwnerIn, RoomIn
from konsil.tenants.tables import Organisation
from tests.conftest import bindings_restored, wait_until_async
from tests.e2e.mail_support import MailServer

SIGNUP = Actor("control-plane", "system", "signup", "192.0.2.10", "create the customer account")
PASSWORD = "correct horse battery"
T = TypeVar("T")


@pytest.fixture(scope="module")
def mail() -> Iterator[MailServer]:
    server = MailServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def consent_dsn(pg_database: Callable[[str, str], str]) -> str:
    return await asyncio.to_thread(pg_database, "consent_region", "region")


@pytest.fixture
async def app(consent_dsn: str, tmp_path: Path, mail: MailServer) -> AsyncIterator[AsyncTestClient[Any]]:
    region = RegionSettings(
        id="eu",
        jurisdiction="EU/EEA",
        public_url="http://127.0.0.1:9",
        listen="127.0.0.1:9",
        database=consent_dsn,
        internal_secret="eu-secret-for-tests-only",
        vault=VaultSettings(backend="local", keyring_path=str(tmp_path / "keyring")),
        smtp=SmtpSettings(
            host="127.0.0.1", port=mail.port, security="none", from_address="Konsil <no-reply@eu.konsil.test>"
        ),
    )
    settings = Settings(mode="services", discovery_key="discovery-key-for-tests", regions=[region])
    with bindings_restored(REGION_TABLES):
        async with AsyncTestClient(create_region_app(settings)) as client:
            yield client


async def on_app(client: AsyncTestClient[Any], fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``fn(*args)`` on the app's own event loop (its database pool lives there)."""
    return await asyncio.to_thread(client.blocking_portal.call, fn, *args)


async def rows(client: AsyncTestClient[Any], query: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        return list(await query)

    return await on_app(client, run)


def ctx_of(client: AsyncTestClient[Any]) -> RegionContext:
    region: RegionContext = client.app.state.region
    return region


async def new_org(ctx: RegionContext) -> tuple[records.Organisation, uuid.UUID, str]:
    org_id = uuid.uuid4()
    email = f"olga.{org_id.hex[:8]}@praxis.example"
    created = await organisations.create(
        ctx,
        SIGNUP,
        NewOrganisation(
            id=org_id,
            slug=f"praxis-{org_id.hex[:10]}",
            name="Praxis Nord",
            owner=OwnerIn(name="Olga Owner", email=email, password=PASSWORD),
        ),
    )
    org = records.Organisation.of(await Organisation.select().where(Organisation.id == org_id).first())  # type: ignore[arg-type]
    owner = Actor(f"member:{created.owner_id}", "owner", f"member:{created.owner_id}", "198.51.100.20")
    principal = Principal(kind="member", org_id=org_id, id=created.owner_id, role="owner")
    await rooms.create(ctx, owner, principal, org, RoomIn(slug="sprechstunde", title="Sprechstunde"))
    return org, created.owner_id, email


async def log_of(org_id: uuid.UUID, object_type: str) -> list[dict[str, Any]]:
    return list(
        await AccessLogEntry.select()
        .where((AccessLogEntry.org_id == org_id) & (AccessLogEntry.object_type == object_type))
        .order_by(AccessLogEntry.seq)
    )


# --- a visitor's device -------------------------------------------------------------------------


async def test_a_device_choice_is_recorded_without_personal_data_and_withdrawn(app: AsyncTestClient[Any]) -> None:
    ctx = ctx_of(app)
    org, _owner, _email = await on_app(app, new_org, ctx)
    device = uuid.uuid4()
    path = f"/{org.slug}/sprechstunde/consent"
    version = consent.VERSIONS["prefill_forms"]

    # The join page offers the choice with the wording's version, and says what needs no consent.
    page = await app.get(f"/{org.slug}/sprechstunde")
    assert page.status_code == 200
    assert f'data-version="{version}"' in page.text and 'data-purpose="prefill_forms"' in page.text
    assert "strictly necessary and need no consent" in page.text
    assert "/static/join.js" in page.text

    granted = await app.post(
        path, json={"device": str(device), "purpose": "prefill_forms", "granted": True, "version": version}
    )
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert body["granted"] is True and body["purpose"] == "prefill_forms"
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert dt.timedelta(days=364) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=365)
    assert (await on_app(app, consent.current, org.id, device, "prefill_forms")).granted

    withdrawn = await app.post(
        path, json={"device": str(device), "purpose": "prefill_forms", "granted": False, "version": version}
    )
    assert withdrawn.status_code == 200 and withdrawn.json()["granted"] is False
    assert not (await on_app(app, consent.current, org.id, device, "prefill_forms")).granted

    found = await rows(app, ConsentEvent.select().where(ConsentEvent.subject_id == device).order_by(ConsentEvent.at))
    assert [(r["subject_kind"], r["purpose"], r["action"], r["source"]) for r in found] == [
        ("device", "prefill_forms", "granted", "join_page"),
        ("device", "prefill_forms", "withdrawn", "join_page"),
    ]
    assert all(r["wording_version"] == version for r in found)
    # Proof kept 3 years after each decision stops holding: the grant from its withdrawal.
    assert all(r["keep_until"] is not None for r in found)
    assert found[0]["keep_until"] - found[1]["at"] >= dt.timedelta(days=3 * 365)
    # Each decision is in the organisation's access log, pseudonymous.
    entries = await on_app(app, log_of, org.id, "consent")
    assert [e["action"] for e in entries] == ["create", "create"]
    assert {e["subject_ref"] for e in entries} == {f"device:{device}"}
    assert [e["object_id"] for e in entries] == [str(r["id"]) for r in found]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"purpose": "prefill_forms", "granted": True, "version": "0000000000000000"}, 400),  # old wording
        ({"purpose": "onboarding_emails", "granted": True, "version": consent.VERSIONS["onboarding_emails"]}, 400),
        ({"purpose": "prefill_forms", "granted": "maybe", "version": consent.VERSIONS["prefill_forms"]}, 400),
        ({"purpose": "prefill_forms", "granted": True, "version": "a\nb"}, 400),
    ],
)
async def test_bad_device_choices_are_refused_clearly(
    app: AsyncTestClient[Any], body: dict[str, Any], status: int
) -> None:
    org, _owner, _email = await on_app(app, new_org, ctx_of(app))
    device = uuid.uuid4()
    answer = await app.post(f"/{org.slug}/sprechstunde/consent", json={"device": str(device), **body})
    assert answer.status_code == status, answer.text
    assert not await rows(app, ConsentEvent.select().where(ConsentEvent.subject_id == device))
    missing = await app.post(
        f"/{org.slug}/no-such-room/consent",
        json={
            "device": str(device),
            "purpose": "prefill_forms",
            "granted": True,
            "version": consent.VERSIONS["prefill_forms"],
        },
    )
    assert missing.status_code == 404


# --- a member's e-mails -----------------------------------------------------------------------


async def login(app: AsyncTestClient[Any], slug: str, email: str) -> str:
    answer = await app.post(f"/api/v1/orgs/{slug}/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["csrf_token"])


def form_csrf(page: str) -> str:
    found = re.search(r'name="_csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


NEWS = member_emails.FeatureNews(title="Getting started with Konsil", paragraphs=["Hello,"])


async def test_no_consent_no_email_and_a_withdrawal_stops_them(app: AsyncTestClient[Any], mail: MailServer) -> None:
    ctx = ctx_of(app)
    org, owner_id, email = await on_app(app, new_org, ctx)
    # Never asked: nothing goes out, whatever the sender tries.
    assert await on_app(app, member_emails.getting_started, ctx, org, owner_id) is False
    assert await on_app(app, member_emails.send_feature_news, ctx, org.id, NEWS, "news-1") == 0
    assert mail.to(email) == []

    await login(app, org.slug, email)
    page = await app.get(f"/{org.slug}/portal/email-preferences?lang=de")
    assert page.status_code == 200
    assert "E-Mail" in page.text and 'name="onboarding_emails"' in page.text
    csrf = form_csrf(page.text)

    # Agreeing to onboarding e-mails brings the tips once, in the language of the page.
    saved = await app.post(
        f"/{org.slug}/portal/email-preferences?lang=de",
        data={"_csrf": csrf, "onboarding_emails": "yes"},
    )
    assert saved.status_code == 200, saved.text
    [tips] = await wait_until_async(lambda: mail.to(email) or None, "the getting-started e-mail")
    assert tips.message["Content-Language"] == "de"
    assert f"/{org.slug}/portal" in tips.text
    onboarding = await on_app(app, consent.current, org.id, owner_id, "onboarding_emails")
    feature = await on_app(app, consent.current, org.id, owner_id, "feature_emails")
    assert onboarding.granted and feature.at is not None and not feature.granted  # an unticked box is a decision too
    [sent] = await rows(app, ConsentMail.select().where(ConsentMail.member_id == owner_id))
    assert sent["consent_event_id"] == onboarding.event_id and sent["kind"] == "getting_started"
    assert await on_app(app, member_emails.getting_started, ctx, org, owner_id) is False  # once only
    # Feature news: not agreed to, so none.
    assert await on_app(app, member_emails.send_feature_news, ctx, org.id, NEWS, "news-1") == 0

    # Agreeing to feature e-mails (and keeping the tips): news goes out.
    await app.post(
        f"/{org.slug}/portal/email-preferences",
        data={"_csrf": csrf, "onboarding_emails": "yes", "feature_emails": "yes"},
    )
    assert await on_app(app, member_emails.send_feature_news, ctx, org.id, NEWS, "news-1") == 1
    # Withdrawn: nothing more.
    await app.post(f"/{org.slug}/portal/email-preferences", data={"_csrf": csrf})
    assert await on_app(app, member_emails.send_feature_news, ctx, org.id, NEWS, "news-2") == 0
    assert len(mail.to(email)) == 2
    events = await rows(app, ConsentEvent.select().where(ConsentEvent.subject_id == owner_id).order_by(ConsentEvent.at))
    assert [(e["purpose"], e["action"]) for e in events] == [
        ("onboarding_emails", "granted"),
        ("feature_emails", "withdrawn"),
        ("feature_emails", "granted"),
        ("onboarding_emails", "withdrawn"),
        ("feature_emails", "withdrawn"),
    ]
    assert all(e["source"] == "email_preferences" for e in events)
    entries = await on_app(app, log_of, org.id, "consent")
    assert sum(e["action"] == "create" for e in entries) == 5
    assert {e["subject_ref"] for e in entries} == {f"member:{owner_id}"}
    assert len(await on_app(app, log_of, org.id, "consent_mail")) == 2
    # The page says what is chosen.
    page = await app.get(f"/{org.slug}/portal/email-preferences")
    assert "abbestellt" in page.text  # the page keeps the language chosen (German)


async def test_the_preferences_form_needs_its_token(app: AsyncTestClient[Any]) -> None:
    ctx = ctx_of(app)
    org, owner_id, email = await on_app(app, new_org, ctx)
    await login(app, org.slug, email)
    refused = await app.post(
        f"/{org.slug}/portal/email-preferences", data={"_csrf": secrets.token_urlsafe(8), "feature_emails": "yes"}
    )
    assert refused.status_code == 403
    assert not await rows(app, ConsentEvent.select().where(ConsentEvent.subject_id == owner_id))
