"""What visitors see before the call, in real Chromium (Playwright, fake camera) against
the running EU and US regions: the join page in the visitor's language with the legal
text of the organisation's region (GDPR in the EU, HIPAA in the US), every form error
at once, phone numbers in national format, the branded waiting room with a self-view,
and friendly error pages (never JSON) for the dead ends a visitor can reach.

Screenshots go to ``test-output/visitor/`` (English and Norwegian, phone and desktop)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from tests.conftest import Stack, fetch, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "visitor"
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1180, "height": 900}
EXPERT = "Kari Berg"
WELCOME = "Welcome! Please have your insurance card ready.\nThe consultation takes about 20 minutes."
# A 1 by 1 pixel PNG: the logo row a logo upload would leave.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5f6e5d40000000049454e44ae426082"
)
# Words only developers should see; none may reach a visitor.
DEVELOPER_WORDS = re.compile(r"\b(UDP|TCP|relay|region eu|region us|trial setup|JSON|not_found)\b", re.IGNORECASE)


def db(stack: Stack, region: str, query: str, *args: object) -> list[Any]:
    """SQL from a thread of its own: Playwright's sync API keeps an event loop in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fetch(stack.dsns[region], query, *args))).result()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


class Practice:
    """An organisation of one region with an expert's room (and what the test set on it)."""

    def __init__(self, stack: Stack, region: str, *, country: str = "", locale: str = "en") -> None:
        self.stack = stack
        self.region = region
        self.base = stack.region_url(region)
        made = stack.signup(region)
        self.slug: str = made["slug"]
        self.org_id = uuid.UUID(made["organisation_id"])
        self.name = f"Praxis {self.slug}"
        owner = stack.login(self.base, self.slug, made["owner"]["email"])
        self.owner = owner
        self.expert = stack.add_member(owner, self.slug, "expert", name=EXPERT)
        as_expert = stack.login(self.base, self.slug, self.expert["email"])
        room = as_expert.post(f"/api/v1/orgs/{self.slug}/rooms", json={"slug": "consultation", "title": "Consultation"})
        assert room.status_code == 201, room.text
        self.room_id = uuid.UUID(room.json()["id"])
        self.join_path = f"/{self.slug}/consultation"
        db(
            stack,
            region,
            "UPDATE organisation SET country = $1, locale = $2 WHERE id = $3",
            country,
            locale,
            self.org_id,
        )

    def page(self, browser: Browser, problems: list[str], locale: str = "en-GB", **options: Any) -> Page:
        context = browser.new_context(base_url=self.base, locale=locale, **options)
        context.grant_permissions(["camera", "microphone"], origin=self.base)
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(f"{page.url}: {exc}"))
        page.on(
            "response",
            lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 and "/static/" in r.url else None,
        )
        return page

    def join(self, name: str, **form: str) -> httpx.Response:
        data = {"name": name, "consent": "yes", **form}
        return httpx.post(f"{self.base}{self.join_path}/visits", data=data, follow_redirects=False, timeout=30)


def notice(page: Page) -> str:
    return page.locator("section.notice-card").inner_text()


