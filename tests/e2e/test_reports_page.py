"""The portal's compliance-reports page in a real browser (Chromium via Playwright),
against the running EU region: an auditor finds it from the portal, is told in plain
words what is wrong with a period too long, starts a report with the keyboard alone,
sees its progress, then the six downloads, and downloads the PDF; an owner finds the
reports made so far and downloads one. Nothing the page loads or asks for leaves the
region's own host, and no script error or blocked asset occurs under the strict CSP.

Screenshots of each step go to ``test-output/reports/``."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect, sync_playwright
from pypdf import PdfReader

from tests.conftest import Stack, fetch, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "reports"
DOWNLOADS = {
    "pdf": "PDF report",
    "json": "JSON document",
    "csv": "Evidence workbook (CSV)",
    "zip": "Signed evidence archive (ZIP)",
    "ropa": "Record of processing (CSV)",
    "oscal": "OSCAL assessment results",
}
# Words of the API and the code that a person should never be shown.
INTERNAL = re.compile(r"[{}\[\]\"`$]|\b(?:period_from|period_to|invalid_input|framework_id|status_code|null)\b")

# Test-only: every text the reports table showed, to see progress that lasts a moment.
TABLE_SPY = """
(() => {
  window.__shown = [];
  const watch = () => {
    const body = document.querySelector('#reports tbody');
    if (!body) return;
    const record = () => window.__shown.push(body.innerText);
    new MutationObserver(record).observe(body, { childList: true, subtree: true, characterData: true });
  };
  document.addEventListener('DOMContentLoaded', watch);
})();
"""


def db(stack: Stack, query: str, *args: object) -> list[Any]:
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


@dataclass
class Practice:
    stack: Stack
    slug: str
    org_id: uuid.UUID
    name: str
    owner: dict[str, Any]
    auditor: dict[str, Any]
    shots: int = 0
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.stack.region_url("eu")

    def jobs(self) -> list[Any]:
        return db(self.stack, "SELECT id, requested_by FROM report_job WHERE org_id = $1", self.org_id)

    def shot(self, page: Page, step: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        page.screenshot(path=SHOTS / f"{self.shots:02d}-{step}.png", full_page=True)


@pytest.fixture(scope="module")
def practice(stack: Stack) -> Practice:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    made = stack.signup("eu", slug=stack.unique("audited"))
    owner = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    auditor = stack.add_member(owner, made["slug"], "auditor")
    return Practice(
        stack,
        made["slug"],
        uuid.UUID(made["organisation_id"]),
        f"Praxis {made['slug']}",
        {**made["owner"], "id": made["owner_id"]},
        auditor,
    )


def open_context(browser: Browser, p: Practice) -> BrowserContext:
    """A browser context that notes every script error, blocked or failed asset, console
    error and request, for the checks at the end of a test."""
    context = browser.new_context(
        base_url=p.base, accept_downloads=True, viewport={"width": 1280, "height": 900}, locale="en-US"
    )
    context.set_default_timeout(15_000)
    context.add_init_script(TABLE_SPY)

    def console(message: ConsoleMessage) -> None:
        # A refused request (the 400 the page explains) is expected; a blocked script is not.
        if message.type == "error" and "Failed to load resource" not in message.text:
            p.problems.append(message.text)

    context.on("console", console)
    context.on("request", lambda request: p.requests.append(request.url))
    context.on(
        "response",
        lambda r: p.problems.append(f"{r.status} {r.url}") if r.status >= 400 and "/static/" in r.url else None,
    )
    return context


def log_in(context: BrowserContext, p: Practice, member: dict[str, Any]) -> Page:
    page = context.new_page()
    page.on("pageerror", lambda exc: p.problems.append(str(exc)))
    page.goto("/login")
    page.get_by_label("E-mail address").fill(member["email"])
    page.get_by_label("Password").fill(member["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**/{p.slug}/portal")
    return page


def tab_to(page: Page, selector: str, limit: int = 40) -> list[str]:
    """Press Tab until the element ``selector`` has the focus; the focus stops on the way."""
    stops: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        stops.append(str(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()")))
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return stops
    pytest.fail(f"{selector} is not reachable with the keyboard (the focus went {stops})")


def assert_stays_home(p: Practice) -> None:
    """Every request the page made went to the region's own host."""
    home = urlsplit(p.base).netloc
    away = sorted(
        {
            url
            for url in p.requests
            if urlsplit(url).scheme in {"http", "https", "ws", "wss"} and urlsplit(url).netloc != home
        }
    )
    assert not away, f"requests that left {home}: {away}"


