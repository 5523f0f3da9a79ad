"""The whole journey of a clinic, in each of the four languages, as its people live it in
Chromium: the owner signs up on the control plane and lands in the region's portal,
invites an expert by e-mail (a real SMTP server, aiosmtpd), creates a room with a
welcome text for that expert; the expert accepts the invitation; a visitor joins the
room, waits, is let in; expert and visitor chat both ways over the call's data channel;
the expert ends the call. axe-core checks every page on the way (no serious or critical
WCAG 2.1 AA violation), every request stays on the service's own origins, and a
screenshot of each step is saved (``$KONSIL_SCREENSHOTS/journey-<lang>/``)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Stack, coturn_server
from tests.e2e.browser_kit import Shots, Watch, assert_accessible, chromium, new_context, new_page, origin
from tests.e2e.mail_support import MailServer, mail_stack

LANGS = ("en", "nb", "de", "nl")
# People's names per language (what the pages must show back to the other side).
PEOPLE = {
    "en": ("Northside Practice", "Grace Owner", "Dr. Alan Expert", "Mary Visitor"),
    "nb": ("Fjordklinikken", "Kari Eier", "Dr. Ola Nordmann", "Åse Besøkende"),
    "de": ("Praxis am Markt", "Greta Inhaberin", "Dr. Jonas Fachmann", "Jürgen Besucher"),
    "nl": ("Huisartsenpraktijk De Linde", "Anouk Eigenaar", "Dr. Pieter Deskundige", "Sanne Bezoeker"),
}
PASSWORD = "a long enough password 42"


@pytest.fixture(scope="module")
def mail() -> Iterator[MailServer]:
    server = MailServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def journey_stack(pg_database: Any, tmp_path_factory: pytest.TempPathFactory, mail: MailServer) -> Iterator[Stack]:
    """A control plane and an EU region that mails through ``mail`` and relays its calls
    through a real coturn (the organisation's calls are relay-only, as in production)."""
    secret = secrets.token_urlsafe(24)
    with coturn_server(secret) as port:
        relay = (
            f'ice_servers = ["turn:127.0.0.1:{port}?transport=udp", "turn:127.0.0.1:{port}?transport=tcp"]',
            f'turn_secret = "{secret}"',
        )
        with mail_stack("journey", pg_database, tmp_path_factory.mktemp("journey"), mail, relay) as running:
            yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


def _page(browser: Browser, lang: str, region: str, watches: list[Watch]) -> Page:
    context = new_context(browser, None, lang, timeout_ms=30_000)
    context.grant_permissions(["camera", "microphone"], origin=origin(region))
    page, watch = new_page(context)
    watches.append(watch)
    return page


def _checked(page: Page, shot: Shots, step: str, lang: str) -> None:
    """A step's page: its screenshot, then axe-core on it."""
    shot(page, step)
    assert_accessible(page, f"{step} [{lang}]")


@pytest.mark.parametrize("lang", LANGS)
def test_a_clinic_signs_up_invites_creates_a_room_and_holds_a_call(
    journey_stack: Stack, mail: MailServer, browser: Browser, lang: str
) -> None:
    expect.set_options(timeout=20_000)
    org_name, owner_name, expert_name, visitor_name = PEOPLE[lang]
    control = journey_stack.control_url
    region = journey_stack.region_url("eu")
    slug = f"journey-{lang}-{secrets.token_hex(3)}"
    owner_email = f"owner-{slug}@clinic.example"
    expert_email = f"expert-{slug}@clinic.example"
    shot = Shots(f"journey-{lang}")
    watches: list[Watch] = []

    # 1. The owner signs up on the control plane, in their language, and lands in the portal.
    owner = _page(browser, lang, region, watches)
    owner.goto(f"{control}/")
    _checked(owner, shot, "01-landing", lang)
    owner.goto(f"{control}/signup")
    expect(owner.locator("html")).to_have_attribute("lang", lang)
    owner.locator("#name").fill(org_name)
    owner.locator("#slug").fill(slug)
    owner.locator("#region-eu").check()
    owner.locator("#country").select_option("NO" if lang == "nb" else {"de": "DE", "nl": "NL"}.get(lang, "IE"))
    owner.locator("#locale").select_option(lang)
    owner.locator("#owner_name").fill(owner_name)
    owner.locator("#email").fill(owner_email)
    owner.locator("#password").fill(PASSWORD)
    _checked(owner, shot, "02-signup", lang)
    owner.locator("form button[type=submit]").last.click()
    owner.wait_for_url(f"{region}/{slug}/portal")
    expect(owner.locator("h1")).to_contain_text(org_name)
    _checked(owner, shot, "03-portal-owner", lang)

    # 2. The owner invites an expert by e-mail.
    owner.goto(f"{region}/{slug}/portal/members")
    owner.locator("#invite-form #email").fill(expert_email)
    owner.locator("#invite-form #role").select_option("expert")
    _checked(owner, shot, "04-members", lang)
    owner.locator("#invite-form button[type=submit]").click()
    expect(owner.locator("#invitations")).to_contain_text(expert_email)
    link = mail.wait_for(expert_email)[0].link("invitations")
    assert link.startswith(region), link

    # 3. The expert accepts: name and password, then the portal.
    expert = _page(browser, lang, region, watches)
    expert.goto(link)
    _checked(expert, shot, "05-invitation", lang)
    expert.locator("#name").fill(expert_name)
    expert.locator("#password").fill(PASSWORD)
    expert.locator("#confirm").fill(PASSWORD)
    expert.locator("form button[type=submit]").last.click()
    expert.wait_for_url(re.compile(rf"/{slug}/portal"))

    # 4. The owner creates the expert's room with a welcome text.
    welcome = f"Welcome {secrets.token_hex(2)}: have your insurance card ready."
    owner.goto(f"{region}/{slug}/portal/rooms")
    owner.locator("#room-title").fill(f"{expert_name} · video")
    owner.locator("#room-slug").fill("video")
    expect(owner.locator("#room-expert option", has_text=expert_name)).to_have_count(1)
    owner.locator("#room-expert").select_option(label=expert_name)
    owner.locator("#room-welcome").fill(welcome)
    owner.locator("#room-form button[type=submit]").click()
    expect(owner.locator("#rooms")).to_contain_text(f"/{slug}/video")
    _checked(owner, shot, "06-rooms", lang)

    # 5. The expert's dashboard is live.
    expert.goto(f"{region}/{slug}/portal")
    expect(expert.locator("main")).to_have_attribute("data-live", "true", timeout=30_000)
    _checked(expert, shot, "07-dashboard", lang)

    # 6. A visitor joins the room, passes the device check and waits, seeing the welcome text.
    visitor = _page(browser, lang, region, watches)
    visitor.goto(f"{region}/{slug}/video")
    expect(visitor.locator("html")).to_have_attribute("lang", lang)
    _checked(visitor, shot, "08-join", lang)
    visitor.locator("input[name=name]").fill(visitor_name)
    visitor.locator("input[name=consent]").check()
    visitor.locator("form[method=post] button[type=submit]").click()
    visitor.wait_for_url(re.compile(r"/visits/[0-9a-f-]{36}$"))
    expect(visitor.locator("main")).to_have_attribute("data-state", "check")
    _checked(visitor, shot, "09-device-check", lang)
    visitor.locator("#continue").click()
    expect(visitor.locator("main")).to_have_attribute("data-state", "waiting")
    expect(visitor.locator("main")).to_contain_text(welcome)
    expect(visitor.locator("main")).to_contain_text(org_name)
    _checked(visitor, shot, "10-waiting", lang)

    # 7. The expert sees the visitor arrive and lets them in.
    waiting = expert.locator("#waiting li", has_text=visitor_name)
    expect(waiting).to_be_visible()
    _checked(expert, shot, "11-arrival", lang)
    waiting.locator("button").first.click()
    expert.wait_for_url(re.compile(rf"/{slug}/calls/[0-9a-f-]{{36}}$"))
    expect(expert.locator("#call-title")).to_contain_text(visitor_name)
    for page in (visitor, expert):
        expect(page.locator("main")).to_have_attribute("data-state", "call")
        expect(page.locator("main")).to_have_attribute("data-connection", "connected", timeout=30_000)

    # 8. Chat both ways over the data channel.
    hello = f"hello-{secrets.token_hex(3)}"
    _chat(expert, hello)
    _open_chat(visitor)
    expect(visitor.locator("#chat-messages li.theirs .chat-text")).to_have_text(hello)
    answer = f"answer-{secrets.token_hex(3)} æøå"
    _chat(visitor, answer)
    expect(expert.locator("#chat-messages li.theirs .chat-text")).to_have_text(answer)
    expect(expert.locator("#chat-messages li.theirs .chat-sender")).to_have_text(visitor_name)
    _checked(expert, shot, "12-call-expert", lang)
    _checked(visitor, shot, "13-call-visitor", lang)

    # 9. The expert ends the call; both see that it ended, and the chat is gone.
    expert.locator("#end").click()
    for page in (visitor, expert):
        expect(page.locator("main")).to_have_attribute("data-state", "ended")
        expect(page.locator("#chat-messages li")).to_have_count(0)
    _checked(visitor, shot, "14-ended-visitor", lang)
    _checked(expert, shot, "15-ended-expert", lang)

    # Nothing was loaded from another host, and no page had a script error.
    own = (origin(control), origin(region))
    for watch in watches:
        assert not [url for url in watch.requests if origin(url) not in own and not url.startswith(("data:", "blob:"))]
        watch.assert_no_script_errors()
    for page in (owner, expert, visitor):
        page.context.close()


def _open_chat(page: Page) -> None:
    if page.locator("#chat").is_hidden():
        page.locator("#chat-toggle").click()


def _chat(page: Page, text: str) -> None:
    _open_chat(page)
    page.locator("#chat-input").fill(text)
    page.locator("#chat-input").press("Enter")
    expect(page.locator("#chat-messages li.mine .chat-text").last).to_have_text(text)
