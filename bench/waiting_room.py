"""Waiting room: how soon the dashboard hears of an arriving visitor; admit → connected call via the relay.

Part A (arrivals): an organisation with an expert and a few rooms; the expert's
dashboard socket ``/{org}/portal/ws`` is open. Visitors arrive at a steady pace
(open loop), each posting the join form ``POST /{org}/{room}/visits`` and then
opening its socket and waiting there. Per arrival: the time from the start of the
form POST to the dashboard receiving the matching ``waiting-changed`` event, and,
as the baseline in the same run, the time of the form POST alone. Result per
crowd size (default 100 and 500 visitors): p50/p90/p99 of both and their ratios.

Part B (calls): for K visitor/expert pairs of aiortc peers (relay only, through a
coturn relay the benchmark starts, with the TURN credentials from the ``joined``
message), the time from the expert's admit call to ICE connected and to connected
(DTLS up) on both sides; the baseline, interleaved with it, is the same two peers
connecting through the same relay with their offer and answer handed over in
process (no Konsil at all). Result: p50/p99 of both and their ratios.

    .venv/bin/python -m bench.waiting_room [--visitors 100,500] [--rate 20] [--rooms 20]
        [--pairs 5] [--database postgres|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import http.cookiejar
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import harness
from bench.harness import (
    DATABASES,
    LOOPBACK,
    PG_SERVER,
    abba,
    check_postgres,
    conditions,
    coturn_node,
    drop_quietly,
    interrupt_on_terminate,
    log,
    machine,
    percentile,
    ratio,
    run_async,
    run_standalone,
    set_quiet,
    signals_deferred,
    stack_settings,
    wait_healthy,
)
from konsil.platform.cli.launcher import start_processes, stop_processes
from konsil.platform.cli.migrations import migrate_all

NAME = "waiting_room"
# Aims (this benchmark's own; the requirements set no figures): at the largest crowd the
# dashboard hears of an arrival within 1 s of the form's submission and within twice the
# form POST's own time (both p99), no event missed; a call is connected (ICE, both sides)
# within 3 s of the admit (p99) on loopback.
AIM_EVENT_P99_MS = 1000.0
AIM_EVENT_P99_RATIO = 2.0
AIM_ADMIT_TO_ICE_P99_MS = 3000.0
PAIR_TIMEOUT = 30.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--visitors", default="100,500", help="crowd sizes, comma-separated (one run each)")
    p.add_argument("--rate", type=float, default=20.0, help="arrivals per second (steady pace)")
    p.add_argument("--rooms", type=int, default=20, help="rooms of the expert; arrivals go round-robin")
    p.add_argument("--pairs", type=int, default=5, help="aiortc call pairs through Konsil (and as many direct)")
    p.add_argument("--database", choices=DATABASES, default="postgres")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to wait for late dashboard events")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


# --- the stack: one region with a coturn relay ------------------------------------------------


@dataclass
class Stack(harness.Stack):
    """The harness's stack (processes, databases, CPU probes) plus the relay."""

    turn_port: int = 0
    turn_secret: str = ""


