"""Rate limits of the tenant side (issue 11): failed logins per account and per address,
the visitor's join form per address and per room, invitations per organisation. Each
answers 429 with Retry-After; the pages show a human message, not JSON.

Limits per account and per organisation are hit on the running stack with their real
numbers. Limits per address are hit in an in-process region app (the stack's database
and key service, its own client address) with small limits in its settings, so that the
stack's other tests, all calling from 127.0.0.1, are not locked out.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from konsil.platform.core.settings import RegionLimits
from konsil.regions.app import create_region_app
from konsil.regions.tables import REGION_TABLES
from tests.conftest import Stack, bindings_restored

pytestmark = pytest.mark.e2e
DEFAULTS = RegionLimits()


def retry_after(response: httpx.Response, at_most: float) -> int:
    assert response.status_code == 429, response.text
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= at_most
    return wait


def test_failed_logins_lock_the_account_for_a_while(stack: Stack) -> None:
    org = stack.signup("eu")
    owner = stack.login(stack.region_url("eu"), org["slug"], org["owner"]["email"])
    member = stack.add_member(owner, org["slug"], "expert")
    login = f"{stack.region_url('eu')}/api/v1/orgs/{org['slug']}/auth/login"
    for _ in range(DEFAULTS.login_failures_per_account_15_minutes):
        wrong = httpx.post(login, json={"email": member["email"], "password": "not the password"})
        assert wrong.status_code == 401, wrong.text
    # The right password too now waits: the account is locked, whoever asks.
    locked = httpx.post(login, json={"email": member["email"].upper(), "password": member["password"]})
    retry_after(locked, 15 * 60)
    assert locked.json()["error"] == "too_many_requests"
    # Another account from the same address is not affected.
    assert stack.login(stack.region_url("eu"), org["slug"], org["owner"]["email"])


def test_invitations_are_limited_per_organisation(stack: Stack) -> None:
    # The limiter counts per minute of the machine's monotonic clock and estimates a sliding
    # window from this minute's and the last minute's counts: a burst that crosses into a
    # new minute is counted partly at a discount, and may pass a few more. So the burst
    # starts early in a minute, and is tried again (another organisation) if it still
    # crossed one; a burst inside one minute must end in a 429.
    for _attempt in range(3):
        org = stack.signup("eu")
        owner = stack.login(stack.region_url("eu"), org["slug"], org["owner"]["email"])
        path = f"/api/v1/orgs/{org['slug']}/members"
        if time.monotonic() % 60 > 20:
            time.sleep(60 - time.monotonic() % 60)
        started = time.monotonic()
        for number in range(DEFAULTS.invitations_per_organisation_minute):
            body = {"name": f"Member {number}", "email": f"m{number}@{org['slug']}.example", "role": "expert"}
            assert owner.post(path, json=body).status_code == 201
        over = owner.post(path, json={"name": "One More", "email": f"more@{org['slug']}.example", "role": "expert"})
        if over.status_code == 429 or int(started // 60) == int(time.monotonic() // 60):
            break
        print(f"the invitations took {time.monotonic() - started:.0f} s and crossed into a new minute: again")
    else:
        pytest.fail("three times the invitations crossed into a new minute of the limiter")
    retry_after(over, 60)
    listed = owner.get(path).json()
    assert len(listed) == DEFAULTS.invitations_per_organisation_minute + 1, "the refused one was not added"
    # Another organisation invites as usual.
    other = stack.signup("eu")
    other_owner = stack.login(stack.region_url("eu"), other["slug"], other["owner"]["email"])
    body = {"name": "First", "email": f"first@{other['slug']}.example", "role": "expert"}
    assert other_owner.post(f"/api/v1/orgs/{other['slug']}/members", json=body).status_code == 201


@pytest.fixture
async def region(stack: Stack) -> AsyncIterator[AsyncTestClient[Any]]:
    """The EU region app in this process, with small limits per address and room (settings)."""
    small = RegionLimits(login_failures_per_address_minute=3, joins_per_address_minute=3, joins_per_room_minute=2)
    settings = stack.settings.for_region("eu")
    settings = msgspec.structs.replace(settings, regions=[msgspec.structs.replace(settings.regions[0], limits=small)])
    with bindings_restored(REGION_TABLES):
        async with AsyncTestClient(create_region_app(settings)) as client:
            yield client


async def test_failed_logins_are_limited_per_address_on_the_api_and_the_page(
    stack: Stack, region: AsyncTestClient[Any]
) -> None:
    for number in range(3):  # three different accounts, one address
        wrong = await region.post("/api/v1/login", json={"email": f"guess{number}@x.example", "password": "guess"})
        assert wrong.status_code == 401, wrong.text
    over = await region.post("/api/v1/login", json={"email": "guess9@x.example", "password": "guess"})
    retry_after(over, 60)
    page = await region.get("/login")
    match = re.search(r'name="_csrf" value="([^"]+)"', page.text)
    assert match is not None
    form = {"email": "guess@x.example", "password": "guess", "_csrf": match.group(1)}
    refused = await region.post("/login", data=form)
    retry_after(refused, 60)
    assert refused.headers["content-type"].startswith("text/html")
    assert "Too many attempts. Please wait" in refused.text and "too_many_requests" not in refused.text


async def test_the_visitor_form_is_limited_per_room_and_per_address(stack: Stack, region: AsyncTestClient[Any]) -> None:
    org = stack.signup("eu")
    owner = stack.login(stack.region_url("eu"), org["slug"], org["owner"]["email"])
    rooms = []
    for _ in range(2):
        made = owner.post(f"/api/v1/orgs/{org['slug']}/rooms", json={"slug": stack.unique("r"), "title": "Room"})
        assert made.status_code == 201, made.text
        rooms.append(made.json()["slug"])
    form = {"name": "Visitor", "consent": "yes"}
    first, second = (f"/{org['slug']}/{room}/visits" for room in rooms)
    for _ in range(2):
        assert (await region.post(first, data=form, follow_redirects=False)).status_code == 303
    full = await region.post(first, data=form, follow_redirects=False)
    retry_after(full, 60)
    assert full.headers["content-type"].startswith("text/html")
    assert "Please wait" in full.text and "send the form again" in full.text
    # Another room takes the address's third join; the fourth is over the address's limit.
    assert (await region.post(second, data=form, follow_redirects=False)).status_code == 303
    retry_after(await region.post(second, data=form, follow_redirects=False), 60)
    waiting = owner.get(f"/api/v1/orgs/{org['slug']}/visits/waiting").json()
    assert len(waiting) == 3, "refused joins stored nothing"
