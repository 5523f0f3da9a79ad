"""The control plane's pages in a real browser (Chromium via Playwright) against the
running stack: the landing page, signing up an organisation that lands its owner in
their region's portal (in English and in Norwegian), every problem of a bad signup
shown at once with nothing created, the login page that asks login discovery and
sends the person to their region, a person logging in at the wrong region being sent
to the right one, and the one-time sign-in link used twice or too late.

Screenshots go to ``test-output/control-pages/``."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "control-pages"
PASSWORD = "correct horse battery"
HTML = {"accept": "text/html"}


def db(stack: Stack, label: str, query: str, *args: object) -> list[Any]:
    """SQL from a thread of its own: Playwright's sync API keeps an event loop in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fetch(stack.dsns[label], query, *args))).result()


def directory_count(stack: Stack, slug: str) -> int:
    return len(db(stack, "control", "SELECT id FROM directory_organisation WHERE slug = $1", slug))


def region_org(stack: Stack, region: str, slug: str) -> dict[str, Any] | None:
    rows = db(stack, region, "SELECT id, slug, name, locale, country FROM organisation WHERE slug = $1", slug)
    return dict(rows[0]) if rows else None


def shot(page: Page, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Watched:
    """A browser context that records problems: script errors, CSP refusals, failed
    assets, and any request to a host other than the stack's own."""

    def __init__(self, browser: Browser, stack: Stack, locale: str = "en-GB") -> None:
        self.context: BrowserContext = browser.new_context(locale=locale, viewport={"width": 1000, "height": 900})
        self.context.set_default_timeout(20_000)
        self.problems: list[str] = []
        self.urls: list[str] = []
        own = {stack.control_url, stack.region_url("eu"), stack.region_url("us")}
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))

        def console(message: Any) -> None:
            # A page answered with 400/409/410 (a form with problems) is logged as a failed
            # load; failed assets are caught by their responses below.
            if message.type == "error" and "Failed to load resource" not in message.text:
                self.problems.append(f"console: {message.text}")

        def response(answer: Any) -> None:
            if answer.status >= 400 and ("/static/" in answer.url or "/swagger-ui/" in answer.url):
                self.problems.append(f"asset {answer.status}: {answer.url}")

        self.page.on("console", console)
        self.page.on("response", response)

        def request(r: Any) -> None:
            self.urls.append(r.url)
            if not r.url.startswith(tuple(own)) and not r.url.startswith("data:"):
                self.problems.append(f"another host: {r.url}")

        self.page.on("request", request)

    def close(self) -> None:
        self.context.close()


def fill_signup(page: Page, name: str, slug: str | None, region_label: str, email: str, password: str) -> None:
    page.locator("#name").fill(name)
    if slug is not None:
        page.locator("#slug").fill(slug)
    page.get_by_label(region_label).check()
    page.locator("#owner_name").fill("Kari Nordmann")
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)


# --- the landing page ---------------------------------------------------------------------------


def test_the_landing_page_says_what_konsil_is_and_links_to_signup_and_login(stack: Stack) -> None:
    for lang, heading, signup, login in (
        ("en", "Video consultations for clinics and advisers", "Sign up your organisation", "Log in"),
        ("nb", "Videokonsultasjoner for klinikker og rådgivere", "Registrer organisasjonen din", "Logg inn"),
    ):
        page = httpx.get(f"{stack.control_url}/?lang={lang}", headers=HTML)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert f'<html lang="{lang}">' in page.text
        assert (
            heading in page.text and f'href="/signup">{signup}' in page.text and f'href="/login">{login}' in page.text
        )
        # Regions in words, never their ids.
        assert ("Europe (EU/EEA)" if lang == "en" else "Europa (EU/EØS)") in page.text
        assert ">eu<" not in page.text and "region eu" not in page.text.lower()
    assert httpx.get(f"{stack.control_url}/", headers={"accept": "application/json"}).status_code == 200


# --- signing up -----------------------------------------------------------------------------------