@contextlib.contextmanager
def relay_stack(database: str, server: str = PG_SERVER) -> Iterator[Stack]:
    """coturn + fresh databases + control plane + region ``eu``; always stopped and dropped."""
    if database == "postgres":
        asyncio.run(check_postgres(server))
    work = Path(tempfile.mkdtemp(prefix="konsil-bench-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    names: list[str] = []
    turn_secret = secrets.token_urlsafe(24)
    with interrupt_on_terminate(), contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work, True)
        try:
            turn_port = cleanup.enter_context(coturn_node(turn_secret, work)).config.listening_port
            relay = {"ice_servers": [f"turn:{LOOPBACK}:{turn_port}?transport=udp"], "turn_secret": turn_secret}
            settings, names = stack_settings(work, database, (("eu", "EU/EEA (GDPR)"),), server, relay)
            log(f"migrating {database} databases {' '.join(names) or work}")
            migrate_all(settings, echo=lambda line: None)
            sys.stdout.flush()
            saved = os.dup(1)
            try:
                os.dup2(2, 1)  # the servers' output goes to stderr: stdout is JSON
                procs = start_processes(settings, work / "run")
            finally:
                os.dup2(saved, 1)
                os.close(saved)
            urls = {"control": settings.require_control().public_url, "region eu": settings.regions[0].public_url}
            wait_healthy(urls, procs, timeout=60)
            log("stack is up: " + ", ".join(f"{n} {u} (pid {procs[n].pid})" for n, u in urls.items()))
            yield Stack(database, settings, procs, names, turn_port, turn_secret)
        finally:
            with signals_deferred():
                if procs:
                    stop_processes(procs)
                    log("stopped " + ", ".join(f"{name} (pid {p.pid})" for name, p in procs.items()))
                drop_quietly(names, server)


# --- the organisation -----------------------------------------------------------------------


@dataclass
class Practice:
    slug: str
    rooms: list[tuple[str, str]]  # (slug, id)
    expert: httpx.AsyncClient  # the expert's session (cookie + x-csrf-token)
    session: str  # the konsil_session cookie, for the expert's sockets


def _check(response: httpx.Response, what: str, *status: int) -> httpx.Response:
    if response.status_code not in (status or (200,)):
        raise RuntimeError(f"{what}: got {response.status_code}: {response.text[:300]}")
    return response


async def _login(base: str, slug: str, email: str, password: str) -> tuple[httpx.AsyncClient, str]:
    client = httpx.AsyncClient(base_url=base, timeout=30, trust_env=False)
    response = _check(
        await client.post(f"/api/v1/orgs/{slug}/auth/login", json={"email": email, "password": password}), "login"
    )
    client.headers["x-csrf-token"] = response.json()["csrf_token"]
    return client, response.cookies["konsil_session"]


async def prepare(stack: Stack, rooms: int) -> Practice:
    """Sign up an organisation, invite an expert, who opens ``rooms`` rooms."""
    slug = f"bench-{secrets.token_hex(3)}"
    owner = {"name": "Bench Owner", "email": f"owner@{slug}.example", "password": secrets.token_urlsafe(16)}
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        _check(
            await client.post(
                f"{stack.control_url}/api/v1/signup",
                json={"region": "eu", "organisation": {"name": "Waiting-room practice", "slug": slug}, "owner": owner},
            ),
            "signup",
            201,
        )
    manager, _ = await _login(stack.region_url(), slug, owner["email"], owner["password"])
    expert_login = {"email": f"expert@{slug}.example", "password": secrets.token_urlsafe(16)}
    _check(
        await manager.post(
            f"/api/v1/orgs/{slug}/members", json={"name": "Bench Expert", "role": "expert", **expert_login}
        ),
        "invite expert",
        201,
    )
    await manager.aclose()
    expert, session = await _login(stack.region_url(), slug, expert_login["email"], expert_login["password"])
    made = []
    for number in range(rooms):
        room = _check(
            await expert.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": f"room-{number}", "title": f"Room {number}"}),
            "create room",
            201,
        ).json()
        made.append((room["slug"], room["id"]))
    return Practice(slug, made, expert, session)


# --- sockets --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def ws_open(base: str, path: str, **cookies: str) -> AsyncIterator[Any]:
    from websockets.asyncio.client import connect

    url = base.replace("http://", "ws://", 1) + path
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    async with connect(url, additional_headers={"cookie": header}, open_timeout=30, max_queue=None) as ws:
        yield ws


async def next_message(ws: Any, seconds: float = 30.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), seconds))
    return message