def test_the_join_page_cites_the_law_of_the_organisations_region(stack: Stack, browser: Browser) -> None:
    problems: list[str] = []
    eu = Practice(stack, "eu", country="NO")
    us = Practice(stack, "us", country="US")

    page = eu.page(browser, problems)
    page.goto(eu.join_path)
    text = notice(page)
    assert "GDPR Art. 6(1)(a)" in text and "Datatilsynet" in text and "HIPAA" not in text
    expect(page.locator("header .brand")).to_have_text(eu.name)
    expect(page.locator("main")).to_contain_text(f"A video consultation with {EXPERT} at {eu.name}.")
    expect(page.locator("#phone-hint")).to_contain_text("+47")
    expect(page.get_by_label("I agree that")).not_to_be_checked()
    shot(page, "join-eu-en")

    page = us.page(browser, problems)
    page.goto(us.join_path)
    text = notice(page)
    assert "HIPAA" in text and "Notice of Privacy Practices" in text and "Health and Human Services" in text
    assert "GDPR" not in text and "Art. 6" not in text and "Datatilsynet" not in text, text
    hint = page.locator("#phone-hint").inner_text()
    assert "+1 " in hint and "+47" not in hint, hint
    expect(page.get_by_label("I acknowledge that")).to_be_visible()
    shot(page, "join-us-en")

    # Norwegian: the same laws in Norwegian.
    page = eu.page(browser, problems, locale="nb-NO", viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page.goto(eu.join_path)
    expect(page.locator("html")).to_have_attribute("lang", "nb")
    text = notice(page)
    assert "personvernforordningen art. 6" in text and "Datatilsynet" in text, text
    expect(page.get_by_label("Navnet ditt")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "join-eu-nb-phone")
    page = us.page(browser, problems, locale="nb-NO")
    page.goto(us.join_path)
    text = notice(page)
    assert "HIPAA" in text and "personvernforordningen" not in text and "GDPR" not in text, text

    # The browser's nl-NL picks Dutch; a browser asking for French gets the organisation's default.
    page = eu.page(browser, problems, locale="nl-NL")
    page.goto(eu.join_path)
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    assert "AVG art. 6" in notice(page)
    expect(page.get_by_label("Uw naam")).to_be_visible()
    german = Practice(stack, "eu", country="DE", locale="de")
    page = german.page(browser, problems, locale="fr-FR")
    page.goto(german.join_path)
    expect(page.locator("html")).to_have_attribute("lang", "de")
    assert "DSGVO Art. 6" in notice(page)
    expect(page.get_by_label("Ihr Name")).to_be_visible()
    expect(page.locator("#phone-hint")).to_contain_text("+49")
    for body in (page.locator("body").inner_text(),):
        assert not DEVELOPER_WORDS.search(body), DEVELOPER_WORDS.search(body)
    assert not problems, problems


@pytest.mark.parametrize("language", ["en", "nb"])
def test_every_form_error_is_shown_at_once_next_to_its_field(stack: Stack, browser: Browser, language: str) -> None:
    words = {
        "en": {
            "name": "Your name",
            "phone": "Phone number",
            "continue": "Continue",
            "summary": "There are 3 problems with the form",
            "name_error": "Please enter your name.",
            "phone_error": "Please check the phone number",
            "consent_error": "Please agree to the processing",
        },
        "nb": {
            "name": "Navnet ditt",
            "phone": "Telefonnummer",
            "continue": "Fortsett",
            "summary": "Det er 3 feil i skjemaet",
            "name_error": "Skriv inn navnet ditt.",
            "phone_error": "Sjekk telefonnummeret",
            "consent_error": "Du må samtykke til behandlingen",
        },
    }[language]
    problems: list[str] = []
    practice = Practice(stack, "eu", country="NO")
    before = db(stack, "eu", "SELECT count(*) AS n FROM visit WHERE org_id = $1", practice.org_id)[0]["n"]
    page = practice.page(browser, problems, locale="nb-NO" if language == "nb" else "en-GB", viewport=PHONE)
    page.goto(practice.join_path)
    page.get_by_role("textbox", name=words["phone"]).fill("12345")
    page.get_by_role("button", name=words["continue"]).click()
    page.wait_for_load_state()

    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_have_attribute("role", "alert")
    expect(summary.locator("h2")).to_have_text(words["summary"])
    expect(summary.locator("li")).to_have_count(3)
    assert page.title().startswith("Please check the form" if language == "en" else "Sjekk skjemaet")
    for field, error in (("name", "name_error"), ("phone", "phone_error"), ("consent", "consent_error")):
        control = page.locator(f"#{field}")
        expect(control).to_have_attribute("aria-invalid", "true")
        described = (control.get_attribute("aria-describedby") or "").split()
        assert f"{field}-error" in described, (field, described)
        expect(page.locator(f"#{field}-error")).to_contain_text(words[error])
        expect(summary.locator(f'a[href="#{field}"]')).to_contain_text(words[error])
    expect(page.locator("#phone")).to_have_value("12345")  # what they typed, to correct it
    expect(page.locator("#phone")).to_have_attribute("aria-describedby", "phone-hint phone-error")
    # A summary link takes the keyboard to its field.
    summary.locator('a[href="#phone"]').click()
    expect(page.locator("#phone")).to_be_focused()
    shot(page, f"join-errors-{language}-phone")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert db(stack, "eu", "SELECT count(*) AS n FROM visit WHERE org_id = $1", practice.org_id)[0]["n"] == before
    # Another language chosen on the page that came back: the join page in that language.
    page.get_by_role("link", name="Deutsch").click()
    page.wait_for_url(re.compile(rf"{practice.join_path}\?lang=de$"))
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_label("Ihr Name")).to_be_visible()
    assert not problems, problems


