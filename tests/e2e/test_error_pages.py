"""Every error a visitor or member can reach in a browser is a page in their language,
on the region service and the control plane: 404 (unknown page, organisation, room),
405, 403 (a form whose CSRF token expired), 401 (a member page without a session →
the login page), 413 (a form too large), 429 (the join form's rate limit) and 503 (the
region's key service down). Each is checked by HTTP with ``Accept: text/html`` and in
Chromium in English, Norwegian, German and Dutch: the status, the title and heading
from the catalog, no JSON, no trace, no internal word, nothing from another host, no
serious accessibility violation; and the same URL asked for JSON (or its API route)
still answers the JSON error. Where a form's own page answers (an expired login or
signup form, the join form's limit, the key service down while joining) it says what
went wrong in an alert, in the language. Screenshots: ``$KONSIL_SCREENSHOTS/error-pages``.

500 is not reachable from outside (every failure found has its own status); its page
is the same template, checked in-process by tests/platform/test_error_page_500.py."""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response

import konsil.platform.control.app
import konsil.regions.app
from konsil.platform.pages import i18n
from konsil.platform.pages.rendering import ERROR_TEXTS
from tests.conftest import Stack, wait_until
from tests.e2e.browser_kit import (
    BROWSER_LOCALE,
    LOCALES,
    Shots,
    Watch,
    assert_accessible,
    chromium,
    new_context,
    new_page,
    post_form,
)
from tests.e2e.site_pages import App, World, make_world

pytestmark = pytest.mark.e2e
# Both apps register their areas' catalogs when imported: the titles expected here come
# from the same catalogs as the pages'.
APPS = (konsil.platform.control.app, konsil.regions.app)
T = TypeVar("T")

# Words that tell a person nothing and a stranger too much.
INTERNAL = re.compile(
    r"Traceback|Exception|asyncpg|[Ll]itestar|msgspec|piccolo|hvac|OpenBao|Vault|key service|csrf|CSRF|"
    r"not_found|too_large|method_not_allowed|too_many_requests|invalid_input|region eu|\beu\b|UDP|TCP|"
    r"\bnull\b|undefined|\{\"|https?://"
)


@dataclass(frozen=True)
class ErrorCase:
    name: str
    app: App
    path: str  # {slug}, {room_slug} filled in from the World
    status: int
    fields: Mapping[str, str] | None = None  # a form sent by POST
    who: str = ""  # whose session the browser holds
    own_page: bool = False  # the form's own page says what went wrong (not the error page)
    title: str = ""  # the heading's message id, when not the error page's for the status

    @property
    def key(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.app} {self.status} {self.name}".lower()).strip("-")


def too_large_form(size: int) -> dict[str, str]:
    return {"name": "x" * (size + 16), "consent": "yes"}


MAX_BODY = 1024 * 1024  # the default max_body_bytes the stack runs with
AXE_LOCALE = "nb"

CASES = [
    ErrorCase("unknown page", "region", "/no/such/page/at/all", 404),
    ErrorCase("unknown organisation", "region", "/no-such-org-here/consultation", 404),
    ErrorCase("unknown room", "region", "/{slug}/no-such-room", 404, title="We could not find this room"),
    ErrorCase("form address opened as a page", "region", "/{slug}/logout", 405),
    ErrorCase("form whose CSRF token expired", "region", "/{slug}/logout", 403, {"_csrf": "expired"}, who="expert"),
    ErrorCase("form too large", "region", "/{slug}/{room_slug}/visits", 413, too_large_form(MAX_BODY)),
    ErrorCase(
        "login form expired", "region", "/login", 403, {"_csrf": "expired", "email": "a@b.example"}, own_page=True
    ),
    ErrorCase("unknown page", "control", "/no/such/page/at/all", 404),
    ErrorCase("signup form expired", "control", "/signup", 403, {"_csrf": "expired"}, own_page=True),
    ErrorCase("signup form too large", "control", "/signup", 413, too_large_form(MAX_BODY)),
    ErrorCase("unknown organisation", "control", "/no-such-org-here", 404),
    ErrorCase(
        "unknown room (sent on to the region)",
        "control",
        "/{slug}/no-such-room",
        404,
        title="We could not find this room",
    ),
    ErrorCase("form sent to a page", "control", "/no-such-org-here", 405, {"name": "x"}),
]


