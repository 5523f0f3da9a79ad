"""The data-subject request page in a real browser (Chromium via Playwright), in English
and German: the list and the open request always say the same state (answering a
request by showing its overview used to mark it completed in the list while its detail
still said received, with "Reject" still offered), only the actions a request's state
allows are offered, nothing internal is shown; and the rights and complaint wording
follow the organisation's jurisdiction and country (HIPAA and HHS for a US
organisation, the Autoriteit Persoonsgegevens for a Dutch one), on the page and in the
overview.

Screenshots go to ``test-output/dsr/``."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Locator, Page, expect, sync_playwright

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "dsr"
INTERNAL = re.compile(
    r"[{}\[\]`]|\b(?:identifier_kind|identity_not_verified|manifestly_unfounded|"
    r"data_subject_request|relay_receipts|payments_kept|null|undefined|member:|visit:|dsr:)\b"
)
TEXT = {
    "en": {
        "title": "Data-subject requests",
        "open_row": "Not answered",
        "open": "Not answered yet",
        "answered_row": "Answered",
        "answered": "Answered on",
        "rejected_row": "Rejected",
        "rejected": "Rejected on",
        "reason": "Rejected: the same request was filed before.",
        "answered_note": "This request is answered.",
    },
    "de": {
        "title": "Betroffenenanfragen",
        "open_row": "Nicht beantwortet",
        "open": "Noch nicht beantwortet",
        "answered_row": "Beantwortet",
        "answered": "Beantwortet am",
        "rejected_row": "Abgelehnt",
        "rejected": "Abgelehnt am",
        "reason": "Abgelehnt: Dieselbe Anfrage wurde bereits gestellt.",
        "answered_note": "Diese Anfrage ist beantwortet.",
    },
}


def db(dsn: str, query: str, *args: object) -> list[Any]:
    """SQL from a thread of its own: Playwright's sync API keeps an event loop in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fetch(dsn, query, *args))).result()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def open_page(
    browser: Browser, base: str, slug: str, owner: dict[str, Any], lang: str
) -> tuple[BrowserContext, Page, list[str]]:
    problems: list[str] = []
    context = browser.new_context(
        base_url=base,
        accept_downloads=True,
        viewport={"width": 1280, "height": 900},
        locale={"en": "en-GB", "de": "de-DE", "nl": "nl-NL"}[lang],
    )
    context.set_default_timeout(15_000)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(message.text)

    context.on("console", console)
    context.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 and "/static/" in r.url else None,
    )
    login = context.request.post(
        f"/api/v1/orgs/{slug}/auth/login", data={"email": owner["email"], "password": owner["password"]}
    )
    assert login.ok, login.text()
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(f"/{slug}/portal/dsr")
    return context, page, problems


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def row_of(page: Page, request_id: str) -> Locator:
    return page.locator(f'#requests tr[data-id="{request_id}"]')


def open_request(page: Page, request_id: str) -> None:
    row_of(page, request_id).get_by_role("button").click()
    expect(page.locator("#detail-title")).to_contain_text(request_id[:8])


def offered(page: Page) -> dict[str, bool]:
    """Which of the request's actions the page offers now."""
    return {
        name: page.locator(selector).is_visible()
        for name, selector in {
            "overview": "#show-overview",
            "export": "#download-json",
            "extract": "#download-extract",
            "rectify": "#rectify-form",
            "erase": "#erase",
            "reject": "#reject-form",
        }.items()
    }


def assert_agree(page: Page, request_id: str, row_text: str, detail_text: str) -> None:
    expect(row_of(page, request_id).locator("td.status")).to_have_text(row_text)
    expect(page.locator("#detail-status")).to_contain_text(detail_text)


def assert_in_words(page: Page) -> None:
    text = page.locator("main").inner_text()
    found = INTERNAL.search(text)
    assert found is None, f"the page shows {found.group(0)!r}"


