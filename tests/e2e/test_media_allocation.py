"""Relays allocated from the region's media-node registry: with no node a call is told
clearly that it cannot connect; a node agent's heartbeats make its relay the one a
call is given, with credentials bound to the call; another region never offers it;
a node that drains and leaves stops receiving calls."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint
from websockets.asyncio.client import connect

from konsil.media_nodes.receipts import ResidencyReceipt, signed_bytes
from konsil.platform.core.keys.region_signing import KeySet, Signature, verify
from tests.conftest import Stack, TurnClient, fetch, free_port, release_turn, wait_until
from tests.e2e.test_verifying_doc import run_verifying_doc

pytestmark = pytest.mark.e2e


async def joined_of_a_new_call(stack: Stack, region: str, practice: dict) -> dict:  # type: ignore[type-arg]
    """Post the join form, admit, and return the visitor's `joined` message."""
    base = stack.region_url(region)
    form = {"name": "Visitor", "consent": "yes"}
    visit = await asyncio.to_thread(httpx.post, f"{base}/{practice['slug']}/room/visits", data=form)
    assert visit.status_code == 303, visit.text
    visit_id = visit.headers["location"].rsplit("/", 1)[1]
    cookie = {"cookie": f"konsil_visit={visit.cookies['konsil_visit']}"}
    ws = base.replace("http", "ws") + visit.headers["location"] + "/ws"
    async with connect(ws, additional_headers=cookie) as socket:
        async with asyncio.timeout(20):
            while json.loads(await socket.recv())["type"] != "waiting":
                pass
            admit = practice["client"].post(f"/api/v1/orgs/{practice['slug']}/visits/{visit_id}/admit")
            assert admit.status_code == 200, admit.text
            while True:
                event = json.loads(await socket.recv())
                if event["type"] == "joined":
                    return {**event, "call_id": admit.json()["id"]}


def admit_refused(stack: Stack, region: str, practice: dict) -> str:  # type: ignore[type-arg]
    """Admitting a new visitor is refused with 503 (no relay): the visit keeps waiting."""
    base = stack.region_url(region)
    visit = httpx.post(f"{base}/{practice['slug']}/room/visits", data={"name": "Visitor", "consent": "yes"})
    assert visit.status_code == 303, visit.text
    visit_id = visit.headers["location"].rsplit("/", 1)[1]
    admit = practice["client"].post(f"/api/v1/orgs/{practice['slug']}/visits/{visit_id}/admit")
    assert admit.status_code == 503, admit.text
    waiting = practice["client"].get(f"/api/v1/orgs/{practice['slug']}/visits/waiting")
    assert visit_id in {v["id"] for v in waiting.json()}, "the visitor keeps waiting"
    return str(admit.json()["message"])


async def turn_allocate(port: int, username: str, password: str) -> bool:
    """A real TURN Allocate against a relay on loopback: does it accept the credentials?"""
    try:
        transport, client = await asyncio.wait_for(
            create_turn_endpoint(TurnClient, ("127.0.0.1", port), username, password, lifetime=60), 5
        )
    except TransactionFailed:  # the relay answered 401
        return False
    await release_turn(transport, client)
    return True


def practice_in(stack: Stack, region: str) -> dict:  # type: ignore[type-arg]
    made = stack.signup(region)
    client = stack.login(stack.region_url(region), made["slug"], made["owner"]["email"])
    assert client.post(f"/api/v1/orgs/{made['slug']}/rooms", json={"slug": "room", "title": "Room"}).status_code == 201
    return {"slug": made["slug"], "client": client}


def relay_urls(joined: dict) -> list[str]:  # type: ignore[type-arg]
    return [url for server in joined["ice_servers"] for url in server["urls"] if url.startswith("turn")]


def relay_status(ops_api: httpx.Client) -> str | None:
    """The node's status in the US region service's registry (its ops API), if listed."""
    listed = ops_api.get("/ops/v1/media-nodes/")
    assert listed.status_code == 200, listed.text
    return next((n["status"] for n in listed.json()["nodes"] if n["node_id"] == "us-relay-1"), None)