def test_signup_in_english_lands_the_owner_in_the_portal_and_the_link_works_once(
    stack: Stack, browser: Browser
) -> None:
    watched = Watched(browser, stack)
    page = watched.page
    slug = stack.unique("clinic")
    email = f"owner@{slug}.example"
    try:
        page.goto(f"{stack.control_url}/?lang=en")
        shot(page, "landing-en")
        page.get_by_role("link", name="Sign up your organisation").click()
        page.wait_for_url("**/signup")
        expect(page.get_by_text("At least 12 characters", exact=False)).to_be_visible()
        # The script suggests the web address from the name.
        page.locator("#name").fill("Legesenteret Ås Øst")
        expect(page.locator("#slug")).to_have_value("legesenteret-as-ost")
        fill_signup(page, "Legesenteret Ås Øst", slug, "Europe (EU/EEA)", email, PASSWORD)
        page.locator("#country").select_option("NO")
        page.locator("#locale").select_option("nb")
        shot(page, "signup-en-filled")
        page.get_by_role("button", name="Create the organisation").click()
        page.wait_for_url(f"{stack.region_url('eu')}/{slug}/portal**")
        shot(page, "signup-en-portal")
        assert watched.problems == []
    finally:
        watched.close()
    welcome = [u for u in watched.urls if "/welcome/" in u]
    assert len(welcome) == 1 and welcome[0].startswith(f"{stack.region_url('eu')}/welcome/")
    assert not any(email in u or "owner%40" in u for u in watched.urls), "no e-mail address in any URL"
    org = region_org(stack, "eu", slug)
    assert org is not None and org["name"] == "Legesenteret Ås Øst"
    assert (org["locale"], org["country"]) == ("nb", "NO")
    assert region_org(stack, "us", slug) is None and directory_count(stack, slug) == 1
    assert db(stack, "eu", "SELECT token_hash FROM welcome_token WHERE org_id = $1", org["id"]) == []

    # The same link again: a friendly page that leads to the login, no session.
    again = httpx.get(welcome[0], headers=HTML, follow_redirects=False)
    assert again.status_code == 410 and "This sign-in link no longer works" in again.text
    assert 'href="/login"' in again.text and "konsil_session" not in again.headers.get("set-cookie", "")


def test_signup_in_norwegian_in_the_us_region(stack: Stack, browser: Browser) -> None:
    watched = Watched(browser, stack, locale="nb-NO")
    page = watched.page
    slug = stack.unique("klinikk")
    try:
        page.goto(f"{stack.control_url}/signup")
        expect(page.locator("h1")).to_have_text("Registrer organisasjonen din")
        expect(page.get_by_text("Minst 12 tegn", exact=False)).to_be_visible()
        fill_signup(page, "Klinikk Vest", slug, "USA", f"eier@{slug}.example", PASSWORD)
        # The United States has one country: chosen with the region.
        expect(page.locator("#country")).to_have_value("US")
        shot(page, "signup-nb-filled")
        page.get_by_role("button", name="Opprett organisasjonen").click()
        page.wait_for_url(f"{stack.region_url('us')}/{slug}/portal**")
        expect(page.locator("html")).to_have_attribute("lang", "nb")
        shot(page, "signup-nb-portal")
        assert watched.problems == []
    finally:
        watched.close()
    org = region_org(stack, "us", slug)
    assert org is not None and (org["locale"], org["country"]) == ("nb", "US")


