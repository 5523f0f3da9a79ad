"""Accessibility of every page (tests/e2e/site_pages.py), in English and German: axe-core,
injected into the system Chromium, finds no serious or critical violation of WCAG 2.1
A/AA (many clinics are public bodies bound by the EU Web Accessibility Directive).
The error pages of both apps are checked in all four languages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.conftest import Stack
from tests.e2e.browser_kit import LOCALES, Shots, assert_accessible, chromium
from tests.e2e.site_pages import SITE, SitePage, World, make_world, open_site_page

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    return make_world(stack)


@pytest.fixture(scope="module")
def shots() -> Shots:
    return Shots("accessibility")


@pytest.mark.parametrize("locale", ["en", "de"])
@pytest.mark.parametrize("site", SITE, ids=lambda s: s.key)
def test_no_serious_accessibility_violation(
    browser: Browser, world: World, shots: Shots, site: SitePage, locale: str
) -> None:
    opened = open_site_page(browser, site, world, locale)
    try:
        assert opened.page.locator("html").get_attribute("lang") == locale
        shots(opened.page, f"{site.key}-{locale}")
        assert_accessible(opened.page, f"{site.name} [{locale}]")
    finally:
        opened.context.close()


@pytest.mark.parametrize("locale", [loc for loc in LOCALES if loc not in ("en", "de")])
def test_the_error_page_in_the_other_languages(browser: Browser, world: World, locale: str) -> None:
    for site in (s for s in SITE if s.status >= 400):
        opened = open_site_page(browser, site, world, locale)
        try:
            assert_accessible(opened.page, f"{site.name} [{locale}]")
        finally:
            opened.context.close()
