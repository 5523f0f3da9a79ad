"""The member pages in a real browser (Chromium via Playwright), with mail going to a real
SMTP server in this process (aiosmtpd): an invited person accepts in English and in German
and lands in the portal; an owner runs the members page (invite an auditor, change a role,
move an auditor's end of access, remove a member, revoke an invitation, and the refusal to
leave the organisation without an owner, in words), in English and in German. No script
error, no blocked asset, screenshots saved under /tmp/konsil-members-shots."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect, sync_playwright

from tests.conftest import Stack, auditor_access_until, fetch
from tests.e2e.mail_support import MailServer, mail_stack

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SHOTS = Path("/tmp/konsil-members-shots")


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
    with mail_stack("mailpage", pg_database, tmp_path_factory.mktemp("mail-pages"), mail) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def db(stack: Stack, query: str, *args: object) -> list[Any]:
    """SQL from a thread of its own: Playwright's sync API keeps an event loop in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fetch(stack.dsns["eu"], query, *args))).result()


class Watched:
    """A page whose script errors, console errors and failed static assets are collected."""

    def __init__(self, context: BrowserContext) -> None:
        self.problems: list[str] = []
        self.page: Page = context.new_page()
        self.page.on("pageerror", lambda exc: self.problems.append(str(exc)))
        self.page.on("console", self._console)
        self.page.on(
            "response", lambda r: self.problems.append(r.url) if r.status >= 400 and "/static/" in r.url else None
        )

    def _console(self, message: ConsoleMessage) -> None:
        # A page answered 4xx on purpose (a refused form) is logged by Chromium as a failed resource.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(message.text)


def new_context(browser: Browser, base: str, lang: str) -> BrowserContext:
    locale = {"en": "en-GB", "de": "de-DE", "nb": "nb-NO", "nl": "nl-NL"}[lang]
    context = browser.new_context(base_url=base, locale=locale, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    return context


TEXTS = {
    "en": {
        "join": "Join {org}",
        "name": "Your name",
        "password": "Choose a password",
        "confirm": "Repeat the password",
        "accept": "Accept and open the portal",
        "summary": "Please correct the following:",
        "short": "Choose a password of at least 12 characters.",
        "no name": "Enter your name.",
        "used": "This invitation has already been used",
        "subject": "Invitation to {org} on Konsil",
    },
    "de": {
        "join": "{org} beitreten",
        "name": "Ihr Name",
        "password": "Passwort wählen",
        "confirm": "Passwort wiederholen",
        "accept": "Annehmen und Portal öffnen",
        "summary": "Bitte korrigieren Sie Folgendes:",
        "short": "Wählen Sie ein Passwort mit mindestens 12 Zeichen.",
        "no name": "Geben Sie Ihren Namen ein.",
        "used": "Diese Einladung wurde bereits verwendet",
        "subject": "Einladung zu {org} bei Konsil",
    },
}


@pytest.mark.parametrize("lang", ["en", "de"])
def test_an_invited_person_accepts_and_lands_in_the_portal(
    stack: Stack, mail: MailServer, browser: Browser, lang: str
) -> None:
    base = stack.region_url("eu")
    made = stack.signup("eu")
    slug, org = made["slug"], f"Praxis {made['slug']}"
    owner = stack.login(base, slug, made["owner"]["email"])
    email = f"invited-{lang}-{uuid.uuid4().hex[:6]}@praxis.example"
    invited = owner.post(f"/api/v1/orgs/{slug}/invitations", json={"email": email, "role": "expert", "language": lang})
    assert invited.status_code == 201, invited.text
    [received] = mail.wait_for(email)
    text = TEXTS[lang]
    assert received.message["Subject"] == text["subject"].format(org=org)
    link = received.link("invitations")

    # An English browser still sees the invitation in the language it was sent in.
    context = new_context(browser, base, "en")
    watched = Watched(context)
    page = watched.page
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text(text["join"].format(org=org))
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.locator(".facts-list")).to_contain_text(email)
    page.screenshot(path=str(SHOTS / f"invitation-{lang}.png"), full_page=True)

    # Every problem at once, each linked to its field.
    page.get_by_label(text["password"]).fill("short")
    page.get_by_label(text["confirm"]).fill("short")
    page.get_by_role("button", name=text["accept"]).click()
    summary = page.locator("#error-summary")
    expect(summary).to_contain_text(text["summary"])
    expect(summary.locator("li")).to_have_count(2)
    expect(summary).to_contain_text(text["short"])
    expect(summary).to_contain_text(text["no name"])
    expect(page.get_by_label(text["name"])).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label(text["password"])).to_have_attribute("aria-describedby", "password-hint password-error")
    page.screenshot(path=str(SHOTS / f"invitation-errors-{lang}.png"), full_page=True)

    page.get_by_label(text["name"]).fill("Dr. Åse Lindqvist")
    page.get_by_label(text["password"]).fill("a long enough passphrase")
    page.get_by_label(text["confirm"]).fill("a long enough passphrase")
    page.get_by_role("button", name=text["accept"]).click()
    page.wait_for_url(f"**/{slug}/portal")
    expect(page.get_by_role("heading", level=1)).to_have_text(org)
    # The portal goes on in the language they accepted in.
    expect(page.locator("html")).to_have_attribute("lang", lang)
    page.screenshot(path=str(SHOTS / f"invitation-landed-{lang}.png"), full_page=True)
    members = owner.get(f"/api/v1/orgs/{slug}/members").json()
    assert [(m["name"], m["role"]) for m in members if m["email"] == email] == [("Dr. Åse Lindqvist", "expert")]

    # The link again: a clear message, nothing created.
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text(text["used"])
    assert len(owner.get(f"/api/v1/orgs/{slug}/members").json()) == 2
    assert watched.problems == [], watched.problems
    context.close()


