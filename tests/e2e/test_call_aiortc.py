"""A real call through Konsil's signaling: a visitor and an expert, each an aiortc
peer sending a generated video track, negotiate through the WebSocket API and talk
through the region's coturn relay (docs/architecture.md, real parts in tests: aioice never offers
127.0.0.1 host candidates, so on loopback every byte goes through TURN).

Signaling as a browser does it: the offer and the answer go without candidates
(``a=candidate`` lines stripped) and each candidate is trickled as an ``ice``
message, which the other side adds with ``addIceCandidate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransport,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription, candidate_from_sdp, candidate_to_sdp
from av import VideoFrame
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT = 160, 120
LUMA = {"visitor": 200, "expert": 60}  # each side paints its frames a different grey
TIMEOUT = 30


# --- HTTP and sockets -----------------------------------------------------------------------


@dataclass
class Member:
    http: httpx.AsyncClient  # session cookie kept, x-csrf-token sent on every call
    session: str  # the konsil_session cookie, for the member's sockets


async def login(base: str, slug: str, email: str, password: str) -> Member:
    http = httpx.AsyncClient(base_url=base, timeout=30)
    response = await http.post(f"/api/v1/orgs/{slug}/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    http.headers["x-csrf-token"] = response.json()["csrf_token"]
    return Member(http, response.cookies["konsil_session"])


@dataclass
class Visitor:
    visit_id: uuid.UUID
    path: str  # /{slug}/{room}/visits/{visit_id}
    token: str  # the konsil_visit cookie


async def arrive(base: str, slug: str, room: str, name: str = "Vera Visitor") -> Visitor:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        response = await http.post(
            f"/{slug}/{room}/visits", data={"name": name, "phone": "+47 12345678", "consent": "yes"}
        )
    assert response.status_code == 303, response.text
    path = response.headers["location"]
    cookie = response.cookies.jar
    [token] = [c for c in cookie if c.name == "konsil_visit"]
    assert token.path == path and token.value
    return Visitor(uuid.UUID(path.rsplit("/", 1)[1]), path, token.value)


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://", 1) + path


@contextlib.asynccontextmanager
async def socket(base: str, path: str, **cookies: str) -> AsyncIterator[ClientConnection]:
    header = "; ".join(f"{name}={value}" for name, value in cookies.items())
    async with connect(ws_url(base, path), additional_headers={"cookie": header}, open_timeout=10) as ws:
        yield ws


async def receive(ws: ClientConnection, within: float = TIMEOUT, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The next message (skipping the given types)."""
    async with asyncio.timeout(within):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["type"] not in skip:
                return message


# A participant's hello can reach a peer who joined just after it (the channel's
# delivery takes a while): hello and present may come in either order and number.
GREETINGS = ("hello", "present")


async def refused(base: str, path: str, **cookies: str) -> str:
    """How the server refused a socket: the handshake's HTTP status, or the close code
    before any message. Fails if the socket opens and carries a message."""
    try:
        async with socket(base, path, **cookies) as ws:
            message = await receive(ws, within=10)
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"
    except ConnectionClosed as exc:
        return f"close {exc.rcvd.code if exc.rcvd else None}"
    raise AssertionError(f"the socket {path} opened and said {message}")


# --- the peers ------------------------------------------------------------------------------


class GreyTrack(VideoStreamTrack):
    """30 frames/s of one grey level: the receiver can tell whose frames it got."""

    def __init__(self, luma: int) -> None:
        super().__init__()
        self.luma = luma

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        frame.planes[0].update(bytes([self.luma]) * frame.planes[0].buffer_size)
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        return frame


def mean_luma(frame: VideoFrame) -> float:
    plane = frame.planes[0]
    data = bytes(plane)
    rows = [data[y * plane.line_size : y * plane.line_size + frame.width] for y in range(frame.height)]
    return sum(sum(row) for row in rows) / (frame.width * frame.height)


def without_candidates(sdp: str) -> str:
    lines = sdp.split("\r\n")
    return "\r\n".join(x for x in lines if not x.startswith(("a=candidate:", "a=end-of-candidates")))


