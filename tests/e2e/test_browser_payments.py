"""Paying a room's fee in Chromium (Playwright, the system /usr/bin/chromium) against a
region with localstripe, whose stand-in of stripe.js (card Element, createToken,
confirmCardPayment with its 3-D Secure dialog) the payment page uses as it would use
Stripe's: a declined card first (a plain message, the visitor stays out of the waiting
list), then a good card; the visitor lands in the waiting room and the owner's
dashboard shows "Paid · Visa •••• 4242"; 3-D Secure confirmed in the page; the owner
refunds from the portal. Screenshots of the payment page in every language go to
/tmp/konsil-payments/ (at 375 px wide), and axe checks it.

The card field is localstripe's (plain inputs with its own placeholders, "localstripe:"
before them); with Stripe it is Stripe's own frame. It is left out of the axe run and
out of the words checked on the page."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from konsil.platform.pages import i18n
from konsil.regions import app as region_app  # noqa: F401 (registers the tenant area's catalogs)
from tests.conftest import fetch
from tests.e2e.browser_kit import LOCALES, axe_violations, chromium, describe, new_context, new_page
from tests.e2e.test_payments import Payments, localstripe, payments, signup  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

SHOTS = Path("/tmp/konsil-payments")
NARROW: ViewportSize = {"width": 375, "height": 812}
PASSWORD = "correct horse battery"
# Words of the machinery that a visitor must never read on the payment page.
INTERNAL = re.compile(r"PaymentIntent|pi_[A-Za-z0-9]|tok_|client_secret|[0-9a-f]{8}-[0-9a-f]{4}-|\{\"|stripe\.com|null")


def tr(lang: str, message: str, **params: Any) -> str:
    return i18n.gettext(lang, message, **params)


def db(p: Payments, sql: str, *args: Any) -> list[Any]:
    # Playwright's sync API runs an event loop in this thread: query from another one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fetch(p.dsn, sql, *args)).result()


def visit_status(p: Payments, visit_id: str) -> str:
    return str(db(p, "SELECT status FROM visit WHERE id = $1", uuid.UUID(visit_id))[0]["status"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def join(page: Page, slug: str, name: str) -> str:
    """Fill the room's form; the browser is sent on to the payment page. The visit's id."""
    page.goto(f"/{slug}/paid")
    page.locator("#name").fill(name)
    page.locator("#consent").check()
    page.locator("form button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/visits/[0-9a-f-]{36}/payment$"))
    expect(page.locator("main")).to_have_attribute("data-state", "open")
    return page.url.rsplit("/", 2)[1]


def enter_card(page: Page, number: str) -> None:
    """Type a card into localstripe's stand-in of Stripe's card field."""
    card = page.locator("#card")
    for field, value in (("number", number), ("exp_month", "12"), ("exp_year", "30"), ("cvc", "123")):
        card.locator(f"input[placeholder={field}]").fill(value)


def assert_plain(page: Page, lang: str) -> None:
    """The page's own words (the card field aside): no internal words, the amount as
    people of ``lang`` write it, nothing wider than the screen."""
    text = page.evaluate(
        "() => { const main = document.querySelector('main').cloneNode(true);"
        " main.querySelector('#card').remove(); return main.innerText; }"
    )
    assert not INTERNAL.search(text), (lang, text)
    amount = {"en": "NOK500.00", "nb": "500,00 kr", "de": "500,00 NOK", "nl": "NOK 500,00"}[lang]
    assert amount.replace(" ", "\xa0") in text or amount in text, (lang, text)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), lang


def assert_accessible_page(page: Page, label: str) -> None:
    """axe (WCAG 2.1 A/AA, serious and critical) on the page, the provider's card field aside."""
    found = [
        {**v, "nodes": [n for n in v["nodes"] if not n["target"].startswith("#card ")]} for v in axe_violations(page)
    ]
    found = [v for v in found if v["nodes"]]
    assert not found, f"{label}:\n" + describe(found)


