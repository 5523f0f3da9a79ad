"""Invitations and password resets by e-mail, against a running control plane and EU region
whose mail goes to a real SMTP server in this process (aiosmtpd).

Password reset: the same answer for a known and an unknown address, a mail with a one-time
link (only its hash stored) to the address stored for the member, a new password that ends
every session, a link that works once and for 30 minutes, limits per address and per source.
Invitations: the API (create, list, send again, revoke), the mail in the chosen language,
the e-mail sealed at rest and its reads access-logged, a link that works once and for 7 days,
nothing half-created, a mail that could not be sent losing nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from konsil.platform.core.settings import RegionLimits
from konsil.regions.app import create_region_app
from konsil.regions.tables import REGION_TABLES
from tests.conftest import Stack, auditor_access_until, bindings_restored, fetch, wait_until_async
from tests.e2e.mail_support import MailServer, mail_stack

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def mail() -> Iterator[MailServer]:
    server = MailServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(pg_database: Any, tmp_path_factory: pytest.TempPathFactory, mail: MailServer) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("mail-stack")
    with mail_stack("mailapi", pg_database, run_dir, mail, password_resets_per_email_hour=3) as running:
        yield running


def db(stack: Stack, sql: str, *args: Any) -> list[Any]:
    return asyncio.run(fetch(stack.dsns["eu"], sql, *args))


def log_entries(stack: Stack, org_id: str) -> list[dict[str, Any]]:
    rows = db(stack, "SELECT * FROM access_log_entry WHERE org_id = $1 ORDER BY seq", uuid.UUID(org_id))
    return [dict(r) for r in rows]


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', page.text)
    assert match is not None, page.text
    return match.group(1)


def without_csrf(text: str) -> str:
    return re.sub(r'name="_csrf" value="[^"]+"', "", text)


def ask_reset(base: str, email: str, lang: str = "en") -> httpx.Response:
    browser = httpx.Client(base_url=base, timeout=30)
    page = browser.get(f"/password-reset?lang={lang}")
    assert page.status_code == 200
    return browser.post("/password-reset", data={"email": email, "_csrf": csrf_of(page)})


def set_password(base: str, link: str, password: str, confirm: str | None = None) -> httpx.Response:
    browser = httpx.Client(timeout=30)
    page = browser.get(link)
    if page.status_code != 200:
        return page
    return browser.post(link, data={"password": password, "confirm": confirm or password, "_csrf": csrf_of(page)})


@pytest.fixture
def org(stack: Stack) -> dict[str, Any]:
    made = stack.signup("eu")
    client = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    return {**made, "client": client}


# --- password reset ------------------------------------------------------------------------


def test_a_member_resets_their_password_by_email(stack: Stack, mail: MailServer, org: dict[str, Any]) -> None:
    base = stack.region_url("eu")
    slug = org["slug"]
    expert = stack.add_member(org["client"], slug, "expert")
    session = stack.login(base, slug, expert["email"])
    assert session.get(f"/api/v1/orgs/{slug}/auth/me").status_code == 200

    # The same answer whether or not the address belongs to anyone.
    unknown = ask_reset(base, f"nobody-{uuid.uuid4().hex[:8]}@example.org")
    known = ask_reset(base, expert["email"].upper())  # typed in capitals: still the member's address
    assert unknown.status_code == known.status_code == 200
    assert without_csrf(unknown.text) == without_csrf(known.text)
    assert "If an account uses this e-mail address, we have sent a link to it." in known.text

    [received] = mail.wait_for(expert["email"])
    assert received.to == [expert["email"]], "mailed to the address stored for the member, not the one typed"
    assert received.message["Subject"] == "Reset your Konsil password"
    assert f"Praxis {slug}" in received.text and expert["name"] not in received.text
    link = received.link("password-reset")
    assert link.startswith(base) and received.link("password-reset") in received.html
    token = link.rsplit("/", 1)[1]
    assert len(token) >= 22, "at least 128 random bits"
    [stored] = db(
        stack,
        "SELECT token_hash, expires_at - created_at AS valid FROM password_reset WHERE member_id = $1",
        uuid.UUID(expert["id"]),
    )
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest() and stored["valid"] == dt.timedelta(
        minutes=30
    )
    assert not db(stack, "SELECT 1 FROM password_reset WHERE token_hash = $1", token), "the token itself is not stored"

    # Every problem at once, nothing changed.
    short = set_password(base, link, "too short", "other")
    assert short.status_code == 400 and "at least 12 characters" in short.text
    mismatch = set_password(base, link, "a new long password", "another long password")
    assert mismatch.status_code == 400 and "The two passwords are not the same." in mismatch.text
    assert 'aria-invalid="true"' in mismatch.text and 'aria-describedby="confirm-error"' in mismatch.text

    done = set_password(base, link, "a brand new passphrase")
    assert done.status_code == 200 and "Your password was changed" in done.text
    # Every session of the member ended; the new password works, the old one not.
    assert session.get(f"/api/v1/orgs/{slug}/auth/me").status_code == 401
    login = f"/api/v1/orgs/{slug}/auth/login"
    assert httpx.post(base + login, json={"email": expert["email"], "password": PASSWORD}).status_code == 401
    assert stack.login(base, slug, expert["email"], "a brand new passphrase")
    changes = [
        e
        for e in log_entries(stack, org["organisation_id"])
        if e["purpose"] == "password reset by e-mail" and e["subject_ref"] == f"member:{expert['id']}"
    ]
    assert [(e["action"], e["actor"]) for e in changes] == [
        ("read", "anonymous"),  # the stored address read to mail it
        ("update", f"member:{expert['id']}"),
    ]

    # The link works once.
    again = set_password(base, link, "yet another passphrase")
    assert again.status_code == 410 and "This link has already been used" in again.text
    assert stack.login(base, slug, expert["email"], "a brand new passphrase")
    # And nothing was mailed to the unknown address (its reset finished before the known one's).
    assert all("nobody-" not in r.to[0] for r in mail.received)


def test_an_expired_reset_link_changes_nothing(stack: Stack, mail: MailServer, org: dict[str, Any]) -> None:
    base = stack.region_url("eu")
    expert = stack.add_member(org["client"], org["slug"], "expert")
    ask_reset(base, expert["email"], lang="de")
    [received] = mail.wait_for(expert["email"])
    assert received.message["Subject"] == "Konsil-Passwort zurücksetzen", "in the language it was asked in"
    link = received.link("password-reset")
    db(
        stack,
        "UPDATE password_reset SET expires_at = now() - interval '1 second' WHERE member_id = $1",
        uuid.UUID(expert["id"]),
    )
    page = httpx.get(link)
    assert page.status_code == 410 and "Dieser Link ist abgelaufen" in page.text, "the page in the link's language"
    refused = httpx.post(link, data={"password": "a brand new passphrase", "confirm": "a brand new passphrase"})
    assert refused.status_code == 410
    assert stack.login(base, org["slug"], expert["email"]), "the old password still works"
    assert httpx.get(f"{base}/password-reset/not-a-real-token").status_code == 404


def test_reset_mails_are_limited_per_address(stack: Stack, mail: MailServer, org: dict[str, Any]) -> None:
    base = stack.region_url("eu")
    first = stack.add_member(org["client"], org["slug"], "expert")
    second = stack.add_member(org["client"], org["slug"], "expert")
    for _ in range(4):  # the stack allows 3 an hour per address
        assert ask_reset(base, first["email"]).status_code == 200, "the answer never changes"
    ask_reset(base, second["email"])
    mail.wait_for(second["email"])
    assert len(mail.wait_for(first["email"], 3)) == 3


@pytest.fixture
async def small_limits(stack: Stack) -> AsyncIterator[AsyncTestClient[Any]]:
    """The EU region app in this process with 2 reset requests per source address a minute."""
    settings = stack.settings.for_region("eu")
    region = settings.regions[0]
    small = msgspec.structs.replace(region.limits, password_resets_per_address_minute=2)
    settings = msgspec.structs.replace(settings, regions=[msgspec.structs.replace(region, limits=small)])
    assert small != RegionLimits()
    with bindings_restored(REGION_TABLES):
        async with AsyncTestClient(create_region_app(settings)) as client:
            yield client


async def test_reset_requests_are_limited_per_source(small_limits: AsyncTestClient[Any]) -> None:
    for number in range(3):
        page = await small_limits.get("/password-reset")
        answer = await small_limits.post(
            "/password-reset", data={"email": f"probe{number}@example.org", "_csrf": csrf_of(page)}
        )
        if number < 2:
            assert answer.status_code == 200
    assert answer.status_code == 429 and 1 <= int(answer.headers["retry-after"]) <= 60
    assert "Too many attempts. Please wait a minute, then try again." in answer.text


# --- invitations ---------------------------------------------------------------------------


def test_invitations_by_api_sealed_logged_and_mailed_in_their_language(
    stack: Stack, mail: MailServer, org: dict[str, Any]
) -> None:
    client, slug = org["client"], org["slug"]
    api = f"/api/v1/orgs/{slug}/invitations"
    email = f"anna.schmidt-{uuid.uuid4().hex[:6]}@praxis.example"
    made = client.post(api, json={"email": email, "role": "expert", "language": "de"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["email"] == email and body["role"] == "expert" and body["mail_sent"] is True
    [received] = mail.wait_for(email)
    assert received.message["Subject"] == f"Einladung zu Praxis {slug} bei Konsil"
    assert "Ihre Rolle: Fachperson." in received.text and "Hallo," in received.text
    token = received.link("invitations").rsplit("/", 1)[1]
    [row] = db(
        stack,
        "SELECT email, email_index, token_hash, expires_at - created_at AS valid FROM invitation WHERE id = $1",
        uuid.UUID(body["id"]),
    )
    assert row["email"].startswith("kf1:") and email not in row["email"], "sealed at rest"
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest() and row["valid"] == dt.timedelta(days=7)

    listed = client.get(api)
    assert listed.status_code == 200 and [i["email"] for i in listed.json()] == [email]
    reads = [e for e in log_entries(stack, org["organisation_id"]) if e["object_type"] == "invitation"]
    assert [(e["action"], e["subject_ref"]) for e in reads] == [
        ("create", f"invitation:{body['id']}"),
        ("read", f"invitation:{body['id']}"),
    ]
    assert all(email not in str(e) for e in log_entries(stack, org["organisation_id"]))

    # The same address again, an existing member, a role the caller may not give: clear errors.
    again = client.post(api, json={"email": email.upper(), "role": "admin"})
    assert again.status_code == 409 and again.json()["error"] == "already_invited"
    member = client.post(api, json={"email": org["owner"]["email"], "role": "expert"})
    assert member.status_code == 409 and member.json()["error"] == "already_member"
    no_end = client.post(api, json={"email": "audit@firm.example", "role": "auditor"})
    assert no_end.status_code == 400 and "access_expires_at" in no_end.json()["message"]
    admin = stack.add_member(client, slug, "admin")
    as_admin = stack.login(stack.region_url("eu"), slug, admin["email"])
    refused = as_admin.post(
        api, json={"email": "audit@firm.example", "role": "auditor", "access_expires_at": auditor_access_until()}
    )
    assert refused.status_code == 403
    assert as_admin.post(api, json={"email": "new.expert@praxis.example", "role": "expert"}).status_code == 201
    expert = stack.add_member(client, slug, "expert")
    as_expert = stack.login(stack.region_url("eu"), slug, expert["email"])
    assert as_expert.get(api).status_code == 403

    # Revoked: the link stops working and the address is cleared.
    assert client.delete(f"{api}/{body['id']}").status_code == 204
    page = httpx.get(received.link("invitations"))
    assert page.status_code == 410 and "Diese Einladung wurde zurückgezogen" in page.text, (
        "in the invitation's language"
    )
    [row] = db(stack, "SELECT email, email_index FROM invitation WHERE id = $1", uuid.UUID(body["id"]))
    assert row["email"] is None and row["email_index"] is None
    assert email not in [i["email"] for i in client.get(api).json()]


def accept(link: str, name: str, password: str = PASSWORD) -> httpx.Response:
    browser = httpx.Client(timeout=30)
    page = browser.get(link)
    if page.status_code != 200:
        return page
    return browser.post(link, data={"name": name, "password": password, "confirm": password, "_csrf": csrf_of(page)})


def members_named(stack: Stack, org_id: str) -> int:
    return len(db(stack, "SELECT id FROM member WHERE org_id = $1", uuid.UUID(org_id)))


def test_an_invitation_link_works_once_and_until_it_expires(
    stack: Stack, mail: MailServer, org: dict[str, Any]
) -> None:
    client, slug = org["client"], org["slug"]
    api = f"/api/v1/orgs/{slug}/invitations"
    end = auditor_access_until(60)
    email = f"auditor-{uuid.uuid4().hex[:6]}@audit.example"
    made = client.post(api, json={"email": email, "role": "auditor", "access_expires_at": end})
    assert made.status_code == 201, made.text
    link = mail.wait_for(email)[0].link("invitations")
    before = members_named(stack, org["organisation_id"])

    accepted = accept(link, "Petra Prüferin")
    assert accepted.status_code == 303 and accepted.headers["location"] == f"/{slug}/portal"
    assert "konsil_session" in accepted.headers.get("set-cookie", "")
    [member] = [m for m in client.get(f"/api/v1/orgs/{slug}/members").json() if m["email"] == email]
    assert member["role"] == "auditor" and member["name"] == "Petra Prüferin"
    assert member["access_granted_by"] == org["owner_id"], "granted by the owner who invited"
    assert dt.datetime.fromisoformat(member["access_expires_at"]) == dt.datetime.fromisoformat(end)
    assert members_named(stack, org["organisation_id"]) == before + 1

    # Used twice: a clear message, nothing created.
    twice = accept(link, "Someone Else")
    assert twice.status_code == 410 and "This invitation has already been used" in twice.text
    assert members_named(stack, org["organisation_id"]) == before + 1
    # The new member logs in with the password they chose.
    assert stack.login(stack.region_url("eu"), slug, email)

    # Expired: a clear message, nothing created.
    late = f"late-{uuid.uuid4().hex[:6]}@praxis.example"
    made = client.post(api, json={"email": late, "role": "expert", "language": "nl"})
    link = mail.wait_for(late)[0].link("invitations")
    db(
        stack,
        "UPDATE invitation SET expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(made.json()["id"]),
    )
    page = httpx.get(link)
    assert page.status_code == 410 and "Deze uitnodiging is verlopen" in page.text
    refused = httpx.post(link, data={"name": "Late Comer", "password": PASSWORD, "confirm": PASSWORD})
    assert refused.status_code == 410
    assert members_named(stack, org["organisation_id"]) == before + 1
    assert httpx.get(f"{stack.region_url('eu')}/invitations/no-such-link").status_code == 404


def test_an_address_that_became_a_member_meanwhile_is_not_added_twice(
    stack: Stack, mail: MailServer, org: dict[str, Any]
) -> None:
    client, slug = org["client"], org["slug"]
    email = f"twice-{uuid.uuid4().hex[:6]}@praxis.example"
    made = client.post(f"/api/v1/orgs/{slug}/invitations", json={"email": email, "role": "expert"})
    link = mail.wait_for(email)[0].link("invitations")
    assert (
        client.post(
            f"/api/v1/orgs/{slug}/members", json={"name": "Added Directly", "email": email, "role": "expert"}
        ).status_code
        == 201
    )
    answer = accept(link, "Invited Person")
    assert answer.status_code == 409 and "You are already a member" in answer.text
    [row] = db(stack, "SELECT accepted_at, email FROM invitation WHERE id = $1", uuid.UUID(made.json()["id"]))
    assert row["accepted_at"] is None and row["email"] is not None, "the invitation was left as it was"
    assert [m["name"] for m in client.get(f"/api/v1/orgs/{slug}/members").json() if m["email"] == email] == [
        "Added Directly"
    ]


def test_a_mail_that_cannot_be_sent_loses_nothing(stack: Stack, mail: MailServer, org: dict[str, Any]) -> None:
    client, slug = org["client"], org["slug"]
    api = f"/api/v1/orgs/{slug}/invitations"
    email = f"offline-{uuid.uuid4().hex[:6]}@praxis.example"
    mail.stop()
    try:
        made = client.post(api, json={"email": email, "role": "expert"})
        assert made.status_code == 201 and made.json()["mail_sent"] is False
        [listed] = [i for i in client.get(api).json() if i["email"] == email]
        assert listed["mail_sent"] is False
        page = client.get(f"/{slug}/portal/members", headers={"accept": "text/html"})
        assert "The e-mail could not be sent." in page.text
    finally:
        mail.start()
    resent = client.post(f"{api}/{made.json()['id']}/resend")
    assert resent.status_code == 200 and resent.json()["mail_sent"] is True
    link = mail.wait_for(email)[0].link("invitations")
    assert accept(link, "Finally Here").status_code == 303


async def test_an_expired_invitation_keeps_no_email_address(
    stack: Stack, mail: MailServer, org: dict[str, Any]
) -> None:
    client, slug = org["client"], org["slug"]
    email = f"expiring-{uuid.uuid4().hex[:6]}@praxis.example"
    made = client.post(f"/api/v1/orgs/{slug}/invitations", json={"email": email, "role": "expert"})
    assert made.status_code == 201, made.text
    invitation_id = uuid.UUID(made.json()["id"])
    dsn = stack.dsns["eu"]
    await fetch(dsn, "UPDATE invitation SET expires_at = now() - interval '1 second' WHERE id = $1", invitation_id)

    async def cleared() -> bool:
        [row] = await fetch(dsn, "SELECT email, email_index FROM invitation WHERE id = $1", invitation_id)
        return row["email"] is None and row["email_index"] is None

    assert not await cleared()
    # A region service (here one in this process) tidies ended links from its start on.
    with bindings_restored(REGION_TABLES):
        async with AsyncTestClient(create_region_app(stack.settings.for_region("eu"))):
            await wait_until_async(cleared, "the expired invitation's e-mail address to be cleared")
    entries = await fetch(dsn, "SELECT actor, action FROM access_log_entry WHERE object_id = $1", str(invitation_id))
    assert ("system:retention", "delete") in [(e["actor"], e["action"]) for e in entries]