def test_calls_get_a_relay_of_their_own_region_only(stack: Stack, tmp_path: Path) -> None:
    us = practice_in(stack, "us")
    eu = practice_in(stack, "eu")
    refused = admit_refused(stack, "us", us)
    assert "no media relay is available in region us" in refused.lower() and "keeps waiting" in refused

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")}
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "konsil.platform.cli.main",
            "media-node",
            "run",
            "--region",
            "us",
            "--node-id",
            "us-relay-1",
            "--config",
            str(stack.run_dir / "region-us.toml"),
            "--public-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--listen-ip",
            "127.0.0.1",
            "--relay-ip",
            "127.0.0.1",
            "--min-port",
            "45000",
            "--max-port",
            "45099",
            "--heartbeat-seconds",
            "0.5",
            "--drain-timeout",
            "5",
        ],
        env=env,
        start_new_session=True,
    )
    try:
        ops_api = httpx.Client(
            base_url=stack.region_url("us"), headers={"authorization": f"Bearer {stack.ops_token}"}, timeout=30
        )
        wait_until(lambda: relay_status(ops_api) == "active", "the node's heartbeats to reach the registry", every=0.3)
        joined = asyncio.run(joined_of_a_new_call(stack, "us", us))
        assert relay_urls(joined) == [f"turn:127.0.0.1:{port}?transport=udp", f"turn:127.0.0.1:{port}?transport=tcp"]
        server = next(s for s in joined["ice_servers"] if s.get("username"))
        expiry, bound_to = server["username"].split(":", 1)
        assert bound_to == joined["call_id"] and int(expiry) > time.time()
        # The region and its node read the same TURN secret from the US Vault: the call's
        # credentials open an allocation on the node; on the EU region's relay they do not.
        assert asyncio.run(turn_allocate(port, server["username"], server["credential"]))
        assert not asyncio.run(turn_allocate(stack.turn["port"], server["username"], server["credential"]))
        assert joined["relay_only"] is True and joined["notice"] is None
        # The call's residency receipt names the region and the relay, signed by the region.
        receipt = us["client"].get(f"/api/v1/orgs/{us['slug']}/calls/{joined['call_id']}/receipt").json()
        assert receipt["valid"] is True and receipt["status"] == "valid"
        assert receipt["receipt"]["region"] == "us" and receipt["receipt"]["relays"] == ["us-relay-1"]
        # Checked with the region's published key set alone, as docs/verifying.md shows.
        key_set = msgspec.convert(httpx.get(f"{stack.region_url('us')}/.well-known/konsil/keys").json(), KeySet)
        body = ResidencyReceipt(**receipt["receipt"])
        signature = msgspec.convert(receipt["signature"], Signature)
        assert verify(key_set, signed_bytes(body), signature)
        forged = ResidencyReceipt(**{**receipt["receipt"], "region": "eu"})
        assert not verify(key_set, signed_bytes(forged), signature), "a changed receipt fails its signature"
        run_verifying_doc(receipt, stack.region_url("us"), tmp_path)
        log = asyncio.run(
            fetch(
                stack.dsns["us"],
                "SELECT object_type FROM access_log_entry WHERE object_type = "
                "'residency_receipt' AND org_id = (SELECT id FROM organisation WHERE slug = $1)",
                us["slug"],
            )
        )
        assert log, "the access log references the receipt"
        # The EU region is never offered the US node.
        eu_joined = asyncio.run(joined_of_a_new_call(stack, "eu", eu))
        assert all(str(port) not in url for url in relay_urls(eu_joined))
        # Ops cordon the node: new calls get no relay; uncordoned, they do again.
        ops = [sys.executable, "-m", "konsil.platform.cli.main", "media-nodes"]
        config = ["--region", "us", "--config", str(stack.run_dir / "region-us.toml")]

        # The command knows the nodes the region service has written to its database (its
        # registry is written every 2 s; on a busy machine the first write can come later).
        def node_written() -> bool:
            sql = "SELECT node_id FROM media_node WHERE node_id = 'us-relay-1'"
            return bool(asyncio.run(fetch(stack.dsns["us"], sql)))

        wait_until(node_written, "the region to write the node to its database", within=30)
        done = subprocess.run(
            [*ops, "cordon", "us-relay-1", "--reason", "kernel update", *config],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0 and "cordoned" in done.stdout, done.stderr
        listed = subprocess.run([*ops, "cordons", *config], capture_output=True, text=True, env=env, check=False)
        assert "us-relay-1" in listed.stdout and "kernel update" in listed.stdout
        # The command writes the region DB; the region service's registry follows it (it
        # re-reads the cordons every 2 s) and its ops API shows the registry's state.
        wait_until(lambda: relay_status(ops_api) == "cordoned", "the region service to follow the cordon")
        assert "no media relay" in admit_refused(stack, "us", us).lower()
        subprocess.run([*ops, "uncordon", "us-relay-1", *config], check=True, env=env, timeout=60, capture_output=True)
        wait_until(lambda: relay_status(ops_api) == "active", "the region service to follow the uncordon")
        assert relay_urls(asyncio.run(joined_of_a_new_call(stack, "us", us)))
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0, "the agent drains and leaves cleanly"
    # After "leaving", new calls get no relay (and are told so), never another region's.
    assert "no media relay" in admit_refused(stack, "us", us).lower()
