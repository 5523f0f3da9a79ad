"""The dashboard's text alerts and client invitations, used in Chromium in English and
Norwegian against a region service process that texts through a local stand-in of Sinch's
REST API and mails through a real SMTP server (aiosmtpd).

What the expert sees: they turn text alerts on with their number typed the way people
write it, see it masked; a visitor joins and the stand-in gets "Someone is waiting in
room …" without the visitor's name; a number that cannot get texts is refused at the
field in plain words; "Invite a client" by text message and by e-mail says it was sent;
with the provider down it says so plainly and nothing is sent. Every message is in the
page's language and free of internal words; axe-core finds no serious violation with
the controls open; screenshots go to ``$KONSIL_SCREENSHOTS/messaging-<lang>/``."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

import konsil.tenants.messaging.alerts  # noqa: F401  (registers the messaging texts' catalogs)
from konsil.platform.pages import i18n
from tests.conftest import Stack, fetch, wait_until
from tests.e2e.browser_kit import PHONE, Shots, assert_accessible, chromium, new_context, new_page
from tests.e2e.mail_support import MailServer, mail_stack
from tests.tenants.messaging.stand_ins import PLAN, SINCH_TOKEN, StandIn, make_handler

pytestmark = pytest.mark.e2e

VISITOR = "Ingrid Visitorsen"
ROOM = {"en": "Consultations", "nb": "Konsultasjon", "de": "Sprechstunde", "nl": "Spreekuur"}
# What must never show on the page: field names, error codes, JSON.
INTERNAL = re.compile(r"invalid_phone|invalid_email|sms_unavailable|mail_unavailable|phone:|to:|[{}\[\]]|null")


@pytest.fixture(scope="module")
def sinch() -> Iterator[StandIn]:
    stand_in = StandIn("sinch")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(stand_in))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def mail() -> Iterator[MailServer]:
    server = MailServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sms_stack(
    pg_database: Any, tmp_path_factory: pytest.TempPathFactory, mail: MailServer, sinch: StandIn
) -> Iterator[Stack]:
    """A control plane and an EU region (its own process) with Sinch configured."""
    lines = (
        "[regions.sms]",
        'provider = "sinch"',
        f'service_plan_id = "{PLAN}"',
        'sender = "Konsil"',
        f'api_token = "{SINCH_TOKEN}"',
        f'base_url = "{sinch.url}"',
    )
    with mail_stack("smsui", pg_database, tmp_path_factory.mktemp("smsui"), mail, lines) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


def tr(lang: str, message: str, **params: Any) -> str:
    return i18n.gettext(lang, message, **params)


def expert_session(stack: Stack, lang: str) -> tuple[str, str, httpx.Client]:
    """A Norwegian organisation in ``lang`` with an expert and their room: (slug, the
    expert's session cookie, their API client)."""
    slug = stack.unique(f"sms-{lang}")
    body = {
        "region": "eu",
        "organisation": {"name": f"Klinikk {slug}", "slug": slug, "country": "NO", "locale": lang},
        "owner": {"name": "Owner", "email": f"owner@{slug}.example", "password": "correct horse battery"},
    }
    made = httpx.post(f"{stack.control_url}/api/v1/signup", json=body, timeout=30)
    assert made.status_code == 201, made.text
    region = stack.region_url("eu")
    owner = stack.login(region, slug, f"owner@{slug}.example")
    member = stack.add_member(owner, slug, "expert")
    expert = stack.login(region, slug, member["email"])
    room = expert.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "room", "title": ROOM[lang]})
    assert room.status_code == 201, room.text
    return slug, expert.cookies["konsil_session"], expert


def stored(stack: Stack, query: str) -> list[Any]:
    """Rows of the region's database (in a thread of its own: Playwright's loop runs here)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fetch(stack.dsns["eu"], query))).result()


def plain(page: Page, where: str) -> None:
    """The messaging controls' visible words hold nothing internal."""
    for selector in ("#sms-alerts", "#rooms"):
        text = page.locator(selector).inner_text()
        assert not INTERNAL.search(text), f"{where}: internal words in {selector}: {text!r}"


def texts_to(sinch: StandIn, count: int) -> list[dict[str, Any]]:
    return wait_until(lambda: sinch.seen if len(sinch.seen) >= count else None, f"{count} text(s)", within=20)


