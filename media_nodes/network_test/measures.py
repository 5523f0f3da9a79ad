"""What a network test measures and the offers it accepts: plain Python, so the region
service runs without the optional WebRTC library (the probe peer in ``peer.py`` needs it)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

_RAW_ADDRESS = re.compile(r" raddr \S+ rport \d+")


class OfferRefused(ValueError):
    """The offer is not something this peer can answer (the API answers 400)."""


@dataclass
class Plan:
    """How long each phase lasts (bounded by the API) and how long to wait for the link."""

    probe_seconds: float
    bulk_seconds: float
    connect_timeout: float


@dataclass
class Figures:
    connected: bool = False
    connect_ms: float | None = None
    rtt_ms: float | None = None
    jitter_ms: float | None = None
    loss_percent: float | None = None
    throughput_kbps: float | None = None
    probes_sent: int = 0
    probes_answered: int = 0
    reason: str | None = None  # why it could not connect, or ended early


def relay_candidates_only(sdp: str) -> tuple[str, int]:
    """The offer with only its relay candidates, without the related (raddr) address:
    the test measures the path through the relay, and the service never learns the
    visitor's own network addresses. Returns the SDP and how many candidates remain."""
    lines = []
    kept = 0
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("a=candidate:"):
            if " typ relay" not in line:
                continue
            line = _RAW_ADDRESS.sub("", line)
            kept += 1
        lines.append(line)
    return "\r\n".join(lines), kept


def direct_candidates(sdp: str) -> tuple[str, int]:
    """The offer for a test of the direct path (a region without relays, whose calls go
    direct): its candidates are the visitor's own addresses, as they are for the other
    side of such a call. They are used for this test only, never stored. Related
    addresses are dropped. Returns the SDP and how many candidates it holds."""
    lines = []
    kept = 0
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("a=candidate:"):
            line = _RAW_ADDRESS.sub("", line)
            kept += 1
        lines.append(line)
    return "\r\n".join(lines), kept


def check_offer(sdp: str) -> None:
    """Only a data-channel offer: no audio or video, nothing else to negotiate."""
    if not sdp.startswith("v=0"):
        raise OfferRefused("the offer is not an SDP session description")
    media = [line.split(" ", 1)[0] for line in sdp.replace("\r\n", "\n").split("\n") if line.startswith("m=")]
    if media != ["m=application"]:
        raise OfferRefused("the offer must hold exactly one data-channel section (m=application) and no media")
    if "webrtc-datachannel" not in sdp:
        raise OfferRefused("the offer's m=application section is not a WebRTC data channel")


def rfc3550_jitter(rtts: list[float]) -> float:
    """Smoothed variation between consecutive round trips: J += (|D| - J) / 16."""
    jitter = 0.0
    for previous, current in itertools.pairwise(rtts):
        jitter += (abs(current - previous) - jitter) / 16
    return jitter