def _stats(values: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(values)
    found: dict[str, Any] = {"n": len(ordered)}
    for q in (50, 90, 99):
        value = percentile(ordered, q)
        found[f"p{q}_ms"] = None if value is None else round(value, 2)
    found["max_ms"] = round(ordered[-1], 2) if ordered else None
    return found


def _cpu_ms_per(before: dict[str, float | None], after: dict[str, float | None], count: int) -> dict[str, float]:
    """CPU milliseconds per item of each process between two probes (``Stack.cpu_seconds``),
    and of the rest of the machine (other work skews every figure here)."""
    spent = {
        name: (after[name] - start) * 1000 / count  # type: ignore[operator]
        for name, start in before.items()
        if start is not None and after.get(name) is not None
    }
    machine_total = spent.pop("machine (all processes)", None)
    if machine_total is not None:
        spent["other (rest of machine)"] = max(0.0, machine_total - sum(spent.values()))
    return {name: round(value, 2) for name, value in spent.items()}


# --- part A: arrivals -----------------------------------------------------------------------


@dataclass
class Arrival:
    number: int
    room: str
    started: float = 0.0  # form POST sent (perf_counter)
    posted: float | None = None  # its 303 received
    heard: float | None = None  # the dashboard's event received
    waiting: float | None = None  # the visitor's socket said "waiting"
    socket_opened_at: float | None = None
    error: str | None = None


@dataclass
class Dashboard:
    """The expert's dashboard socket: matches each ``waiting-changed`` event of a room
    to the oldest arrival in that room the dashboard has not heard of yet."""

    pending: dict[str, collections.deque[Arrival]] = field(
        default_factory=lambda: collections.defaultdict(collections.deque)
    )
    unmatched: int = 0
    other_events: int = 0
    heard_all: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0
    matched: int = 0

    async def listen(self, ws: Any) -> None:
        async for raw in ws:
            self.hear(raw, time.perf_counter())

    def hear(self, raw: str | bytes, now: float) -> None:
        """One message of the dashboard socket, received at ``now``."""
        event = json.loads(raw)
        room = event.get("room_id") if event.get("type") == "waiting-changed" else None
        if room is None:
            self.other_events += 1
            return
        queue = self.pending.get(room)
        if not queue:
            self.unmatched += 1
            return
        queue.popleft().heard = now
        self.matched += 1
        if self.matched >= self.expected:
            self.heard_all.set()


async def _visitor(
    client: httpx.AsyncClient,
    base: str,
    practice: Practice,
    arrival: Arrival,
    room_id: str,
    dashboard: Dashboard,
    sockets: contextlib.AsyncExitStack,
    at: float,
) -> None:
    await asyncio.sleep(max(0.0, at - time.perf_counter()))
    dashboard.pending[room_id].append(arrival)
    arrival.started = time.perf_counter()
    try:
        response = await client.post(
            f"/{practice.slug}/{arrival.room}/visits",
            data={"name": f"Visitor {arrival.number}", "phone": "+4712345678", "consent": "yes"},
        )
        arrival.posted = time.perf_counter()
        if response.status_code != 303:
            raise RuntimeError(f"join form: {response.status_code}")
        token = response.cookies["konsil_visit"]
        opening = time.perf_counter()
        ws = await sockets.enter_async_context(ws_open(base, f"{response.headers['location']}/ws", konsil_visit=token))
        first = await next_message(ws)
        if first != {"type": "waiting"}:
            raise RuntimeError(f"visitor socket said {first}")
        arrival.waiting = time.perf_counter()
        arrival.socket_opened_at = opening
    except Exception as exc:  # counted, not fatal: the figures say how many failed
        arrival.error = f"{type(exc).__name__}: {exc}"[:200]
        with contextlib.suppress(ValueError):
            dashboard.pending[room_id].remove(arrival)


@contextlib.asynccontextmanager
async def dashboard_and_visitors(
    base: str, practice: Practice, request_timeout: float
) -> AsyncIterator[tuple[Any, httpx.AsyncClient, contextlib.AsyncExitStack]]:
    """The expert's dashboard socket (it said ready), the visitors' HTTP client, and the
    exit stack their sockets stay open in; all closed at the end."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    # Visitors share keep-alive connections but no cookie jar (each reads its own cookie
    # from its response; a jar of hundreds of path-bound cookies would slow every request).
    no_jar = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    visitors = httpx.AsyncClient(base_url=base, timeout=request_timeout, trust_env=False, limits=limits, cookies=no_jar)
    async with (
        ws_open(base, f"/{practice.slug}/portal/ws", konsil_session=practice.session) as board,
        visitors as client,
        contextlib.AsyncExitStack() as sockets,
    ):
        if await next_message(board) != {"type": "ready"}:
            raise RuntimeError("the dashboard socket did not say ready")
        yield board, client, sockets


def arrival_figures(people: Sequence[Arrival]) -> dict[str, Any]:
    """Failed arrivals (by kind), events the dashboard missed, and the times of the form
    POST and of the dashboard's event, both from the start of the POST."""
    ok = [a for a in people if a.error is None]
    heard = [a for a in ok if a.heard is not None]
    errors = collections.Counter(a.error.split(":")[0] for a in people if a.error)
    return {
        "errors": sum(errors.values()),
        **({"error_kinds": dict(errors)} if errors else {}),
        "events_missed": len(ok) - len(heard),
        "form_post": _stats([(a.posted - a.started) * 1000 for a in ok if a.posted]),
        "dashboard_event": _stats([(a.heard - a.started) * 1000 for a in heard]),  # type: ignore[operator]
    }


async def arrivals(stack: Stack, practice: Practice, visitors: int, rate: float, grace: float) -> dict[str, Any]:
    base = stack.region_url()
    dashboard = Dashboard(expected=visitors)
    async with dashboard_and_visitors(base, practice, request_timeout=30) as (board, client, sockets):
        listener = asyncio.create_task(dashboard.listen(board))
        people = [Arrival(i, practice.rooms[i % len(practice.rooms)][0]) for i in range(visitors)]
        room_ids = dict(practice.rooms)
        cpu_before = stack.cpu_seconds()
        start = time.perf_counter() + 0.2
        log(f"{visitors} visitors arriving at {rate:g}/s over {len(practice.rooms)} rooms")
        await asyncio.gather(
            *(
                _visitor(client, base, practice, a, room_ids[a.room], dashboard, sockets, start + a.number / rate)
                for a in people
            )
        )
        arrived_in = time.perf_counter() - start
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(dashboard.heard_all.wait(), grace)
        cpu_after = stack.cpu_seconds()
        stack.check_alive()
        # What the dashboard page then does: fetch the waiting list (each shown visitor is
        # an access-logged read), with the whole crowd waiting.
        fetches = []
        for _ in range(3):
            sent = time.perf_counter()
            listed = _check(await practice.expert.get(f"/api/v1/orgs/{practice.slug}/visits/waiting"), "waiting list")
            fetches.append((time.perf_counter() - sent) * 1000)
        waiting_now = len(listed.json())
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        log(f"closing {visitors} visitor sockets")
    started = sorted(a.started for a in people)
    ok = [a for a in people if a.error is None]
    heard = [a for a in ok if a.heard is not None]
    after_post = [(a.heard - a.posted) * 1000 for a in heard if a.posted]  # type: ignore[operator]
    socket_wait = [(a.waiting - a.socket_opened_at) * 1000 for a in ok if a.waiting and a.socket_opened_at]
    common = arrival_figures(people)
    post, event = common["form_post"], common["dashboard_event"]
    return {
        "visitors": visitors,
        "arrival_rate_per_s": round((len(started) - 1) / (started[-1] - started[0]), 1) if len(started) > 1 else None,
        "all_waiting_after_s": round(arrived_in, 1),
        **common,
        "events_heard": len(heard),
        "events_unmatched": dashboard.unmatched,
        "event_after_post_response": _stats(after_post),
        "p50_ratio": ratio(event["p50_ms"], post["p50_ms"]),
        "p99_ratio": ratio(event["p99_ms"], post["p99_ms"]),
        "visitor_socket_to_waiting": _stats(socket_wait),
        "cpu_ms_per_arrival": _cpu_ms_per(cpu_before, cpu_after, visitors),
        "waiting_list_fetch": {"waiting": waiting_now, **_stats(fetches)},
    }


# --- part B: admit → connected ----------------------------------------------------------------


class Peer:
    """A relay-only aiortc peer with a generated video track, and events for its states."""

    def __init__(self, ice_servers: list[dict[str, Any]], luma: int) -> None:
        from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection

        servers = [RTCIceServer(s["urls"], s.get("username"), s.get("credential")) for s in ice_servers]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY))
        pc.addTrack(_grey_track(luma))
        self.pc = pc
        self.ice_connected = asyncio.Event()  # aiortc's iceConnectionState "completed"
        self.connected = asyncio.Event()  # connectionState "connected": DTLS up too
        self.failed = asyncio.Event()

        @pc.on("iceconnectionstatechange")
        def _ice() -> None:
            if pc.iceConnectionState == "completed":
                self.ice_connected.set()
            elif pc.iceConnectionState == "failed":
                self.failed.set()

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                self.connected.set()
            elif pc.connectionState == "failed":
                self.failed.set()

    async def describe(self, kind: str) -> str:
        """Offer or answer; aiortc returns from setLocalDescription with every candidate
        gathered (the TURN allocation done), so the SDP is complete."""
        made = await (self.pc.createOffer() if kind == "offer" else self.pc.createAnswer())
        await self.pc.setLocalDescription(made)
        return str(self.pc.localDescription.sdp)

    async def accept(self, kind: str, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, kind))

    async def close(self) -> None:
        await self.pc.close()