class Peer:
    """One participant: reads its socket, follows the protocol (the visitor offers on
    the expert's hello or present; both reply present to a hello; the expert answers;
    candidates trickle), and records every message it got."""

    def __init__(self, role: str, ws: ClientConnection) -> None:
        self.role = role
        self.ws = ws
        self.pc: RTCPeerConnection | None = None
        self.messages: list[dict[str, Any]] = []
        self.joined: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.remote_track: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self.connected = asyncio.Event()
        self.ended = asyncio.Event()
        self.offered = False
        self.sent_candidates: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self.run())

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def run(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            self.messages.append(message)
            await self.on_message(message)

    async def until(self, event: asyncio.Event | asyncio.Future[Any]) -> None:
        """Wait for ``event``; if this peer's message loop died first, raise its error."""
        waiting = asyncio.ensure_future(event.wait() if isinstance(event, asyncio.Event) else event)
        try:
            await asyncio.wait({waiting, self.task}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                if self.task.done() and not self.task.cancelled() and self.task.exception():
                    raise AssertionError(f"the {self.role}'s peer failed") from self.task.exception()
                raise AssertionError(f"the {self.role}'s peer: timed out; it got {[m['type'] for m in self.messages]}")
        finally:
            if not waiting.done():
                waiting.cancel()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    async def on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "joined":
            self.start(message["ice_servers"])
            self.joined.set_result(message)
        elif kind in ("hello", "present") and message.get("from") not in (None, self.role):
            if kind == "hello":
                await self.send({"type": "present"})
            if self.role == "visitor" and not self.offered:
                self.offered = True
                await self.describe("offer")
        elif kind == "offer":
            assert self.pc is not None
            await self.pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
            await self.describe("answer")
        elif kind == "answer":
            assert self.pc is not None
            await self.pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "answer"))
        elif kind == "ice":
            assert self.pc is not None
            candidate = candidate_from_sdp(message["candidate"].removeprefix("candidate:"))
            candidate.sdpMid, candidate.sdpMLineIndex = message.get("sdpMid"), message.get("sdpMLineIndex")
            await self.pc.addIceCandidate(candidate)
        elif kind == "ended":
            self.ended.set()

    def start(self, ice_servers: list[dict[str, Any]]) -> None:
        servers = [RTCIceServer(s["urls"], s.get("username"), s.get("credential")) for s in ice_servers]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY))
        pc.addTrack(GreyTrack(LUMA[self.role]))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if not self.remote_track.done():
                self.remote_track.set_result(track)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                self.connected.set()

        self.pc = pc

    async def describe(self, kind: str) -> None:
        """Offer or answer without candidates, then trickle them one by one."""
        assert self.pc is not None
        made = await (self.pc.createOffer() if kind == "offer" else self.pc.createAnswer())
        await self.pc.setLocalDescription(made)  # aiortc gathers (allocates on TURN) here
        sdp = self.pc.localDescription.sdp
        await self.send({"type": kind, "sdp": without_candidates(sdp)})
        for index, media in enumerate(SessionDescription.parse(sdp).media):
            for candidate in media.ice_candidates:
                message = {
                    "type": "ice",
                    "candidate": "candidate:" + candidate_to_sdp(candidate),
                    "sdpMid": media.rtp.muxId,
                    "sdpMLineIndex": index,
                }
                self.sent_candidates.append(message)
                await self.send(message)

    def ice_transport(self) -> RTCIceTransport:
        assert self.pc is not None
        return self.pc.getTransceivers()[0].receiver.transport.transport

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        if self.pc is not None:
            await self.pc.close()


async def frames_from(peer: Peer, count: int = 5) -> list[VideoFrame]:
    await peer.until(peer.remote_track)
    track = peer.remote_track.result()
    frames = [await asyncio.wait_for(track.recv(), TIMEOUT) for _ in range(count)]
    assert all(isinstance(f, VideoFrame) for f in frames)
    return frames  # type: ignore[return-value]


# --- the scenario ---------------------------------------------------------------------------


@dataclass
class Practice:
    base: str
    slug: str
    room: str
    expert: Member


async def practice(stack: Stack) -> Practice:
    """An EU organisation with an expert who opened a room."""
    made = stack.signup("eu")
    slug = made["slug"]
    base = stack.region_url("eu")
    owner = await login(base, slug, made["owner"]["email"], made["owner"]["password"])
    tag = stack.unique("expert")
    invited = await owner.http.post(
        f"/api/v1/orgs/{slug}/members",
        json={"name": "Erik Expert", "email": f"{tag}@members.example", "role": "expert", "password": "expert pw 123"},
    )
    assert invited.status_code == 201, invited.text
    await owner.http.aclose()
    expert = await login(base, slug, f"{tag}@members.example", "expert pw 123")
    room = stack.unique("room")
    created = await expert.http.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": room, "title": "Sprechstunde"})
    assert created.status_code == 201, created.text
    assert created.json()["expert_id"] == str(invited.json()["id"])
    return Practice(base, slug, room, expert)


