"""A waiting visitor who closes the page: the expert's waiting list shows them as away
(live), a reconnect clears it, and after ten minutes away the visit counts as left.
Against the running EU region, sockets driven by hand."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from tests.conftest import Stack, fetch, wait_until_async
from tests.e2e.test_signaling_input import Practice, arrive, practice, receive, socket

pytestmark = pytest.mark.e2e


async def waiting(p: Practice) -> list[dict[str, Any]]:
    response = await p.expert.get(f"/api/v1/orgs/{p.slug}/visits/waiting")
    assert response.status_code == 200, response.text
    return list(response.json())


async def away_since(p: Practice, visit_id: uuid.UUID) -> str | None:
    """The visit's ``away_since`` as the waiting list shows it."""
    [entry] = [w for w in await waiting(p) if w["id"] == str(visit_id)]
    since: str | None = entry["away_since"]
    return since


async def test_a_visitor_who_closes_the_page_is_shown_away_then_left(stack: Stack) -> None:
    async with practice(stack) as p:
        visitor = await arrive(p)
        dashboard_path = f"/{p.slug}/portal/ws"
        async with socket(p.base, dashboard_path, konsil_session=p.session) as dashboard:
            assert (await receive(dashboard))["type"] == "ready"
            async with socket(p.base, f"{visitor.path}/ws", konsil_visit=visitor.token) as page:
                assert (await receive(page))["type"] == "waiting"
                assert await away_since(p, visitor.visit_id) is None, "connected"
            # The page closed: the dashboard hears of it and the list says since when.
            assert (await receive(dashboard))["type"] == "waiting-changed"
            # The server marks a closed socket just after it closed.
            since = await wait_until_async(lambda: away_since(p, visitor.visit_id), "the visitor to show away")
            assert dt.datetime.fromisoformat(since) <= dt.datetime.now(dt.UTC)

            async with socket(p.base, f"{visitor.path}/ws", konsil_visit=visitor.token) as page:
                assert (await receive(page))["type"] == "waiting"
                assert await away_since(p, visitor.visit_id) is None, "back again"
                assert (await receive(dashboard))["type"] == "waiting-changed"

        # Away for longer than ten minutes: no longer waiting, the visit has been left.
        await wait_until_async(lambda: away_since(p, visitor.visit_id), "the visitor to show away again")
        eleven_minutes_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=11)
        await fetch(
            stack.dsns["eu"], "UPDATE visit SET away_since = $1 WHERE id = $2", eleven_minutes_ago, visitor.visit_id
        )
        assert str(visitor.visit_id) not in [w["id"] for w in await waiting(p)]
        [row] = await fetch(stack.dsns["eu"], "SELECT status, ended_at FROM visit WHERE id = $1", visitor.visit_id)
        assert row["status"] == "left" and row["ended_at"] is not None
        async with socket(p.base, f"{visitor.path}/ws", konsil_visit=visitor.token) as page:
            assert (await receive(page))["type"] == "ended", "coming back too late ends the visit"


async def test_a_visitor_who_leaves_or_is_admitted_is_never_marked_away(stack: Stack) -> None:
    async with practice(stack) as p:
        leaving, admitted = await arrive(p, "Lea Leaving"), await arrive(p, "Ada Admitted")
        async with socket(p.base, f"{leaving.path}/ws", konsil_visit=leaving.token) as page:
            assert (await receive(page))["type"] == "waiting"
            await page.send('{"type": "hangup"}')
            assert (await receive(page))["type"] == "ended"
        async with socket(p.base, f"{admitted.path}/ws", konsil_visit=admitted.token) as page:
            assert (await receive(page))["type"] == "waiting"
            call = await p.expert.post(f"/api/v1/orgs/{p.slug}/visits/{admitted.visit_id}/admit")
            assert call.status_code == 200, call.text
            assert (await receive(page, skip=("hello", "present")))["type"] == "joined"
        # Their pages' sockets closed; the server tears each down just after. A page that
        # opens and closes after theirs goes through the same teardown, on the same event
        # loop, begun later: once it has marked that visitor away, theirs have run. (A
        # sleep instead would let a mark that comes late pass unseen.)
        last = await arrive(p, "Lars Last")
        async with socket(p.base, f"{last.path}/ws", konsil_visit=last.token) as page:
            assert (await receive(page))["type"] == "waiting"
        await wait_until_async(lambda: away_since(p, last.visit_id), "the last page's teardown to mark it away")
        rows = await fetch(
            stack.dsns["eu"],
            "SELECT status, away_since FROM visit WHERE id = ANY($1::uuid[]) ORDER BY status",
            [leaving.visit_id, admitted.visit_id],
        )
        assert [(r["status"], r["away_since"]) for r in rows] == [("admitted", None), ("left", None)]
