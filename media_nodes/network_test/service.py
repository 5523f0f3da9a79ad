"""The pre-call network test: which relay, how many at once, the verdict and the
advice, and the stored result (support metadata with no link to a visit, P10).

The relays come exactly as a call's do (tenants/signaling.py): with a media-node
registry, a healthy node of this region (never another region's); otherwise the
region's configured ``ice_servers`` with TURN credentials from its ``turn_secret``.
Only the chosen transport's TURN URLs are used, and both sides are relay-only.

The test measures the path a call of the organisation would take. Where the region has
no relay at all and its calls go direct (the embedded default without coturn, or an
organisation that allows direct calls), it measures the direct path to the region
service instead: a failure there proves nothing about the call, so it is "not
measured", never "cannot connect". Where a relay exists but does not answer, the
verdict is "unavailable": the service's trouble, not the visitor's network.
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
from konsil.media_nodes.network_test import reach
from konsil.media_nodes.network_test.measures import Figures, OfferRefused, Plan, check_offer, direct_candidates
from konsil.media_nodes.network_test.measures import relay_candidates_only as relay_candidates_only
from konsil.media_nodes.network_test.tables import NetworkTestResult
from konsil.platform.core.region import IceServer, NetworkTests, RegionContext, RelayUnavailable
from konsil.platform.core.text import MULTILINE_PATTERN

if TYPE_CHECKING:
    from konsil.media_nodes.network_test.peer import ProbePeer

log = logging.getLogger("konsil.network_test")

Transport = Literal["udp", "tcp"]
# "direct": the path of a call in a region without relays (module docstring).
Path = Literal["relay", "direct"]
Verdict = Literal["good", "may be unstable", "cannot connect", "unavailable", "not measured"]
Runner = Literal["visitor", "member"]
DIRECT = "direct"  # the stored transport of a test of the direct path

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
    """The ICE servers the browser's test peer uses: relay-only over this transport, or
    (``path`` "direct", a region without relays) the direct path with any STUN servers."""

    transport: Transport
    ice_servers: list[IceServer]
    ice_transport_policy: Literal["relay", "all"] = "relay"
    relay: str | None = None  # the media node, in regions with a media-node registry
    path: Path = "relay"


class NetworkTestOut(msgspec.Struct):
    id: uuid.UUID
    created_at: dt.datetime
    runner: str
    transport: str
    verdict: str
    reason: str | None
    advice: list[str]
    # The advice as keys, in the same order: the visitor's page words them in its language.
    advice_keys: list[str]
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


def has_relays(ctx: RegionContext) -> bool:
    """The region hands out TURN relays: a media-node registry, or configured TURN URLs."""
    return ctx.relays.registered or any(transport_of(url) for url in ctx.region.ice_servers)


def goes_direct(ctx: RegionContext, relay_only: bool) -> bool:
    """A call of this organisation goes direct here, so its test measures the direct path:
    the region has no relay, and the embedded default lets calls go direct anyway
    (tenants/signaling.py), or the organisation allows direct calls."""
    return not has_relays(ctx) and (ctx.settings.mode == "embedded" or not relay_only)


def direct_servers(ctx: RegionContext, ref: str) -> list[IceServer]:
    """The region's STUN servers (if any) for a test of the direct path."""
    try:
        servers = ctx.relays.for_test(ref, None).servers
    except RelayUnavailable:
        return []
    return [s for s in servers if all(url.startswith("stun:") for url in s.urls)]


def no_relay_notice(ctx: RegionContext) -> str | None:
    """For the operator's log at start: what a region without relays means, else None."""
    if has_relays(ctx):
        return None
    if ctx.settings.mode == "embedded":
        return (
            f"region {ctx.region.id} has no TURN relay: calls go direct between the browsers and the "
            "pre-call connection test measures the direct path (konsil up starts a local coturn relay "
            "when turnserver is installed)"
        )
    return (
        f"region {ctx.region.id} has no TURN relay (no turn: URL in ice_servers, no media nodes): calls of "
        "relay-only organisations cannot connect and their connection tests say the service is unavailable; "
        "calls of other organisations go direct"
    )


def test_ref() -> str:
    """The TURN username's reference: a fresh random id, not the visit's."""
    return f"nt-{uuid.uuid4().hex[:16]}"


# --- verdict and advice ---------------------------------------------------------------------------


