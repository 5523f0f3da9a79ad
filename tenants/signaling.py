"""WebSocket signaling: offers, answers and ICE candidates relayed only between the
two participants of one call; live events for the waiting room and the dashboard.

Messages are msgspec-validated, bounded in size, and never stored (media and SDP
pass by; only telemetry samples and in-call actions are kept, per call, P5). A bad
message gets an error reply and the call goes on. Events travel through Litestar
channels, so participants may sit on different region replicas (in-memory backend
in the embedded mode, PostgreSQL LISTEN/NOTIFY in services mode).

A socket whose peer does not take its messages in time is closed with code 4408
(the page reconnects): its backlog is bounded (platform/core/channels.py) and a message it
has not taken within ``SEND_TIMEOUT_SECONDS`` ends it. Nothing is buffered without
bound for a slow reader. Telemetry is bounded per participant and call
(tenants/visits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import WebSocket, websocket
from litestar.channels import ChannelsPlugin
from litestar.exceptions import WebSocketDisconnect

from konsil.platform.core import clock, errors
from konsil.platform.core.authz import rule
from konsil.platform.core.channels import BoundedSubscriber
from konsil.platform.core.keys.region_signing import SigningUnavailable
from konsil.platform.core.region import RegionContext, region_of
from konsil.platform.core.telemetry import metrics
from konsil.tenants import organisations, records, visits
from konsil.tenants.actors import Actor, actor_of, source_address
from konsil.tenants.auth import Principal

log = logging.getLogger("konsil.signaling")

TRY_AGAIN_LATER = 1013  # WebSocket close code (RFC 6455 registry): the server cannot serve it now
SIGNING_UNAVAILABLE = (
    "The call cannot start right now: the region cannot sign the record of where the call is relayed "
    "(its key service does not answer). Try again in a minute."
)

MAX_MESSAGE_BYTES = 32 * 1024
VISIT_COOKIE = "konsil_visit"
# A peer that has not taken a message this long after it was sent is cut off.
SEND_TIMEOUT_SECONDS = 15.0
TOO_SLOW = 4408  # close code: the page did not read its messages in time (it reconnects)

Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
Ms = Annotated[float, msgspec.Meta(ge=0, le=600_000)]


class _Msg(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    call_id: uuid.UUID | None = None  # if given, must be the socket's own call


class Hello(_Msg, tag="hello"):
    """I am here (sent on joining a call)."""


class Present(_Msg, tag="present"):
    """Answer to a peer's hello: I was here already."""


class Offer(_Msg, tag="offer"):
    sdp: Sdp


class Answer(_Msg, tag="answer"):
    sdp: Sdp


class Ice(_Msg, tag="ice"):
    candidate: Annotated[str, msgspec.Meta(max_length=2_000)]
    sdpMid: Annotated[str, msgspec.Meta(max_length=64)] | None = None  # WebRTC's own names
    sdpMLineIndex: Annotated[int, msgspec.Meta(ge=0, le=64)] | None = None


class Quality(_Msg, tag="quality"):
    """A network-quality sample from getStats."""

    rtt_ms: Ms | None = None
    jitter_ms: Ms | None = None
    packet_loss: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    bitrate_kbps: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] | None = None


class Action(_Msg, tag="action"):
    action: Literal[
        "mute",
        "unmute",
        "camera_on",
        "camera_off",
        "screen_share_start",
        "screen_share_stop",
        "camera_permission",
        "microphone_permission",
    ]
    state: Literal["granted", "denied", "prompt"] | None = None


class Hangup(_Msg, tag="hangup"):
    pass


ClientMessage = Hello | Present | Offer | Answer | Ice | Quality | Action | Hangup
RELAYED = (Hello, Present, Offer, Answer, Ice)
_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)


class BadMessage(Exception):
    pass


def decode(raw: str | bytes, call_id: uuid.UUID | None) -> ClientMessage:
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"message too large (at most {MAX_MESSAGE_BYTES} bytes)")
    try:
        message = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise BadMessage(f"invalid message: {exc}") from None
    except msgspec.DecodeError:
        raise BadMessage("message is not valid JSON") from None
    if message.call_id is not None and message.call_id != call_id:
        raise BadMessage("message addressed to another call")
    return message


