"""The pre-call network test: which relay, how many at once, the verdict and the
advice, and the stored result (support metadata with no link to a visit, P10).

The relays come exactly as a call's do (tenants/signaling.py): with a media-node
registry, a healthy node of this region (never another region's); otherwise the
region's configured ``ice_servers`` with TURN credentials from its ``turn_secret``.
Only the chosen transport's TURN URLs are used, and both sides are relay-only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from konsil.media_nodes.heartbeat import NodeId
from konsil.media_nodes.network_test.measures import Figures, OfferRefused, Plan, check_offer
from konsil.media_nodes.network_test.measures import relay_candidates_only as relay_candidates_only
from konsil.media_nodes.network_test.tables import NetworkTestResult
from konsil.platform.core.region import IceServer, NetworkTests, RegionContext, RelayUnavailable
from konsil.platform.core.text import MULTILINE_PATTERN

if TYPE_CHECKING:
    from konsil.media_nodes.network_test.peer import ProbePeer

log = logging.getLogger("konsil.network_test")

Transport = Literal["udp", "tcp"]
Verdict = Literal["good", "may be unstable", "cannot connect"]
Runner = Literal["visitor", "member"]

# How much of the region service one test may take.
CONNECT_TIMEOUT_SECONDS = 10.0
DEFAULT_PROBE_SECONDS = 2.5
MAX_PROBE_SECONDS = 3.0
DEFAULT_BULK_SECONDS = 2.5
MAX_BULK_SECONDS = 3.0
MIN_PHASE_SECONDS = 0.3
MAX_SDP_CHARS = 16_000

# A call is "good" within all of these; outside any of them it "may be unstable".
GOOD_RTT_MS = 250.0  # round trip through the relay; conversation stays natural below it
GOOD_JITTER_MS = 30.0  # what a browser's jitter buffer absorbs without audible gaps
GOOD_LOSS_PERCENT = 2.0  # audio and video conceal this much loss
GOOD_THROUGHPUT_KBPS = 1_000.0  # a clear video picture upwards, with audio

BrowserFamily = Literal["chrome", "edge", "firefox", "safari", "opera", "samsung", "other"]
Language = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}\Z", max_length=35)]
Seconds = Annotated[float, msgspec.Meta(ge=MIN_PHASE_SECONDS)]


class BrowserInfo(msgspec.Struct, forbid_unknown_fields=True):
    family: BrowserFamily
    major: Annotated[int, msgspec.Meta(ge=0, le=999)]


class NetworkTestIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The browser's offer (non-trickle: its relay candidates inside) and what to test."""

    transport: Transport
    sdp: Annotated[str, msgspec.Meta(min_length=10, max_length=MAX_SDP_CHARS, pattern=MULTILINE_PATTERN)]
    probe_seconds: Annotated[float, msgspec.Meta(ge=MIN_PHASE_SECONDS, le=MAX_PROBE_SECONDS)] = DEFAULT_PROBE_SECONDS
    bulk_seconds: Annotated[float, msgspec.Meta(ge=MIN_PHASE_SECONDS, le=MAX_BULK_SECONDS)] = DEFAULT_BULK_SECONDS
    browser: BrowserInfo | None = None
    language: Language | None = None
    # The media node the browser's relays are on (``RelaysOut.relay``): the service's
    # end of the test uses the same node.
    relay: NodeId | None = None


class RelaysOut(msgspec.Struct):
    """The ICE servers the browser's test peer uses (relay-only, this transport)."""

    transport: Transport
    ice_servers: list[IceServer]
    ice_transport_policy: Literal["relay"] = "relay"
    relay: str | None = None  # the media node, in regions with a media-node registry


class NetworkTestOut(msgspec.Struct):
    id: uuid.UUID
    created_at: dt.datetime
    runner: str
    transport: str
    verdict: str
    reason: str | None
    advice: list[str]
    connect_ms: float | None
    rtt_ms: float | None
    jitter_ms: float | None
    loss_percent: float | None
    throughput_kbps: float | None
    probes_sent: int
    probes_answered: int
    browser: str | None
    browser_version: int | None
    language: str | None


class NetworkTestStarted(msgspec.Struct):
    """The service peer's answer; ``result`` instead when the test cannot even start."""

    id: uuid.UUID
    sdp: str | None
    result: NetworkTestOut | None = None


class NoRelay(Exception):
    """The region has no relay for this test right now (the API answers 503)."""


class TooManyTests(Exception):
    """All probe peers of this region service are busy (the API answers 429)."""


class TestUnavailable(Exception):
    """This region service cannot run connection tests (its WebRTC library is not
    installed; the region container said so at start). The API answers 503."""


# --- relays -------------------------------------------------------------------------------------


def transport_of(url: str) -> str | None:
    """udp | tcp for a TURN URL (turns: is TLS over TCP), None for STUN."""
    scheme = url.split(":", 1)[0]
    if scheme == "stun":
        return None
    if scheme == "turns" or url.endswith("?transport=tcp"):
        return "tcp"
    return "udp"


