"""Every page route of both apps is in tests/e2e/site_pages.py, so the accessibility and
own-host tests open it: a new page fails here until it gets its line there."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from konsil.platform.control.app import create_control_app
from konsil.regions.app import create_region_app
from konsil.regions.tables import REGION_TABLES
from tests.conftest import Stack, bindings_restored
from tests.e2e.site_pages import NOT_PAGE_ROUTES, REDIRECT_ROUTES, SITE, App

pytestmark = pytest.mark.e2e

# GET routes that are not pages: programs' routes, files, the API documentation (its own test).
NOT_PAGES = ("/api/", "/internal/", "/ops/", "/static/", "/schema", "/.well-known/", "/healthz", "/readyz")


def page_routes(app: Litestar) -> set[str]:
    """The app's GET routes that answer people with a page (left out of the API schema)."""
    found = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(NOT_PAGES):
            continue
        for handler in route.route_handlers:
            if "GET" in (handler.http_methods or ()) and handler.include_in_schema is False:
                found.add(route.path)
    return found


def apps(stack: Stack) -> dict[App, Any]:
    return {
        "region": create_region_app(stack.settings.for_region("eu")),
        "control": create_control_app(stack.settings.for_control()),
    }


def test_every_page_route_is_in_the_site_list(stack: Stack) -> None:
    with bindings_restored(REGION_TABLES):
        built = apps(stack)
    for name, app in built.items():
        routes = page_routes(app)
        assert routes, f"no page route found on the {name} app (the route listing is broken)"
        covered = {site.route for site in SITE if site.app == name} | REDIRECT_ROUTES[name] | NOT_PAGE_ROUTES[name]
        missing = sorted(routes - covered)
        assert not missing, (
            f"page routes of the {name} app that tests/e2e/site_pages.py does not list (add a SitePage line "
            f"for each, or to REDIRECT_ROUTES / NOT_PAGE_ROUTES if it answers no page): {missing}"
        )
        gone = sorted(r for r in covered - routes if r)
        assert not gone, f"tests/e2e/site_pages.py lists routes the {name} app no longer has: {gone}"