def _channels(socket: WebSocket[Any, Any, Any]) -> ChannelsPlugin:
    live = region_of(socket).live
    assert live is not None, "the region service always has live events"
    return live


def _origin_ok(socket: WebSocket[Any, Any, Any]) -> bool:
    """Cookie-authenticated sockets only from the region's own pages (no cross-site
    WebSocket hijacking). Clients without an Origin header are not browsers."""
    origin = socket.headers.get("origin")
    if origin is None:
        return True
    public = region_of(socket).region.public_url.rstrip("/")
    host = socket.headers.get("host", "")
    return origin.rstrip("/") in {public, f"http://{host}", f"https://{host}"}


class TooSlow(Exception):
    """The socket's peer does not take its messages: it is closed with ``TOO_SLOW``."""


async def _send(socket: WebSocket[Any, Any, Any], event: dict[str, Any]) -> None:
    try:
        async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
            await socket.send_text(msgspec.json.encode(event).decode())
    except TimeoutError:
        raise TooSlow(f"a message was not taken within {SEND_TIMEOUT_SECONDS:g} s") from None


async def _cut_off(socket: WebSocket[Any, Any, Any], why: str) -> None:
    """Close a socket whose peer does not read; what it had not taken is dropped."""
    log.warning("signaling socket closed, its peer is too slow: %s", why)
    with contextlib.suppress(Exception):
        await socket.close(code=TOO_SLOW, reason="too slow: messages were not read in time")


async def _subscribe(
    socket: WebSocket[Any, Any, Any], channels: list[str], tasks: list[asyncio.Task[None]]
) -> BoundedSubscriber:
    """A subscriber for this socket: when its backlog overflows, the socket is closed."""
    subscriber = await _channels(socket).subscribe(channels)
    assert isinstance(subscriber, BoundedSubscriber)
    subscriber.channels = channels
    why = f"more than {subscriber.MAX_EVENTS} events or {subscriber.MAX_BYTES} bytes were waiting"

    def overflowed() -> None:
        tasks.append(asyncio.create_task(_cut_off(socket, why)))

    subscriber.on_overflow = overflowed
    return subscriber


def _call_setup(
    ctx: RegionContext, org: records.Organisation, call_id: uuid.UUID, role: str
) -> tuple[dict[str, Any], str | None]:
    """The ``joined`` message, and the relay node the call was given (if any)."""
    offer = ctx.relays.for_call(str(call_id))
    servers, node_id, unavailable = offer.servers, offer.node_id, offer.unavailable
    has_relay = any(url.startswith("turn") for server in servers for url in server.urls)
    relay_only = org.relay_only
    notice = None
    if relay_only and not has_relay:
        if ctx.settings.mode == "embedded" and not ctx.relays.registered:
            # The embedded default runs on one machine with no relay: calls go direct.
            relay_only = False
            notice = "This trial setup has no relay: the call connects directly on this machine."
        else:
            notice = (unavailable or "no media relay is available in this region right now").capitalize() + (
                ", so the call cannot connect. Try again in a minute."
            )
    return {
        "type": "joined",
        "role": role,
        "call_id": str(call_id),
        "ice_servers": msgspec.to_builtins(servers),
        "relay_only": relay_only,
        "notice": notice,
    }, node_id


async def _pump(socket: WebSocket[Any, Any, Any], subscriber: Any, me: str, on_event: Any = None) -> None:
    """Channel events → this socket (skipping what this participant sent itself)."""
    try:
        async for raw in subscriber.iter_events():
            event = msgspec.json.decode(raw)
            if event.get("from") == me:
                continue
            if on_event is not None and await on_event(event):
                continue
            if "msg" in event:
                await _send(socket, {**event["msg"], "from": event["from"]})
            else:
                await _send(socket, event)
            if (event.get("msg") or event).get("type") == "ended":
                await socket.close()  # the call is over: the receive loop ends with the socket
                return
    except TooSlow as exc:
        await _cut_off(socket, str(exc))


def _inbox(call_id: uuid.UUID, role: str) -> str:
    """What one participant of a call is sent by the other (never its own messages back:
    a sender's echo would fill its own backlog). The call's channel carries the rest."""
    return f"{visits.call_channel(call_id)}:{role}"