def for_transport(servers: list[IceServer], transport: str) -> list[IceServer]:
    chosen = []
    for server in servers:
        urls = [url for url in server.urls if transport_of(url) == transport]
        if urls:
            chosen.append(IceServer(urls=urls, username=server.username, credential=server.credential))
    return chosen


@dataclass(frozen=True)
class Relays:
    servers: list[IceServer]
    node_id: str | None  # the media node allocated (registry regions), else None


def relays(ctx: RegionContext, transport: str, ref: str, node_id: str | None = None) -> Relays:
    """This region's TURN servers for one test over ``transport``; ``NoRelay`` if none.

    With a media-node registry the browser's end is allocated a node, and the service's
    end asks for that same node (``node_id``), so the test measures one relay; should
    it have gone meanwhile, the region's least-loaded node is used."""
    try:
        offer = ctx.relays.for_test(ref, node_id)
    except RelayUnavailable as exc:
        raise NoRelay(str(exc)) from None
    chosen = for_transport(offer.servers, transport)
    if not chosen:
        raise NoRelay(f"no media relay over {transport.upper()} is available in region {ctx.region.id}")
    return Relays(chosen, offer.node_id)


def test_ref() -> str:
    """The TURN username's reference: a fresh random id, not the visit's."""
    return f"nt-{uuid.uuid4().hex[:16]}"


# --- verdict and advice ---------------------------------------------------------------------------


def verdict_of(figures: Figures) -> Verdict:
    if not figures.connected or figures.rtt_ms is None:
        return "cannot connect"
    fine = (
        figures.rtt_ms <= GOOD_RTT_MS
        and (figures.jitter_ms or 0.0) <= GOOD_JITTER_MS
        and (figures.loss_percent or 0.0) <= GOOD_LOSS_PERCENT
        and figures.throughput_kbps is not None
        and figures.throughput_kbps >= GOOD_THROUGHPUT_KBPS
        and figures.reason is None
    )
    return "good" if fine else "may be unstable"


NO_RELAY_ADVICE = [
    "The service cannot offer a connection in your region right now. This is not a problem "
    "with your network; please try again in a few minutes."
]


def advice_for(transport: str, verdict: str, figures: Figures) -> list[str]:
    """Plain-words advice for one transport's result."""
    if verdict == "cannot connect":
        if transport == "udp":
            return [
                "Your network seems to block UDP, which video calls prefer. Calls will use TCP "
                "instead and may be less smooth.",
                "If you are on a work or hospital network, ask your IT department to allow UDP "
                "traffic to this service's media relays.",
            ]
        return [
            "Your network blocks the connection to this service's media relays, so a call cannot connect.",
            "Try another network (for example mobile data), or ask your IT department to allow "
            "connections to this service's media relays.",
        ]
    advice: list[str] = []
    if verdict == "good":
        advice.append("Your connection is good for a video call.")
    slow = figures.rtt_ms is not None and figures.rtt_ms > GOOD_RTT_MS
    shaky = (figures.jitter_ms or 0.0) > GOOD_JITTER_MS or (figures.loss_percent or 0.0) > GOOD_LOSS_PERCENT
    if slow or shaky or figures.reason == "dropped":
        advice.append(
            "Your connection is unsteady. Use a wired connection or move closer to the Wi-Fi router, "
            "and pause other downloads, streams or video calls on this network."
        )
        if shaky:
            advice.append("On mobile data, a place with better reception helps.")
    if figures.throughput_kbps is None or figures.throughput_kbps < GOOD_THROUGHPUT_KBPS:
        measured = figures.throughput_kbps
        speed = "could not be measured" if measured is None else f"is {measured:.0f} kbit/s"
        advice.append(
            f"Your upload speed {speed}; a clear video picture needs about "
            f"{GOOD_THROUGHPUT_KBPS / 1000:.0f} Mbit/s. The call will still work, with a softer picture."
        )
    if transport == "tcp" and verdict != "cannot connect":
        advice.append("Over TCP a call works, but it can lag more than over UDP when the network is busy.")
    return advice


# --- storage ------------------------------------------------------------------------------------


def to_out(row: dict[str, Any]) -> NetworkTestOut:
    figures = Figures(
        connected=row["verdict"] != "cannot connect",
        connect_ms=row["connect_ms"],
        rtt_ms=row["rtt_ms"],
        jitter_ms=row["jitter_ms"],
        loss_percent=row["loss_percent"],
        throughput_kbps=row["throughput_kbps"],
        probes_sent=row["probes_sent"],
        probes_answered=row["probes_answered"],
        reason=row["reason"],
    )
    advice = advice_for(row["transport"], row["verdict"], figures)
    return NetworkTestOut(
        id=row["id"],
        created_at=row["created_at"],
        runner=row["runner"],
        transport=row["transport"],
        verdict=row["verdict"],
        reason=row["reason"],
        advice=advice,
        connect_ms=row["connect_ms"],
        rtt_ms=row["rtt_ms"],
        jitter_ms=row["jitter_ms"],
        loss_percent=row["loss_percent"],
        throughput_kbps=row["throughput_kbps"],
        probes_sent=row["probes_sent"],
        probes_answered=row["probes_answered"],
        browser=row["browser"],
        browser_version=row["browser_version"],
        language=row["language"],
    )