async def test_a_call_connects_through_the_relay_and_ends_on_record(stack: Stack) -> None:
    assert stack.turn["port"]
    p = await practice(stack)
    visitor_at = await arrive(p.base, p.slug, p.room)
    peers: list[Peer] = []
    try:
        async with (
            socket(p.base, f"{visitor_at.path}/ws", konsil_visit=visitor_at.token) as visitor_ws,
            asyncio.timeout(120),
        ):
            assert await receive(visitor_ws) == {"type": "waiting"}
            visitor = Peer("visitor", visitor_ws)
            peers.append(visitor)

            admitted = await p.expert.http.post(f"/api/v1/orgs/{p.slug}/visits/{visitor_at.visit_id}/admit")
            assert admitted.status_code == 200, admitted.text
            call_id = admitted.json()["id"]
            assert admitted.json()["visit_id"] == str(visitor_at.visit_id)
            await visitor.until(visitor.joined)
            joined_visitor = visitor.joined.result()
            assert joined_visitor["role"] == "visitor" and joined_visitor["call_id"] == call_id

            async with socket(p.base, f"/{p.slug}/calls/{call_id}/ws", konsil_session=p.expert.session) as expert_ws:
                expert = Peer("expert", expert_ws)
                peers.append(expert)
                await expert.until(expert.joined)
                joined_expert = expert.joined.result()
                assert joined_expert["role"] == "expert" and joined_expert["call_id"] == call_id
                [turn] = joined_expert["ice_servers"]
                assert turn["urls"][0] == f"turn:127.0.0.1:{stack.turn['port']}?transport=udp"
                assert turn["username"].endswith(f":{call_id}") and turn["credential"]

                await visitor.until(visitor.connected)
                await expert.until(expert.connected)

                # Frames on both sides, and each side sees the other's grey, not its own.
                for receiver, source in ((visitor, "expert"), (expert, "visitor")):
                    frames = await frames_from(receiver)
                    assert {(f.width, f.height) for f in frames} == {(WIDTH, HEIGHT)}
                    assert abs(mean_luma(frames[-1]) - LUMA[source]) < 8, (receiver.role, mean_luma(frames[-1]))

                # The protocol as it went: the visitor offered, the expert answered,
                # candidates trickled both ways, relayed messages carry their sender.
                assert [m["from"] for m in visitor.of_type("hello")] == ["expert"]
                assert [m["from"] for m in expert.of_type("present")] == ["visitor"]
                assert [m["from"] for m in expert.of_type("offer")] == ["visitor"]
                assert [m["from"] for m in visitor.of_type("answer")] == ["expert"]
                assert "a=candidate" not in expert.of_type("offer")[0]["sdp"]
                for receiver, sender in ((visitor, expert), (expert, visitor)):
                    # (relayed messages also carry "call_id": null, the schema's default)
                    got = [
                        {k: v for k, v in m.items() if k != "from" and v is not None} for m in receiver.of_type("ice")
                    ]
                    assert got == sender.sent_candidates and got
                    assert {m["from"] for m in receiver.of_type("ice")} == {sender.role}
                assert not visitor.of_type("error") and not expert.of_type("error")

                # Relayed: only relay candidates, and the nominated pair joins the two
                # peers' TURN allocations on the coturn relay.
                relay_ports = {}
                for peer in (visitor, expert):
                    transport = peer.ice_transport()
                    local = transport.iceGatherer.getLocalCandidates()
                    assert local and {c.type for c in local} == {"relay"}
                    assert {c.ip for c in local} == {"127.0.0.1"}
                    assert stack.turn["port"] not in {c.port for c in local}
                    assert {c.type for c in transport.getRemoteCandidates()} == {"relay"}
                    relay_ports[peer.role] = {c.port for c in local}
                for peer, other in ((visitor, "expert"), (expert, "visitor")):
                    pair = peer.ice_transport()._connection._nominated[1]  # aioice: the selected pair
                    assert pair.local_candidate.type == "relay" and pair.remote_candidate.type == "relay"
                    assert pair.local_candidate.port in relay_ports[peer.role]
                    assert pair.remote_candidate.port in relay_ports[other]

                # The expert hangs up: both hear the call ended; the expert's socket
                # then closes normally.
                await expert.send({"type": "hangup"})
                await visitor.until(visitor.ended)
                await asyncio.wait_for(expert.task, TIMEOUT)
                assert expert.ended.is_set() and expert_ws.close_code == 1000
                assert not visitor.of_type("error") and not expert.of_type("error")
    finally:
        for peer in peers:
            await peer.close()

    dsn = stack.dsns["eu"]
    [call] = await fetch(
        dsn, 'SELECT started_at, ended_at, duration_seconds, expires_at FROM "call" WHERE id = $1', uuid.UUID(call_id)
    )
    assert call["ended_at"] is not None and call["ended_at"] >= call["started_at"]
    assert call["duration_seconds"] is not None and 0 <= call["duration_seconds"] <= 120
    [visit] = await fetch(dsn, "SELECT status, ended_at, expires_at FROM visit WHERE id = $1", visitor_at.visit_id)
    assert visit["status"] == "ended" and visit["ended_at"] is not None
    assert call["expires_at"] == visit["expires_at"]
    logged = await fetch(
        dsn,
        "SELECT action, actor_role FROM access_log_entry WHERE object_type = 'call' AND object_id = $1 ORDER BY seq",
        call_id,
    )
    assert [row["action"] for row in logged] == ["create", "update"]
    today = await p.expert.http.get(f"/api/v1/orgs/{p.slug}/calls/today")
    assert today.status_code == 200
    [listed] = [c for c in today.json() if c["id"] == call_id]
    assert listed["ended_at"] is not None and listed["duration_seconds"] == call["duration_seconds"]

    # A visitor's token opens its own visit only, and never an expert's socket.
    second = await arrive(p.base, p.slug, p.room, name="Otto Other")
    assert await refused(p.base, f"{second.path}/ws", konsil_visit=visitor_at.token) in {"http 403", "close 4404"}
    assert await refused(p.base, f"{second.path}/ws") in {"http 403", "close 4404"}
    assert await refused(p.base, f"/{p.slug}/calls/{call_id}/ws", konsil_visit=visitor_at.token) in {
        "http 403",
        "close 4401",
        "close 4404",
    }
    async with socket(p.base, f"{second.path}/ws", konsil_visit=second.token) as own:
        assert await receive(own) == {"type": "waiting"}
        await own.send(json.dumps({"type": "hangup"}))
        assert await receive(own) == {"type": "ended"}
    async with socket(p.base, f"{visitor_at.path}/ws", konsil_visit=visitor_at.token) as after:
        assert await receive(after) == {"type": "ended"}  # the ended visit stays ended
    await p.expert.http.aclose()