def test_a_phone_number_in_national_format_is_accepted_stored_in_e164_and_shown_formatted(
    stack: Stack, browser: Browser
) -> None:
    problems: list[str] = []
    practice = Practice(stack, "eu", country="NO")
    page = practice.page(browser, problems)
    page.goto(practice.join_path)
    page.get_by_label("Your name").fill("Ola Nordmann")
    page.get_by_role("textbox", name="Phone number").fill("412 34 567")
    page.get_by_role("button", name="Continue").click()
    # Only the consent is missing: the number comes back as people write it.
    expect(page.locator("#error-summary li")).to_have_count(1)
    expect(page.locator("#phone")).to_have_value("+47 41 23 45 67")
    expect(page.locator("#phone")).not_to_have_attribute("aria-invalid", "true")
    page.get_by_label("I agree that").check()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/visits/[0-9a-f-]{36}$"))
    waiting = practice.owner.get(f"/api/v1/orgs/{practice.slug}/visits/waiting").json()
    assert [(w["name"], w["phone"]) for w in waiting] == [("Ola Nordmann", "+4741234567")]
    page.get_by_role("button", name="Continue to the waiting room").click()
    expect(page.locator("section[data-step=waiting]")).to_contain_text("+47 41 23 45 67")

    # A US organisation takes its national format too.
    us = Practice(stack, "us", country="US")
    joined = us.join("Jane Roe", phone="(201) 555-0123")
    assert joined.status_code == 303, joined.text
    waiting = us.owner.get(f"/api/v1/orgs/{us.slug}/visits/waiting").json()
    assert [w["phone"] for w in waiting] == ["+12015550123"]
    assert not problems, problems


@pytest.mark.parametrize("language", ["en", "nb"])
def test_the_waiting_room_shows_the_organisation_the_expert_the_welcome_and_a_self_view(
    stack: Stack, browser: Browser, language: str
) -> None:
    nb = language == "nb"
    problems: list[str] = []
    practice = Practice(stack, "eu", country="NO")
    db(stack, "eu", "UPDATE room SET welcome_text = $1 WHERE id = $2", WELCOME, practice.room_id)
    db(
        stack,
        "eu",
        "INSERT INTO organisation_logo (org_id, content_type, image, sha256) VALUES ($1, 'image/png', $2, $3)",
        practice.org_id,
        PNG,
        "0" * 64,
    )
    page = practice.page(browser, problems, locale="nb-NO" if nb else "en-GB", viewport=DESKTOP)
    page.goto(practice.join_path)
    page.get_by_label("Navnet ditt" if nb else "Your name").fill("Ada Lovelace")
    page.locator("#consent").check()
    page.get_by_role("button", name="Fortsett" if nb else "Continue").click()
    page.wait_for_url(re.compile(r"/visits/[0-9a-f-]{36}$"))
    visit_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#check-camera")).to_contain_text("Virker" if nb else "Working")
    expect(page.locator("#check-connection")).to_contain_text("Tilkoblet" if nb else "Connected")
    shot(page, f"device-check-{language}")
    page.get_by_role("button", name="Gå videre til venterommet" if nb else "Continue to the waiting room").click()
    main = page.locator("main")
    expect(main).to_have_attribute("data-state", "waiting")

    waiting = page.locator("section[data-step=waiting]")
    expect(page.locator("header .brand")).to_have_text(practice.name)
    logo = page.locator("header img.org-logo")
    expect(logo).to_have_attribute("src", f"/{practice.slug}/logo")
    expect(
        page.get_by_role("heading", name="Du er i venterommet" if nb else "You are in the waiting room")
    ).to_be_focused()
    expect(waiting.locator("#waiting-who")).to_have_text(
        f"{EXPERT} slipper deg inn straks samtalen kan begynne."
        if nb
        else f"{EXPERT} will let you in when they are ready."
    )
    expect(waiting.locator("#welcome-text")).to_have_text(WELCOME)
    expect(waiting.locator("#welcome-title")).to_have_text(
        f"En melding fra {practice.name}" if nb else f"A message from {practice.name}"
    )
    # The self-view plays the visitor's camera.
    self_view = page.locator("#self-view")
    expect(self_view).to_be_visible()
    wait_until(
        lambda: (
            page.evaluate(
                "() => { const v = document.getElementById('self-view');"
                " return v.srcObject && !v.paused && v.readyState >= 2 && v.videoWidth > 0 && v.currentTime > 0; }"
            )
            or None
        ),
        "the self-view to play",
        within=60,
    )
    # The heading that took the focus has no heavy outline box.
    outline = page.evaluate("getComputedStyle(document.getElementById('waiting-title')).outlineStyle")
    assert outline == "none", outline
    text = page.locator("body").inner_text()
    assert not DEVELOPER_WORDS.search(text), DEVELOPER_WORDS.search(text)
    shot(page, f"waiting-room-{language}")
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, f"waiting-room-{language}-phone")

    # Each time the expert's name was shown its read is in the access log: on the join
    # page by the anonymous address, on the visit page by the visitor.
    reads = db(
        stack,
        "eu",
        "SELECT actor, actor_role, action, purpose FROM access_log_entry WHERE org_id = $1 AND subject_ref = $2 "
        "ORDER BY seq",
        practice.org_id,
        f"member:{practice.expert['id']}",
    )
    shown = [(r["actor"], r["action"]) for r in reads if "expert of the room" in r["purpose"]]
    assert ("anonymous", "read") in shown and (f"visitor:{visit_id}", "read") in shown, reads

    # The visitor leaves: the ended page is in plain words too.
    page.locator("#leave").click()
    expect(main).to_have_attribute("data-state", "ended")
    expect(page.locator("#ended-text")).to_contain_text(
        "Du har forlatt venterommet" if nb else "You left the waiting room"
    )
    expect(page.locator("section[data-step=ended]")).to_contain_text("30 dager" if nb else "30 days")
    text = page.locator("body").inner_text()
    assert not DEVELOPER_WORDS.search(text), DEVELOPER_WORDS.search(text)
    shot(page, f"ended-{language}-phone")
    assert not problems, problems