def verdict_of(figures: Figures, transport: str = "udp") -> Verdict:
    if figures.reason == "relay_down":
        return "unavailable"
    if not figures.connected or figures.rtt_ms is None:
        # The direct path to the region service is not the path between the two browsers:
        # not getting through here proves nothing about the call.
        return "not measured" if transport == DIRECT else "cannot connect"
    fine = (
        figures.rtt_ms <= GOOD_RTT_MS
        and (figures.jitter_ms or 0.0) <= GOOD_JITTER_MS
        and (figures.loss_percent or 0.0) <= GOOD_LOSS_PERCENT
        and figures.throughput_kbps is not None
        and figures.throughput_kbps >= GOOD_THROUGHPUT_KBPS
        and figures.reason is None
    )
    return "good" if fine else "may be unstable"


# Advice in plain words (no protocol or relay names: visitors read them), by key. The
# visitor's page shows the same texts from its own catalog, in the visitor's language
# (tenants/static/network-test.js), looked up by key.
ADVICE = {
    "good": "Your connection is good for a video call.",
    "unsteady": "Your connection is unsteady. Use a wired connection or move closer to the Wi-Fi router, "
    "and pause other downloads, streams or video calls on this network.",
    "reception": "On mobile data, a place with better reception helps.",
    "slow_upload": "Your upload speed is %(speed)s; a clear video picture needs about %(needed)s. "
    "The call will still work, with a softer picture.",
    "upload_unmeasured": "Your upload speed could not be measured. The call will still work, "
    "perhaps with a softer picture.",
    "fallback_lag": "Over the fallback connection a call works, but it can lag when the network is busy.",
    "usual_blocked": "Your network seems to block the usual connection for video calls. Calls will use "
    "the fallback connection instead and may be less smooth.",
    "ask_it_usual": "If you are on a work or hospital network, ask your IT department to allow video "
    "calls to this service.",
    "blocked": "Your network blocks the connection to this service, so a video call cannot connect.",
    "try_other_network": "Try another network (for example mobile data), or ask your IT department to "
    "allow video calls to this service.",
    "unavailable": "The service has a temporary problem with video calls. This is not a problem with your network.",
    "not_measured": "Your connection could not be measured right now. You can still continue: the call "
    "will try to connect.",
}
NO_RELAY_ADVICE_KEYS = ["unavailable"]
NO_RELAY_ADVICE = [ADVICE[key] for key in NO_RELAY_ADVICE_KEYS]


def _mbits(kbps: float) -> str:
    return f"{kbps / 1000:.1f} Mbit/s"


def advice_keys_for(transport: str, verdict: str, figures: Figures) -> list[str]:
    """The advice for one result, as keys of ``ADVICE``."""
    if verdict == "unavailable":
        return ["unavailable"]
    if verdict == "not measured":
        return ["not_measured"]
    if verdict == "cannot connect":
        return ["usual_blocked", "ask_it_usual"] if transport == "udp" else ["blocked", "try_other_network"]
    keys: list[str] = []
    if verdict == "good":
        keys.append("good")
    slow = figures.rtt_ms is not None and figures.rtt_ms > GOOD_RTT_MS
    shaky = (figures.jitter_ms or 0.0) > GOOD_JITTER_MS or (figures.loss_percent or 0.0) > GOOD_LOSS_PERCENT
    if slow or shaky or figures.reason == "dropped":
        keys.append("unsteady")
        if shaky:
            keys.append("reception")
    if figures.throughput_kbps is None:
        keys.append("upload_unmeasured")
    elif figures.throughput_kbps < GOOD_THROUGHPUT_KBPS:
        keys.append("slow_upload")
    if transport == "tcp":
        keys.append("fallback_lag")
    return keys


def advice_for(transport: str, verdict: str, figures: Figures) -> list[str]:
    """Plain-words advice for one transport's result (English: the API's and support's)."""
    params = {"speed": _mbits(figures.throughput_kbps or 0.0), "needed": _mbits(GOOD_THROUGHPUT_KBPS)}
    keys = advice_keys_for(transport, verdict, figures)
    return [ADVICE[key] % params if "%(" in ADVICE[key] else ADVICE[key] for key in keys]


# --- storage ------------------------------------------------------------------------------------