class CallSession:
    """One participant's side of a call on this socket."""

    def __init__(self, socket: WebSocket[Any, Any, Any], org: records.Organisation, role: str, actor: Actor) -> None:
        self.socket = socket
        self.org = org
        self.role = role
        self.actor = actor
        self.call: records.Call | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.subscribers: list[BoundedSubscriber] = []
        self.connected_timed = False

    async def join(self, call: records.Call) -> None:
        ctx = region_of(self.socket)
        self.call = call
        channels = [visits.call_channel(call.id), _inbox(call.id, self.role)]
        subscriber = await _subscribe(self.socket, channels, self.tasks)
        self.subscribers.append(subscriber)
        self.tasks.append(asyncio.create_task(_pump(self.socket, subscriber, self.role)))
        joined, node_id = _call_setup(ctx, self.org, call.id, self.role)
        if node_id is not None:
            try:
                await visits.record_relay(ctx, self.actor, call, node_id)
            except SigningUnavailable as exc:
                # No relay without its signed receipt: the call's residency could not be shown.
                log.error("call %s: its residency receipt could not be signed: %s", call.id, exc)
                await _send(self.socket, {"type": "error", "message": SIGNING_UNAVAILABLE})
                await self.socket.close(code=TRY_AGAIN_LATER, reason="try again in a minute")
                return
        await _send(self.socket, joined)
        await self.relay(Hello())

    async def relay(self, message: ClientMessage) -> None:
        """To the other participant. Published before the next message is read, so a
        sender cannot outrun the channel (no queue of its own grows behind it)."""
        assert self.call is not None
        event = msgspec.json.encode({"from": self.role, "msg": msgspec.to_builtins(message)})
        peer = "expert" if self.role == "visitor" else "visitor"
        await _channels(self.socket).wait_published(event, [_inbox(self.call.id, peer)])

    async def handle(self, message: ClientMessage) -> bool:
        """Act on one message; False when the session is over."""
        ctx = region_of(self.socket)
        if self.call is None:
            raise BadMessage("not in a call yet")
        if isinstance(message, RELAYED):
            await self.relay(message)
        elif isinstance(message, Quality | Action):
            if isinstance(message, Quality) and not self.connected_timed:
                # The first quality sample: the peer connection carries media (telemetry).
                self.connected_timed = True
                metrics.admit_to_connected.record(max(0.0, (clock.now() - self.call.started_at).total_seconds()))
            kind = "quality" if isinstance(message, Quality) else "action"
            fields = {name: getattr(message, name) for name in message.__struct_fields__ if name != "call_id"}
            body = msgspec.json.encode({"type": kind, **fields})
            await visits.store_telemetry(self.call, self.role, kind, body)
        elif isinstance(message, Hangup):
            await visits.end_call(ctx, self.actor, self.org.id, self.call.id)
            await _send(self.socket, {"type": "ended"})  # the socket closes before the channel echo
            return False
        return True

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for subscriber in self.subscribers:
            with contextlib.suppress(Exception):
                await _channels(self.socket).unsubscribe(subscriber, subscriber.channels)


async def _receive_loop(socket: WebSocket[Any, Any, Any], session: CallSession, on_message: Any) -> None:
    while True:
        try:
            raw = await socket.receive_data(mode="text")
        except WebSocketDisconnect:
            return
        try:
            try:
                call_id = session.call.id if session.call else None
                message = decode(raw, call_id)
                if not await on_message(message):
                    return
            except BadMessage as exc:
                await _send(socket, {"type": "error", "message": str(exc)})
            except errors.AppError as exc:
                await _send(socket, {"type": "error", "message": exc.message})
        except TooSlow as exc:
            await _cut_off(socket, str(exc))
            return


async def _still_here(ctx: RegionContext, visit: records.Visit, session: CallSession) -> None:
    """While this page waits, say so now and then: another tab of the same visit that
    closed marked it away, and this one is still here."""
    while session.call is None:
        await asyncio.sleep(visits.PRESENCE_REFRESH_SECONDS)
        await visits.visitor_present(ctx, visit, True)