def test_without_a_logo_or_welcome_text_the_waiting_room_says_nothing_of_them(stack: Stack) -> None:
    practice = Practice(stack, "eu")
    joined = practice.join("Grace Hopper")
    assert joined.status_code == 303
    cookie = joined.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    page = httpx.get(
        f"{practice.base}{joined.headers['location']}",
        cookies={"konsil_visit": cookie},
        headers={"accept": "text/html"},
    )
    assert page.status_code == 200
    assert "org-logo" not in page.text and "welcome-text" not in page.text
    assert f"{EXPERT} will let you in when they are ready." in page.text


ERRORS = {
    "en": {
        "room": "We could not find this room",
        "page": "We could not find this page",
        "visit": "This visit cannot be opened here",
        "busy": "Too many people are joining right now. Please wait",
        "down": "We could not save your details just now",
        "again": "Go to the room's page",
    },
    "nb": {
        "room": "Vi fant ikke dette rommet",
        "page": "Vi fant ikke denne siden",
        "visit": "Dette besøket kan ikke åpnes her",
        "busy": "Akkurat nå er det for mange som blir med. Vent",
        "down": "Vi kunne ikke lagre opplysningene dine akkurat nå",
        "again": "Gå til siden for rommet",
    },
}


def html_page(page: Page, status: int, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == status, (url, response and response.status)
    assert response.headers["content-type"].startswith("text/html"), response.headers
    body = page.locator("body").inner_text()
    assert "{" not in body and not DEVELOPER_WORDS.search(body), body


@contextlib.contextmanager
def crowd(practice: Practice) -> Iterator[None]:
    """Others joining the room, as fast as they can, from before the room is full (the
    join limit answers 429) until the block ends."""
    full = threading.Event()
    done = threading.Event()

    def join() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                answer = client.post(
                    f"{practice.base}{practice.join_path}/visits", data={"name": "Queue", "consent": "yes"}
                )
                if answer.status_code == 429:
                    full.set()

    worker = threading.Thread(target=join, daemon=True)
    worker.start()
    try:
        assert full.wait(120), "the room's join limit was never reached"
        yield
    finally:
        done.set()
        worker.join(30)


@pytest.mark.parametrize("language", ["en", "nb"])
def test_dead_ends_are_pages_in_the_visitors_language(stack: Stack, browser: Browser, language: str) -> None:
    words = ERRORS[language]
    locale = "nb-NO" if language == "nb" else "en-GB"
    problems: list[str] = []
    practice = Practice(stack, "eu", country="NO")
    page = practice.page(browser, problems, locale=locale, viewport=PHONE)

    # A mistyped room of a known organisation: its look, its words.
    html_page(page, 404, f"/{practice.slug}/no-such-room")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["room"])
    expect(page.locator("header .brand")).to_have_text(practice.name)
    shot(page, f"error-no-room-{language}-phone")
    # An unknown organisation, at the region and at the control plane's redirect.
    html_page(page, 404, "/no-such-org/consultation")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["page"])
    html_page(page, 404, f"{stack.control_url}/no-such-org/consultation")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["page"])
    shot(page, f"error-control-no-org-{language}-phone")
    # A visit page opened without its cookie (another browser): the way back to the room.
    joined = practice.join("Someone Else")
    html_page(page, 404, f"{practice.base}{joined.headers['location']}")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["visit"])
    page.get_by_role("link", name=words["again"]).click()
    page.wait_for_url(f"**{practice.join_path}")
    shot(page, f"join-after-visit-error-{language}-phone")

    # Joining while too many join the room (60 a minute): the form, kept, says how long to wait.
    # The limit's window slides: others keep joining while the visitor sends the form.
    for _ in range(3):
        page.goto(practice.join_path)
        page.locator("#name").fill("Late Visitor")
        page.locator("#consent").check()
        with crowd(practice):
            with page.expect_response(re.compile(r"/visits$")) as sent:
                page.locator("form.join-form button[type=submit]").click()
        if sent.value.status == 429:
            break
    assert sent.value.status == 429 and sent.value.headers["content-type"].startswith("text/html")
    expect(page.locator("#error-summary")).to_contain_text(words["busy"])
    expect(page.locator("#name")).to_have_value("Late Visitor")
    shot(page, f"join-busy-{language}-phone")
    assert not problems, problems


