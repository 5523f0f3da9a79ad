"""The compliance-reports page speaks the person's language (German here, English in
test_reports_page.py): headings, labels, frameworks, the period's error at its field,
the report's progress while it is made, its status and its downloads, with the portal's
navigation marking the page. Screenshots go to ``test-output/reports-languages/``."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, expect, sync_playwright

from tests.conftest import Stack

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "reports-languages"
# Every text the reports table showed, to see progress that lasts a moment.
TABLE_SPY = """
(() => {
  window.__shown = [];
  const watch = () => {
    const body = document.querySelector('#reports tbody');
    if (!body) return;
    new MutationObserver(() => window.__shown.push(body.innerText))
      .observe(body, { childList: true, subtree: true, characterData: true });
  };
  document.addEventListener('DOMContentLoaded', watch);
})();
"""
ENGLISH_LEFT = re.compile(
    r"\b(?:Ready|Waiting to start|Starting|Collecting evidence|Writing the|Signing the|Saving the files|Failed|"
    r"Make the report|First day|Last day|Framework|Download|Reports)\b"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def test_an_auditor_makes_a_report_in_german(stack: Stack, browser: Browser) -> None:
    base = stack.region_url("eu")
    made = stack.signup("eu", slug=stack.unique("berichte"))
    slug = made["slug"]
    owner = stack.login(base, slug, made["owner"]["email"])
    auditor = stack.add_member(owner, slug, "auditor")
    problems: list[str] = []
    context = browser.new_context(
        base_url=base, accept_downloads=True, locale="de-DE", viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    context.add_init_script(TABLE_SPY)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(message.text)

    context.on("console", console)
    login = context.request.post(
        f"/api/v1/orgs/{slug}/auth/login", data={"email": auditor["email"], "password": auditor["password"]}
    )
    assert login.ok, login.text()
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(f"/{slug}/portal/reports")
    expect(page.get_by_role("heading", level=1)).to_have_text("Compliance-Berichte")
    expect(page.locator('.portal-nav a[aria-current="page"]')).to_have_text("Compliance-Berichte")
    expect(page.locator("#reports-empty")).to_have_text("Noch keine Berichte.")
    expect(page.get_by_label("Regelwerk").locator("option")).to_have_text(
        ["DSGVO (GDPR)", "HIPAA Security Rule", "NEN 7510 / NEN 7513", "Normen"]
    )

    # A period too long: said in German, at its field.
    today = dt.datetime.now(dt.UTC).date()
    page.get_by_label("Erster Tag").fill(str(today.replace(year=today.year - 4)))
    page.get_by_label("Letzter Tag").fill(str(today))
    page.get_by_role("button", name="Bericht erstellen").click()
    expect(page.get_by_role("alert")).to_have_text("Letzter Tag: Ein Zeitraum darf höchstens 3 Jahre lang sein.")
    expect(page.get_by_label("Letzter Tag")).to_have_attribute("aria-invalid", "true")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "de-01-period-too-long.png", full_page=True)

    # Made: its progress, status and downloads in German.
    page.get_by_label("Erster Tag").fill(str(today - dt.timedelta(days=30)))
    page.get_by_role("button", name="Bericht erstellen").click()
    expect(page.get_by_role("status")).to_contain_text("wird erstellt")
    row = page.locator("#reports tbody tr")
    expect(row).to_contain_text("Fertig", timeout=60_000)
    expect(row.get_by_role("link")).to_have_text(
        [
            "PDF-Bericht",
            "JSON-Dokument",
            "Nachweis-Arbeitsmappe (CSV)",
            "Signiertes Nachweisarchiv (ZIP)",
            "Verzeichnis der Verarbeitungstätigkeiten (CSV)",
            "OSCAL-Bewertungsergebnisse",
        ]
    )
    expect(page.get_by_role("status")).to_contain_text("ist fertig")
    shown = page.evaluate("window.__shown")
    assert shown and not any(ENGLISH_LEFT.search(text) for text in shown), shown
    assert not ENGLISH_LEFT.search(page.locator("main").inner_text())
    page.screenshot(path=SHOTS / "de-02-ready.png", full_page=True)
    assert problems == [], problems
    context.close()
