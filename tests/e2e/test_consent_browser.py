"""Consent records (P13, P15) in real Chromium against the running EU region: the join
page's "On this device" choices (join.js, device-memory.js) and a member's e-mail
preferences page.

- Without an agreement the browser keeps nothing of the visitor (no name or phone in
  localStorage or cookies).
- Ticking "fill in the form for me" is recorded by the server under a random device id
  only (a consent_event row and an access-log entry, no name or phone anywhere); the
  next visit in the same browser finds the form filled in.
- Unticking records the withdrawal and deletes what was kept at once.
- The camera choice is kept only with its agreement, and the call asks for it.
- The pages are translated, say no internal words, fit a 375 px wide phone and pass axe.

Screenshots (en, nb, de, nl; desktop and phone) go to /tmp/konsil-consent/."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from tests.conftest import Stack, fetch
from tests.e2e.browser_kit import assert_accessible, chromium, new_context, new_page

pytestmark = pytest.mark.e2e

SHOTS = Path("/tmp/konsil-consent")
PHONE: ViewportSize = {"width": 375, "height": 812}
# Words only developers should see; none may reach a visitor or a member.
INTERNAL = re.compile(
    r"\b(UDP|TCP|JSON|not_found|consent_refused|prefill_forms|remember_device|onboarding_emails|feature_emails|"
    r"device:|member:|subject_ref|wording_version|localStorage|undefined|null|None)\b",
    re.IGNORECASE,
)
NAMES = {"en": "Eva Example", "nb": "Ingrid Åsheim", "de": "Jürgen Müller", "nl": "Daan de Vries"}
PHONE_NUMBER = "+47 406 12 345"


def db(stack: Stack, query: str, *args: object) -> list[Any]:
    """SQL on the EU region's database, from a thread of its own (Playwright's sync API
    keeps an event loop in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fetch(stack.dsns["eu"], query, *args))).result()


class Practice:
    """An EU organisation with a room, and its owner's session."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.base = stack.region_url("eu")
        made = stack.signup("eu")
        self.slug: str = made["slug"]
        self.org_id = uuid.UUID(made["organisation_id"])
        self.owner = stack.login(self.base, self.slug, made["owner"]["email"])
        self.owner_id = uuid.UUID(made["owner_id"])
        room = self.owner.post(
            f"/api/v1/orgs/{self.slug}/rooms", json={"slug": "consultation", "title": "Consultation"}
        )
        assert room.status_code == 201, room.text
        self.join_path = f"/{self.slug}/consultation"
        self.session = self.owner.cookies["konsil_session"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def practice(stack: Stack) -> Practice:
    return Practice(stack)


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def stored(page: Page) -> dict[str, str]:
    """Everything the page's origin keeps in localStorage."""
    found: dict[str, str] = page.evaluate("() => Object.fromEntries(Object.entries(window.localStorage))")
    return found


def kept_state(page: Page, slug: str) -> dict[str, Any]:
    raw = stored(page).get(f"konsil:{slug}")
    return json.loads(raw) if raw else {}


def cookie_values(context: BrowserContext) -> str:
    return " ".join(f"{c['name']}={c['value']}" for c in context.cookies())