@pytest.mark.parametrize("lang", ["en", "nb", "de", "nl"])
def test_text_alerts_and_client_invitations_from_the_dashboard(
    sms_stack: Stack, sinch: StandIn, mail: MailServer, browser: Browser, lang: str
) -> None:
    expect.set_options(timeout=20_000)
    slug, session, expert = expert_session(sms_stack, lang)
    region = sms_stack.region_url("eu")
    shot = Shots(f"messaging-{lang}")
    context = new_context(browser, region, lang, cookies=[("konsil_session", session)])
    page, watch = new_page(context)
    sinch.seen.clear()
    sinch.status = None
    try:
        page.goto(f"/{slug}/portal")
        expect(page.locator("html")).to_have_attribute("lang", lang)
        box = page.locator("#sms-alerts")
        expect(box).to_be_visible()
        expect(box).to_contain_text(tr(lang, "Text me when someone is waiting"))
        status = page.locator("#sms-status")

        # A number that cannot get texts: a clear message at the field, nothing kept.
        page.locator("#sms-toggle").check()
        page.locator("#sms-phone").fill("12345")
        page.locator("#sms-save").click()
        expect(status).to_have_text(
            tr(lang, "Enter a mobile number that can receive text messages, e.g. +47 412 34 567.")
        )
        expect(page.locator("#sms-phone")).to_be_focused()
        plain(page, "invalid number")
        shot(page, "invalid-number")
        kept = expert.get(f"/api/v1/orgs/{slug}/me/sms-alerts").json()
        assert kept == {"enabled": False, "phone": None, "available": True}

        # The number as people write it: saved, shown masked.
        page.locator("#sms-phone").fill("412 34 567")
        page.locator("#sms-save").click()
        masked = "+47 *** ** 567"
        expect(status).to_have_text(
            tr(lang, "Texts go to %(phone)s when someone starts waiting in one of your rooms.", phone=masked)
        )
        expect(page.locator("#sms-toggle")).to_be_checked()
        # The number itself is not on the page: the field is empty, masked as its placeholder.
        expect(page.locator("#sms-phone")).to_have_value("")
        expect(page.locator("#sms-phone")).to_have_attribute("placeholder", masked)
        assert "41234567" not in page.content()
        plain(page, "alerts on")
        shot(page, "alerts-on")
        assert_accessible(page, f"dashboard, text alerts on [{lang}]")

        # A visitor joins: the expert is texted, without the visitor's name.
        joined = httpx.post(
            f"{region}/{slug}/room/visits", data={"name": VISITOR, "consent": "yes"}, follow_redirects=False, timeout=30
        )
        assert joined.status_code == 303, joined.text
        [alert] = texts_to(sinch, 1)
        sent = json.loads(alert["body"])
        assert sent["to"] == ["+4741234567"]
        assert sent["body"] == tr(lang, "Someone is waiting in room %(room)s.", room=ROOM[lang])
        assert "Ingrid" not in sent["body"] and "Visitorsen" not in sent["body"]
        expect(page.locator("#waiting")).to_contain_text(VISITOR)

        # Invite a client by text message.
        invite = page.locator("#rooms li").first.get_by_role("button", name=re.compile(tr(lang, "Invite a client")))
        invite.click()
        form = page.locator(".invite-form")
        expect(form).to_be_visible()
        plain(page, "invite form")
        shot(page, "invite-form")
        assert_accessible(page, f"dashboard, invite form open [{lang}]")
        form.locator("input[type=tel]").fill("+47 412 34 568")
        form.locator("button[type=submit]").click()
        invite_status = form.locator("p[role=status]")
        expect(invite_status).to_have_text(tr(lang, "Sent. The link is on its way to your client."))
        texted = json.loads(texts_to(sinch, 2)[1]["body"])
        assert texted["to"] == ["+4741234568"] and f"{region}/{slug}/room" in texted["body"]
        shot(page, "invited-by-sms")

        # Invite a client by e-mail.
        form.locator("input[type=radio][value=email]").check()
        address = f"client@{slug}.example"
        expect(form.locator("input[type=email]")).to_be_visible()
        form.locator("input[type=email]").fill(address)
        form.locator("button[type=submit]").click()
        expect(invite_status).to_have_text(tr(lang, "Sent. The link is on its way to your client."))
        [received] = mail.wait_for(address)
        assert f"{region}/{slug}/room" in received.text
        shot(page, "invited-by-email")

        # The provider down: a plain message, nothing sent.
        sinch.status = 503
        form.locator("input[type=radio][value=sms]").check()
        form.locator("input[type=tel]").fill("412 34 569")
        form.locator("button[type=submit]").click()
        expect(invite_status).to_have_text(
            tr(
                lang,
                "The text message service did not answer, so nothing was sent. Please try again in a few minutes.",
            )
        )
        plain(page, "provider down")
        rows = stored(sms_stack, "SELECT * FROM client_invitation ORDER BY created_at")
        assert [r["status"] for r in rows[-3:]] == ["sent", "sent", "failed"]
        assert not any(
            secret in str(value) for r in rows for value in dict(r).values() for secret in ("4741234569", address)
        )
        shot(page, "provider-down")
        # On a phone the controls fit the screen's width.
        page.set_viewport_size(PHONE)
        shot(page, "phone")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "wider than a phone"
        watch.assert_same_origin(region)
        watch.assert_no_script_errors(allow=("Failed to load resource",))
    finally:
        sinch.status = None
        context.close()
