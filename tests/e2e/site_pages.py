"""Every page a person can open, in one list (``SITE``), with what it takes to see it:
who is logged in, and the steps to a state of the page. The accessibility test
(test_accessibility.py) and the own-host test (test_own_origin.py) run on each entry,
and test_site_routes.py fails when an app serves a page route no entry covers.

A new page joins with one line:

    SitePage("rooms", "/{slug:str}/portal/rooms", who="owner"),

``route`` is the route as the app spells it (its parameters are filled in from a
``World``: ``{slug}``, ``{room_slug}``, a fresh ``{visit_id}`` or ``{call_id}``);
``path`` overrides it for pages that are not at a route of their own (error pages).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.conftest import Stack
from tests.e2e.browser_kit import Watch, new_context, new_page

Who = Literal["", "owner", "expert", "auditor", "visitor"]
App = Literal["region", "control"]


# --- states a page is brought to before it is checked ----------------------------------------------


def dashboard_live(page: Page) -> None:
    expect(page.locator("main")).to_have_attribute("data-live", "true")


def devices_checked(page: Page) -> None:
    expect(page.locator("main")).to_have_attribute("data-state", "check")
    # Starting a fake camera takes seconds on a loaded machine (5 s timed out once in CI).
    expect(page.locator("#check-camera")).not_to_have_class(re.compile(r"\bmuted\b"), timeout=30_000)
    expect(page.locator("#check-connection")).not_to_have_class(re.compile(r"\bmuted\b"), timeout=30_000)


def in_waiting_room(page: Page) -> None:
    devices_checked(page)
    page.locator("#continue").click()
    expect(page.locator("main")).to_have_attribute("data-state", "waiting")


def left_waiting_room(page: Page) -> None:
    in_waiting_room(page)
    page.locator("#leave").click()
    expect(page.locator("main")).to_have_attribute("data-state", "ended")


def call_opened(page: Page) -> None:
    expect(page.locator("main")).to_have_attribute("data-state", "call")


@dataclass(frozen=True)
class SitePage:
    name: str
    route: str | None  # the route as the app spells it; None for a page at no route of its own
    app: App = "region"
    who: Who = ""
    path: str = ""  # the path to open instead of the route (with {slug}, {room_slug}), e.g. an error page
    status: int = 200  # what the page answers
    then: Callable[[Page], None] | None = None
    media: bool = False  # the page uses the camera and microphone

    @property
    def key(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


SITE: list[SitePage] = [
    # The region service
    SitePage("region login", "/login"),
    SitePage("dashboard of an expert", "/{slug:str}/portal", who="expert", then=dashboard_live),
    SitePage("dashboard of an auditor", "/{slug:str}/portal", who="auditor"),
    SitePage("data-subject requests", "/{slug:str}/portal/dsr", who="owner"),
    SitePage("compliance reports", "/{slug:str}/portal/reports", who="owner"),
    SitePage("rooms", "/{slug:str}/portal/rooms", who="owner"),
    SitePage("settings", "/{slug:str}/portal/settings", who="owner"),
    SitePage("integration tokens", "/{slug:str}/portal/tokens", who="owner"),
    SitePage("members", "/{slug:str}/portal/members", who="owner"),
    SitePage("access log", "/{slug:str}/portal/access-log", who="owner"),
    SitePage("e-mail preferences", "/{slug:str}/portal/email-preferences", who="expert"),
    SitePage("password reset", "/password-reset"),
    SitePage(
        "password reset link unknown", "/password-reset/{token:str}", path="/password-reset/no-such-link", status=404
    ),
    SitePage("invitation link unknown", "/invitations/{token:str}", path="/invitations/no-such-link", status=404),
    SitePage("welcome link used or expired", "/welcome/{token:str}", path="/welcome/not-a-valid-link", status=410),
    SitePage("join", "/{slug:str}/{room_slug:str}"),
    SitePage(
        "visit: device check",
        "/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}",
        who="visitor",
        then=devices_checked,
        media=True,
    ),
    SitePage(
        "visit: waiting room",
        "/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}",
        who="visitor",
        then=in_waiting_room,
        media=True,
    ),
    SitePage(
        "visit: left the waiting room",
        "/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}",
        who="visitor",
        then=left_waiting_room,
        media=True,
    ),
    SitePage("call of an expert", "/{slug:str}/calls/{call_id:uuid}", who="expert", then=call_opened, media=True),
    SitePage("region: unknown room", None, path="/{slug}/no-such-room", status=404),
    SitePage("region: unknown organisation", None, path="/no-such-org-here/room", status=404),
    # The control plane
    SitePage("control plane: home", "/", app="control"),
    SitePage("signup", "/signup", app="control"),
    SitePage("control plane: login", "/login", app="control"),
    SitePage("control plane: unknown organisation", None, app="control", path="/no-such-org-here", status=404),
]

# Page routes that only redirect elsewhere (no page of their own).
REDIRECT_ROUTES: dict[App, set[str]] = {
    "control": {"/{slug:str}", "/{slug:str}/{rest:path}"},  # a browser path of an organisation → its region
    "region": {
        "/{slug:str}/{room_slug:str}/visits",  # the join form's address opened → the join page
        "/{slug:str}/portal/members/invite",  # the invite form's address opened → the members page
        "/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}/identity/start",  # → the eID broker
        "/identity/callback",  # back from the eID broker → the visit's page (or a page saying why not)
        # A visit's check-in steps: for a visit with no such step left (every visit of the
        # site list's room) they send it to its page. As pages, with their own rooms, they
        # are checked in test_identity_browser.py and test_browser_payments.py (axe, own
        # host, languages).
        "/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}/identity",
        "/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}/payment",
    },
}
# GET routes left out of the API schema that answer no page (a picture, a file).
NOT_PAGE_ROUTES: dict[App, set[str]] = {
    "control": set(),
    "region": {"/{slug:str}/logo", "/{slug:str}/portal/access-log/export"},
}

# The API documentation pages of both apps (Litestar's OpenAPI UIs).
API_DOCS = ("/schema", "/schema/swagger", "/schema/redoc")


# --- the organisation the pages are shown for --------------------------------------------------------


@dataclass
class World:
    """An EU organisation with an owner, an expert, an auditor and a room, logged in
    through the API (the sessions' cookies are handed to browser contexts)."""

    stack: Stack
    slug: str
    room_slug: str
    sessions: dict[str, str] = field(default_factory=dict)  # who → konsil_session
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return self.stack.region_url("eu")

    @property
    def control(self) -> str:
        return str(self.stack.control_url)

    def base(self, app: App) -> str:
        return self.region if app == "region" else self.control

    def visit(self, name: str = "Vera Visitor") -> tuple[str, str]:
        """A visitor who sent the join form: (the visit's path, its cookie)."""
        joined = httpx.post(
            f"{self.region}/{self.slug}/{self.room_slug}/visits",
            data={"name": name, "consent": "yes"},
            follow_redirects=False,
            timeout=30,
        )
        assert joined.status_code == 303, joined.text
        return joined.headers["location"], joined.cookies["konsil_visit"]

    def call(self) -> str:
        """A call the expert admitted a visitor to: its id."""
        path, _cookie = self.visit("Carl Caller")
        admitted = self.clients["expert"].post(f"/api/v1/orgs/{self.slug}/visits/{path.rsplit('/', 1)[1]}/admit")
        assert admitted.status_code == 200, admitted.text
        return str(admitted.json()["id"])


def make_world(stack: Stack) -> World:
    made = stack.signup("eu")
    slug = made["slug"]
    owner = stack.login(stack.region_url("eu"), slug, made["owner"]["email"])
    world = World(stack, slug, "consultation")
    world.clients["owner"] = owner
    for role in ("expert", "auditor"):
        member = stack.add_member(owner, slug, role)
        world.clients[role] = stack.login(stack.region_url("eu"), slug, member["email"])
    for who, client in world.clients.items():
        world.sessions[who] = client.cookies["konsil_session"]
    room = world.clients["expert"].post(
        f"/api/v1/orgs/{slug}/rooms", json={"slug": world.room_slug, "title": "Consultation with Dr. Berg"}
    )
    assert room.status_code == 201, room.text
    return world


@dataclass
class Opened:
    page: Page
    watch: Watch
    context: BrowserContext
    base: str
    response_status: int


def fill_path(site: SitePage, world: World) -> tuple[str, list[dict[str, Any]]]:
    """The path to open for ``site`` and the cookies it needs."""
    template = site.path or site.route or "/"
    values: dict[str, str] = {"slug": world.slug, "room_slug": world.room_slug}
    cookies: list[dict[str, Any]] = []
    if "{visit_id" in template:
        visit_path, visit_cookie = world.visit()
        values["visit_id"] = visit_path.rsplit("/", 1)[1]
        cookies.append({"name": "konsil_visit", "value": visit_cookie, "domain": "127.0.0.1", "path": visit_path})
    if "{call_id" in template:
        values["call_id"] = world.call()
    path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], template)
    if site.who and site.who != "visitor":
        cookies.append(
            {"name": "konsil_session", "value": world.sessions[site.who], "domain": "127.0.0.1", "path": "/"}
        )
    return path, cookies


def open_site_page(browser: Browser, site: SitePage, world: World, locale: str) -> Opened:
    """``site`` opened in a fresh context in ``locale`` and brought to its state."""
    base = world.base(site.app)
    path, cookies = fill_path(site, world)
    context = new_context(browser, base, locale, media=site.media)
    if cookies:
        context.add_cookies(cookies)  # type: ignore[arg-type]
    page, watch = new_page(context)
    response = page.goto(path)
    assert response is not None, path
    assert response.status == site.status, f"{site.name}: {path} answered {response.status}"
    if site.then is not None:
        site.then(page)
    return Opened(page, watch, context, base, response.status)