def fits(page: Page, width: int) -> None:
    """Nothing sticks out sideways on a phone."""
    scroll = page.evaluate("() => document.documentElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll} px wide on a {width} px screen"


def no_internal_words(page: Page) -> None:
    text = page.locator("body").inner_text()
    found = INTERNAL.findall(text)
    assert not found, f"internal words on the page: {found}"


def decided(page: Page, box: str, locale: str) -> None:
    """Tick or untick ``box`` and wait for the page to say the choice is saved."""
    page.locator(f"#keep-{box}").click()
    expect(page.locator("#device-choices-status")).not_to_be_empty()
    expect(page.locator(f"#keep-{box}")).to_be_enabled()
    assert page.locator("#device-choices-error").inner_text() == "", f"[{locale}] the choice was not saved"


def join(page: Page) -> None:
    page.locator("#consent").check()
    with page.expect_navigation():
        page.locator("form.join-form button[type=submit]").click()
    assert "/visits/" in page.url, page.url


@pytest.mark.parametrize("locale", ["en", "nb"])
def test_the_join_page_keeps_the_form_only_with_a_recorded_agreement(
    stack: Stack, browser: Browser, practice: Practice, locale: str
) -> None:
    name = NAMES[locale]
    context = new_context(browser, practice.base, locale, media=True)
    try:
        page, watch = new_page(context)
        page.goto(practice.join_path)
        assert page.locator("html").get_attribute("lang") == locale
        expect(page.locator("#device-choices")).to_be_visible()
        expect(page.locator("#keep-prefill_forms")).not_to_be_checked()
        expect(page.locator("#keep-remember_device")).not_to_be_checked()

        # Without an agreement: nothing of the visitor is kept in the browser.
        page.locator("#name").fill(name)
        page.locator("#phone").fill(PHONE_NUMBER)
        join(page)
        everything = json.dumps(stored(page)) + cookie_values(context)
        assert name not in everything and "406" not in everything
        assert f"konsil:{practice.slug}" not in stored(page)
        page.goto(practice.join_path)
        expect(page.locator("#name")).to_have_value("")
        expect(page.locator("#phone")).to_have_value("")

        # Agreeing: recorded under a random device id, nothing personal on the server's side.
        page.locator("#name").fill(name)
        page.locator("#phone").fill(PHONE_NUMBER)
        decided(page, "prefill_forms", locale)
        state = kept_state(page, practice.slug)
        device = uuid.UUID(state["device"])
        assert state["consents"]["prefill_forms"]["until"]
        assert state["form"] == {"name": name, "phone": PHONE_NUMBER}
        [row] = db(stack, "SELECT * FROM consent_event WHERE subject_id = $1", device)
        assert (row["org_id"], row["subject_kind"], row["purpose"], row["action"], row["source"]) == (
            practice.org_id,
            "device",
            "prefill_forms",
            "granted",
            "join_page",
        )
        assert row["language"] == locale and row["expires_at"] is not None
        assert name not in str(dict(row)) and "406" not in str(dict(row))
        [entry] = db(
            stack,
            "SELECT * FROM access_log_entry WHERE org_id = $1 AND object_type = 'consent' AND object_id = $2",
            practice.org_id,
            str(row["id"]),
        )
        assert entry["action"] == "create" and entry["subject_ref"] == f"device:{device}"
        assert name not in str(dict(entry))

        # The section as the visitor sees it: translated, plain words, accessible, fits a phone.
        section = page.locator("#device-choices").inner_text()
        if locale != "en":
            for english in ("On this device", "Remember my", "Saved."):
                assert english not in section, f"[{locale}] untranslated: {section}"
        no_internal_words(page)
        assert_accessible(page, f"join page with the device choices [{locale}]")
        shot(page, f"join-{locale}-desktop-agreed")
        page.set_viewport_size(PHONE)
        fits(page, PHONE["width"])
        page.locator("#device-choices").scroll_into_view_if_needed()
        shot(page, f"join-{locale}-phone-agreed")

        # The next visit in this browser finds the form filled in.
        join(page)
        page.goto(practice.join_path)
        expect(page.locator("#name")).to_have_value(name)
        expect(page.locator("#phone")).to_have_value(PHONE_NUMBER)
        expect(page.locator("#keep-prefill_forms")).to_be_checked()

        # Unticking: the withdrawal is recorded and what was kept is gone at once.
        decided(page, "prefill_forms", locale)
        expect(page.locator("#keep-prefill_forms")).not_to_be_checked()
        state = kept_state(page, practice.slug)
        assert "form" not in state and "prefill_forms" not in state.get("consents", {})
        assert name not in json.dumps(stored(page))
        events = db(stack, "SELECT action, source FROM consent_event WHERE subject_id = $1 ORDER BY at", device)
        assert [(e["action"], e["source"]) for e in events] == [("granted", "join_page"), ("withdrawn", "join_page")]
        entries = db(
            stack,
            "SELECT action FROM access_log_entry WHERE org_id = $1 AND subject_ref = $2",
            practice.org_id,
            f"device:{device}",
        )
        assert [e["action"] for e in entries] == ["create", "create"]
        shot(page, f"join-{locale}-phone-withdrawn")
        page.reload()
        expect(page.locator("#name")).to_have_value("")
        expect(page.locator("#keep-prefill_forms")).not_to_be_checked()

        watch.assert_same_origin(practice.base)
        watch.assert_no_script_errors()
    finally:
        context.close()


@pytest.mark.parametrize("locale", ["de", "nl"])
def test_the_join_page_choices_in_german_and_dutch(browser: Browser, practice: Practice, locale: str) -> None:
    context = new_context(browser, practice.base, locale, viewport=PHONE, media=True)
    try:
        page, watch = new_page(context)
        page.goto(practice.join_path)
        assert page.locator("html").get_attribute("lang") == locale
        expect(page.locator("#device-choices")).to_be_visible()
        section = page.locator("#device-choices").inner_text()
        for english in ("On this device", "Remember my", "What is kept"):
            assert english not in section, f"[{locale}] untranslated: {section}"
        decided(page, "remember_device", locale)
        status = page.locator("#device-choices-status").inner_text()
        assert "Saved" not in status, f"[{locale}] untranslated: {status}"
        no_internal_words(page)
        fits(page, PHONE["width"])
        assert_accessible(page, f"join page with the device choices [{locale}]")
        page.locator("#device-choices").scroll_into_view_if_needed()
        shot(page, f"join-{locale}-phone-agreed")
        watch.assert_no_script_errors()
    finally:
        context.close()


REMEMBER = "(args) => import('/static/device-memory.js').then((m) => m.rememberDevice(args.kind, args.id))"
ASKED_FOR = """
async () => {
  const asked = [];
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => { asked.push(constraints); return original(constraints); };
  const call = await import('/static/call.js');
  const result = await call.getLocalMedia();
  if (result.stream) result.stream.getTracks().forEach((track) => track.stop());
  navigator.mediaDevices.getUserMedia = original;
  return asked;
}
"""
CAMERA = """
async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true });
  stream.getTracks().forEach((track) => track.stop());
  const found = await navigator.mediaDevices.enumerateDevices();
  return found.filter((d) => d.kind === 'videoinput').map((d) => d.deviceId)[0];
}
"""


def test_the_camera_choice_is_kept_only_with_its_agreement_and_used(
    stack: Stack, browser: Browser, practice: Practice
) -> None:
    context = new_context(browser, practice.base, "en", media=True)
    try:
        page, watch = new_page(context)
        page.goto(practice.join_path)
        camera = page.evaluate(CAMERA)
        assert camera, "the fake camera is not listed"

        # Chosen without an agreement: not kept, and the call asks for any camera.
        page.evaluate(REMEMBER, {"kind": "video", "id": camera})
        assert f"konsil:{practice.slug}" not in stored(page)
        [first, *_] = page.evaluate(ASKED_FOR)
        assert "deviceId" not in first["video"]

        # Agreed: the choice is kept in this browser, and the call asks for that camera.
        decided(page, "remember_device", "en")
        page.evaluate(REMEMBER, {"kind": "video", "id": camera})
        state = kept_state(page, practice.slug)
        assert state["devices"] == {"video": camera}
        device = uuid.UUID(state["device"])
        page.reload()
        [first, *_] = page.evaluate(ASKED_FOR)
        assert first["video"]["deviceId"] == {"ideal": camera}
        [row] = db(stack, "SELECT purpose, action FROM consent_event WHERE subject_id = $1", device)
        assert (row["purpose"], row["action"]) == ("remember_device", "granted")

        # Withdrawn: the choice is deleted, the call asks for any camera again.
        decided(page, "remember_device", "en")
        assert "devices" not in kept_state(page, practice.slug)
        [first, *_] = page.evaluate(ASKED_FOR)
        assert "deviceId" not in first["video"]
        watch.assert_no_script_errors()
    finally:
        context.close()


# --- a member's e-mail preferences -----------------------------------------------------------------


def member_context(browser: Browser, practice: Practice, locale: str, **options: Any) -> BrowserContext:
    context = new_context(browser, practice.base, locale, **options)
    context.add_cookies([{"name": "konsil_session", "value": practice.session, "domain": "127.0.0.1", "path": "/"}])
    return context


@pytest.mark.parametrize("locale", ["en", "nb", "de", "nl"])
def test_a_member_chooses_emails_and_sees_when(stack: Stack, browser: Browser, practice: Practice, locale: str) -> None:
    path = f"/{practice.slug}/portal/email-preferences"
    context = member_context(browser, practice, locale)
    try:
        page, watch = new_page(context)
        page.goto(path)
        assert page.locator("html").get_attribute("lang") == locale
        before = db(stack, "SELECT count(*) AS n FROM consent_event WHERE subject_id = $1", practice.owner_id)[0]["n"]

        page.locator("#feature_emails").check()
        with page.expect_navigation():
            page.locator("#preferences-form button[type=submit]").click()
        expect(page.locator("#preferences-saved")).to_be_visible()
        expect(page.locator("#feature_emails")).to_be_checked()
        granted_hint = page.locator("#feature_emails-state").inner_text()
        assert re.search(r"\d", granted_hint), f"[{locale}] no date of the decision: {granted_hint}"
        [last] = db(
            stack,
            "SELECT * FROM consent_event WHERE subject_id = $1 AND purpose = 'feature_emails' ORDER BY at DESC LIMIT 1",
            practice.owner_id,
        )
        assert (last["action"], last["source"], last["language"]) == ("granted", "email_preferences", locale)
        no_internal_words(page)
        if locale != "en":
            text = page.locator("main").inner_text()
            for english in ("E-mail preferences", "News about features", "You asked for them", "Your choices"):
                assert english not in text, f"[{locale}] untranslated: {english}"
        assert_accessible(page, f"e-mail preferences [{locale}]")
        shot(page, f"email-preferences-{locale}-desktop-granted")

        page.locator("#feature_emails").uncheck()
        with page.expect_navigation():
            page.locator("#preferences-form button[type=submit]").click()
        expect(page.locator("#feature_emails")).not_to_be_checked()
        stopped_hint = page.locator("#feature_emails-state").inner_text()
        assert stopped_hint != granted_hint and re.search(r"\d", stopped_hint)
        [last] = db(
            stack,
            "SELECT action FROM consent_event WHERE subject_id = $1 AND purpose = 'feature_emails' "
            "ORDER BY at DESC LIMIT 1",
            practice.owner_id,
        )
        assert last["action"] == "withdrawn"
        after = db(stack, "SELECT count(*) AS n FROM consent_event WHERE subject_id = $1", practice.owner_id)[0]["n"]
        assert after > before
        page.set_viewport_size(PHONE)
        fits(page, PHONE["width"])
        shot(page, f"email-preferences-{locale}-phone-withdrawn")
        watch.assert_same_origin(practice.base)
        watch.assert_no_script_errors()
    finally:
        context.close()
