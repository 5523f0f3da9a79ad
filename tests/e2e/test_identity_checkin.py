"""The national eID check of a room's visitors, end to end: the EU region of the test
stack checks eIDs through a real OpenID Connect provider run by node and configured like
Criipto Verify (tests/oidc_support.py). A visitor goes from the join form through the
identity page to the provider and back onto the waiting list; the expert sees the
verified name and the national ID number masked, reveals it (access-logged as a
reveal), and Konsil's support never gets it. A forged token, another audience, an
expired token, a replayed state, another browser and a provider that does not answer
each end on a clear page, with nothing stored and the visit still checking in."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from konsil.platform.core import errors
from konsil.regions import container
from konsil.regions.container import build_region
from konsil.regions.tables import REGION_TABLES
from konsil.tenants.actors import Actor
from konsil.tenants.identity import store
from tests.conftest import Stack, bindings_restored, fetch
from tests.oidc_support import OidcProvider, follow_to_callback

pytestmark = pytest.mark.e2e
NATIONAL_ID = "17029012345"


@pytest.fixture
def practice(stack: Stack) -> dict[str, Any]:
    made = stack.signup("eu")
    owner = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    room = owner.post(
        f"/api/v1/orgs/{made['slug']}/rooms",
        json={"slug": "eid", "title": "Checked", "identity_check": "no_bankid"},
    )
    assert room.status_code == 201, room.text
    return {**made, "client": owner}


@pytest.fixture
def oidc(stack: Stack) -> Any:
    assert stack.oidc is not None
    stack.oidc.mode("normal")
    yield stack.oidc
    stack.oidc.mode("normal")


async def arrive(stack: Stack, slug: str) -> tuple[httpx.AsyncClient, str]:
    """A visitor's browser that filled in the join form: its client and the visit's path."""
    browser = httpx.AsyncClient(base_url=stack.region_url("eu"), timeout=30)
    arrived = await browser.post(f"/{slug}/eid/visits", data={"name": "Kari", "consent": "yes"})
    assert arrived.status_code == 303, arrived.text
    return browser, arrived.headers["location"]


async def to_provider(stack: Stack, browser: httpx.AsyncClient, visit_path: str) -> dict[str, str]:
    """The visitor starts the check and logs in at the provider: the answer it brings back."""
    page = await browser.get(f"{visit_path}/identity")
    assert page.status_code == 200 and "Norwegian BankID" in page.text
    started = await browser.get(f"{visit_path}/identity/start")
    assert started.status_code == 303, started.text
    assert started.headers["location"].startswith(stack.oidc.issuer)  # type: ignore[union-attr]
    callback = f"{stack.region_url('eu')}/identity/callback"
    return await asyncio.to_thread(follow_to_callback, started.headers["location"], callback)


async def stored(stack: Stack, visit_path: str) -> tuple[str, int]:
    visit_id = uuid.UUID(visit_path.rsplit("/", 1)[1])
    [visit] = await fetch(stack.dsns["eu"], "SELECT status FROM visit WHERE id = $1", visit_id)
    [count] = await fetch(stack.dsns["eu"], "SELECT count(*) AS n FROM visit_identity WHERE visit_id = $1", visit_id)
    return visit["status"], count["n"]


async def test_a_visitor_confirms_who_they_are_and_the_expert_sees_it_masked(
    stack: Stack, practice: dict[str, Any], oidc: OidcProvider
) -> None:
    slug, owner = practice["slug"], practice["client"]
    browser, visit_path = await arrive(stack, slug)
    visit_id = uuid.UUID(visit_path.rsplit("/", 1)[1])
    assert (await browser.get(visit_path)).headers["location"] == f"{visit_path}/identity"
    answer = await to_provider(stack, browser, visit_path)
    back = await browser.get("/identity/callback", params=answer)
    assert back.status_code == 303 and back.headers["location"] == visit_path
    assert (await browser.get(visit_path)).status_code == 200, "past check-in: the visit's own page"
    assert await stored(stack, visit_path) == ("waiting", 1)
    sealed = await fetch(stack.dsns["eu"], "SELECT national_id, verified_name FROM visit_identity")
    assert all(NATIONAL_ID not in row["national_id"] and "Nordmann" not in row["verified_name"] for row in sealed)

    waiting = await asyncio.to_thread(owner.get, f"/api/v1/orgs/{slug}/visits/waiting")
    [shown] = [v for v in waiting.json() if v["id"] == str(visit_id)]
    assert shown["identity"]["eid_label"] == "BankID (NO)"
    assert shown["identity"]["verified_name"] == "Kari Nordmann"
    assert shown["identity"]["national_id_masked"] == "17•••••••45"
    assert NATIONAL_ID not in waiting.text
    revealed = await asyncio.to_thread(owner.post, f"/api/v1/orgs/{slug}/visits/{visit_id}/identity/reveal")
    assert revealed.status_code == 200 and revealed.json() == {"national_id": NATIONAL_ID}
    assert revealed.headers["cache-control"] == "no-store"
    logged = await fetch(
        stack.dsns["eu"],
        "SELECT action, object_type, outcome, purpose FROM access_log_entry WHERE subject_ref = $1 ORDER BY seq",
        f"visit:{visit_id}",
    )
    kinds = {(e["action"], e["object_type"], e["outcome"]) for e in logged}
    assert {("create", "visit_identity", "success"), ("read", "visit_identity", "success")} <= kinds
    [reveal] = [e for e in logged if e["object_type"] == "national_id"]
    assert reveal["action"] == "read" and reveal["outcome"] == "success" and "reveal" in reveal["purpose"]

    # An auditor is refused (and that is logged); an expert of another room finds no such visit.
    base = stack.region_url("eu")
    auditor = await asyncio.to_thread(stack.add_member, owner, slug, "auditor")
    as_auditor = await asyncio.to_thread(stack.login, base, slug, auditor["email"])
    reveal_path = f"/api/v1/orgs/{slug}/visits/{visit_id}/identity/reveal"
    assert (await asyncio.to_thread(as_auditor.post, reveal_path)).status_code == 403
    expert = await asyncio.to_thread(stack.add_member, owner, slug, "expert")
    as_expert = await asyncio.to_thread(stack.login, base, slug, expert["email"])
    assert (await asyncio.to_thread(as_expert.post, reveal_path)).status_code == 404
    auditor_refused = await fetch(
        stack.dsns["eu"],
        "SELECT count(*) AS n FROM access_log_entry WHERE object_type = 'national_id' AND outcome = 'denied'"
        " AND object_id = $1",
        str(visit_id),
    )
    assert auditor_refused[0]["n"] >= 1

    # The same answer again (its state cookie is gone): a clear page, nothing changes.
    again = await browser.get("/identity/callback", params=answer)
    assert again.status_code == 400 and "Please start it again" in again.text
    assert await stored(stack, visit_path) == ("waiting", 1)

    # Konsil's support never gets it, masked or not, and the attempt is logged as refused.
    region = stack.settings.for_region("eu").region("eu")
    with bindings_restored(REGION_TABLES):
        ctx = build_region(stack.settings, region, service_name="cli")
        await container.start(ctx)
        try:
            [row] = await fetch(stack.dsns["eu"], "SELECT org_id FROM visit WHERE id = $1", visit_id)
            org_id = row["org_id"]
            support = Actor("staff:alice", "support", "staff:alice", "127.0.0.1", "support ticket")
            with pytest.raises(errors.AppError) as refused:
                await store.reveal(ctx, support, org_id, visit_id, uuid.uuid4(), "support")
            assert refused.value.status == 403
            assert await store.shown(ctx, support, org_id, [visit_id]) == {}
        finally:
            await container.stop(ctx)
    denied = await fetch(
        stack.dsns["eu"],
        "SELECT object_type FROM access_log_entry WHERE subject_ref = $1 AND outcome = 'denied' AND actor = $2",
        f"visit:{visit_id}",
        "staff:alice",
    )
    assert sorted(e["object_type"] for e in denied) == ["national_id", "visit_identity"]


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("forge", "We could not confirm your identity"),
        ("audience", "We could not confirm your identity"),
        ("expired", "We could not confirm your identity"),
    ],
)
async def test_an_untrustworthy_token_stores_nothing(
    stack: Stack, practice: dict[str, Any], oidc: OidcProvider, mode: str, words: str
) -> None:
    browser, visit_path = await arrive(stack, practice["slug"])
    answer = await to_provider(stack, browser, visit_path)
    oidc.mode(mode)
    back = await browser.get("/identity/callback", params=answer)
    assert back.status_code == 400 and words in back.text
    assert 'id="identity-start"' in back.text and "Try again" in back.text
    assert NATIONAL_ID not in back.text and "Nordmann" not in back.text
    assert await stored(stack, visit_path) == ("checking_in", 0)
    # Trying again with a token the provider signed properly works.
    oidc.mode("normal")
    answer = await to_provider(stack, browser, visit_path)
    assert (await browser.get("/identity/callback", params=answer)).headers["location"] == visit_path
    assert await stored(stack, visit_path) == ("waiting", 1)


async def test_a_replayed_state_another_browser_and_a_silent_provider(
    stack: Stack, practice: dict[str, Any], oidc: OidcProvider
) -> None:
    browser, visit_path = await arrive(stack, practice["slug"])
    # Another browser brings the answer back (no state cookie): not taken, and the
    # attempt stays usable for the browser that started it.
    answer = await to_provider(stack, browser, visit_path)
    stranger = httpx.AsyncClient(base_url=stack.region_url("eu"), timeout=30)
    elsewhere = await stranger.get("/identity/callback", params=answer)
    assert elsewhere.status_code == 400 and "in the browser where you filled in the form" in elsewhere.text
    assert "Error code" not in elsewhere.text
    # The provider does not answer the code exchange in time (the region waits 2 s).
    oidc.mode("slow")
    silent = await browser.get("/identity/callback", params=answer)
    assert silent.status_code == 503 and "The identity service did not answer" in silent.text
    assert await stored(stack, visit_path) == ("checking_in", 0)
    # The same state again: used up.
    oidc.mode("normal")
    replayed = await browser.get("/identity/callback", params=answer)
    assert replayed.status_code == 400 and "already used" in replayed.text
    assert await stored(stack, visit_path) == ("checking_in", 0)
    # The visitor stops at the provider.
    await browser.get(f"{visit_path}/identity/start")
    cancelled = await browser.get(
        "/identity/callback", params={"error": "access_denied", "state": browser.cookies.get("konsil_eid_state", "")}
    )
    assert cancelled.status_code == 400 and "stopped before it was finished" in cancelled.text
    # An answer with a state nobody issued.
    lost = await stranger.get("/identity/callback", params={"code": "x", "state": "nobody-issued-this"})
    assert lost.status_code == 400 and "could not match" in lost.text
    # No internal code for the visitor to read; the page keeps it for support and tests.
    assert "Error code" not in lost.text and 'data-status="400"' in lost.text
    # And trying again works.
    answer = await to_provider(stack, browser, visit_path)
    assert (await browser.get("/identity/callback", params=answer)).headers["location"] == visit_path
    assert await stored(stack, visit_path) == ("waiting", 1)


def test_a_region_without_an_eid_service_refuses_the_room_setting(stack: Stack) -> None:
    made = stack.signup("us")
    owner = stack.login(stack.region_url("us"), made["slug"], made["owner"]["email"])
    base = f"/api/v1/orgs/{made['slug']}/rooms"
    refused = owner.post(base, json={"slug": "eid", "title": "Checked", "identity_check": "se_bankid"})
    assert refused.status_code == 409 and "no national eID service" in refused.json()["message"], refused.text
    room = owner.post(base, json={"slug": "plain", "title": "Plain"})
    assert room.status_code == 201, room.text
    changed = owner.patch(f"{base}/{room.json()['id']}", json={"identity_check": "dk_mitid"})
    assert changed.status_code == 409, changed.text