def test_joining_while_the_key_service_is_down_is_a_page_in_the_visitors_language(
    stack: Stack, browser: Browser
) -> None:
    problems: list[str] = []
    practice = Practice(stack, "eu", country="NO", locale="nb")
    page = practice.page(browser, problems, locale="fr-FR")  # none Konsil speaks: the organisation's Norwegian
    page.goto(practice.join_path)
    expect(page.locator("html")).to_have_attribute("lang", "nb")
    bao = stack.vault["eu"][2]
    os.kill(bao.pid, signal.SIGSTOP)
    try:
        # The region serves from its data-key cache (at most 3 s old here) until it expires.
        def refused() -> httpx.Response | None:
            answer = practice.join("Probe", phone="+47 412 34 567")
            assert answer.status_code in (303, 503), answer.text
            return answer if answer.status_code == 503 else None

        wait_until(refused, "joins to need the key service", within=30, every=0.3)
        before = db(stack, "eu", "SELECT count(*) AS n FROM visit WHERE org_id = $1", practice.org_id)[0]["n"]
        page.locator("#name").fill("Kari Nordmann")
        page.locator("#consent").check()
        with page.expect_response(re.compile(r"/visits$")) as sent:
            page.locator("form.join-form button[type=submit]").click()
        assert sent.value.status == 503 and sent.value.headers["content-type"].startswith("text/html")
        expect(page.locator("#error-summary")).to_contain_text(ERRORS["nb"]["down"])
        expect(page.locator("#name")).to_have_value("Kari Nordmann")
        shot(page, "join-key-service-down-nb")
        after = db(stack, "eu", "SELECT count(*) AS n FROM visit WHERE org_id = $1", practice.org_id)[0]["n"]
        assert after == before, "nothing was stored"
        # The join page itself still opens, without the expert's name (it cannot be read now).
        opened = httpx.get(f"{practice.base}{practice.join_path}", headers={"accept": "text/html"}, timeout=30)
        assert opened.status_code == 200 and f"En videokonsultasjon med {practice.name}." in opened.text
        assert EXPERT not in opened.text
    finally:
        os.kill(bao.pid, signal.SIGCONT)
    wait_until(lambda: practice.join("After").status_code == 303 or None, "joins to work again", within=30)
    assert not problems, problems
