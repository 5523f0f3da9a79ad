"""The heartbeat a media node's agent publishes to its region's RabbitMQ, and how it is
signed. The region's registry accepts only heartbeats of its own region, from a node
it can authenticate, inside a freshness window.

Wire format: JSON of ``Heartbeat`` as the message body; header ``x-konsil-signature``
= hex HMAC-SHA256 over the body with the region's media-node key. Exchange
``konsil.media_nodes`` (topic, durable) in the region's broker; routing key
``heartbeat.<region>.<node id>``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Literal

import msgspec

EXCHANGE = "konsil.media_nodes"
SIGNATURE_HEADER = "x-konsil-signature"
MAX_BODY_BYTES = 4096

NodeId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}\Z")]
# What a node says of itself in a heartbeat ("leaving": its last one, it goes away).
HeartbeatState = Literal["active", "draining", "leaving"]


class Heartbeat(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    region: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}\Z")]
    node_id: NodeId
    seq: Annotated[int, msgspec.Meta(ge=0)]
    sent_at: float  # unix time
    state: HeartbeatState
    healthy: bool
    allocations: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
    # What coturn relays now, from its usage reports (coturn.py: live from a session's first
    # report, after 2048 relayed packets; an ended session counts no more).
    relayed_kbps: Annotated[float, msgspec.Meta(ge=0, le=100_000_000)]
    # Where browsers reach this node's relay: turn:/turns: URLs (UDP, TCP, TLS).
    turn_urls: Annotated[list[str], msgspec.Meta(min_length=1, max_length=6)]
    # How often the agent has restarted coturn since it started (ops see a flapping relay).
    restarts: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0


def routing_key(region: str, node_id: str) -> str:
    return f"heartbeat.{region}.{node_id}"


def sign(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), b"konsil-heartbeat-v1\n" + body, hashlib.sha256).hexdigest()


def encode(key: str, heartbeat: Heartbeat) -> tuple[bytes, str]:
    body = msgspec.json.encode(heartbeat)
    return body, sign(key, body)


class HeartbeatRejected(Exception):
    """Why a heartbeat was refused (safe to log: names no secret)."""


def verify(key: str, body: bytes, signature: str | None, region: str) -> Heartbeat:
    if len(body) > MAX_BODY_BYTES:
        raise HeartbeatRejected("heartbeat too large")
    if not signature or not hmac.compare_digest(sign(key, body), signature):
        raise HeartbeatRejected("bad or missing signature")
    try:
        heartbeat = msgspec.json.decode(body, type=Heartbeat)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise HeartbeatRejected(f"malformed heartbeat: {exc}") from None
    if heartbeat.region != region:
        raise HeartbeatRejected(f"heartbeat of region {heartbeat.region!r} sent to region {region!r}")
    return heartbeat