@contextlib.asynccontextmanager
async def call_without_media(
    p: Practice,
) -> AsyncIterator[tuple[ClientConnection, ClientConnection, str]]:
    """A visitor admitted and both sockets joined (no peers): (visitor, expert, call id)."""
    visitor_at = await arrive(p.base, p.slug, p.room)
    async with socket(p.base, f"{visitor_at.path}/ws", konsil_visit=visitor_at.token) as visitor_ws:
        assert await receive(visitor_ws) == {"type": "waiting"}
        admitted = await p.expert.http.post(f"/api/v1/orgs/{p.slug}/visits/{visitor_at.visit_id}/admit")
        assert admitted.status_code == 200, admitted.text
        call_id = admitted.json()["id"]
        assert (await receive(visitor_ws))["type"] == "joined"
        async with socket(p.base, f"/{p.slug}/calls/{call_id}/ws", konsil_session=p.expert.session) as expert_ws:
            assert (await receive(expert_ws))["type"] == "joined"
            assert (await receive(visitor_ws))["type"] == "hello"
            yield visitor_ws, expert_ws, call_id


async def test_ending_the_call_through_the_api_reaches_both_sockets(stack: Stack) -> None:
    p = await practice(stack)
    async with call_without_media(p) as (visitor_ws, expert_ws, call_id):
        ended = await p.expert.http.post(f"/api/v1/orgs/{p.slug}/calls/{call_id}/end")
        assert ended.status_code == 200 and ended.json()["ended"] is True
        assert (await receive(expert_ws, skip=GREETINGS))["type"] == "ended"
        assert (await receive(visitor_ws, skip=GREETINGS))["type"] == "ended"
        again = await p.expert.http.post(f"/api/v1/orgs/{p.slug}/calls/{call_id}/end")
        assert again.status_code == 200 and again.json()["duration_seconds"] is None  # idempotent
    await p.expert.http.aclose()


async def test_the_side_that_hangs_up_hears_ended_too(stack: Stack) -> None:
    p = await practice(stack)
    try:
        async with call_without_media(p) as (visitor_ws, expert_ws, _call_id):
            await expert_ws.send(json.dumps({"type": "hangup"}))
            assert (await receive(visitor_ws, skip=GREETINGS))["type"] == "ended"
            assert (await receive(expert_ws, within=30, skip=GREETINGS))["type"] == "ended"
    finally:
        await p.expert.http.aclose()