def test_a_bad_signup_shows_every_problem_at_once_and_creates_nothing(stack: Stack, browser: Browser) -> None:
    taken = stack.signup("eu")["slug"]
    for lang, texts in (
        (
            "en",
            {
                "slug": "This web address is already taken",
                "email": "That is not a valid e-mail address.",
                "password": "The password is too weak: use at least 12 characters.",
                "country": "Choose the country of your organisation.",
            },
        ),
        (
            "nb",
            {
                "slug": "Denne nettadressen er allerede tatt",
                "email": "Det er ikke en gyldig e-postadresse.",
                "password": "Passordet er for svakt: bruk minst 12 tegn.",
                "country": "Velg landet organisasjonen din hører til i.",
            },
        ),
    ):
        watched = Watched(browser, stack)
        page = watched.page
        try:
            page.goto(f"{stack.control_url}/signup?lang={lang}")
            region = "Europe (EU/EEA)" if lang == "en" else "Europa (EU/EØS)"
            fill_signup(page, "Praxis Doppelt", taken, region, "not-an-address", "short")
            page.locator("#country").select_option("")
            page.locator("form.signup button[type=submit]").click()
            page.wait_for_load_state()
            summary = page.locator("#form-problems")
            expect(summary).to_be_visible()
            for field, text in texts.items():
                error = page.locator(f"#{field}-error")
                expect(error).to_contain_text(text)
                expect(summary).to_contain_text(text)
                expect(page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
                described = page.locator(f"#{field}").get_attribute("aria-describedby") or ""
                assert f"{field}-error" in described.split(), (field, described)
            # What was typed is kept (but the password), so only the problems need fixing.
            expect(page.locator("#name")).to_have_value("Praxis Doppelt")
            expect(page.locator("#password")).to_have_value("")
            shot(page, f"signup-{lang}-problems")
            assert watched.problems == []
        finally:
            watched.close()
    assert directory_count(stack, taken) == 1

    # A reserved address, in the browser as well.
    watched = Watched(browser, stack)
    try:
        watched.page.goto(f"{stack.control_url}/signup?lang=en")
        fill_signup(watched.page, "Admin Clinic", "admin", "United States", "a@admin-clinic.example", PASSWORD)
        watched.page.locator("form.signup button[type=submit]").click()
        expect(watched.page.locator("#slug-error")).to_have_text(
            "This web address is reserved. Please choose another one."
        )
    finally:
        watched.close()
    assert directory_count(stack, "admin") == 0


def crafted_signup(stack: Stack, lang: str, **fields: str) -> httpx.Response:
    """A signup form posted by hand (its CSRF cookie and field from the page)."""
    client = httpx.Client(base_url=stack.control_url, timeout=30)
    form = client.get(f"/signup?lang={lang}", headers=HTML)
    token = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert token is not None
    body = {
        "_csrf": token.group(1),
        "name": "Crafted Clinic",
        "slug": stack.unique("crafted"),
        "region": "eu",
        "country": "NO",
        "locale": "en",
        "owner_name": "Crafty",
        "email": "crafty@crafted.example",
        "password": PASSWORD,
        **fields,
    }
    return client.post(f"/signup?lang={lang}", data=body, headers=HTML, follow_redirects=False)


def test_a_crafted_signup_with_an_invalid_region_is_refused_with_all_its_problems(stack: Stack) -> None:
    slug = stack.unique("crafted")
    refused = crafted_signup(stack, "en", slug=slug, region="xx", locale="fr", password="weak")
    assert refused.status_code == 400
    assert 'id="region-error"' in refused.text and "This region is not offered" in refused.text
    assert 'id="locale-error"' in refused.text and 'id="password-error"' in refused.text
    assert directory_count(stack, slug) == 0
    norsk = crafted_signup(stack, "nb", slug=slug, region="xx")
    assert norsk.status_code == 400 and "Denne regionen tilbys ikke" in norsk.text
    # The country must be one of the region's; a country of the EU in the US region is not.
    wrong = crafted_signup(stack, "en", slug=slug, region="us", country="DE")
    assert wrong.status_code == 400 and "This country is not in the region you chose." in wrong.text
    # A form from another page (no CSRF cookie) creates nothing either.
    forged = httpx.post(
        f"{stack.control_url}/signup",
        data={
            "_csrf": "x",
            "name": "Forged",
            "slug": slug,
            "region": "eu",
            "country": "NO",
            "locale": "en",
            "owner_name": "F",
            "email": "f@forged.example",
            "password": PASSWORD,
        },
        headers=HTML,
    )
    assert forged.status_code == 403 and "Your form expired" in forged.text
    assert directory_count(stack, slug) == 0
    assert region_org(stack, "eu", slug) is None


def test_a_signup_the_region_cannot_take_creates_nothing(stack: Stack) -> None:
    """Region zz is configured but never started: a clear message, no directory row."""
    slug = stack.unique("nowhere")
    answer = crafted_signup(stack, "en", slug=slug, region="zz", country="")
    assert answer.status_code == 503, answer.text[:500]
    assert "cannot be reached right now. Nothing was created" in answer.text
    assert directory_count(stack, slug) == 0


def test_the_signup_api_keeps_its_shape_and_stores_language_and_country(stack: Stack) -> None:
    slug = stack.unique("api")
    body = {
        "region": "eu",
        "organisation": {"name": "API Praxis", "slug": slug, "locale": "de", "country": "DE"},
        "owner": {"name": "Api Owner", "email": f"owner@{slug}.example", "password": PASSWORD},
    }
    made = httpx.post(f"{stack.control_url}/api/v1/signup", json=body, timeout=30)
    assert made.status_code == 201, made.text
    assert set(made.json()) == {"organisation_id", "slug", "region", "owner_id", "login_url", "status"}
    assert "welcome" not in made.text, "the sign-in link is for the signup page's browser only"
    org = region_org(stack, "eu", slug)
    assert org is not None and (org["locale"], org["country"]) == ("de", "DE")
    body["organisation"] = {"name": "API Praxis", "slug": stack.unique("api"), "country": "US"}
    wrong = httpx.post(f"{stack.control_url}/api/v1/signup", json=body, timeout=30)
    assert wrong.status_code == 400 and "country" in wrong.json()["message"]


# --- the sign-in link ----------------------------------------------------------------------------


def test_an_expired_or_unknown_sign_in_link_shows_a_friendly_page(stack: Stack) -> None:
    made = stack.signup("eu")
    [org] = db(stack, "eu", "SELECT id FROM organisation WHERE slug = $1", made["slug"])
    token = f"expired-{uuid.uuid4().hex}"
    db(
        stack,
        "eu",
        "INSERT INTO welcome_token (token_hash, org_id, member_id, expires_at) "
        "VALUES ($1, $2, $3, now() - interval '1 minute')",
        hashlib.sha256(token.encode()).hexdigest(),
        org["id"],
        uuid.UUID(made["owner_id"]),
    )
    base = stack.region_url("eu")
    late = httpx.get(f"{base}/welcome/{token}", headers=HTML, follow_redirects=False)
    assert late.status_code == 410 and "This sign-in link no longer works" in late.text
    assert "konsil_session" not in late.headers.get("set-cookie", "")
    norsk = httpx.get(f"{base}/welcome/{uuid.uuid4().hex}?lang=nb", headers=HTML, follow_redirects=False)
    assert norsk.status_code == 410 and "Denne innloggingslenken virker ikke lenger" in norsk.text
    assert 'href="/login"' in norsk.text


# --- finding where to log in ---------------------------------------------------------------------


def test_the_login_page_sends_the_person_to_their_region(stack: Stack, browser: Browser) -> None:
    made = stack.signup("us")
    email = made["owner"]["email"]
    watched = Watched(browser, stack)
    page = watched.page
    try:
        page.goto(f"{stack.control_url}/login?lang=en")
        shot(page, "find-login-en")
        page.get_by_label("E-mail address").fill(email)
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(f"{stack.region_url('us')}/login**")
        assert email not in page.url and "%40" not in page.url
        page.get_by_label("E-mail address").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{stack.region_url('us')}/{made['slug']}/portal")
        assert watched.problems == []
    finally:
        watched.close()


def test_an_address_in_two_regions_chooses_in_words(stack: Stack, browser: Browser) -> None:
    email = f"{stack.unique('both')}@two-regions.example"
    stack.signup("eu", email=email)
    stack.signup("us", email=email)
    watched = Watched(browser, stack)
    page = watched.page
    try:
        page.goto(f"{stack.control_url}/login?lang=nb")
        page.get_by_label("E-postadresse").fill(email)
        page.get_by_role("button", name="Fortsett").click()
        expect(page.get_by_text("E-postadressen din brukes i mer enn én region")).to_be_visible()
        links = page.locator(".region-links a")
        expect(links).to_have_count(2)
        expect(links.nth(0)).to_have_text("Europa (EU/EØS)")
        expect(links.nth(1)).to_have_text("USA")
        shot(page, "find-login-nb-choice")
        links.nth(1).click()
        page.wait_for_url(f"{stack.region_url('us')}/login**")
        expect(page.locator("h1")).to_have_text("Logg inn")
        assert watched.problems == []
    finally:
        watched.close()


def test_logging_in_at_the_wrong_region_sends_the_person_to_the_right_one(stack: Stack, browser: Browser) -> None:
    made = stack.signup("us")
    email = made["owner"]["email"]
    watched = Watched(browser, stack)
    page = watched.page
    try:
        page.goto(f"{stack.region_url('eu')}/login?lang=en")
        page.get_by_label("E-mail address").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{stack.region_url('us')}/login?moved=1**")
        expect(page.locator("p.notice")).to_contain_text(
            "Your organisation's account is kept in this region (United States)"
        )
        expect(page.get_by_text("E-mail address or password is wrong")).to_have_count(0)
        shot(page, "wrong-region-en")
        page.get_by_label("E-mail address").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{stack.region_url('us')}/{made['slug']}/portal")
        assert watched.problems == []
    finally:
        watched.close()

    # In Norwegian too; a wrong password in one's own region is still just wrong.
    watched = Watched(browser, stack)
    page = watched.page
    try:
        page.goto(f"{stack.region_url('eu')}/login?lang=nb")
        page.get_by_label("E-postadresse").fill(email)
        page.get_by_label("Passord").fill(PASSWORD)
        page.get_by_role("button", name="Logg inn").click()
        page.wait_for_url(f"{stack.region_url('us')}/login?moved=1**")
        expect(page.locator("p.notice")).to_contain_text("Organisasjonens konto ligger i denne regionen (USA)")
        shot(page, "wrong-region-nb")
        page.get_by_label("E-postadresse").fill(email)
        page.get_by_label("Passord").fill("not the password at all")
        page.get_by_role("button", name="Logg inn").click()
        expect(page.get_by_role("alert")).to_contain_text("E-postadressen eller passordet er feil.")
        assert page.url.startswith(f"{stack.region_url('us')}/login")
    finally:
        watched.close()


# --- the API documentation, from the package -----------------------------------------------------


ADDRESSES = re.compile(r"""(?:src|href|action)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""", re.IGNORECASE)


def other_hosts(html: str) -> list[str]:
    found = [a or b for a, b in ADDRESSES.findall(html)]
    return [u for u in found if re.match(r"^(?:[a-z]+:)?//", u, re.IGNORECASE)]


def test_the_api_docs_reference_no_other_host_and_render(stack: Stack, browser: Browser) -> None:
    for base in (stack.control_url, stack.region_url("eu")):
        for path in ("/schema", "/schema/swagger", "/schema/redoc"):
            answer = httpx.get(f"{base}{path}", headers=HTML)
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html"), (base, path)
            assert other_hosts(answer.text) == [], (base, path, other_hosts(answer.text))
            assert "cdn" not in answer.text.lower() and "fonts.googleapis" not in answer.text
        document = httpx.get(f"{base}/schema/openapi-3.0.json").json()
        assert document["openapi"] == "3.0.3" and document["paths"]
        for asset in ("swagger-ui.css", "swagger-ui-bundle.js"):
            assert httpx.get(f"{base}/schema/swagger-ui/{asset}").status_code == 200
        assert httpx.get(f"{base}/schema/swagger-ui/index.html").status_code == 404

    for base, operation, name in (
        (stack.control_url, "/api/v1/signup", "SignupRoute"),
        (stack.region_url("eu"), "/api/v1/orgs/{slug}/rooms", "ListRooms"),
    ):
        watched = Watched(browser, stack)
        page = watched.page
        try:
            page.goto(f"{base}/schema/swagger")
            summary = page.locator(".opblock-summary-path").filter(has_text=operation).first
            expect(summary).to_be_visible(timeout=40_000)
            shot(page, f"swagger-{'control' if base == stack.control_url else 'eu'}", full_page=False)
            page.goto(f"{base}/schema")
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
            shot(page, f"docs-{'control' if base == stack.control_url else 'eu'}", full_page=False)
            assert watched.problems == [], watched.problems
            assert all(u.startswith(base) or u.startswith("data:") for u in watched.urls), watched.urls
        finally:
            watched.close()


def test_a_wrong_password_with_an_address_also_used_elsewhere_says_both(stack: Stack) -> None:
    """The address logs in here and in another region: the password is wrong here, and
    the page offers the other region by name (as discovery would tell anyone)."""
    email = f"{stack.unique('twice')}@two-regions.example"
    stack.signup("eu", email=email)
    stack.signup("us", email=email, password="another long passphrase")
    client = httpx.Client(base_url=stack.region_url("eu"), timeout=30)
    form = client.get("/login?lang=en", headers=HTML)
    token = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post(
        "/login", data={"email": email, "password": "another long passphrase", "_csrf": token.group(1)}, headers=HTML
    )
    assert answer.status_code == 401
    assert "E-mail address or password is wrong. Your address is also used in another region:" in answer.text
    assert f'href="{stack.region_url("us")}/login?moved=1&amp;lang=en">Log in at United States' in answer.text
    assert email not in answer.text
