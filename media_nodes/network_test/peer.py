"""The probe peer: an aiortc peer in the region service that the visitor's browser
reaches through the region's relay only, or directly in a region without relays
(aiortc is the optional ``network-test``
dependency; ``regions/container.py`` checks that it is there).

Two data channels, negotiated out of band with fixed ids so neither side waits for
the other to announce them:

- ``probe`` (id 1, unordered, no retransmissions): the peer sends numbered probes, the
  browser echoes each one back as it came. Round-trip time, its variation (jitter,
  smoothed as in RFC 3550) and loss (probes never answered) come from these.
- ``bulk`` (id 2, reliable): the peer asks the browser to send data for a few seconds
  (``{"type": "send"}``); the browser sends binary chunks, then ``{"type": "sent"}``.
  Throughput is measured here, at the receiver. The result goes back on this channel.

The browser's upload is measured because it is what a home connection lacks first and
what the expert needs to see the visitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import struct
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)

from konsil.media_nodes.network_test.measures import Figures, OfferRefused, Plan, rfc3550_jitter
from konsil.platform.core.region import IceServer

PROBE_CHANNEL_ID = 1
BULK_CHANNEL_ID = 2
PROBE_INTERVAL_SECONDS = 0.05  # 20 probes a second: enough samples, negligible load
PROBE_PADDING = b"\0" * 60  # probes about the size of a small audio packet
PROBE_GRACE_SECONDS = 1.0  # a probe not back this long after the last one was sent is lost
BULK_GRACE_SECONDS = 2.0  # how long past the send window the peer waits for "sent"
BULK_MAX_BYTES = 4 * 1024 * 1024  # caps the load on the region service (≈ 10 Mbit/s for 3 s)
REPORT_WAIT_SECONDS = 5.0  # how long the result may take to reach the browser
GATHER_TIMEOUT_SECONDS = 8.0  # allocating on the relay; beyond it the relay counts as unreachable


@dataclass
class _Counters:
    sent_at: dict[int, float] = field(default_factory=dict)
    rtts: list[float] = field(default_factory=list)
    bulk_bytes: int = 0
    bulk_first: float | None = None
    bulk_last: float | None = None


class ProbePeer:
    """One test: answer the browser's offer, measure, report, close."""

    def __init__(self, servers: list[IceServer], plan: Plan, relay_only: bool = True) -> None:
        self.plan = plan
        # Relay-only, but for a test of the direct path (a region without relays).
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in servers],
                iceTransportPolicy=policy,
            )
        )
        self.probe: RTCDataChannel | None = None
        self.bulk: RTCDataChannel | None = None
        self._counters = _Counters()
        self._sent = asyncio.Event()
        self._all_back = asyncio.Event()  # every probe sent has come back
        self._probing = True
        self._failed = asyncio.Event()
        self._closed = False

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            if self.pc.connectionState in ("failed", "closed"):
                self._failed.set()

    async def answer(self, offer_sdp: str) -> str:
        """Our answer SDP, with our relay candidates (non-trickle)."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception:  # aiortc raises many kinds on bad SDP; none is the caller's business
            raise OfferRefused("the offer could not be read as a WebRTC offer") from None
        self.probe = self.pc.createDataChannel(
            "probe", ordered=False, maxRetransmits=0, negotiated=True, id=PROBE_CHANNEL_ID
        )
        self.bulk = self.pc.createDataChannel("bulk", negotiated=True, id=BULK_CHANNEL_ID)
        self.probe.on("message", self._on_probe)
        self.bulk.on("message", self._on_bulk)
        self.bulk.on("close", self._failed.set)  # the browser went (or the link did)
        try:
            answer = await self.pc.createAnswer()
            async with asyncio.timeout(GATHER_TIMEOUT_SECONDS):
                await self.pc.setLocalDescription(answer)
        except TimeoutError:
            raise
        except Exception:
            raise OfferRefused("the offer could not be answered (no common data-channel parameters)") from None
        return self.pc.localDescription.sdp

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _on_probe(self, message: Any) -> None:
        if not isinstance(message, bytes) or len(message) < 4:
            return
        (seq,) = struct.unpack("!I", message[:4])
        sent = self._counters.sent_at.pop(seq, None)
        if sent is not None:
            self._counters.rtts.append(self._now() - sent)
            if not self._probing and not self._counters.sent_at:
                self._all_back.set()

    def _on_bulk(self, message: Any) -> None:
        counters = self._counters
        if isinstance(message, bytes):
            now = self._now()
            if counters.bulk_first is None:
                counters.bulk_first = now
            counters.bulk_last = now
            counters.bulk_bytes += len(message)
            return
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            if json.loads(message).get("type") == "sent":
                self._sent.set()

    async def _open(self, channel: RTCDataChannel) -> None:
        while channel.readyState != "open":
            if self._failed.is_set():
                raise ConnectionError("the connection failed")
            await asyncio.sleep(0.02)

    async def measure(self) -> Figures:
        """Connect, then probe and measure throughput; never raises for network trouble."""
        assert self.probe is not None and self.bulk is not None
        figures = Figures()
        started = self._now()
        try:
            async with asyncio.timeout(self.plan.connect_timeout):
                await self._open(self.probe)
                await self._open(self.bulk)
        except (TimeoutError, ConnectionError):
            figures.reason = "no_connection"
            return figures
        figures.connected = True
        figures.connect_ms = round((self._now() - started) * 1000, 1)
        await self._probe_phase(figures)
        if not self._failed.is_set():
            await self._bulk_phase(figures)
        if self._failed.is_set():
            figures.reason = "dropped"
        return figures

    async def _probe_phase(self, figures: Figures) -> None:
        assert self.probe is not None
        counters = self._counters
        count = max(1, round(self.plan.probe_seconds / PROBE_INTERVAL_SECONDS))
        for seq in range(count):
            if self._failed.is_set() or self.probe.readyState != "open":
                break
            counters.sent_at[seq] = self._now()
            self.probe.send(struct.pack("!I", seq) + PROBE_PADDING)
            figures.probes_sent += 1
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
        self._probing = False
        if counters.sent_at:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PROBE_GRACE_SECONDS):
                    await self._all_back.wait()
        counters.sent_at.clear()  # late answers no longer count
        rtts = list(counters.rtts)
        figures.probes_answered = len(rtts)
        if figures.probes_sent:
            figures.loss_percent = round(100 * (figures.probes_sent - len(rtts)) / figures.probes_sent, 2)
        if rtts:
            figures.rtt_ms = round(statistics.median(rtts) * 1000, 2)
            figures.jitter_ms = round(rfc3550_jitter(rtts) * 1000, 2)

    async def _bulk_phase(self, figures: Figures) -> None:
        assert self.bulk is not None
        counters = self._counters
        self.bulk.send(json.dumps({"type": "send", "seconds": self.plan.bulk_seconds, "max_bytes": BULK_MAX_BYTES}))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.plan.bulk_seconds + BULK_GRACE_SECONDS):
                await self._sent.wait()
        if counters.bulk_first is not None and counters.bulk_last is not None:
            seconds = counters.bulk_last - counters.bulk_first
            if seconds > 0:
                figures.throughput_kbps = round(counters.bulk_bytes * 8 / 1000 / seconds, 1)

    async def report(self, result: dict[str, Any]) -> None:
        """Send the result to the browser on the reliable channel, and let it arrive."""
        if self.bulk is None or self.bulk.readyState != "open":
            return
        self.bulk.send(json.dumps({"type": "result", **result}))
        # The browser closes once it has the result. Until then the result may still need
        # retransmitting (the relay path can be full of the browser's upload), so closing
        # early would lose it; past REPORT_WAIT_SECONDS the peer gives up.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REPORT_WAIT_SECONDS):
                await self._failed.wait()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self.pc.close()