@websocket("/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}/ws", opt={"public": True})
async def visitor_socket(socket: WebSocket[Any, Any, Any], slug: str, room_slug: str, visit_id: uuid.UUID) -> None:
    """The visitor's one socket: waiting, admission, the call's signaling, the end."""
    if not _origin_ok(socket):
        await socket.close(code=4403, reason="wrong origin")
        return
    org = await organisations.get(slug)
    try:
        if org is None:
            raise errors.not_found()
        visit = await visits.visit_for_token(org, visit_id, socket.cookies.get(VISIT_COOKIE))
    except errors.AppError:
        await socket.close(code=4404, reason="no such visit")
        return
    await socket.accept()
    ctx = region_of(socket)
    actor = Actor(f"visitor:{visit_id}", "visitor", f"visitor:{visit_id}", source_address(socket), "video consultation")
    session = CallSession(socket, org, "visitor", actor)
    admitted = asyncio.Event()

    async def on_visit_event(event: dict[str, Any]) -> bool:
        if event.get("type") == "ended" and session.call is not None:
            return True  # the call's own channel says so already
        if event.get("type") == "admitted" and session.call is None:
            call = await visits.call_by_id(org.id, uuid.UUID(event["call_id"]))
            if call is not None:
                await session.join(call)
                admitted.set()
            return True
        return False

    visit_subscriber = await _subscribe(socket, [visits.visit_channel(visit_id)], session.tasks)
    session.subscribers.append(visit_subscriber)
    session.tasks.append(asyncio.create_task(_pump(socket, visit_subscriber, "visitor", on_visit_event)))
    try:
        if visit.status == "waiting":
            await visits.visitor_present(ctx, visit, True)
            session.tasks.append(asyncio.create_task(_still_here(ctx, visit, session)))
            await _send(socket, {"type": "waiting"})
        elif visit.status == "admitted":
            call = await visits.call_of_visit(visit)
            if call is not None and call.ended_at is None:
                await session.join(call)
        else:
            await _send(socket, {"type": "ended"})
            return

        async def on_message(message: ClientMessage) -> bool:
            if session.call is None:
                if isinstance(message, Hangup):
                    await visits.leave(ctx, visit)
                    await _send(socket, {"type": "ended"})
                    return False
                raise BadMessage("you are in the waiting room; the expert will let you in")
            return await session.handle(message)

        await _receive_loop(socket, session, on_message)
    finally:
        await session.close()
        with contextlib.suppress(Exception):
            await socket.close()
        if session.call is None:  # still waiting (a hang-up has set it "left" already)
            with contextlib.suppress(Exception):
                await visits.visitor_present(ctx, visit, False)


@websocket("/{slug:str}/calls/{call_id:uuid}/ws", opt=rule("owner", "admin", "expert"))
async def expert_call_socket(socket: WebSocket[Any, Any, Any], call_id: uuid.UUID) -> None:
    """The expert's side of a call."""
    if not _origin_ok(socket):
        await socket.close(code=4403, reason="wrong origin")
        return
    org: records.Organisation = socket.state.org
    principal: Principal = socket.state.principal
    try:
        call = await visits.call_for_member(org, call_id, principal.id, principal.role)
    except errors.AppError:
        await socket.close(code=4404, reason="no such call")
        return
    await socket.accept()
    if call.ended_at is not None:
        await _send(socket, {"type": "ended"})
        await socket.close()
        return
    session = CallSession(socket, org, "expert", actor_of(socket))
    try:
        await session.join(call)
        await _receive_loop(socket, session, session.handle)
    finally:
        await session.close()
        with contextlib.suppress(Exception):
            await socket.close()


@websocket("/{slug:str}/portal/ws", opt=rule("owner", "admin", "expert"))
async def dashboard_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """Live events for the expert's dashboard: the waiting list or the calls changed.
    Events carry no personal data; the page then fetches the list (access-logged)."""
    if not _origin_ok(socket):
        await socket.close(code=4403, reason="wrong origin")
        return
    org: records.Organisation = socket.state.org
    await socket.accept()
    tasks: list[asyncio.Task[None]] = []
    subscriber = await _subscribe(socket, [visits.dashboard_channel(org.id)], tasks)
    tasks.append(asyncio.create_task(_pump(socket, subscriber, "dashboard")))
    try:
        await _send(socket, {"type": "ready"})
        while True:
            await socket.receive_data(mode="text")  # the dashboard only listens
    except (WebSocketDisconnect, TooSlow):
        pass
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await _channels(socket).unsubscribe(subscriber, subscriber.channels)


SOCKETS = [visitor_socket, expert_call_socket, dashboard_socket]