class Visible(HTMLParser):
    """The text a person sees (not scripts, styles or the page's script strings), the
    ``<html lang>``, the title and the first heading."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.lang = ""
        self.title = ""
        self.h1 = ""
        self._skip = 0
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.lang = dict(attrs).get("lang") or ""
        if tag in ("script", "style"):
            self._skip += 1
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        if "title" in self._in:
            self.title += data
        if "h1" in self._in and not self.h1:
            self.h1 = data.strip()


def visible(html: str) -> Visible:
    parser = Visible()
    parser.feed(html)
    return parser


def expected_title(status: int, locale: str, message: str = "") -> str:
    return str(i18n.gettext(locale, message or ERROR_TEXTS[status][0]))


def assert_people_page(html: str, locale: str, where: str) -> Visible:
    seen = visible(html)
    assert seen.lang == locale, f"{where}: <html lang={seen.lang!r}>, not {locale}"
    text = " ".join(" ".join(seen.text).split())
    found = INTERNAL.search(text.replace("Konsil", ""))
    assert found is None, f"{where}: shows {found.group(0)!r} to people: {text[:400]}"
    return seen


def assert_form_page(html: str, locale: str, where: str) -> None:
    """A form's own page answering an error: in the language, saying why (an alert)."""
    assert_people_page(html, locale, where)
    alert = re.search(r'role="alert"[^>]*>(.*?)</', html, re.DOTALL)
    assert alert and alert.group(1).strip(), f"{where}: no message says what went wrong"


def assert_error_page(html: str, status: int, locale: str, where: str, message: str = "") -> None:
    seen = assert_people_page(html, locale, where)
    title = expected_title(status, locale, message)
    assert seen.h1 == title, f"{where}: heading {seen.h1!r}, expected {title!r}"
    assert title in seen.title, f"{where}: title {seen.title!r}"
    if locale != "en":
        assert title != (message or ERROR_TEXTS[status][0]), f"{where}: the catalog has no {locale} title"


def assert_json_error(response: httpx.Response, status: int, where: str) -> None:
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:200]}"
    assert response.headers["content-type"].startswith("application/json"), where
    body = response.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), (where, body)


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    return make_world(stack)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def shots() -> Shots:
    return Shots("error-pages")


def fill(world: World, text: str) -> str:
    return text.format(slug=world.slug, room_slug=world.room_slug)


@dataclass
class Asker:
    """Sends a case's request by HTTP as a browser of ``locale`` would, or as an API client."""

    world: World
    cookies: dict[str, str] = field(default_factory=dict)

    def send(self, case: ErrorCase, accept: str, locale: str = "en") -> httpx.Response:
        headers = {"accept": accept, "accept-language": BROWSER_LOCALE[locale]}
        cookies = {"konsil_session": self.world.sessions[case.who]} if case.who else {}
        url = self.world.base(case.app) + fill(self.world, case.path)
        with httpx.Client(cookies=cookies, timeout=30, follow_redirects=True) as client:
            if case.fields is None:
                return client.get(url, headers=headers)
            return client.post(url, headers=headers, data=dict(case.fields))


@pytest.fixture(scope="module")
def contexts(browser: Browser) -> Iterator[dict[str, BrowserContext]]:
    """A browser profile per language, shared by the cases (each starts without cookies)."""
    made = {locale: new_context(browser, None, locale) for locale in LOCALES}
    yield made
    for context in made.values():
        context.close()


def open_in_chromium(
    contexts: dict[str, BrowserContext], world: World, case: ErrorCase, locale: str
) -> tuple[Page, Watch, Response]:
    base = world.base(case.app)
    context = contexts[locale]
    context.clear_cookies()
    if case.who:
        context.add_cookies([{"name": "konsil_session", "value": world.sessions[case.who], "url": base}])
    page, watch = new_page(context)
    url = base + fill(world, case.path)
    if case.fields is None:
        answer = page.goto(url)
    else:
        page.goto(f"{base}/{world.slug}/{world.room_slug}" if case.app == "region" else f"{base}/signup")
        answer = post_form(page, url, dict(case.fields))
    assert answer is not None, case.name
    return page, watch, answer