def to_out(row: dict[str, Any]) -> NetworkTestOut:
    figures = Figures(
        connected=row["verdict"] not in ("cannot connect", "unavailable", "not measured"),
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
    keys = advice_keys_for(row["transport"], row["verdict"], figures)
    return NetworkTestOut(
        id=row["id"],
        created_at=row["created_at"],
        runner=row["runner"],
        transport=row["transport"],
        verdict=row["verdict"],
        reason=row["reason"],
        advice=advice,
        advice_keys=keys,
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
    test_id: uuid.UUID, org_id: uuid.UUID, runner: str, data: NetworkTestIn, figures: Figures, path: Path = "relay"
) -> NetworkTestOut:
    """Keep the result as support metadata: no visit, no person, no address. A test of
    the direct path is stored with the transport "direct"."""
    transport = DIRECT if path == "direct" else data.transport
    verdict = verdict_of(figures, transport)
    row: dict[str, Any] = {
        "id": test_id,
        "org_id": org_id,
        "created_at": dt.datetime.now(dt.UTC),
        "runner": runner,
        "transport": transport,
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


async def start(
    ctx: RegionContext, org_id: uuid.UUID, runner: Runner, data: NetworkTestIn, path: Path = "relay"
) -> NetworkTestStarted:
    """Answer the browser's offer with a probe peer and run the test in the background;
    ``path`` "direct" in a region whose calls go direct (``goes_direct``).

    Raises ``OfferRefused`` (400), ``TooManyTests`` (429), ``NoRelay`` and
    ``TestUnavailable`` (503)."""
    check_offer(data.sdp)
    if ctx.network_tests.unavailable:
        raise TestUnavailable(ctx.network_tests.unavailable)
    direct = path == "direct"
    offer, candidates = direct_candidates(data.sdp) if direct else relay_candidates_only(data.sdp)
    tests = ctx.network_tests
    if candidates and tests.active >= tests.limit:
        raise TooManyTests()
    servers = direct_servers(ctx, test_ref()) if direct else relays(ctx, data.transport, test_ref(), data.relay).servers
    test_id = uuid.uuid4()
    if candidates == 0:
        # The browser found no way out over this transport: that is the result, unless the
        # relay does not answer the service either (then it is the relay's fault, not theirs).
        reason = "no_candidate" if direct else "no_relay_candidate"
        if not direct and not await reach.any_answers(servers):
            reason = "relay_down"
            log.warning("network test: the relay of region %s does not answer over %s", ctx.region.id, data.transport)
        result = await store(test_id, org_id, runner, data, Figures(reason=reason), path)
        return NetworkTestStarted(id=test_id, sdp=None, result=result)
    # aiortc is optional (the network-test extra): loaded when a test first runs, once the
    # region container has found it installed.
    from konsil.media_nodes.network_test.peer import ProbePeer

    tests.active += 1
    peer = ProbePeer(servers, Plan(data.probe_seconds, data.bulk_seconds, CONNECT_TIMEOUT_SECONDS), not direct)
    try:
        answer = await peer.answer(offer)
    except BaseException as exc:
        await peer.close()
        tests.active -= 1
        if isinstance(exc, TimeoutError):
            if direct:  # gathering our own addresses took too long (an unreachable STUN server)
                result = await store(test_id, org_id, runner, data, Figures(reason="timeout"), path)
                return NetworkTestStarted(id=test_id, sdp=None, result=result)
            log.warning("network test: the relay of region %s did not answer the service", ctx.region.id)
            raise NoRelay(f"the media relay of region {ctx.region.id} did not answer") from None
        raise
    task = asyncio.create_task(_run(tests, peer, test_id, org_id, runner, data, path))
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
    path: Path,
) -> None:
    deadline = CONNECT_TIMEOUT_SECONDS + data.probe_seconds + data.bulk_seconds + 10.0
    try:
        try:
            async with asyncio.timeout(deadline):
                figures = await peer.measure()
        except TimeoutError:
            figures = Figures(reason="timeout")
        result = await store(test_id, org_id, runner, data, figures, path)
        if path == "direct" and not figures.connected:
            log.info("network test %s: the direct path to the region service did not connect", test_id)
        async with asyncio.timeout(5):
            await peer.report(msgspec.to_builtins(result))
    except Exception as exc:  # a stored result is best effort; never leak the peer
        log.warning("network test %s ended with %s", test_id, type(exc).__name__)
    finally:
        await peer.close()
        tests.active -= 1


__all__ = ["NoRelay", "OfferRefused", "TestUnavailable", "TooManyTests", "start"]