async def store(
    test_id: uuid.UUID, org_id: uuid.UUID, runner: str, data: NetworkTestIn, figures: Figures
) -> NetworkTestOut:
    """Keep the result as support metadata: no visit, no person, no address."""
    verdict = verdict_of(figures)
    row: dict[str, Any] = {
        "id": test_id,
        "org_id": org_id,
        "created_at": dt.datetime.now(dt.UTC),
        "runner": runner,
        "transport": data.transport,
        "verdict": verdict,
        "reason": figures.reason,
        "connect_ms": figures.connect_ms,
        "rtt_ms": figures.rtt_ms,
        "jitter_ms": figures.jitter_ms,
        "loss_percent": figures.loss_percent,
        "throughput_kbps": figures.throughput_kbps,
        "probes_sent": figures.probes_sent,
        "probes_answered": figures.probes_answered,
        "browser": data.browser.family if data.browser else None,
        "browser_version": data.browser.major if data.browser else None,
        "language": data.language,
    }
    await NetworkTestResult.insert(NetworkTestResult(**row)).run()
    return to_out(row)


async def results(org_id: uuid.UUID, limit: int) -> list[NetworkTestOut]:
    rows = (
        await NetworkTestResult.select()
        .where(NetworkTestResult.org_id == org_id)
        .order_by(NetworkTestResult.created_at, ascending=False)
        .limit(limit)
        .run()
    )
    return [to_out(row) for row in rows]


async def delete_result(org_id: uuid.UUID, test_id: uuid.UUID, runner: str | None = None) -> bool:
    """Delete one result on request (P10: support metadata goes after 9 months or on
    request), only one a ``runner`` ran when given; False when there is no such result."""
    where = (NetworkTestResult.id == test_id) & (NetworkTestResult.org_id == org_id)
    if runner is not None:
        where &= NetworkTestResult.runner == runner
    gone = await NetworkTestResult.delete().where(where).returning(NetworkTestResult.id).run()
    return bool(gone)


# --- running tests ----------------------------------------------------------------------------


async def start(ctx: RegionContext, org_id: uuid.UUID, runner: Runner, data: NetworkTestIn) -> NetworkTestStarted:
    """Answer the browser's offer with a probe peer and run the test in the background.

    Raises ``OfferRefused`` (400), ``TooManyTests`` (429), ``NoRelay`` and
    ``TestUnavailable`` (503)."""
    check_offer(data.sdp)
    if ctx.network_tests.unavailable:
        raise TestUnavailable(ctx.network_tests.unavailable)
    offer, relay_count = relay_candidates_only(data.sdp)
    tests = ctx.network_tests
    if relay_count and tests.active >= tests.limit:
        raise TooManyTests()
    servers = relays(ctx, data.transport, test_ref(), data.relay).servers
    test_id = uuid.uuid4()
    if relay_count == 0:
        # The browser could not reach the relay over this transport: that is the result.
        result = await store(test_id, org_id, runner, data, Figures(reason="no_relay_candidate"))
        return NetworkTestStarted(id=test_id, sdp=None, result=result)
    # aiortc is optional (the network-test extra): loaded when a test first runs, once the
    # region container has found it installed.
    from konsil.media_nodes.network_test.peer import ProbePeer

    tests.active += 1
    peer = ProbePeer(servers, Plan(data.probe_seconds, data.bulk_seconds, CONNECT_TIMEOUT_SECONDS))
    try:
        answer = await peer.answer(offer)
    except BaseException as exc:
        await peer.close()
        tests.active -= 1
        if isinstance(exc, TimeoutError):
            raise NoRelay(f"the media relay of region {ctx.region.id} did not answer") from None
        raise
    task = asyncio.create_task(_run(tests, peer, test_id, org_id, runner, data))
    tests.tasks.add(task)
    task.add_done_callback(tests.tasks.discard)
    return NetworkTestStarted(id=test_id, sdp=answer)


async def _run(
    tests: NetworkTests,
    peer: ProbePeer,
    test_id: uuid.UUID,
    org_id: uuid.UUID,
    runner: Runner,
    data: NetworkTestIn,
) -> None:
    deadline = CONNECT_TIMEOUT_SECONDS + data.probe_seconds + data.bulk_seconds + 10.0
    try:
        try:
            async with asyncio.timeout(deadline):
                figures = await peer.measure()
        except TimeoutError:
            figures = Figures(reason="timeout")
        result = await store(test_id, org_id, runner, data, figures)
        async with asyncio.timeout(5):
            await peer.report(msgspec.to_builtins(result))
    except Exception as exc:  # a stored result is best effort; never leak the peer
        log.warning("network test %s ended with %s", test_id, type(exc).__name__)
    finally:
        await peer.close()
        tests.active -= 1


__all__ = ["NoRelay", "OfferRefused", "TestUnavailable", "TooManyTests", "start"]
