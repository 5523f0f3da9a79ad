"""Two replicas of the EU region service on the same database: a visitor on one and
the expert on the other still meet — the dashboard hears the arrival, and signaling
crosses replicas through the PostgreSQL-backed channels."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pytest
from websockets.asyncio.client import connect

from konsil.platform.cli.launcher import stop_processes, wait_healthy
from tests.conftest import Stack, free_port

pytestmark = pytest.mark.e2e


async def next_of(ws, wanted: str, within: float = 20) -> dict:  # type: ignore[no-untyped-def,type-arg]
    async with asyncio.timeout(within):
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == wanted:
                return event  # type: ignore[no-any-return]


def test_a_call_across_two_replicas(stack: Stack) -> None:
    port = free_port()
    replica_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")}
    env |= {"KONSIL_REGIONS__EU__LISTEN": f"127.0.0.1:{port}", "KONSIL_REGIONS__EU__PUBLIC_URL": replica_url}
    config = stack.run_dir / "region-eu.toml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "konsil.platform.cli.main", "serve", "region", "--config", str(config)],
        env=env,
        start_new_session=True,
    )
    try:
        wait_healthy({"replica": replica_url}, {"replica": proc})
        asyncio.run(_call_across(stack, stack.region_url("eu"), replica_url))
    finally:
        stop_processes({"replica": proc})


async def _call_across(stack: Stack, a: str, b: str) -> None:
    made = stack.signup("eu")
    slug = made["slug"]
    owner = stack.login(a, slug, made["owner"]["email"])
    expert = stack.add_member(owner, slug, "expert")
    as_expert = stack.login(b, slug, expert["email"])  # the expert works on replica B
    room = as_expert.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "room", "title": "Room"}).json()
    session = {"cookie": f"konsil_session={as_expert.cookies['konsil_session']}"}
    ws_b = b.replace("http", "ws")
    async with connect(f"{ws_b}/{slug}/portal/ws", additional_headers=session) as dashboard:
        await next_of(dashboard, "ready")
        form = {"name": "Kari", "consent": "yes"}
        joined = await asyncio.to_thread(httpx.post, f"{a}/{slug}/room/visits", data=form)  # on replica A
        assert joined.status_code == 303
        event = await next_of(dashboard, "waiting-changed")
        assert event["room_id"] == room["id"]
    visit_path = joined.headers["location"]
    visit_cookie = {"cookie": f"konsil_visit={joined.cookies['konsil_visit']}"}
    ws_a = a.replace("http", "ws")
    async with connect(f"{ws_a}{visit_path}/ws", additional_headers=visit_cookie) as visitor:
        await next_of(visitor, "waiting")
        call = as_expert.post(f"/api/v1/orgs/{slug}/visits/{visit_path.rsplit('/', 1)[1]}/admit").json()
        joined_event = await next_of(visitor, "joined")
        assert joined_event["call_id"] == call["id"]
        async with connect(f"{ws_b}/{slug}/calls/{call['id']}/ws", additional_headers=session) as expert_ws:
            await next_of(expert_ws, "joined")
            await next_of(visitor, "hello")  # the expert, on replica B, reached the visitor on A
            await visitor.send(json.dumps({"type": "offer", "sdp": "v=0 offer-from-replica-a"}))
            offer = await next_of(expert_ws, "offer")
            assert offer == {"type": "offer", "sdp": "v=0 offer-from-replica-a", "from": "visitor"}
            await expert_ws.send(json.dumps({"type": "answer", "sdp": "v=0 answer-from-replica-b"}))
            assert (await next_of(visitor, "answer"))["sdp"] == "v=0 answer-from-replica-b"
            await expert_ws.send(json.dumps({"type": "hangup"}))
            await next_of(visitor, "ended")