def owner_context(browser: Browser, stack: Stack, owner: httpx.Client, lang: str) -> BrowserContext:
    """A browser logged in as the owner (the session of ``owner``)."""
    context = new_context(browser, stack.region_url("eu"), lang)
    cookie = owner.cookies.get("konsil_session")
    assert cookie
    context.add_cookies([{"name": "konsil_session", "value": cookie, "url": stack.region_url("eu")}])
    return context


def row(page: Page, member_id: str) -> Any:
    return page.locator(f'#members tr[data-id="{member_id}"]')


def test_an_owner_administers_the_members(stack: Stack, mail: MailServer, browser: Browser) -> None:
    base = stack.region_url("eu")
    made = stack.signup("eu")
    slug = made["slug"]
    owner = stack.login(base, slug, made["owner"]["email"])
    expert = stack.add_member(owner, slug, "expert", phone="+4791234567")
    leaving = stack.add_member(owner, slug, "expert")
    auditor = stack.add_member(owner, slug, "auditor", access_expires_at=auditor_access_until(20))
    pending = f"pending-{uuid.uuid4().hex[:6]}@praxis.example"
    assert owner.post(f"/api/v1/orgs/{slug}/invitations", json={"email": pending, "role": "expert"}).status_code == 201
    reads_before = len(db(stack, "SELECT 1 FROM access_log_entry WHERE object_type = 'member' AND action = 'read'"))

    context = owner_context(browser, stack, owner, "en")
    watched = Watched(context)
    page = watched.page
    page.goto(f"/{slug}/portal/members?lang=en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Members")
    expect(page.locator('.portal-nav a[aria-current="page"]')).to_have_text("Members")
    expect(page.locator("#members tbody tr")).to_have_count(4)
    expect(row(page, expert["id"])).to_contain_text("+47 91 23 45 67")
    expect(row(page, expert["id"])).to_contain_text(expert["email"])
    expect(page.locator("#invitations")).to_contain_text(pending)
    reads = len(db(stack, "SELECT 1 FROM access_log_entry WHERE object_type = 'member' AND action = 'read'"))
    assert reads == reads_before + 4, "the page view read four members, each access-logged"
    page.screenshot(path=str(SHOTS / "members-en.png"), full_page=True)

    # Change a role.
    row(page, expert["id"]).get_by_label(f"Role of {expert['name']}").select_option("admin")
    row(page, expert["id"]).get_by_role("button", name="Save").click()
    expect(page.locator("#page-notice")).to_have_text("The change was saved.")
    expect(row(page, expert["id"])).to_have_attribute("data-role", "admin")

    # Move an auditor's end of access (the date field shows only for auditors).
    auditor_row = row(page, auditor["id"])
    new_day = (dt.date.today() + dt.timedelta(days=90)).isoformat()
    auditor_row.locator("input[type=date]").fill(new_day)
    auditor_row.get_by_role("button", name="Save").click()
    expect(page.locator("#page-notice")).to_have_text("The change was saved.")
    [stored] = db(stack, "SELECT access_expires_at FROM member WHERE id = $1", uuid.UUID(auditor["id"]))
    ends = stored["access_expires_at"].astimezone(dt.UTC)
    assert abs(
        ends - dt.datetime.combine(dt.date.fromisoformat(new_day), dt.time(23, 59), tzinfo=dt.UTC)
    ) <= dt.timedelta(hours=14)
    assert row(page, expert["id"]).locator(".access-end").is_hidden(), "no end date for an admin"

    # Remove a member, after confirming.
    page.once("dialog", lambda dialog: dialog.dismiss())
    row(page, leaving["id"]).get_by_role("button", name="Remove").click()
    expect(row(page, leaving["id"])).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    row(page, leaving["id"]).get_by_role("button", name="Remove").click()
    expect(page.locator("#page-notice")).to_have_text("The member was removed. Their sessions have ended.")
    expect(row(page, leaving["id"])).to_have_count(0)

    # The last owner: demoting or removing them is refused, in words.
    owner_row = row(page, made["owner_id"])
    owner_row.locator("select").select_option("expert")
    owner_row.get_by_role("button", name="Save").click()
    expect(page.locator("#page-error")).to_have_text(
        "An organisation keeps at least one owner. Make another member an owner first, then try again."
    )
    expect(page.locator("#page-error")).to_be_focused()
    expect(row(page, made["owner_id"])).to_have_attribute("data-role", "owner")
    page.screenshot(path=str(SHOTS / "members-last-owner-en.png"), full_page=True)
    page.once("dialog", lambda dialog: dialog.accept())
    row(page, made["owner_id"]).get_by_role("button", name="Remove").click()
    expect(page.locator("#page-error")).to_contain_text("An organisation keeps at least one owner.")

    # Invite an auditor: the date field appears with the role; the mail goes out.
    email = f"audit-{uuid.uuid4().hex[:6]}@firm.example"
    form = page.locator("#invite-form")
    assert form.locator(".access-end").is_hidden()
    form.get_by_label("E-mail address").fill(email)
    form.get_by_label("Role", exact=True).select_option("auditor")
    expect(form.locator(".access-end")).to_be_visible()
    form.get_by_role("button", name="Send the invitation").click()
    expect(page.locator("#error-summary")).to_contain_text("Choose the last day of the auditor's access")
    page.locator("#invite-form").get_by_label("Auditor's access until").fill(
        (dt.date.today() + dt.timedelta(days=30)).isoformat()
    )
    page.locator("#invite-form").get_by_role("button", name="Send the invitation").click()
    expect(page.locator("#page-notice")).to_have_text("The invitation was sent.")
    expect(page.locator("#invitations")).to_contain_text(email)
    [received] = mail.wait_for(email)
    assert "Your access as an auditor ends on" in received.text

    # Revoke the older invitation.
    item = page.locator("#invitations li", has_text=pending)
    page.once("dialog", lambda dialog: dialog.accept())
    item.get_by_role("button", name="Revoke").click()
    expect(page.locator("#page-notice")).to_have_text("The invitation was revoked. Its link no longer works.")
    expect(page.locator("#invitations")).not_to_contain_text(pending)
    page.screenshot(path=str(SHOTS / "members-after-en.png"), full_page=True)
    assert watched.problems == [], watched.problems
    context.close()