def test_a_visitor_pays_in_chromium_and_the_owner_refunds(payments: Payments, browser: Browser) -> None:  # noqa: F811
    p = payments
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    slug, _owner_api = signup(p)
    owner_email = f"owner@{slug}.example"

    # The payment page in every language, on a phone-wide screen: plain words, the amount
    # as the language writes it, axe clean.
    for lang in LOCALES:
        context = new_context(browser, p.region, lang, viewport=NARROW)
        page, watch = new_page(context)
        join(page, slug, f"Kari {lang}")
        expect(page.locator("h1")).to_have_text(tr(lang, "Pay the fee"))
        assert_plain(page, lang)
        assert_accessible_page(page, f"payment page [{lang}]")
        page.screenshot(path=str(SHOTS / f"payment-{lang}.png"), full_page=True)
        # The page loads from the region and from the configured Stripe host only.
        foreign = [u for u in watch.foreign_requests(p.region) if not u.startswith(p.stripe)]
        assert not foreign, foreign
        watch.assert_no_script_errors()
        context.close()

    # The owner's dashboard (the room is the owner's own).
    doctor_context = new_context(browser, p.region, "en")
    doctor, doctor_watch = new_page(doctor_context)
    doctor.goto("/login")
    doctor.get_by_label("E-mail address").fill(owner_email)
    doctor.get_by_label("Password").fill(PASSWORD)
    doctor.get_by_role("button", name="Log in").click()
    doctor.wait_for_url(f"**/{slug}/portal")
    expect(doctor.locator("#live")).to_have_text("live")

    # A declined card: a plain message, nothing on the waiting list; then a good card.
    context = new_context(browser, p.region, "en")
    visitor, watch = new_page(context)
    visit_id = join(visitor, slug, "Ada Lovelace")
    enter_card(visitor, "4000000000000341")
    visitor.get_by_label("E-mail for the receipt").fill("ada@example.org")
    visitor.get_by_role("button", name=re.compile(r"^Pay ")).click()
    message = visitor.locator("#message")
    expect(message).to_have_text(
        "Your card was declined or its check failed. Nothing was charged. You can try again with this or another card."
    )
    expect(visitor.locator("main")).to_have_attribute("data-state", "declined")
    visitor.screenshot(path=str(SHOTS / "payment-declined-en.png"), full_page=True)
    assert visit_status(p, visit_id) == "checking_in"
    expect(doctor.locator("#waiting-empty")).to_be_visible()

    enter_card(visitor, "4242424242424242")
    visitor.get_by_role("button", name=re.compile(r"^Pay ")).click()
    visitor.wait_for_url(re.compile(rf"/visits/{visit_id}$"))
    expect(visitor.locator("#continue")).to_be_visible()
    assert visit_status(p, visit_id) == "waiting"
    watch.assert_no_script_errors(allow=("Failed to load resource",))

    # The expert sees them paid: the card's brand and last four digits only.
    waiting = doctor.locator("#waiting li", has_text="Ada Lovelace")
    expect(waiting.locator(".payment")).to_have_text("Paid · Visa •••• 4242")
    assert "4242424242424242" not in doctor.content()
    doctor.screenshot(path=str(SHOTS / "dashboard-paid-en.png"), full_page=True)

    # 3-D Secure: the bank's check (localstripe's dialog) in the page, then the waiting room.
    context3 = new_context(browser, p.region, "en")
    secure, secure_watch = new_page(context3)
    secure_id = join(secure, slug, "Grace Hopper")
    enter_card(secure, "4000002760003184")
    secure.get_by_role("button", name=re.compile(r"^Pay ")).click()
    expect(message := secure.locator("#message")).to_have_text("Your bank asks you to confirm the payment.")
    secure.get_by_role("button", name="Complete authentication").click()
    secure.wait_for_url(re.compile(rf"/visits/{secure_id}$"))
    assert visit_status(p, secure_id) == "waiting" and message is not None
    expect(doctor.locator("#waiting li", has_text="Grace Hopper").locator(".payment")).to_have_text(
        "Paid · Visa •••• 3184"
    )
    secure_watch.assert_no_script_errors(allow=("Failed to load resource",))

    # The owner lets Ada in; her call is on today's list, paid; the owner refunds it.
    doctor.locator("#waiting li", has_text="Ada Lovelace").get_by_role("button", name="Admit Ada Lovelace").click()
    doctor.wait_for_url(re.compile(rf"/{slug}/calls/[0-9a-f-]{{36}}$"))
    doctor.goto(f"/{slug}/portal")
    row = doctor.locator("#calls tbody tr", has_text="Ada Lovelace")
    expect(row.locator(".payment")).to_contain_text("Paid · Visa •••• 4242")
    refund = row.get_by_role("button", name="Refund the fee of Ada Lovelace")
    doctor.once("dialog", lambda dialog: dialog.dismiss())
    refund.click()
    assert (
        db(p, "SELECT refunded_at FROM payment_record WHERE visit_id = $1", uuid.UUID(visit_id))[0]["refunded_at"]
        is None
    )
    doctor.once("dialog", lambda dialog: dialog.accept())
    refund.click()
    expect(doctor.locator("#calls-status")).to_have_text("Refunded. The money goes back to the card within a few days.")
    expect(doctor.locator("#calls tbody tr", has_text="Ada Lovelace").locator(".payment")).to_have_text(
        "Refunded · Visa •••• 4242"
    )
    expect(doctor.locator("#calls tbody tr", has_text="Ada Lovelace").get_by_role("button")).to_have_count(0)
    doctor.screenshot(path=str(SHOTS / "dashboard-refunded-en.png"), full_page=True)
    record = db(p, "SELECT refunded_minor FROM payment_record WHERE visit_id = $1", uuid.UUID(visit_id))[0]
    assert record["refunded_minor"] == 50000
    logged = db(
        p,
        "SELECT count(*) AS n FROM access_log_entry WHERE object_type = 'payment_record' AND action = 'update'",
    )
    assert logged and logged[0]["n"] >= 1
    doctor_watch.assert_no_script_errors()


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_a_refused_receipt_address_is_named_not_the_card(payments: Payments, browser: Browser, lang: str) -> None:  # noqa: F811
    p = payments
    slug, _owner_api = signup(p)
    context = new_context(browser, p.region, lang)
    visitor, watch = new_page(context)
    visit_id = join(visitor, slug, "Kari Nordmann")
    enter_card(visitor, "4242424242424242")
    # Taken by the browser's own e-mail check, refused by the region's (no dot in its domain).
    visitor.locator("#email").fill("kari@example")
    visitor.locator("#pay").click()
    expect(visitor.locator("#message")).to_have_text(
        tr(lang, "Please check the e-mail address for the receipt. Nothing was charged.")
    )
    expect(visitor.locator("#email")).to_be_focused()
    assert visit_status(p, visit_id) == "checking_in"
    assert db(p, "SELECT id FROM payment_record WHERE visit_id = $1", uuid.UUID(visit_id)) == []
    # The address put right, the same card pays.
    visitor.locator("#email").fill("kari@example.no")
    visitor.locator("#pay").click()
    visitor.wait_for_url(re.compile(rf"/visits/{visit_id}$"))
    assert visit_status(p, visit_id) == "waiting"
    watch.assert_no_script_errors(allow=("Failed to load resource",))
    context.close()
