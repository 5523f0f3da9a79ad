"""Bad input on the signaling sockets, against the running EU region: every bad
message gets an error reply, the call goes on, and nothing bad is relayed or stored.
No media here: the sockets are driven by hand (tests/e2e/test_call_aiortc.py has
the real peers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket as pysocket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from konsil.tenants.visits import TELEMETRY_LIMITS
from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e

TIMEOUT = 20
# A participant's hello can reach a peer who joined just after it (the channel's
# delivery takes a while): hello and present may come in either order and number.
GREETINGS = ("hello", "present")
CANDIDATE = "candidate:1 1 udp 16777215 127.0.0.1 40000 typ relay raddr 0.0.0.0 rport 9"


# --- helpers (self-contained: each e2e module stands alone) --------------------------------


@dataclass
class Practice:
    base: str
    slug: str
    room: str
    room_id: str
    expert: httpx.AsyncClient  # session cookie kept, x-csrf-token sent
    session: str  # the expert's konsil_session cookie


async def login(base: str, slug: str, email: str, password: str) -> tuple[httpx.AsyncClient, str]:
    http = httpx.AsyncClient(base_url=base, timeout=30)
    response = await http.post(f"/api/v1/orgs/{slug}/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    http.headers["x-csrf-token"] = response.json()["csrf_token"]
    return http, response.cookies["konsil_session"]


@contextlib.asynccontextmanager
async def practice(stack: Stack) -> AsyncIterator[Practice]:
    """An EU organisation with an expert who opened a room."""
    made = stack.signup("eu")
    slug, base = made["slug"], stack.region_url("eu")
    owner, _ = await login(base, slug, made["owner"]["email"], made["owner"]["password"])
    email = f"{stack.unique('expert')}@members.example"
    invited = await owner.post(
        f"/api/v1/orgs/{slug}/members",
        json={"name": "Erik Expert", "email": email, "role": "expert", "password": "expert pw 123"},
    )
    assert invited.status_code == 201, invited.text
    await owner.aclose()
    expert, session = await login(base, slug, email, "expert pw 123")
    room = stack.unique("room")
    created = await expert.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": room, "title": "Sprechstunde"})
    assert created.status_code == 201, created.text
    try:
        yield Practice(base, slug, room, created.json()["id"], expert, session)
    finally:
        await expert.aclose()


@dataclass
class Visitor:
    visit_id: uuid.UUID
    path: str
    token: str


async def arrive(p: Practice, name: str = "Vera Visitor") -> Visitor:
    async with httpx.AsyncClient(base_url=p.base, timeout=30) as http:
        response = await http.post(f"/{p.slug}/{p.room}/visits", data={"name": name, "consent": "yes"})
    assert response.status_code == 303, response.text
    path = response.headers["location"]
    return Visitor(uuid.UUID(path.rsplit("/", 1)[1]), path, response.cookies["konsil_visit"])


@contextlib.asynccontextmanager
async def socket(base: str, path: str, origin: str | None = None, **cookies: str) -> AsyncIterator[ClientConnection]:
    headers = {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    if origin is not None:
        headers["origin"] = origin
    async with connect(base.replace("http://", "ws://", 1) + path, additional_headers=headers, open_timeout=10) as ws:
        yield ws


async def receive(ws: ClientConnection, within: float = TIMEOUT, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["type"] not in skip:
                return message


async def send(ws: ClientConnection, message: dict[str, Any] | str) -> None:
    await ws.send(message if isinstance(message, str) else json.dumps(message))


async def refused(base: str, path: str, origin: str | None = None, **cookies: str) -> str:
    try:
        async with socket(base, path, origin, **cookies) as ws:
            message = await receive(ws, within=10)
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"
    except ConnectionClosed as exc:
        return f"close {exc.rcvd.code if exc.rcvd else None}"
    raise AssertionError(f"the socket {path} opened and said {message}")


async def admit(p: Practice, visitor: Visitor) -> str:
    admitted = await p.expert.post(f"/api/v1/orgs/{p.slug}/visits/{visitor.visit_id}/admit")
    assert admitted.status_code == 200, admitted.text
    return str(admitted.json()["id"])


@dataclass
class Call:
    id: str
    visitor: Visitor
    visitor_ws: ClientConnection
    expert_ws: ClientConnection


@contextlib.asynccontextmanager
async def call(p: Practice) -> AsyncIterator[Call]:
    """A visitor admitted, both sockets joined."""
    visitor = await arrive(p)
    async with socket(p.base, f"{visitor.path}/ws", konsil_visit=visitor.token) as visitor_ws:
        assert await receive(visitor_ws) == {"type": "waiting"}
        call_id = await admit(p, visitor)
        assert (await receive(visitor_ws))["type"] == "joined"
        async with socket(p.base, f"/{p.slug}/calls/{call_id}/ws", konsil_session=p.session) as expert_ws:
            assert (await receive(expert_ws))["type"] == "joined"
            assert (await receive(visitor_ws)) == {"type": "hello", "from": "expert"}
            yield Call(call_id, visitor, visitor_ws, expert_ws)


async def relayed(sender: ClientConnection, receiver: ClientConnection, port: int) -> None:
    """A valid candidate from one side reaches the other as it was sent, with ``from``.
    Messages of one socket are handled in order, so this also means every message
    sent before it was dealt with."""
    message = {"type": "ice", "candidate": CANDIDATE.replace("40000", str(port)), "sdpMid": "0", "sdpMLineIndex": 0}
    await send(sender, message)
    got = await receive(receiver, skip=GREETINGS)
    assert got["type"] == "ice" and got["candidate"] == message["candidate"], got
    assert got["sdpMid"] == "0" and got["sdpMLineIndex"] == 0 and got["from"] in {"visitor", "expert"}


async def error_for(ws: ClientConnection, message: dict[str, Any] | str) -> str:
    await send(ws, message)
    got = await receive(ws, skip=GREETINGS)
    assert got["type"] == "error", got
    return str(got["message"])


# --- the tests ------------------------------------------------------------------------------


async def test_bad_messages_get_an_error_and_the_call_goes_on(stack: Stack) -> None:
    async with practice(stack) as p, call(p) as c:
        other_visitor = await arrive(p, name="Otto Other")
        other_call = await admit(p, other_visitor)
        bad: dict[str, dict[str, Any] | str] = {
            "malformed JSON": '{"type": "ice", "candidate": ',
            "not an object": "[1, 2, 3]",
            "unknown type": {"type": "teleport"},
            "no type": {"candidate": CANDIDATE},
            "oversize": {"type": "ice", "candidate": "candidate:" + "x" * (33 * 1024)},
            "another call": {"type": "ice", "candidate": CANDIDATE, "call_id": other_call},
            "no such call": {"type": "ice", "candidate": CANDIDATE, "call_id": str(uuid.uuid4())},
            "call id not a uuid": {"type": "ice", "candidate": CANDIDATE, "call_id": "call-1"},
            "wrong-typed field": {"type": "ice", "candidate": 12345},
            "wrong-typed index": {"type": "ice", "candidate": CANDIDATE, "sdpMLineIndex": "zero"},
            "unknown field": {"type": "ice", "candidate": CANDIDATE, "relay_to": "everyone"},
            "empty offer": {"type": "offer", "sdp": ""},
            "relayed 'from' forged": {"type": "hangup", "from": "expert"},
        }
        errors: dict[str, str] = {}
        for number, (what, message) in enumerate(bad.items()):
            for sender, receiver in ((c.visitor_ws, c.expert_ws), (c.expert_ws, c.visitor_ws)):
                errors[what] = await error_for(sender, message)
                await relayed(sender, receiver, 41000 + number)  # the socket is open, the call goes on
        assert "too large" in errors["oversize"] and "32768" in errors["oversize"]
        assert "another call" in errors["another call"] and "another call" in errors["no such call"]
        assert "not valid JSON" in errors["malformed JSON"]
        assert all(len(e) < 500 for e in errors.values())  # no echo of the oversize message

        # Exactly at the limit is fine (JSON whitespace pads it); one byte more is not.
        valid = json.dumps({"type": "ice", "candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0})
        at_limit = valid + " " * (32 * 1024 - len(valid))
        await send(c.visitor_ws, at_limit)
        assert (await receive(c.expert_ws, skip=GREETINGS))["candidate"] == CANDIDATE
        assert "too large" in await error_for(c.visitor_ws, at_limit + " ")
        await relayed(c.visitor_ws, c.expert_ws, 41999)

        # The call is untouched: still running for both, nothing from the bad ones was stored.
        [row] = await fetch(stack.dsns["eu"], 'SELECT ended_at FROM "call" WHERE id = $1', uuid.UUID(c.id))
        assert row["ended_at"] is None
        stored = await fetch(
            stack.dsns["eu"], "SELECT count(*) AS n FROM call_telemetry WHERE call_id = $1", uuid.UUID(c.id)
        )
        assert stored[0]["n"] == 0


async def test_the_waiting_room_takes_only_a_hangup(stack: Stack) -> None:
    async with practice(stack) as p:
        visitor = await arrive(p)
        async with socket(p.base, f"{visitor.path}/ws", konsil_visit=visitor.token) as ws:
            assert await receive(ws) == {"type": "waiting"}
            for message in (
                {"type": "ice", "candidate": CANDIDATE},
                {"type": "offer", "sdp": "v=0"},
                {"type": "hello"},
                {"type": "quality", "rtt_ms": 20},
                {"type": "action", "action": "mute"},
            ):
                assert "waiting room" in await error_for(ws, message)
            assert "not valid JSON" in await error_for(ws, "{")
            await send(ws, {"type": "hangup"})
            assert await receive(ws) == {"type": "ended"}
        [row] = await fetch(stack.dsns["eu"], "SELECT status, ended_at FROM visit WHERE id = $1", visitor.visit_id)
        assert row["status"] == "left" and row["ended_at"] is not None
        admitted = await p.expert.post(f"/api/v1/orgs/{p.slug}/visits/{visitor.visit_id}/admit")
        assert admitted.status_code == 409


async def test_the_dashboard_hears_of_arrivals_without_personal_data(stack: Stack) -> None:
    async with practice(stack) as p, socket(p.base, f"/{p.slug}/portal/ws", konsil_session=p.session) as dashboard:
        assert await receive(dashboard) == {"type": "ready"}
        visitor = await arrive(p, name="Dora Dashboard-Secret")
        event = await receive(dashboard)
        assert event == {"type": "waiting-changed", "room_id": p.room_id}
        waiting = await p.expert.get(f"/api/v1/orgs/{p.slug}/visits/waiting")
        assert [v["name"] for v in waiting.json()] == ["Dora Dashboard-Secret"]
        call_id = await admit(p, visitor)
        assert (await receive(dashboard))["type"] == "waiting-changed"  # the list got shorter
        ended = await p.expert.post(f"/api/v1/orgs/{p.slug}/calls/{call_id}/end")
        assert ended.status_code == 200
        assert (await receive(dashboard)) == {"type": "calls-changed"}
        # The dashboard only listens: what it says is ignored, and it stays open.
        await send(dashboard, {"type": "hello"})
        await arrive(p)
        assert (await receive(dashboard))["type"] == "waiting-changed"
    async with practice(stack) as other:
        # Another organisation's member gets no socket for this one's dashboard.
        assert await refused(p.base, f"/{p.slug}/portal/ws", konsil_session=other.session) in {
            "http 403",
            "close 4404",
        }
    assert await refused(p.base, f"/{p.slug}/portal/ws") in {"http 403", "close 4401"}


async def test_telemetry_is_stored_per_call_and_invalid_samples_are_refused(stack: Stack) -> None:
    async with practice(stack) as p, call(p) as c:
        good_quality = {"type": "quality", "rtt_ms": 42.5, "jitter_ms": 3, "packet_loss": 0.02, "bitrate_kbps": 850}
        await send(c.visitor_ws, good_quality)
        await send(c.visitor_ws, {"type": "action", "action": "camera_permission", "state": "granted"})
        await send(c.expert_ws, {"type": "action", "action": "mute", "call_id": c.id})
        for ws in (c.visitor_ws, c.expert_ws):
            for bad in (
                {"type": "quality", "packet_loss": 2},
                {"type": "quality", "rtt_ms": -1},
                {"type": "quality", "rtt_ms": "fast"},
                {"type": "quality", "rtt_ms": 10, "name": "Vera Visitor"},  # no extra (personal) fields
                {"type": "action", "action": "dance"},
                {"type": "action", "action": "mute", "state": "maybe"},
            ):
                await error_for(ws, bad)
        await relayed(c.visitor_ws, c.expert_ws, 42001)  # everything the visitor sent was handled
        await relayed(c.expert_ws, c.visitor_ws, 42002)  # and the expert's

        dsn = stack.dsns["eu"]
        rows = await fetch(
            dsn,
            "SELECT participant, kind, data, visit_id, expires_at FROM call_telemetry WHERE call_id = $1 ORDER BY at",
            uuid.UUID(c.id),
        )
        [visit] = await fetch(dsn, "SELECT expires_at FROM visit WHERE id = $1", c.visitor.visit_id)
        stored = sorted(
            ((r["participant"], r["kind"]), {k: v for k, v in json.loads(r["data"]).items() if v is not None})
            for r in rows
        )
        assert stored == [
            (("expert", "action"), {"type": "action", "action": "mute"}),
            (("visitor", "action"), {"type": "action", "action": "camera_permission", "state": "granted"}),
            (("visitor", "quality"), good_quality),
        ], stored
        assert {r["visit_id"] for r in rows} == {c.visitor.visit_id}
        assert {r["expires_at"] for r in rows} == {visit["expires_at"]}
        # Telemetry is kept, never relayed: the peers only saw each other's candidates.


async def test_sockets_refuse_a_foreign_origin(stack: Stack) -> None:
    async with practice(stack) as p:
        visitor = await arrive(p)
        call_id = await admit(p, visitor)
        evil = "http://evil.example"
        expert_path = f"/{p.slug}/calls/{call_id}/ws"
        assert await refused(p.base, expert_path, evil, konsil_session=p.session) in {"http 403", "close 4403"}
        assert await refused(p.base, f"/{p.slug}/portal/ws", evil, konsil_session=p.session) in {
            "http 403",
            "close 4403",
        }
        assert await refused(p.base, f"{visitor.path}/ws", evil, konsil_visit=visitor.token) in {
            "http 403",
            "close 4403",
        }
        # The region's own pages may open them.
        async with socket(p.base, expert_path, p.base, konsil_session=p.session) as ws:
            assert (await receive(ws))["type"] == "joined"
        async with socket(p.base, f"{visitor.path}/ws", p.base + "/", konsil_visit=visitor.token) as ws:
            assert (await receive(ws))["type"] == "joined"


# --- bounds: telemetry per participant and call, the relay per socket ------------------------


async def telemetry_count(stack: Stack, call_id: str, participant: str, kind: str) -> int:
    rows = await fetch(
        stack.dsns["eu"],
        "SELECT count(*) AS n FROM call_telemetry WHERE call_id = $1 AND participant = $2 AND kind = $3",
        uuid.UUID(call_id),
        participant,
        kind,
    )
    return int(rows[0]["n"])


async def flood(ws: ClientConnection, messages: list[dict[str, Any]]) -> list[str]:
    """Send all at once while reading the replies; the error replies to them. A last
    malformed message marks the end: its reply comes after all the others."""
    errors: list[str] = []

    async def read() -> None:
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "error":
                if "not valid JSON" in message["message"]:
                    return
                errors.append(message["message"])

    reader = asyncio.create_task(read())
    for message in messages:
        await send(ws, message)
    await send(ws, "{")
    async with asyncio.timeout(TIMEOUT):
        await reader
    return errors


async def test_telemetry_is_bounded_per_participant_and_call(stack: Stack) -> None:
    """The attack run wrote 2,001 samples for one call in 3 s: now a flood stores a
    burst and then one sample per interval; the rest is refused, told and not stored."""
    async with practice(stack) as p, call(p) as c:
        started = asyncio.get_running_loop().time()
        quality = {"type": "quality", "rtt_ms": 20, "jitter_ms": 1, "packet_loss": 0, "bitrate_kbps": 900}
        errors = await flood(c.visitor_ws, [quality] * 2000)
        actions = await flood(c.visitor_ws, [{"type": "action", "action": "mute"}] * 300)
        elapsed = asyncio.get_running_loop().time() - started

        # A burst, then one per interval (a burst of 5, one per 4 s; for actions 30, one per s).
        q, a = TELEMETRY_LIMITS["quality"], TELEMETRY_LIMITS["action"]
        stored = await telemetry_count(stack, c.id, "visitor", "quality")
        assert q.burst <= stored <= q.burst + elapsed / q.every_seconds + 1, (stored, elapsed)
        assert len(errors) == 2000 - stored and all("was not stored" in e for e in errors)
        stored_actions = await telemetry_count(stack, c.id, "visitor", "action")
        assert a.burst <= stored_actions <= a.burst + elapsed / a.every_seconds + 1, (stored_actions, elapsed)
        assert len(actions) == 300 - stored_actions

        # Reconnecting does not reset the budget.
        await c.visitor_ws.close()
        async with socket(p.base, f"{c.visitor.path}/ws", konsil_visit=c.visitor.token) as again:
            assert (await receive(again))["type"] == "joined"
            more = await flood(again, [quality] * 20)
        elapsed = asyncio.get_running_loop().time() - started
        now_stored = await telemetry_count(stack, c.id, "visitor", "quality")
        assert now_stored <= q.burst + elapsed / q.every_seconds + 1 and len(more) == 20 - (now_stored - stored)

        # The other participant has a budget of its own; the total per call holds too,
        # counted from what is stored (as after a reconnect to another replica).
        await fetch(
            stack.dsns["eu"],
            "INSERT INTO call_telemetry (id, org_id, call_id, visit_id, participant, kind, data, at, expires_at) "
            "SELECT gen_random_uuid(), c.org_id, c.id, c.visit_id, 'expert', 'quality', '{}', now(), now() "
            'FROM "call" c, generate_series(1, $2) WHERE c.id = $1',
            uuid.UUID(c.id),
            q.per_call - 1,
        )
        refused_samples = await flood(c.expert_ws, [quality] * 3)
        assert await telemetry_count(stack, c.id, "expert", "quality") == q.per_call == 7200
        assert len(refused_samples) == 2 and all("7200" in e for e in refused_samples)


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_peer_that_never_reads_is_cut_off_not_buffered(stack: Stack) -> None:
    """The attack run queued 3,000 offers for a peer that never read (the region grew
    by 63 MiB). Now that peer's socket is closed once its backlog is full; the other
    side goes on, and the peer may reconnect."""
    offer = {"type": "offer", "sdp": "v=0\r\na=x-filler:" + "y" * 19_900}  # 20 kB on the expert's wire
    region = stack.procs["region eu"].pid
    async with practice(stack) as p:
        visitor = await arrive(p)
        # The expert's connection: no compression, and a small fixed receive buffer, so
        # that a client that does not read holds up the server soon (a browser's tab
        # that hangs fills the kernel's buffers the same way, only later).
        host, port = p.base.removeprefix("http://").split(":")
        raw = pysocket.create_connection((host, int(port)))
        raw.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_RCVBUF, 64 * 1024)
        async with socket(p.base, f"{visitor.path}/ws", konsil_visit=visitor.token) as visitor_ws:
            assert await receive(visitor_ws) == {"type": "waiting"}
            call_id = await admit(p, visitor)
            assert (await receive(visitor_ws))["type"] == "joined"
            url = p.base.replace("http://", "ws://", 1) + f"/{p.slug}/calls/{call_id}/ws"
            headers = {"cookie": f"konsil_session={p.session}"}
            async with connect(url, additional_headers=headers, compression=None, max_queue=4, sock=raw) as expert_ws:
                assert (await receive(expert_ws))["type"] == "joined"
                before = resident_kib(region)
                for number in range(3000):  # the expert's socket is not read from here on
                    await send(visitor_ws, offer)
                    if number % 100 == 0:  # the visitor's socket stays open and answers
                        assert "not valid JSON" in await error_for(visitor_ws, "{")
                assert "not valid JSON" in await error_for(visitor_ws, "{")  # all of them were handled
                grown = resident_kib(region) - before

                # The expert's client now reads what had reached it, then finds the socket closed.
                taken = 0
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(TIMEOUT):
                        while True:
                            taken += json.loads(await expert_ws.recv())["type"] == "offer"
            assert taken < 1000, taken  # not the whole flood: the rest was dropped with the socket
            # Closed as too slow (4408), or dropped outright when its buffers were full.
            assert closed.value.rcvd is None or closed.value.rcvd.code == 4408, closed.value
            assert grown < 30 * 1024, f"the region grew by {grown} KiB"  # 3,000 offers are 60 MB

            # The expert's page reconnects and the call goes on.
            async with socket(p.base, f"/{p.slug}/calls/{call_id}/ws", konsil_session=p.session) as again:
                assert (await receive(again))["type"] == "joined"
                await relayed(visitor_ws, again, 44001)
                await relayed(again, visitor_ws, 44002)