def test_the_members_page_speaks_german(stack: Stack, browser: Browser) -> None:
    base = stack.region_url("eu")
    made = stack.signup("eu")
    slug = made["slug"]
    owner = stack.login(base, slug, made["owner"]["email"])
    expert = stack.add_member(owner, slug, "expert", phone="+4930123456")
    stack.add_member(owner, slug, "auditor")
    context = owner_context(browser, stack, owner, "de")
    watched = Watched(context)
    page = watched.page
    page.goto(f"/{slug}/portal/members")  # the browser's language: German
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("heading", level=1)).to_have_text("Mitglieder")
    expect(page.get_by_role("heading", name="Mitglied einladen")).to_be_visible()
    expect(row(page, expert["id"])).to_contain_text("Fachperson")
    page.screenshot(path=str(SHOTS / "members-de.png"), full_page=True)
    owner_row = row(page, made["owner_id"])
    owner_row.locator("select").select_option("admin")
    owner_row.get_by_role("button", name="Speichern").click()
    expect(page.locator("#page-error")).to_have_text(
        "Eine Organisation behält immer mindestens eine Inhaberin oder einen Inhaber. Machen Sie zuerst ein "
        "anderes Mitglied zur Inhaberin oder zum Inhaber und versuchen Sie es dann erneut."
    )
    page.screenshot(path=str(SHOTS / "members-last-owner-de.png"), full_page=True)
    # An expert may not open the page; a visitor without a session is sent to log in.
    as_expert = stack.login(base, slug, expert["email"])
    assert as_expert.get(f"/{slug}/portal/members", headers={"accept": "text/html"}).status_code == 403
    anonymous = httpx.get(f"{base}/{slug}/portal/members", headers={"accept": "text/html"})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    assert watched.problems == [], watched.problems
    context.close()


