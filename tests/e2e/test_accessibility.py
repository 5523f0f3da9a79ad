"""Accessibility of every page (tests/e2e/site_pages.py), in English and German: axe-core,
injected into the system Chromium, finds no serious or critical violation of WCAG 2.1
A/AA (many clinics are public bodies bound by the EU Web Accessibility Directive).
The error pages of both apps are checked in all four languages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.conftest import Stack
from tests.e2e.browser_kit import LOCALES, Shots, assert_accessible, axe_violations, chromium, describe
from tests.e2e.site_pages import SITE, SitePage, World, make_world, open_site_page

pytestmark = pytest.mark.e2e

# Violations in pages of other areas, reported to be fixed there: page name → axe rule ids.
# Such a page is an expected failure while they are all still found; the test fails when
# one is gone (remove it here with the fix) or another one appears.
KNOWN_DEFECTS: dict[str, set[str]] = {}
# Pages shown in another language than the browser's, reported to their owners (page name
# → why): an expected failure in languages other than English until fixed.
WRONG_LANGUAGE: dict[str, str] = {}


def cases() -> list[object]:
    found: list[object] = []
    for site in SITE:
        for locale in ("en", "de"):
            marks = []
            if locale != "en" and site.name in WRONG_LANGUAGE:
                marks.append(pytest.mark.xfail(strict=True, reason=WRONG_LANGUAGE[site.name]))
            found.append(pytest.param(site, locale, marks=marks, id=f"{site.key}-{locale}"))
    return found


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


@pytest.mark.parametrize(("site", "locale"), cases())
def test_no_serious_accessibility_violation(
    browser: Browser, world: World, shots: Shots, site: SitePage, locale: str
) -> None:
    opened = open_site_page(browser, site, world, locale)
    try:
        assert opened.page.locator("html").get_attribute("lang") == locale
        shots(opened.page, f"{site.key}-{locale}")
        label = f"{site.name} [{locale}]"
        known = KNOWN_DEFECTS.get(site.name, set())
        if not known:
            assert_accessible(opened.page, label)
            return
        violations = axe_violations(opened.page)
        others = [v for v in violations if v["id"] not in known]
        assert not others, f"{label}: serious/critical accessibility violation(s)\n" + describe(others)
        fixed = known - {v["id"] for v in violations}
        assert not fixed, f"{label}: {sorted(fixed)} fixed: remove from KNOWN_DEFECTS"
        pytest.xfail(f"{label}: known defects reported to their page's owner: {sorted(known)}")
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