@pytest.mark.parametrize("lang", ["en", "de"])
def test_list_and_detail_agree_and_only_allowed_actions_are_offered(stack: Stack, browser: Browser, lang: str) -> None:
    words = TEXT[lang]
    base = stack.region_url("eu")
    made = stack.signup("eu", slug=stack.unique(f"dsr-{lang}"))
    slug = made["slug"]
    owner = stack.login(base, slug, made["owner"]["email"])
    assert owner.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "room-a", "title": "A"}).status_code == 201
    joined = httpx.post(
        f"{base}/{slug}/room-a/visits",
        data={"name": "Liv Lund", "phone": "+47 922 33 444", "consent": "yes"},
        follow_redirects=False,
    )
    assert joined.status_code == 303, joined.text

    def file(kind: str) -> str:
        answer = owner.post(f"/api/v1/orgs/{slug}/dsr", json={"kind": kind, "phone": "+4792233444"})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    access, erasure, rectification = file("access"), file("erasure"), file("rectification")
    context, page, problems = open_page(browser, base, slug, made["owner"], lang)
    expect(page.get_by_role("heading", level=1)).to_have_text(words["title"])
    expect(page.locator('.portal-nav a[aria-current="page"]')).to_have_text(words["title"])

    # An access request, not answered yet: view it, reject it; nothing to correct or erase.
    open_request(page, access)
    assert_agree(page, access, words["open_row"], words["open"])
    assert offered(page) == {
        "overview": True,
        "export": True,
        "extract": True,
        "rectify": False,
        "erase": False,
        "reject": True,
    }
    assert_in_words(page)
    shot(page, f"{lang}-01-access-open")

    # Showing the overview answers it: the list and the detail both say so at once,
    # and rejecting is no longer offered (viewing and downloading the answer again is).
    page.locator("#show-overview").click()
    expect(page.locator("#overview")).to_contain_text("Liv Lund")
    assert_agree(page, access, words["answered_row"], words["answered"])
    expect(page.locator("#state-note")).to_contain_text(words["answered_note"])
    assert offered(page) == {
        "overview": True,
        "export": True,
        "extract": True,
        "rectify": False,
        "erase": False,
        "reject": False,
    }
    assert_in_words(page)
    shot(page, f"{lang}-02-access-answered")
    # The server says the same: after a reload, the request is still answered.
    page.reload()
    open_request(page, access)
    assert_agree(page, access, words["answered_row"], words["answered"])
    listed = {r["id"]: r for r in owner.get(f"/api/v1/orgs/{slug}/dsr").json()}
    assert listed[access]["status"] == "completed"

    # An erasure request offers erasing and rejecting; rejected, it offers nothing more.
    open_request(page, erasure)
    assert offered(page) == {
        "overview": True,
        "export": True,
        "extract": True,
        "rectify": False,
        "erase": True,
        "reject": True,
    }
    page.locator("#reject-reason").select_option("duplicate")
    page.locator("#reject-form button[type=submit]").click()
    assert_agree(page, erasure, words["rejected_row"], words["rejected"])
    expect(page.locator("#detail-facts")).to_contain_text(words["reason"])
    assert offered(page) == {
        "overview": False,
        "export": False,
        "extract": False,
        "rectify": False,
        "erase": False,
        "reject": False,
    }
    assert_in_words(page)
    shot(page, f"{lang}-03-erasure-rejected")

    # A rectification request offers the correction form, not erasing.
    open_request(page, rectification)
    assert offered(page)["rectify"] and not offered(page)["erase"] and offered(page)["reject"]
    assert problems == [], problems
    context.close()


def overview_of(client: httpx.Client, slug: str, email: str, lang: str) -> str:
    made = client.post(f"/api/v1/orgs/{slug}/dsr", json={"kind": "access", "email": email})
    assert made.status_code == 201, made.text
    text = client.post(f"/api/v1/orgs/{slug}/dsr/{made.json()['id']}/overview", headers={"accept-language": lang})
    assert text.status_code == 200, text.text
    return text.text


def test_a_us_organisation_sees_hipaa_wording_and_a_dutch_one_its_authority(stack: Stack, browser: Browser) -> None:
    # A US organisation: HIPAA's rights and HHS's Office for Civil Rights, no GDPR.
    us_base = stack.region_url("us")
    us = stack.signup("us", slug=stack.unique("dsr-us"))
    context, page, problems = open_page(browser, us_base, us["slug"], us["owner"], "en")
    legal = page.locator("section.legal")
    expect(legal).to_contain_text("45 CFR 164")
    expect(legal).to_contain_text("Office for Civil Rights")
    expect(legal.get_by_role("link")).to_have_attribute("href", "https://www.hhs.gov/ocr/complaints")
    text = page.locator("main").inner_text()
    assert "GDPR" not in text and "Datatilsynet" not in text
    shot(page, "en-04-us-rights")
    context.close()
    owner = stack.login(us_base, us["slug"], us["owner"]["email"])
    overview = overview_of(owner, us["slug"], us["owner"]["email"], "en")
    assert "Office for Civil Rights" in overview and "45 CFR 164" in overview
    assert "GDPR" not in overview and "Datatilsynet" not in overview
    assert "Member accounts: 1" in overview

    # A Dutch organisation (in the EU region): the Autoriteit Persoonsgegevens, in Dutch too.
    eu_base = stack.region_url("eu")
    nl = stack.signup("eu", slug=stack.unique("dsr-nl"))
    db(stack.dsns["eu"], "UPDATE organisation SET country = 'NL' WHERE id = $1", uuid.UUID(nl["organisation_id"]))
    context, page, problems_nl = open_page(browser, eu_base, nl["slug"], nl["owner"], "nl")
    legal = page.locator("section.legal")
    expect(legal).to_contain_text("Autoriteit Persoonsgegevens")
    expect(legal).to_contain_text("AVG")
    expect(legal.get_by_role("link")).to_have_attribute("href", "https://autoriteitpersoonsgegevens.nl")
    expect(page.get_by_role("heading", level=1)).to_have_text("Verzoeken van betrokkenen")
    assert "Datatilsynet" not in page.locator("main").inner_text()
    shot(page, "nl-05-nl-rights")
    context.close()
    owner = stack.login(eu_base, nl["slug"], nl["owner"]["email"])
    for lang in ("en", "nl"):
        overview = overview_of(owner, nl["slug"], nl["owner"]["email"], lang)
        assert "Autoriteit Persoonsgegevens" in overview and "Datatilsynet" not in overview, overview
    assert "Ledenaccounts: 1" in overview_of(owner, nl["slug"], nl["owner"]["email"], "nl")
    assert problems == [] and problems_nl == [], problems + problems_nl
