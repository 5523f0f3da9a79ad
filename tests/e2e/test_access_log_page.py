"""The portal's access-log page in a real browser (Chromium via Playwright), in English
and German, against the running EU region: an owner narrows the log by who acted, by
whom it is about and by period, exports what matches as a CSV file (headings in words,
the rows the filter matches), and checks the log's integrity; in an organisation whose
log was changed in the database the check names the first broken entry in words. The
page shows no reference, field name or JSON of the log; viewing, exporting and checking
are themselves access-logged; an auditor reads the page, an expert is refused.

Screenshots go to ``test-output/access-log/``."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect, sync_playwright

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "access-log"
# What the page must never show a person: references, field names, JSON.
INTERNAL = re.compile(
    r"[{}\[\]\"`]|\b(?:member|visit|token|visitor|dsr|org):[0-9a-f-]{8,}|\b(?:subject_ref|object_type|actor_role|"
    r"on_behalf_of|source_address|access_log|data_subject_request|api_token|success|denied|null)\b"
)
# The page's words in each language the tests read it in.
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Access log",
        "who": "Who",
        "about": "About",
        "first": "First day",
        "last": "Last day",
        "show": "Show",
        "export": "Export these entries (CSV)",
        "check": "Check the log's integrity",
        "intact": "The log is intact.",
        "verified": "Verified up to entry",
        "broken": "The log does not verify.",
        "first_broken": "The first entry that does not verify is entry %s:",
        "changed": "it was changed after it was written.",
        "none": "No entry matches these filters.",
        "viewed": "Viewed",
        "room": "Room",
    },
    "de": {
        "title": "Zugriffsprotokoll",
        "who": "Wer",
        "about": "Betrifft",
        "first": "Erster Tag",
        "last": "Letzter Tag",
        "show": "Anzeigen",
        "export": "Diese Einträge exportieren (CSV)",
        "check": "Integrität des Protokolls prüfen",
        "intact": "Das Protokoll ist intakt.",
        "verified": "Geprüft bis Eintrag",
        "broken": "Das Protokoll besteht die Prüfung nicht.",
        "first_broken": "Der erste Eintrag, der die Prüfung nicht besteht, ist Eintrag %s:",
        "changed": "er wurde geändert, nachdem er geschrieben wurde.",
        "none": "Kein Eintrag entspricht diesen Filtern.",
        "viewed": "Angesehen",
        "room": "Raum",
    },
}


# The CSV file's headings in each language.
HEADINGS = {
    "en": ["Entry", "Time", "Who", "On behalf of", "What was done", "Data", "About", "Why", "Outcome"],
    "de": ["Eintrag", "Zeit", "Wer", "Im Auftrag von", "Was getan wurde", "Daten", "Betrifft", "Warum", "Ergebnis"],
}


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
class Clinic:
    """An organisation with an owner, an expert and an auditor, and some activity."""

    stack: Stack
    slug: str
    org_id: uuid.UUID
    owner: dict[str, Any]
    expert: dict[str, Any]
    auditor: dict[str, Any]
    visit_id: uuid.UUID
    problems: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.stack.region_url("eu")

    def api_log(self, **params: Any) -> list[dict[str, Any]]:
        """Every entry the API lists for these filters (as the owner)."""
        client = self.stack.login(self.base, self.slug, self.owner["email"])
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            paging = {"limit": 500} if cursor is None else {"limit": 500, "cursor": cursor}
            page = client.get(f"/api/v1/orgs/{self.slug}/access-log", params={**params, **paging}).json()
            found += page["entries"]
            cursor = page["next_cursor"]
            if cursor is None:
                return found


def make_clinic(stack: Stack, tag: str) -> Clinic:
    base = stack.region_url("eu")
    made = stack.signup("eu", slug=stack.unique(tag))
    slug = made["slug"]
    owner_client = stack.login(base, slug, made["owner"]["email"])
    expert = stack.add_member(owner_client, slug, "expert", name="Erika Expert")
    auditor = stack.add_member(owner_client, slug, "auditor", name="Arne Auditor")
    as_expert = stack.login(base, slug, expert["email"])
    assert as_expert.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "room-a", "title": "A"}).status_code == 201
    joined = httpx.post(
        f"{base}/{slug}/room-a/visits",
        data={"name": "Vera Visitor", "phone": "+47 911 22 333", "consent": "yes"},
        follow_redirects=False,
    )
    assert joined.status_code == 303, joined.text
    visit_id = uuid.UUID(joined.headers["location"].rsplit("/", 1)[1])
    assert as_expert.get(f"/api/v1/orgs/{slug}/visits/{visit_id}").status_code == 200
    assert owner_client.get(f"/api/v1/orgs/{slug}/members").status_code == 200
    return Clinic(
        stack,
        slug,
        uuid.UUID(made["organisation_id"]),
        {**made["owner"], "id": made["owner_id"]},
        expert,
        auditor,
        visit_id,
    )


def open_context(browser: Browser, clinic: Clinic, lang: str) -> BrowserContext:
    context = browser.new_context(
        base_url=clinic.base,
        accept_downloads=True,
        viewport={"width": 1280, "height": 900},
        locale={"en": "en-GB", "de": "de-DE"}[lang],
        timezone_id="Europe/Oslo",
    )
    context.set_default_timeout(15_000)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            clinic.problems.append(message.text)

    context.on("console", console)
    context.on(
        "response",
        lambda r: clinic.problems.append(f"{r.status} {r.url}") if r.status >= 400 and "/static/" in r.url else None,
    )
    return context


def log_in(context: BrowserContext, clinic: Clinic, member: dict[str, Any]) -> Page:
    """A member session in the browser (through the login API, which sets its cookie)."""
    answer = context.request.post(
        f"/api/v1/orgs/{clinic.slug}/auth/login", data={"email": member["email"], "password": member["password"]}
    )
    assert answer.ok, answer.text()
    page = context.new_page()
    page.on("pageerror", lambda exc: clinic.problems.append(str(exc)))
    return page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def shown_rows(page: Page) -> list[dict[str, str]]:
    rows = page.locator("#entries tbody tr")
    cells = ["seq", "when", "who", "what", "about", "why", "outcome"]
    found = []
    for i in range(rows.count()):
        texts = rows.nth(i).locator("td").all_inner_texts()
        found.append(dict(zip(cells, texts, strict=True)))
    return found


def exported(page: Page) -> list[list[str]]:
    with page.expect_download() as download:
        page.locator("#export").click()
    assert re.fullmatch(r"access-log-[a-z0-9-]+-\d{4}-\d{2}-\d{2}\.csv", download.value.suggested_filename)
    data = Path(download.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 with a byte-order mark, for spreadsheets"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def assert_in_words(page: Page) -> None:
    text = page.locator("main").inner_text()
    found = INTERNAL.search(text)
    assert found is None, f"the page shows {found.group(0)!r}"


@pytest.mark.parametrize("lang", ["en", "de"])
def test_an_owner_filters_exports_and_verifies_the_access_log(stack: Stack, browser: Browser, lang: str) -> None:
    words = TEXT[lang]
    clinic = make_clinic(stack, f"log-{lang}")
    context = open_context(browser, clinic, lang)
    page = log_in(context, clinic, clinic.owner)
    page.goto(f"/{clinic.slug}/portal/access-log")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["title"])
    expect(page.locator('.portal-nav a[aria-current="page"]')).to_have_text(words["title"])
    assert page.locator("#entries tbody tr").count() > 5
    assert_in_words(page)
    shot(page, f"{lang}-01-all")

    # By who acted: only the expert's entries, shown by name, the same ones the API lists.
    page.get_by_label(words["who"]).select_option(f"member:{clinic.expert['id']}")
    page.get_by_role("button", name=words["show"], exact=True).click()
    page.wait_for_url(re.compile(r"actor=member"))
    rows = shown_rows(page)
    api_rows = clinic.api_log(actor=f"member:{clinic.expert['id']}")
    assert [int(r["seq"]) for r in rows] == [e["seq"] for e in api_rows] and rows
    assert all(r["who"].startswith("Erika Expert") for r in rows), rows
    assert any(r["what"].startswith(words["viewed"]) for r in rows)
    assert any(r["what"].endswith(words["room"]) for r in rows)
    assert_in_words(page)
    shot(page, f"{lang}-02-by-expert")

    # Exported: the headings in words, the rows the filter matches (and nothing else).
    table = exported(page)
    header, body = table[0], table[1:]
    headings = HEADINGS[lang]
    assert header[0] == headings[0] and header[1].startswith(headings[1]), header
    assert header[2:9] == headings[2:9], header
    assert [int(r[0]) for r in body] == [e["seq"] for e in api_rows]
    assert all(r[2].startswith("Erika Expert") for r in body)
    assert not any(INTERNAL.search(" ".join(r[1:9])) for r in body), body

    # About one visit: its short id is enough.
    page.get_by_label(words["who"]).select_option("")
    page.get_by_label(words["about"]).fill(str(clinic.visit_id)[:8])
    page.get_by_role("button", name=words["show"], exact=True).click()
    page.wait_for_url(re.compile(r"subject="))
    rows = shown_rows(page)
    assert rows and all(str(clinic.visit_id)[:8] in r["about"] for r in rows), rows
    assert {int(r["seq"]) for r in rows} == {e["seq"] for e in clinic.api_log(subject=f"visit:{clinic.visit_id}")}

    # By period (whole days in the browser's time zone): today holds everything, a
    # period that starts tomorrow nothing.
    today = dt.datetime.now(ZoneInfo("Europe/Oslo")).date()
    page.get_by_label(words["about"]).fill("")
    page.get_by_label(words["first"]).fill(str(today - dt.timedelta(days=1)))
    page.get_by_label(words["last"]).fill(str(today + dt.timedelta(days=1)))
    page.get_by_role("button", name=words["show"], exact=True).click()
    page.wait_for_url(re.compile(r"from="))
    assert "tz=Europe%2FOslo" in page.url, "the period is read in the browser's time zone"
    assert page.locator("#entries tbody tr").count() > 5
    page.get_by_label(words["first"]).fill(str(today + dt.timedelta(days=2)))
    page.get_by_label(words["last"]).fill(str(today + dt.timedelta(days=3)))
    page.get_by_role("button", name=words["show"], exact=True).click()
    expect(page.locator("#entries-empty")).to_have_text(words["none"])
    assert exported(page)[1:] == []

    # The integrity check: verified, up to the newest entry.
    page.goto(f"/{clinic.slug}/portal/access-log")
    page.get_by_role("button", name=words["check"]).click()
    result = page.locator("#integrity")
    expect(result).to_contain_text(words["intact"])
    expect(result).to_contain_text(words["verified"])
    assert_in_words(page)
    shot(page, f"{lang}-03-verified")

    # Looking, exporting and checking were written to the log, by the owner.
    logged = db(
        stack,
        "SELECT action, object_type, purpose FROM access_log_entry WHERE org_id = $1 AND actor = $2",
        clinic.org_id,
        f"member:{clinic.owner['id']}",
    )
    purposes = {(r["action"], r["object_type"], r["purpose"]) for r in logged}
    assert ("read", "access_log", "review the access log") in purposes
    assert ("export", "access_log", "export the access log") in purposes
    assert ("read", "access_log", "check the access log's integrity") in purposes
    assert ("read", "member", "review the access log") in purposes, "the names shown are reads of members"
    assert clinic.problems == [], clinic.problems
    context.close()


@pytest.mark.parametrize("lang", ["en", "de"])
def test_a_changed_log_shows_its_first_broken_entry_in_words(stack: Stack, browser: Browser, lang: str) -> None:
    words = TEXT[lang]
    clinic = make_clinic(stack, f"tampered-{lang}")
    # Someone with database access backdates three entries by twelve days.
    db(
        stack,
        "UPDATE access_log_entry SET at = at - interval '12 days' WHERE org_id = $1 AND seq BETWEEN 2 AND 4",
        clinic.org_id,
    )
    context = open_context(browser, clinic, lang)
    page = log_in(context, clinic, clinic.owner)
    page.goto(f"/{clinic.slug}/portal/access-log")

    # The period twelve days ago holds exactly the changed entries, on the page and exported.
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=12)).date()
    page.get_by_label(words["first"]).fill(str(day - dt.timedelta(days=1)))
    page.get_by_label(words["last"]).fill(str(day + dt.timedelta(days=1)))
    page.get_by_role("button", name=words["show"], exact=True).click()
    page.wait_for_url(re.compile(r"from="))
    assert [int(r["seq"]) for r in shown_rows(page)] == [4, 3, 2]
    assert [int(r[0]) for r in exported(page)[1:]] == [4, 3, 2]

    page.get_by_role("button", name=words["check"]).click()
    result = page.locator("#integrity")
    expect(result).to_contain_text(words["broken"])
    expect(result).to_contain_text(words["first_broken"] % 2)
    expect(result).to_contain_text(words["changed"])
    assert_in_words(page)
    shot(page, f"{lang}-04-tampered")

    # The result links to the broken entry in the list.
    result.get_by_role("link").click()
    page.wait_for_url(re.compile(r"before=3"))
    expect(page.locator("#entries tbody tr").first).to_have_attribute("data-seq", "2")
    assert clinic.problems == [], clinic.problems
    context.close()


def test_auditors_read_the_page_and_experts_are_refused(stack: Stack, browser: Browser) -> None:
    clinic = make_clinic(stack, "log-roles")
    context = open_context(browser, clinic, "en")
    page = log_in(context, clinic, clinic.auditor)
    page.goto(f"/{clinic.slug}/portal/access-log?lang=nl")
    expect(page.get_by_role("heading", level=1)).to_have_text("Toegangslog")
    page.get_by_role("button", name="Integriteit van de log controleren").click()
    expect(page.locator("#integrity")).to_contain_text("De log is intact.")
    assert_in_words(page)
    shot(page, "nl-05-auditor")
    context.close()

    expert = httpx.Client(base_url=clinic.base)
    assert expert.post(
        f"/api/v1/orgs/{clinic.slug}/auth/login",
        json={"email": clinic.expert["email"], "password": clinic.expert["password"]},
    ).is_success
    refused = expert.get(f"/{clinic.slug}/portal/access-log", headers={"accept": "text/html"})
    assert refused.status_code == 403 and "<h1>" in refused.text
    assert expert.get(f"/{clinic.slug}/portal/access-log/export").status_code == 403
    assert expert.get(f"/api/v1/orgs/{clinic.slug}/access-log/verify").status_code == 403

    # The API's filters: one actor, one subject (a whole reference or an id's beginning);
    # wildcards of the database's own are refused.
    owner = stack.login(clinic.base, clinic.slug, clinic.owner["email"])
    path = f"/api/v1/orgs/{clinic.slug}/access-log"
    theirs = owner.get(path, params={"actor": f"member:{clinic.expert['id']}", "limit": 500}).json()["entries"]
    assert theirs and {e["actor"] for e in theirs} == {f"member:{clinic.expert['id']}"}
    visitors = owner.get(path, params={"actor": "visitor:*"}).json()["entries"]
    assert [e["actor"] for e in visitors] == [f"visitor:{clinic.visit_id}"]
    about = owner.get(path, params={"subject": str(clinic.visit_id)[:8]}).json()["entries"]
    assert about and {e["subject_ref"] for e in about} == {f"visit:{clinic.visit_id}"}
    for bad in ({"actor": "member:%"}, {"subject": "visit:*"}, {"subject": "_"}, {"actor": "x" * 90}):
        assert owner.get(path, params=bad).status_code == 400, bad