def test_an_auditor_makes_a_report_in_the_portal_and_downloads_it(browser: Browser, practice: Practice) -> None:
    p = practice
    context = open_context(browser, p)
    page = log_in(context, p, p.auditor)
    page.get_by_role("link", name="Compliance reports").click()
    page.wait_for_url(f"**/{p.slug}/portal/reports")
    expect(page.get_by_role("heading", name="Compliance reports")).to_be_visible()
    expect(page.locator("#reports-empty")).to_be_visible()
    p.shot(page, "auditor-empty")

    # A period longer than 3 years: said in plain words, on the field, nothing started.
    today = dt.datetime.now(dt.UTC).date()
    page.get_by_label("First day").fill(str(today.replace(year=today.year - 4)))
    page.get_by_label("Last day").fill(str(today))
    page.get_by_role("button", name="Make the report").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("at most 3 years")
    shown = alert.inner_text()
    assert not INTERNAL.search(shown) and not shown.startswith(("to:", "from:")), shown
    expect(page.get_by_label("Last day")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Last day")).to_be_focused()
    p.shot(page, "auditor-period-too-long")
    assert p.jobs() == []

    # The keyboard alone: to the framework, through the period, and Enter to start.
    page.goto(f"/{p.slug}/portal/reports")
    tab_to(page, "#report-framework")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_label("Framework")).to_have_value("hipaa")
    page.keyboard.press("ArrowUp")
    expect(page.get_by_label("Framework")).to_have_value("gdpr")
    # (a date field takes several Tab stops in Chromium: month, day and year)
    first_day = today - dt.timedelta(days=90)
    assert "report-framework" not in tab_to(page, "#report-from")
    page.keyboard.type(f"{first_day:%m%d%Y}")  # month, day, year: the fields of an en-US date
    expect(page.get_by_label("First day")).to_have_value(str(first_day))
    tab_to(page, "#report-to")
    expect(page.get_by_label("Last day")).to_have_value(str(today))  # today, as the page set it
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("being made")
    row = page.locator("#reports tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("GDPR")
    expect(row).to_contain_text(str(today.year))
    p.shot(page, "auditor-started")

    # Its progress, then Ready with the six downloads.
    expect(row).to_contain_text("Ready", timeout=60_000)
    shown_before = page.evaluate("window.__shown")
    assert any("%" in text or "Waiting to start" in text for text in shown_before), shown_before
    links = row.get_by_role("link")
    expect(links).to_have_text(list(DOWNLOADS.values()))
    expect(page.get_by_role("status")).to_contain_text("ready")
    p.shot(page, "auditor-ready")
    [job] = p.jobs()
    assert job["requested_by"] == f"member:{p.auditor['id']}"
    hrefs = [links.nth(i).get_attribute("href") for i in range(len(DOWNLOADS))]
    assert hrefs == [f"/api/v1/orgs/{p.slug}/reports/{job['id']}/files/{name}" for name in DOWNLOADS]

    # The download links are reached with Tab too, and show where the focus is.
    tab_to(page, "#reports a")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "the focused link shows no focus ring"

    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename.endswith(".pdf")
    pdf = PdfReader(io.BytesIO(Path(download.value.path()).read_bytes()))
    text = "\n".join(page.extract_text() for page in pdf.pages)
    assert p.name in text and "GDPR" in text

    # On a phone the page fits its width (the table scrolls inside its card).
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    p.shot(page, "auditor-phone")

    assert_stays_home(p)
    assert p.problems == [], p.problems
    context.close()


def test_an_owner_finds_the_reports_made_and_the_focus_stays_put_while_another_runs(
    browser: Browser, practice: Practice
) -> None:
    p = practice
    # A report the auditor made through the API, finished before the owner looks.
    today = dt.datetime.now(dt.UTC).date()
    auditor = p.stack.login(p.base, p.slug, p.auditor["email"])
    made = auditor.post(
        f"/api/v1/orgs/{p.slug}/reports",
        json={"framework": "normen", "from": str(today - dt.timedelta(days=7)), "to": str(today)},
    )
    assert made.status_code == 202, made.text
    report_id = made.json()["id"]
    wait_until(
        lambda: auditor.get(f"/api/v1/orgs/{p.slug}/reports/{report_id}").json()["status"] == "done",
        "the auditor's report to be made",
        within=60,
    )

    context = open_context(browser, p)
    page = log_in(context, p, p.owner)
    page.get_by_role("link", name="Compliance reports").click()
    page.wait_for_url(f"**/{p.slug}/portal/reports")
    theirs = page.locator(f'#reports tr[data-id="{report_id}"]')
    expect(theirs).to_contain_text("Normen")
    expect(theirs).to_contain_text("Ready")
    expect(theirs.get_by_role("link")).to_have_count(len(DOWNLOADS))

    # The owner starts one too; meanwhile the keyboard is on a link of the finished
    # report, and stays there while the list is redrawn with the new one's progress.
    page.get_by_label("Framework").select_option("nen7510")
    page.get_by_role("button", name="Make the report").click()
    expect(page.get_by_role("status")).to_contain_text("being made")
    json_link = theirs.get_by_role("link", name="JSON document")
    json_link.focus()
    redrawn = len(page.evaluate("window.__shown"))
    new_row = page.locator("#reports tbody tr").first
    expect(new_row).to_contain_text("NEN 7510")
    expect(new_row).to_contain_text("Ready", timeout=60_000)
    assert len(page.evaluate("window.__shown")) > redrawn, "the list was redrawn while the link had the focus"
    expect(json_link).to_be_focused()
    p.shot(page, "owner-two-reports")

    with page.expect_download() as download:
        page.keyboard.press("Enter")
    document = json.loads(Path(download.value.path()).read_bytes())
    assert document["org_name"] == p.name and document["framework"]["id"] == "normen"
    logged = db(
        p.stack,
        "SELECT actor, actor_role, purpose FROM access_log_entry WHERE org_id = $1 AND object_id = $2",
        p.org_id,
        f"{report_id}/json",
    )
    assert [dict(r) for r in logged] == [
        {"actor": f"member:{p.owner['id']}", "actor_role": "owner", "purpose": "download a compliance report"}
    ]

    assert_stays_home(p)
    assert p.problems == [], p.problems
    context.close()