def _grey_track(luma: int) -> Any:
    from aiortc import VideoStreamTrack
    from av import VideoFrame

    class Grey(VideoStreamTrack):
        async def recv(self) -> VideoFrame:
            pts, time_base = await self.next_timestamp()
            frame = VideoFrame(width=160, height=120, format="yuv420p")
            frame.planes[0].update(bytes([luma]) * frame.planes[0].buffer_size)
            for plane in frame.planes[1:]:
                plane.update(bytes([128]) * plane.buffer_size)
            frame.pts, frame.time_base = pts, time_base
            return frame

    return Grey()


async def _both(peers: Sequence[Peer], state: str) -> None:
    """Wait until both peers reached ``state`` (an event name), or fail fast."""
    reached = asyncio.ensure_future(asyncio.gather(*(getattr(p, state).wait() for p in peers)))
    failed = [asyncio.ensure_future(p.failed.wait()) for p in peers]
    try:
        await asyncio.wait([reached, *failed], timeout=PAIR_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if not reached.done():
            raise RuntimeError("a peer failed" if any(f.done() for f in failed) else f"not {state} in time")
    finally:
        for waiting in (reached, *failed):
            waiting.cancel()


async def konsil_pair(stack: Stack, practice: Practice) -> dict[str, float]:
    """A visitor waits; the expert admits and opens the call socket; the visitor offers
    on the expert's hello (or present); the expert answers (full SDP, no trickle)."""
    base = stack.region_url()
    async with httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as client:
        response = _check(
            await client.post(
                f"/{practice.slug}/{practice.rooms[0][0]}/visits", data={"name": "Pat", "consent": "yes"}
            ),
            "join form",
            303,
        )
    path, token = response.headers["location"], response.cookies["konsil_visit"]
    peers: list[Peer] = []
    marks: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as opened:
        visitor_ws = await opened.enter_async_context(ws_open(base, f"{path}/ws", konsil_visit=token))
        if await next_message(visitor_ws) != {"type": "waiting"}:
            raise RuntimeError("the visitor is not waiting")
        t0 = time.perf_counter()
        admit = f"/api/v1/orgs/{practice.slug}/visits/{path.rsplit('/', 1)[1]}/admit"
        call_id = _check(await practice.expert.post(admit), "admit").json()["id"]
        marks["admit_response"] = time.perf_counter()

        async def visitor_side() -> None:
            peer: Peer | None = None
            while True:
                message = await next_message(visitor_ws)
                kind = message["type"]
                if kind == "joined":
                    peer = Peer(message["ice_servers"], 200)
                    peers.append(peer)
                    marks["visitor_joined"] = time.perf_counter()
                elif kind in ("hello", "present") and message.get("from") == "expert" and "offer_sent" not in marks:
                    assert peer is not None
                    if kind == "hello":
                        await visitor_ws.send(json.dumps({"type": "present"}))
                    offer = await peer.describe("offer")
                    await visitor_ws.send(json.dumps({"type": "offer", "sdp": offer}))
                    marks["offer_sent"] = time.perf_counter()
                elif kind == "answer":
                    assert peer is not None
                    marks["answer_received"] = time.perf_counter()
                    await peer.accept("answer", message["sdp"])
                    return

        async def expert_side(expert_ws: Any) -> None:
            peer: Peer | None = None
            while True:
                message = await next_message(expert_ws)
                kind = message["type"]
                if kind == "joined":
                    peer = Peer(message["ice_servers"], 60)
                    peers.append(peer)
                    marks["expert_joined"] = time.perf_counter()
                elif kind == "hello" and message.get("from") == "visitor":
                    await expert_ws.send(json.dumps({"type": "present"}))
                elif kind == "offer":
                    assert peer is not None
                    marks["offer_received"] = time.perf_counter()
                    await peer.accept("offer", message["sdp"])
                    await expert_ws.send(json.dumps({"type": "answer", "sdp": await peer.describe("answer")}))
                    return

        visitor_task = asyncio.create_task(visitor_side())
        try:
            expert_ws = await opened.enter_async_context(
                ws_open(base, f"/{practice.slug}/calls/{call_id}/ws", konsil_session=practice.session)
            )
            await asyncio.wait_for(asyncio.gather(visitor_task, expert_side(expert_ws)), PAIR_TIMEOUT)
            await _both(peers, "ice_connected")
            marks["ice_connected"] = time.perf_counter()
            await _both(peers, "connected")
            marks["connected"] = time.perf_counter()
            await expert_ws.send(json.dumps({"type": "hangup"}))
        finally:
            visitor_task.cancel()
            for peer in peers:
                await peer.close()
    return {name: (at - t0) * 1000 for name, at in marks.items()}


async def direct_pair(stack: Stack) -> dict[str, float]:
    """The baseline: the same two relay-only peers and relay, offer and answer handed
    over in process."""
    from konsil.media_nodes.ice import turn_credentials

    username, credential = turn_credentials(stack.turn_secret, "bench-direct", 3600)
    turn = {"urls": [f"turn:{LOOPBACK}:{stack.turn_port}?transport=udp"], "username": username}
    servers = [turn | {"credential": credential}]
    t0 = time.perf_counter()
    visitor, expert = Peer(servers, 200), Peer(servers, 60)
    try:
        await expert.accept("offer", await visitor.describe("offer"))
        await visitor.accept("answer", await expert.describe("answer"))
        await _both([visitor, expert], "ice_connected")
        ice = time.perf_counter()
        await _both([visitor, expert], "connected")
        connected = time.perf_counter()
    finally:
        await visitor.close()
        await expert.close()
    return {"ice_connected": (ice - t0) * 1000, "connected": (connected - t0) * 1000}


async def calls(stack: Stack, practice: Practice, pairs: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"konsil": [], "direct": []}
    failures: collections.Counter[str] = collections.Counter()
    await direct_pair(stack)  # warm-up (imports, codecs), discarded
    order = abba(("konsil", "direct"), pairs)
    for number, side in enumerate(order, start=1):
        try:
            took = await (konsil_pair(stack, practice) if side == "konsil" else direct_pair(stack))
        except Exception as exc:
            failures[f"{side}: {type(exc).__name__}: {exc}"[:160]] += 1
            log(f"pair {number}/{len(order)} {side}: FAILED {exc}")
            continue
        runs[side].append(took)
        log(f"pair {number}/{len(order)} {side:<6} ICE connected {took['ice_connected']:7.1f} ms")
        stack.check_alive()

    def figures(side: str) -> dict[str, Any]:
        keys = sorted({k for run in runs[side] for k in run}, key=lambda k: min(r.get(k, 1e12) for r in runs[side]))
        return {k: _stats([r[k] for r in runs[side] if k in r]) for k in keys}

    konsil, direct = figures("konsil"), figures("direct")
    result: dict[str, Any] = {
        "pairs": pairs,
        "order": order,
        "signaling": "full SDP after ICE gathering (no trickle); visitor offers on the expert's hello",
        "konsil_from_admit_ms": konsil,
        "direct_ms": direct,
    }
    for metric in ("ice_connected", "connected"):
        for q in ("p50_ms", "p99_ms"):
            result[f"{metric}_{q.removesuffix('_ms')}_ratio"] = ratio(
                konsil.get(metric, {}).get(q), direct.get(metric, {}).get(q)
            )
    if failures:
        result["failures"] = dict(failures)
    return result


# --- run ------------------------------------------------------------------------------------


async def measure(stack: Stack, args: argparse.Namespace, crowds: list[int]) -> dict[str, Any]:
    practice = await prepare(stack, args.rooms)
    try:
        part_a = {}
        for visitors in crowds:
            part_a[str(visitors)] = await arrivals(stack, practice, visitors, args.rate, args.grace)
            figures = part_a[str(visitors)]
            log(
                f"{visitors} visitors: form POST p50 {figures['form_post']['p50_ms']} ms, dashboard event p50 "
                f"{figures['dashboard_event']['p50_ms']} ms, p99 {figures['dashboard_event']['p99_ms']} ms, "
                f"missed {figures['events_missed']}"
            )
        part_b = await calls(stack, practice, args.pairs) if args.pairs else None
    finally:
        await practice.expert.aclose()
    return {"arrivals": part_a, "calls": part_b}


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    crowds = [int(x) for x in str(args.visitors).split(",") if x.strip()]
    if not crowds or min(crowds) < 1 or args.rate <= 0 or args.rooms < 1 or args.pairs < 0:
        raise SystemExit("--visitors, --rate and --rooms must be positive, --pairs at least 0")
    set_quiet(args.quiet)
    host = machine()
    started = time.monotonic()
    with relay_stack(args.database) as stack:
        measured = run_async(measure(stack, args, crowds))
    largest = measured["arrivals"][str(max(crowds))]
    call_p99 = ((measured["calls"] or {}).get("konsil_from_admit_ms") or {}).get("ice_connected", {}).get("p99_ms")
    meets = (
        largest["p99_ratio"] is not None
        and largest["p99_ratio"] <= AIM_EVENT_P99_RATIO
        and largest["dashboard_event"]["p99_ms"] <= AIM_EVENT_P99_MS
        and all(a["events_missed"] == 0 and a["errors"] == 0 for a in measured["arrivals"].values())
        and (not args.pairs or (call_p99 is not None and call_p99 <= AIM_ADMIT_TO_ICE_P99_MS))
    )
    return {
        "benchmark": NAME,
        "database": args.database,
        "channels": "PostgreSQL LISTEN/NOTIFY" if args.database == "postgres" else "in memory",
        "rooms": args.rooms,
        "rate_per_s": args.rate,
        **measured,
        "aim": {
            "event_p99_ms_at_most": AIM_EVENT_P99_MS,
            "event_p99_ratio_at_most": AIM_EVENT_P99_RATIO,
            "admit_to_ice_p99_ms_at_most": AIM_ADMIT_TO_ICE_P99_MS,
        },
        "meets_aim": meets,
        "seconds": round(time.monotonic() - started, 1),
        **conditions(host),
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone(run, argv, "servers stopped and databases dropped")


if __name__ == "__main__":
    sys.exit(main())