def check_in_chromium(page: Page, watch: Watch, answer: Response, case: ErrorCase, locale: str, shots: Shots) -> None:
    where = f"{case.key} [{locale}] in Chromium"
    assert answer.status == case.status, f"{where}: {answer.status}"
    if case.own_page:
        assert_form_page(page.content(), locale, where)
    else:
        assert_error_page(page.content(), case.status, locale, where, case.title)
        assert page.locator("h1").inner_text() == expected_title(case.status, locale, case.title)
        if page.locator("[data-back]").count():  # the shared error page (error.html)
            # After a form there is a page to go back to, and a button for it; a link opened anew has none.
            assert page.locator("[data-back]").is_visible() == (case.fields is not None), where
    shots(page, f"{case.key}-{locale}")
    if locale == AXE_LOCALE:  # one template: axe in one language per case (all pages: test_accessibility.py)
        assert_accessible(page, where)
    watch.assert_same_origin(page.url)
    watch.assert_no_script_errors(allow=["Failed to load resource"])


# --- the pages ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.key)
def test_an_error_is_a_page_for_people_and_json_for_programs(world: World, case: ErrorCase) -> None:
    asker = Asker(world)
    for locale in LOCALES:
        answer = asker.send(case, "text/html,application/xhtml+xml,*/*;q=0.8", locale)
        where = f"{case.key} [{locale}] by HTTP"
        assert answer.status_code == case.status, f"{where}: {answer.status_code} {answer.text[:200]}"
        assert answer.headers["content-type"].startswith("text/html"), f"{where}: {answer.headers['content-type']}"
        if case.own_page:
            assert_form_page(answer.text, locale, where)
        else:
            assert_error_page(answer.text, case.status, locale, where, case.title)
    if not case.own_page:  # a form's own page is for people only; programs use the API
        assert_json_error(asker.send(case, "application/json"), case.status, f"{case.key} asked for JSON")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.key)
def test_an_error_page_in_chromium_in_each_language(
    contexts: dict[str, BrowserContext], world: World, shots: Shots, case: ErrorCase
) -> None:
    for locale in LOCALES:
        page, watch, answer = open_in_chromium(contexts, world, case, locale)
        try:
            check_in_chromium(page, watch, answer, case, locale, shots)
        finally:
            page.close()


@pytest.mark.parametrize("app", ["region", "control"])
def test_a_member_page_without_a_session_leads_to_the_login_page(
    contexts: dict[str, BrowserContext], world: World, shots: Shots, app: App
) -> None:
    path = f"/{world.slug}/portal"
    for locale in LOCALES:
        page_answer = httpx.get(
            world.base(app) + path,
            headers={"accept": "text/html", "accept-language": BROWSER_LOCALE[locale]},
            follow_redirects=True,
        )
        assert page_answer.status_code == 200 and str(page_answer.url) == f"{world.region}/login", page_answer.url
        assert_people_page(page_answer.text, locale, f"401 → login [{locale}] by HTTP")
        contexts[locale].clear_cookies()
        page, watch = new_page(contexts[locale])
        try:
            page.goto(world.base(app) + path)
            assert page.url == f"{world.region}/login", page.url
            assert_people_page(page.content(), locale, f"401 → login [{locale}] in Chromium")
            assert page.locator("input[type=password]").count() == 1
            shots(page, f"{app}-401-login-{locale}")
            watch.assert_same_origin(page.url)
        finally:
            page.close()
    api = httpx.get(f"{world.base(app)}/api/v1/orgs/{world.slug}/auth/me", headers={"accept": "application/json"})
    assert_json_error(api, 401, "the API without a session")


# --- 429: the join form's limit per room ------------------------------------------------------------------


def join(world: World, room: str, accept: str = "text/html", locale: str = "en") -> httpx.Response:
    return httpx.post(
        f"{world.region}/{world.slug}/{room}/visits",
        data={"name": "Busy Bee", "consent": "yes"},
        headers={"accept": accept, "accept-language": BROWSER_LOCALE[locale]},
        follow_redirects=False,
        timeout=30,
    )


@pytest.fixture(scope="module")
def busy_room(world: World) -> str:
    made = world.clients["expert"].post(f"/api/v1/orgs/{world.slug}/rooms", json={"slug": "busy", "title": "Busy"})
    assert made.status_code == 201, made.text
    return "busy"


def fill_room(world: World, room: str) -> None:
    """Joins until the room's limit (60 a minute on the stack) answers 429."""
    for _ in range(80):
        if join(world, room).status_code == 429:
            return
    pytest.fail("the join form's limit per room was never reached")


