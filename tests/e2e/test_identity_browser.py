"""The national eID check in the system Chromium: the visitor fills in the join form,
reads on the identity page which eID is asked and why, goes to the (local, Criipto-like)
OpenID Connect provider and back, and lands on the visit's own page; the expert's
dashboard shows the verified name with the national ID number masked until "Show
number" is pressed. The identity page passes axe and loads nothing from another host."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import Stack
from tests.e2e.browser_kit import assert_accessible, chromium, new_context, new_page

pytestmark = pytest.mark.e2e


def test_a_visitor_confirms_who_they_are_in_the_browser(stack: Stack) -> None:
    assert stack.oidc is not None
    stack.oidc.mode("normal")
    made = stack.signup("eu")
    slug, base = made["slug"], stack.region_url("eu")
    owner = stack.login(base, slug, made["owner"]["email"])
    room = owner.post(
        f"/api/v1/orgs/{slug}/rooms", json={"slug": "eid", "title": "Dr. Berg", "identity_check": "no_bankid"}
    )
    assert room.status_code == 201, room.text
    with chromium() as browser:
        visitor, watch = new_page(new_context(browser, base, "en"))
        visitor.goto(f"/{slug}/eid")
        visitor.get_by_label("Your name").fill("Kari")
        visitor.get_by_label("I agree").check()
        visitor.get_by_role("button", name="Continue").click()
        visitor.wait_for_url(re.compile(r"/visits/[0-9a-f-]{36}/identity$"))
        expect(visitor.get_by_role("heading", name="Confirm who you are")).to_be_visible()
        expect(visitor.locator("main")).to_contain_text("with Norwegian BankID before the consultation")
        assert_accessible(visitor, "identity page [en]")
        watch.assert_same_origin(base)
        watch.assert_no_script_errors()
        visitor.goto(visitor.url + "?lang=nb")
        expect(visitor.get_by_role("heading", name="Bekreft hvem du er")).to_be_visible()
        visitor.get_by_role("link", name="Fortsett med Norsk BankID").click()
        visitor.wait_for_url(re.compile(r"/visits/[0-9a-f-]{36}$"))
        expect(visitor.locator("main")).to_have_attribute("data-page", "visit")

        expert_context = new_context(
            browser, base, "en", cookies=[("konsil_session", owner.cookies["konsil_session"])], media=True
        )
        expert, _ = new_page(expert_context)
        expert.goto(f"/{slug}/portal")
        waiting = expert.locator("#waiting li", has_text="Kari Nordmann")
        expect(waiting).to_contain_text("Identity confirmed with BankID (NO):")
        expect(waiting).to_contain_text("17•••••••45")
        expect(waiting).not_to_contain_text("17029012345")
        waiting.get_by_role("button", name="Show the national identity number of Kari Nordmann").click()
        expect(waiting.locator(".national-id")).to_have_text("17029012345")
        expect(waiting).to_contain_text("(recorded in the access log)")  # the expert is told

        # The call page shows it the same way.
        waiting.get_by_role("button", name="Admit Kari").click()
        expert.wait_for_url(re.compile(rf"/{slug}/calls/[0-9a-f-]{{36}}$"))
        line = expert.locator("#call-identity")
        expect(line).to_contain_text("Kari Nordmann")
        expect(line.locator(".national-id")).to_have_text("17•••••••45")
        line.get_by_role("button", name="Show the national identity number of Kari Nordmann").click()
        expect(line.locator(".national-id")).to_have_text("17029012345")
        expect(line).to_contain_text("(recorded in the access log)")
