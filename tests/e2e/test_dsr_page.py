"""The portal's data-subject request page in a real browser (Chromium via Playwright):
an owner files a request, sees it with its due date (overdue ones highlighted),
views the overview, downloads the JSON export and the PDF of who accessed the
person's data, and erases with a confirmation, under the strict CSP (no script
error, no blocked asset)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from pypdf import PdfReader

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def db(stack: Stack, query: str, *args: object) -> list[object]:
    """SQL from a thread of its own: Playwright's sync API keeps an event loop in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fetch(stack.dsns["eu"], query, *args))).result()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def test_an_owner_files_views_downloads_and_erases_in_the_portal(stack: Stack, browser: Browser) -> None:
    base = stack.region_url("eu")
    made = stack.signup("eu")
    slug = made["slug"]
    owner = stack.login(base, slug, made["owner"]["email"])
    assert owner.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "room-a", "title": "A"}).status_code == 201
    joined = httpx.post(
        f"{base}/{slug}/room-a/visits",
        data={"name": "Sigrid Dahl", "phone": "+47 911 22 333", "consent": "yes"},
        follow_redirects=False,
    )
    visit_id = uuid.UUID(joined.headers["location"].rsplit("/", 1)[1])
    # A request received five weeks ago and still open.
    late = owner.post(f"/api/v1/orgs/{slug}/dsr", json={"kind": "access", "email": "late@example.org"}).json()
    db(
        stack,
        "UPDATE data_subject_request SET received_at = now() - interval '35 days', "
        "due_at = now() - interval '7 days' WHERE id = $1",
        uuid.UUID(late["id"]),
    )

    problems: list[str] = []
    context = browser.new_context(base_url=base, accept_downloads=True)
    context.set_default_timeout(15_000)
    page: Page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    def console(message: ConsoleMessage) -> None:
        # The malformed phone's 400 is expected; a blocked script or style is not.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(message.text)

    page.on("console", console)
    page.on("response", lambda r: problems.append(r.url) if r.status >= 400 and "/static/" in r.url else None)
    page.goto("/login")
    page.get_by_label("E-mail address").fill(made["owner"]["email"])
    page.get_by_label("Password").fill(made["owner"]["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**/{slug}/portal")
    page.get_by_role("link", name="Data-subject requests").click()
    page.wait_for_url(f"**/{slug}/portal/dsr")
    expect(page.locator("tr.overdue")).to_have_count(1)
    expect(page.locator(f'tr[data-id="{late["id"]}"]')).to_contain_text("Overdue")

    # A malformed phone: a clear message, nothing filed.
    page.get_by_label("The person asks for").select_option("erasure")
    page.get_by_label("Find their data by").select_option("phone")
    page.locator("#dsr-identifier").fill("911 22 333")
    page.get_by_role("button", name="File the request").click()
    expect(page.locator("#dsr-error")).to_contain_text("phone")
    expect(page.locator("#requests tbody tr")).to_have_count(1)

    page.locator("#dsr-identifier").fill("+47 91122333")
    page.get_by_role("button", name="File the request").click()
    expect(page.locator("#dsr-notice")).to_contain_text("Request filed")
    expect(page.locator("#requests tbody tr")).to_have_count(2)
    expect(page.locator("#detail-facts")).to_contain_text("Visits: 1")
    expect(page.locator("#detail-facts")).to_contain_text("+4791122333")

    page.get_by_role("button", name="Show the overview").click()
    expect(page.locator("#overview")).to_contain_text("Sigrid Dahl")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the export (JSON)").click()
    data = json.loads(download.value.path().read_text())
    assert data["format"] == "konsil.data-subject-export" and data["visits"][0]["id"] == str(visit_id)

    with page.expect_download() as download:
        page.get_by_role("button", name="Download who accessed their data (PDF)").click()
    assert re.fullmatch(r"access-log-extract-[0-9a-f-]{36}\.pdf", download.value.suggested_filename)
    reader = PdfReader(io.BytesIO(download.value.path().read_bytes()))
    extract = " ".join((p.extract_text() or "") for p in reader.pages)
    assert "Who accessed your data" in extract and "You, visitor" in extract and "Sigrid" not in extract
    expect(page.locator("#dsr-notice")).to_contain_text("who accessed their data")
    expect(page.locator("#detail-status")).to_have_text("Not answered yet")

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Erase…").click()
    assert len(db(stack, "SELECT id FROM visit WHERE id = $1", visit_id)) == 1, (
        "dismissing the confirmation erases nothing"
    )
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Erase…").click()
    expect(page.locator("#dsr-notice")).to_contain_text("Erased: visits 1")
    expect(page.locator("#detail-status")).to_contain_text("Answered on")
    assert db(stack, "SELECT id FROM visit WHERE id = $1", visit_id) == []
    assert problems == [], problems
    context.close()