def refused(world: World, room: str, attempt: Callable[[], T], prepare: Callable[[], object] | None = None) -> T:
    """``attempt`` (a join) made right after the room was filled. The limit is a sliding
    estimate that frees a place about every second once its window turned: a join
    that got in is tried again (``prepare`` runs before each filling)."""
    for _ in range(10):
        if prepare is not None:
            prepare()
        fill_room(world, room)
        answer = attempt()
        if getattr(answer, "status_code", None) == 429 or getattr(answer, "status", None) == 429:
            return answer
    pytest.fail("a join got in although the room was full, ten times")


def test_too_many_joins_is_the_join_page_saying_so(
    contexts: dict[str, BrowserContext], world: World, shots: Shots, busy_room: str
) -> None:
    for locale in LOCALES:
        answer = refused(world, busy_room, lambda: join(world, busy_room, "text/html", locale))  # noqa: B023
        where = f"429 [{locale}] by HTTP"
        assert int(answer.headers["retry-after"]) >= 1
        assert answer.headers["content-type"].startswith("text/html"), where
        assert_people_page(answer.text, locale, where)
        context = contexts[locale]
        context.clear_cookies()
        page, watch = new_page(context)
        try:
            form = {"name": "Busy Bee", "consent": "yes"}
            result = refused(
                world,
                busy_room,
                lambda: post_form(page, f"{world.region}/{world.slug}/{busy_room}/visits", form),  # noqa: B023
                prepare=lambda: page.goto(f"{world.region}/{world.slug}/{busy_room}"),  # noqa: B023
            )
            assert result is not None
            assert_people_page(page.content(), locale, f"429 [{locale}] in Chromium")
            assert page.locator("#error-summary").inner_text().strip(), "the page says why"
            shots(page, f"region-429-join-{locale}")
            if locale == AXE_LOCALE:
                assert_accessible(page, f"429 [{locale}] in Chromium")
            watch.assert_same_origin(page.url)
        finally:
            page.close()


def test_too_many_joins_is_said_in_the_visitors_language(world: World, busy_room: str) -> None:
    said = {}
    for locale in ("en", "de"):
        answer = refused(world, busy_room, lambda: join(world, busy_room, "text/html", locale))  # noqa: B023
        found = re.search(r'role="alert"[^>]*>(.*?)</(?:p|div)>', answer.text, re.DOTALL)
        assert found, answer.text[:300]
        text = " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())
        assert text, f"the alert says nothing [{locale}]"
        said[locale] = text.split(".")[0]  # its first sentence (the wait that may follow changes)
    assert said["en"] != said["de"], said


# --- 503: the region's key service down -----------------------------------------------------------------


@contextlib.contextmanager
def key_service_down(stack: Stack) -> Iterator[None]:
    """The EU region's OpenBao frozen (SIGSTOP): its calls hang until the region's
    timeout, as with a dead host; always woken again."""
    process = stack.vault["eu"][2]
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def test_the_key_service_down_is_a_page_for_people_and_json_for_programs(
    contexts: dict[str, BrowserContext], stack: Stack, world: World, shots: Shots
) -> None:
    join_path = f"/{world.slug}/{world.room_slug}/visits"
    # The join form's own page says so (its values kept); the API answers the JSON error.
    case = ErrorCase("key service down", "region", join_path, 503, {"name": "Vera", "consent": "yes"}, own_page=True)
    with key_service_down(stack):
        # The region serves from its data-key cache (3 s on the stack) until the entry expires.
        wait_until(lambda: join(world, world.room_slug).status_code == 503, "joins to need the key service", within=30)
        for locale in LOCALES:
            answer = join(world, world.room_slug, "text/html", locale)
            where = f"503 [{locale}] by HTTP"
            assert answer.status_code == 503 and answer.headers["content-type"].startswith("text/html"), where
            assert int(answer.headers["retry-after"]) >= 1
            assert_form_page(answer.text, locale, where)
            page, watch, result = open_in_chromium(contexts, world, case, locale)
            try:
                check_in_chromium(page, watch, result, case, locale, shots)
            finally:
                page.close()
        waiting = world.clients["expert"].get(f"/api/v1/orgs/{world.slug}/visits/waiting")
        assert_json_error(waiting, 503, "the API")
    wait_until(lambda: join(world, world.room_slug).status_code == 303, "the region to join visitors again", within=30)