@pytest.mark.parametrize("lang", ["en", "nb"])
def test_a_password_reset_in_the_browser(stack: Stack, mail: MailServer, browser: Browser, lang: str) -> None:
    base = stack.region_url("eu")
    made = stack.signup("eu")
    email = made["owner"]["email"]
    words = {
        "en": (
            "Reset your password",
            "E-mail address",
            "Send me a link",
            "If an account uses this e-mail address",
            "New password",
            "Repeat the new password",
            "Save the new password",
            "Your password was changed",
        ),
        "nb": (
            "Tilbakestill passordet",
            "E-postadresse",
            "Send meg en lenke",
            "Hvis en konto bruker denne e-postadressen",
            "Nytt passord",
            "Gjenta det nye passordet",
            "Lagre det nye passordet",
            "Passordet ditt er endret",
        ),
    }[lang]
    title, address, send, sent, new, repeat, save, done = words
    context = new_context(browser, base, lang)
    watched = Watched(context)
    page = watched.page
    page.goto("/login")
    page.get_by_role("link", name={"en": "Forgot your password?", "nb": "Glemt passordet?"}[lang]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    page.screenshot(path=str(SHOTS / f"reset-ask-{lang}.png"), full_page=True)
    page.get_by_label(address).fill(email)
    page.get_by_role("button", name=send).click()
    expect(page.get_by_role("status")).to_contain_text(sent)
    page.screenshot(path=str(SHOTS / f"reset-sent-{lang}.png"), full_page=True)
    [received] = mail.wait_for(email)
    assert received.message["Content-Language"] == lang
    page.goto(received.link("password-reset"))
    page.get_by_label(new, exact=True).fill("a fresh passphrase here")
    page.get_by_label(repeat).fill("a fresh passphrase here")
    page.screenshot(path=str(SHOTS / f"reset-new-{lang}.png"), full_page=True)
    page.get_by_role("button", name=save).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(done)
    page.screenshot(path=str(SHOTS / f"reset-done-{lang}.png"), full_page=True)
    assert stack.login(base, made["slug"], email, "a fresh passphrase here")
    assert watched.problems == [], watched.problems
    context.close()
