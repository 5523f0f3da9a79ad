"""The portal's administration pages in a real browser (Chromium via Playwright), in
English and Dutch: an owner changes the organisation's settings, uploads a logo and
sees it served publicly (a text file renamed .png, an SVG and an image over 1 MB are
refused with clear messages, nothing stored), creates, renames and deletes a room with
a welcome text, creates an integration token (shown once; it works with its scope and
no further), and revokes it. Under the strict CSP: no script error, no blocked asset.
Screenshots are saved under /tmp/konsil-admin-pages/."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from konsil.platform.pages import i18n
from konsil.regions import app as region_app  # registers the tenant area's catalogs
from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SHOTS = Path("/tmp/konsil-admin-pages")
assert region_app.TENANTS.is_dir()


def db(stack: Stack, query: str, *args: object) -> list[Any]:
    """SQL from a thread of its own: Playwright's sync API keeps an event loop in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fetch(stack.dsns["eu"], query, *args))).result()


def png(size: tuple[int, int] = (240, 80)) -> bytes:
    image = Image.new("RGB", size, (255, 255, 255))
    for x in range(size[0]):
        for y in range(size[1] // 4, size[1] * 3 // 4):
            image.putpixel((x, y), (31, 95, 191) if x < size[0] // 2 else (27, 122, 61))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def big_png() -> bytes:
    side = 700
    image = Image.frombytes("RGB", (side, side), bytes((i * 7919) % 251 for i in range(side * side * 3)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0)
    assert len(buffer.getvalue()) > 1024 * 1024
    return buffer.getvalue()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def translator(lang: str) -> Callable[..., str]:
    def tr(message: str, **params: Any) -> str:
        text = i18n.gettext(lang, message, **params)
        if lang != "en":  # in the merged catalog (some words are the same, e.g. "Expert" in Dutch)
            assert i18n.translations(lang)._catalog.get(message), f"{message!r} has no {lang} translation"
        return text

    return tr


class Watched:
    """Script errors, CSP refusals and failed static files of a page."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("pageerror", lambda exc: self.problems.append(str(exc)))
        page.on("console", self.console)
        page.on("response", lambda r: self.problems.append(r.url) if r.status >= 400 and "/static/" in r.url else None)

    def console(self, message: ConsoleMessage) -> None:
        # A refused upload or change answers 4xx on purpose; a blocked script or style does not.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(message.text)


def member_page(stack: Stack, browser: Browser, slug: str, email: str, lang: str) -> tuple[Any, Page, Watched]:
    base = stack.region_url("eu")
    client = stack.login(base, slug, email)
    context = browser.new_context(base_url=base, locale={"en": "en-GB", "nl": "nl-NL"}[lang])
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    context.add_cookies([{"name": name, "value": value, "url": base} for name, value in client.cookies.items()])
    context.set_default_timeout(15_000)
    page = context.new_page()
    return context, page, Watched(page)


@pytest.mark.parametrize("lang", ["en", "nl"])
def test_an_owner_runs_the_organisation_from_the_admin_pages(
    stack: Stack, browser: Browser, tmp_path: Path, lang: str
) -> None:
    tr = translator(lang)
    base = stack.region_url("eu")
    made = stack.signup("eu")
    slug, org_id = made["slug"], uuid.UUID(made["organisation_id"])
    owner_api = stack.login(base, slug, made["owner"]["email"])
    expert = stack.add_member(owner_api, slug, "expert", name="Ingrid Berg")
    context, page, watched = member_page(stack, browser, slug, made["owner"]["email"], lang)
    SHOTS.mkdir(exist_ok=True)

    # --- settings ---------------------------------------------------------------------------
    page.goto(f"/{slug}/portal/settings?lang={lang}")
    expect(page.locator("h1")).to_have_text(tr("Settings"))
    expect(page.locator(".portal-nav a[aria-current=page]")).to_have_text(tr("Settings"))
    expect(page.locator("#retention-hint")).to_contain_text(
        tr("Visitor names, phone numbers and call details are deleted %(days)s days after the visit.", days=30)
    )
    # Every problem at once, each at its field; nothing saved.
    page.get_by_label(tr("Name"), exact=True).fill("")
    page.get_by_label(tr("Keep visitor data for (days)")).fill("0")
    page.get_by_role("button", name=tr("Save the settings")).click()
    expect(page.locator("#org-name-error")).to_have_text(
        tr("Enter the organisation's name: 2 to 200 characters, without < or >.")
    )
    expect(page.locator("#retention-error")).to_have_text(tr("Enter a whole number of days from 1 to 90."))
    expect(page.locator("#org-name")).to_have_attribute("aria-invalid", "true")
    assert db(stack, "SELECT retention_days FROM organisation WHERE id = $1", org_id)[0]["retention_days"] == 30

    page.get_by_label(tr("Name"), exact=True).fill("Praktijk Zonnebloem")
    page.get_by_label(tr("Keep visitor data for (days)")).fill("7")
    expect(page.locator("#retention-hint")).to_contain_text(
        tr("Visitor names, phone numbers and call details are deleted %(days)s days after the visit.", days=7)
    )
    page.get_by_label(tr("Contract end")).fill("2027-06-30")
    expect(page.locator("#contract-deletion")).to_contain_text(
        {"en": "28 September 2027", "nl": "28 september 2027"}[lang]
    )
    page.get_by_label(tr("Default language")).select_option("nb")
    page.get_by_label(tr("Country")).select_option("NO")
    page.get_by_role("button", name=tr("Save the settings")).click()
    expect(page.locator("#settings-notice")).to_have_text(tr("The settings are saved."))
    expect(page.locator("#org-name")).not_to_have_attribute("aria-invalid", "true")
    saved = owner_api.get(f"/api/v1/orgs/{slug}/").json()
    assert {k: saved[k] for k in ("name", "retention_days", "contract_end", "locale", "country")} == {
        "name": "Praktijk Zonnebloem",
        "retention_days": 7,
        "contract_end": "2027-06-30",
        "locale": "nb",
        "country": "NO",
    }
    # The country's name is in the page's language.
    expect(page.locator("#country option:checked")).to_have_text({"en": "Norway", "nl": "Noorwegen"}[lang])

    # The logo: a real PNG is stored and served publicly.
    logo = png()
    (tmp_path / "logo.png").write_bytes(logo)
    file_input = page.get_by_label(tr("Image file"))
    file_input.set_input_files(str(tmp_path / "logo.png"))
    page.get_by_role("button", name=tr("Upload the logo")).click()
    expect(page.locator("#settings-notice")).to_have_text(tr("The logo is saved. Your visitors see it from now on."))
    expect(page.locator("#logo-preview")).to_be_visible()
    assert page.eval_on_selector("#logo-preview", "img => img.complete && img.naturalWidth") == 240
    served = httpx.get(f"{base}/{slug}/logo", timeout=30)
    assert served.status_code == 200 and served.content == logo and served.headers["content-type"] == "image/png"
    page.screenshot(path=str(SHOTS / f"settings-{lang}.png"), full_page=True)

    # Refused, with nothing stored: a text file renamed .png, an SVG, an image over 1 MB.
    stored = db(stack, "SELECT sha256 FROM organisation_logo WHERE org_id = $1", org_id)
    (tmp_path / "letter.png").write_bytes(b"Dear clinic,\nthis is a letter, not a picture.\n")
    (tmp_path / "drawing.svg").write_bytes(
        b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><script>alert(1)</script></svg>'
    )
    (tmp_path / "huge.png").write_bytes(big_png())
    refusals = [
        ("letter.png", tr("This file is not an image. Choose a PNG, JPEG or WebP file.")),
        (
            "drawing.svg",
            tr("SVG images are not accepted because they can contain scripts. Choose a PNG, JPEG or WebP file."),
        ),
        ("huge.png", tr("The image is larger than 1 MB. Choose a smaller file.")),
    ]
    for name, message in refusals:
        file_input.set_input_files(str(tmp_path / name))
        page.get_by_role("button", name=tr("Upload the logo")).click()
        expect(page.locator("#logo-error")).to_have_text(message)
        expect(file_input).to_have_attribute("aria-invalid", "true")
        assert db(stack, "SELECT sha256 FROM organisation_logo WHERE org_id = $1", org_id) == stored, name
    page.screenshot(path=str(SHOTS / f"settings-refused-{lang}.png"), full_page=True)

    # --- rooms -------------------------------------------------------------------------------
    page.get_by_role("link", name=tr("Rooms")).click()
    page.wait_for_url(f"**/{slug}/portal/rooms")
    expect(page.locator("h1")).to_have_text(tr("Rooms"))
    expect(page.locator("#rooms")).not_to_have_attribute("aria-busy", "true")
    expect(page.locator("#rooms-empty")).to_be_visible()
    new_room = page.locator("#room-form")
    new_room.get_by_label(tr("Name of the room")).fill("Dr. Ødegård")
    expect(new_room.get_by_label(tr("Address"))).to_have_value("dr-odegard")
    new_room.get_by_label(tr("Expert")).select_option(label="Ingrid Berg")
    welcome = "Welkom! Houd uw verzekeringspas bij de hand.\nDe arts laat u zo binnen."
    new_room.get_by_label(tr("Welcome text")).fill(welcome)
    page.get_by_role("button", name=tr("Create the room")).click()
    item = page.locator("#rooms li.room")
    expect(item).to_have_count(1)
    expect(item.locator("h3")).to_have_text("Dr. Ødegård")
    expect(item.locator(".link-field")).to_have_value(f"{base}/{slug}/dr-odegard")
    expect(item).to_contain_text("Ingrid Berg")
    room = owner_api.get(f"/api/v1/orgs/{slug}/rooms").json()[0]
    assert room["welcome_text"] == welcome and room["expert_id"] == expert["id"]
    item.get_by_role("button", name=tr("Copy the link")).click()
    expect(page.locator("#rooms-notice")).not_to_be_empty()

    # A taken address: said at the field.
    new_room.get_by_label(tr("Name of the room")).fill("Second")
    new_room.get_by_label(tr("Address")).fill("dr-odegard")
    page.get_by_role("button", name=tr("Create the room")).click()
    expect(page.locator("#room-slug-error")).to_have_text(
        tr("This address is already used or reserved. Choose another.")
    )
    expect(item).to_have_count(1)

    # Rename and change the welcome text.
    item.get_by_role("button", name=tr("Edit")).click()
    page.locator(f"#edit-title-{room['id']}").fill("Dr. Ødegård, huisarts")
    page.locator(f"#edit-welcome-{room['id']}").fill("Fijn dat u er bent.")
    # Check-in steps: a national eID check; no card fee, as this region has no payment provider
    # (the fee fields and their checks are in tests/e2e/test_browser_payments.py).
    page.locator(f"#edit-{room['id']}-eid").select_option(label=tr("Norwegian BankID"))
    expect(item.get_by_label(tr("Visitors pay a fee by card before they wait"))).to_be_disabled()
    expect(page.locator(f"#edit-{room['id']}-charge-hint")).to_have_text(
        tr("Card fees are not set up for this service yet.")
    )
    page.screenshot(path=str(SHOTS / f"rooms-edit-{lang}.png"), full_page=True)
    item.get_by_role("button", name=tr("Save the changes")).click()
    expect(page.locator("#rooms-notice")).to_have_text(
        tr("The room %(title)s is saved.", title="Dr. Ødegård, huisarts")
    )
    expect(page.locator("#rooms li.room h3")).to_have_text("Dr. Ødegård, huisarts")
    expect(page.locator("#rooms li.room .checkin-summary")).to_contain_text(
        tr("Identity check: %(eid)s", eid=tr("Norwegian BankID"))
    )
    changed = owner_api.get(f"/api/v1/orgs/{slug}/rooms/{room['id']}").json()
    assert changed["title"] == "Dr. Ødegård, huisarts" and changed["welcome_text"] == "Fijn dat u er bent."
    assert changed["identity_check"] == "no_bankid"
    assert changed["fee"] is None
    page.screenshot(path=str(SHOTS / f"rooms-{lang}.png"), full_page=True)

    # Delete: dismissing the question deletes nothing; accepting it does.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("#rooms li.room").get_by_role("button", name=tr("Delete…")).click()
    expect(page.locator("#rooms li.room")).to_have_count(1)
    assert owner_api.get(f"/api/v1/orgs/{slug}/rooms/{room['id']}").status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#rooms li.room").get_by_role("button", name=tr("Delete…")).click()
    expect(page.locator("#rooms li.room")).to_have_count(0)
    expect(page.locator("#rooms-notice")).to_have_text(
        tr("The room %(title)s is deleted.", title="Dr. Ødegård, huisarts")
    )
    assert owner_api.get(f"/api/v1/orgs/{slug}/rooms/{room['id']}").status_code == 404

    # --- integration tokens ------------------------------------------------------------------
    page.get_by_role("link", name=tr("Integrations")).click()
    page.wait_for_url(f"**/{slug}/portal/tokens")
    expect(page.locator("h1")).to_have_text(tr("Integrations"))
    page.get_by_role("button", name=tr("Create the token")).click()
    expect(page.locator("#token-label-error")).to_have_text(tr("Enter a name of 1 to 80 characters, without < or >."))
    expect(page.locator("#token-scopes-error")).to_have_text(tr("Choose at least one thing the token may do."))
    page.get_by_label(tr("Name"), exact=True).fill("Patiëntendossier")
    page.get_by_label(tr("See the rooms")).check()
    page.get_by_role("button", name=tr("Create the token")).click()
    expect(page.locator("#token-created")).to_be_visible()
    token = page.locator("#new-token").input_value()
    assert token.startswith("ksl_eu_")
    expect(page.locator("#tokens li.token")).to_have_count(1)
    expect(page.locator("#tokens li.token")).to_contain_text(tr("See the rooms"))
    expect(page.locator("#tokens li.token")).to_contain_text(tr("Not used yet"))
    page.screenshot(path=str(SHOTS / f"tokens-created-{lang}.png"), full_page=True)
    bearer = {"authorization": f"Bearer {token}"}
    assert httpx.get(f"{base}/api/v1/orgs/{slug}/rooms", headers=bearer, timeout=30).status_code == 200
    assert httpx.get(f"{base}/api/v1/orgs/{slug}/members", headers=bearer, timeout=30).status_code == 403
    # Shown once: gone from the page once copied, and never served again.
    page.get_by_role("button", name=tr("I have copied it")).click()
    expect(page.locator("#token-created")).to_be_hidden()
    assert page.locator("#new-token").input_value() == ""
    page.reload()
    expect(page.locator("#tokens li.token")).to_contain_text(tr("Last used %(when)s", when="").strip())
    assert token not in page.content()
    assert token not in owner_api.get(f"/api/v1/orgs/{slug}/tokens").text
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#tokens li.token").get_by_role("button", name=tr("Revoke…")).click()
    expect(page.locator("#tokens li.token .badge")).to_have_text(tr("Revoked"))
    assert httpx.get(f"{base}/api/v1/orgs/{slug}/rooms", headers=bearer, timeout=30).status_code == 401
    page.screenshot(path=str(SHOTS / f"tokens-{lang}.png"), full_page=True)

    assert watched.problems == [], watched.problems
    context.close()


def test_experts_see_their_own_rooms_and_no_settings(stack: Stack, browser: Browser) -> None:
    base = stack.region_url("eu")
    made = stack.signup("eu")
    slug = made["slug"]
    owner_api = stack.login(base, slug, made["owner"]["email"])
    expert = stack.add_member(owner_api, slug, "expert")
    assert (
        owner_api.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "owner-room", "title": "Owner's"}).status_code == 201
    )
    mine = owner_api.post(
        f"/api/v1/orgs/{slug}/rooms", json={"slug": "expert-room", "title": "Expert's", "expert_id": expert["id"]}
    ).json()
    context, page, watched = member_page(stack, browser, slug, expert["email"], "en")
    page.goto(f"/{slug}/portal/rooms?lang=en")
    expect(page.locator("#rooms li.room")).to_have_count(1)
    expect(page.locator("#rooms li.room h3")).to_have_text("Expert's")
    expect(page.locator("#room-expert")).to_have_count(0)
    page.locator("#rooms li.room").get_by_role("button", name="Edit").click()
    page.locator(f"#edit-welcome-{mine['id']}").fill("Back in five minutes.")
    page.locator("#rooms li.room").get_by_role("button", name="Save the changes").click()
    expect(page.locator("#rooms li.room .welcome")).to_have_text("Back in five minutes.")
    for path in ("settings", "tokens"):
        answer = page.goto(f"/{slug}/portal/{path}")
        assert answer is not None and answer.status == 403
        expect(page.locator("main")).to_have_attribute("data-page", "error")
    # Not logged in: to the login page.
    anonymous = httpx.get(f"{base}/{slug}/portal/settings", timeout=30)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    assert watched.problems == [], watched.problems
    context.close()
