"""The region's registry of media nodes: it consumes the nodes' signed heartbeats
from the region's own broker, keeps each node's state, and considers a node dead
once its heartbeats stop for ``dead_after_seconds``.

``RegistryState`` is the single object that holds what would be persisted (node
states, the last sequence number seen per node, ops' cordons); everything else
here (rate-limit buckets, counters) is process-local and may be lost.

Fairness: each node has a token bucket; heartbeats beyond its rate are dropped
(and counted) right after authentication, so a flooding node costs one HMAC and
one decode per message and cannot starve the other nodes of the registry.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import pika
import pika.exceptions

from konsil.media_nodes import heartbeat
from konsil.media_nodes.heartbeat import Heartbeat, HeartbeatRejected
from konsil.platform.core import broker
from konsil.platform.core.telemetry import message_span

log = logging.getLogger("konsil.media_nodes")

# What a node may advertise to browsers: its own TURN relay, over UDP, TCP or TLS.
_TURN_URL = re.compile(r"^(turn|turns):(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(\?transport=(udp|tcp))?$")


@dataclass(frozen=True, slots=True)
class RegisteredNode:
    """What the registry knows of one live node: its last heartbeat, when it came, and
    what ops and allocation added (cordon, drain, calls handed out since)."""

    node_id: str
    state: heartbeat.HeartbeatState  # "active" | "draining" ("leaving" removes the node)
    healthy: bool
    allocations: int
    relayed_kbps: float
    turn_urls: tuple[str, ...]
    last_seen: float  # registry clock (monotonic), not the node's clock
    seq: int
    cordoned: bool = False
    draining_by_ops: bool = False  # ops asked to drain it: no new calls until it is empty
    restarts: int = 0  # coturn restarts reported by the node's agent
    # Calls handed to this node since its last heartbeat (which cannot count them yet).
    pending: int = 0


@dataclass
class RegistryState:
    """Everything that would go to a table: one row per node, plus the per-node
    replay high-water mark (kept after a node leaves) and the ops cordons (kept
    for nodes not seen yet, so a node can be cordoned before it (re)joins)."""

    nodes: dict[str, RegisteredNode] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)
    cordoned: set[str] = field(default_factory=set)
    drains: set[str] = field(default_factory=set)  # cordons that ops asked as a drain
    left: dict[str, int] = field(default_factory=dict)  # nodes that said goodbye: their last seq


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


def _reason(message: str) -> str:
    """A stable counter key for a rejection message."""
    for prefix, key in (
        ("heartbeat too large", "oversize"),
        ("bad or missing signature", "signature"),
        ("malformed", "malformed"),
        ("heartbeat of region", "region"),
        ("routing key", "routing"),
        ("unknown node", "unknown_node"),
        ("rate limited", "rate_limited"),
        ("replayed", "replay"),
        ("stale", "stale"),
        ("too many nodes", "capacity"),
    ):
        if message.startswith(prefix):
            return key
    return "other"


class NodeRegistry:
    """Thread-safe: the consumer thread calls ``accept``, the web workers read."""

    def __init__(
        self,
        region_id: str,
        media_node_key: str,
        dead_after_seconds: float = 6.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        wall_clock: Callable[[], float] = time.time,
        max_age_seconds: float = 30.0,
        rate_per_second: float = 5.0,
        burst: int = 10,
        known_nodes: Iterable[str] | None = None,
        max_nodes: int = 1000,
        state: RegistryState | None = None,
    ) -> None:
        if not media_node_key:
            raise ValueError(f"regions.{region_id}.media_node_key: required to accept media-node heartbeats")
        self.region_id = region_id
        self._key = media_node_key
        self.dead_after = dead_after_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._max_age = max_age_seconds
        self._rate = rate_per_second
        self._burst = float(burst)
        self._known = frozenset(known_nodes) if known_nodes is not None else None
        self._max_nodes = max_nodes
        self.state = state if state is not None else RegistryState()
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self._log_stamp: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    # -- heartbeats ---------------------------------------------------------------

    def accept(self, body: bytes, signature: str | None, routing_key: str | None = None) -> Heartbeat:
        """Verify and apply one heartbeat; ``HeartbeatRejected`` (counted, logged) if refused."""
        try:
            beat = heartbeat.verify(self._key, body, signature, self.region_id)
            with self._lock:
                self._check(beat, routing_key)
                self._apply(beat)
                self.accepted += 1
            return beat
        except HeartbeatRejected as exc:
            self._rejected(str(exc))
            raise

    def _check(self, beat: Heartbeat, routing_key: str | None) -> None:
        if routing_key is not None and routing_key != heartbeat.routing_key(beat.region, beat.node_id):
            raise HeartbeatRejected(f"routing key {routing_key[:80]!r} does not match node {beat.node_id!r}")
        if self._known is not None and beat.node_id not in self._known:
            raise HeartbeatRejected(f"unknown node {beat.node_id!r}")
        for url in beat.turn_urls:
            if not _TURN_URL.match(url):
                raise HeartbeatRejected(f"malformed heartbeat: turn url {url[:80]!r} of node {beat.node_id!r}")
        if beat.node_id not in self.state.nodes and len(self.state.nodes) >= self._max_nodes:
            self._prune()
            if len(self.state.nodes) >= self._max_nodes:
                raise HeartbeatRejected(f"too many nodes: {beat.node_id!r} not registered")
        now = self._clock()
        bucket = self._buckets.get(beat.node_id)
        if bucket is None:
            bucket = self._buckets[beat.node_id] = _Bucket(self._burst, now)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
            bucket.stamp = now
        if bucket.tokens < 1.0:
            raise HeartbeatRejected(f"rate limited: node {beat.node_id!r}")
        bucket.tokens -= 1.0
        last = self.state.last_seq.get(beat.node_id)
        if last is not None and beat.seq <= last:
            raise HeartbeatRejected(f"replayed heartbeat: node {beat.node_id!r} seq {beat.seq} <= {last}")
        age = self._wall_clock() - beat.sent_at
        if age > self._max_age or age < -self._max_age:
            raise HeartbeatRejected(f"stale heartbeat: node {beat.node_id!r} sent {age:.0f} s from now")

    def _apply(self, beat: Heartbeat) -> None:
        self.state.last_seq[beat.node_id] = beat.seq
        if beat.state == "leaving":
            self.state.nodes.pop(beat.node_id, None)
            self.state.left[beat.node_id] = beat.seq
            log.info("media node %s left region %s", beat.node_id, self.region_id)
            return
        if beat.node_id not in self.state.nodes:
            log.info("media node %s joined region %s", beat.node_id, self.region_id)
            self.state.left.pop(beat.node_id, None)
        self.state.nodes[beat.node_id] = RegisteredNode(
            node_id=beat.node_id,
            state=beat.state,
            healthy=beat.healthy,
            allocations=beat.allocations,
            relayed_kbps=beat.relayed_kbps,
            turn_urls=tuple(beat.turn_urls),
            last_seen=self._clock(),
            seq=beat.seq,
            cordoned=beat.node_id in self.state.cordoned,
            draining_by_ops=beat.node_id in self.state.drains,
            restarts=beat.restarts,
        )

    def _prune(self) -> None:
        """Forget nodes silent for ten dead-intervals (their replay mark stays)."""
        horizon = self._clock() - 10 * self.dead_after
        for node_id in [n for n, s in self.state.nodes.items() if s.last_seen < horizon]:
            del self.state.nodes[node_id]
            self._buckets.pop(node_id, None)

    def _rejected(self, message: str) -> None:
        reason = _reason(message)
        with self._lock:
            self.rejected[reason] += 1
            # At most one line per reason per second: a flood must not flood the log.
            now = self._clock()
            if now - self._log_stamp.get(reason, -1e18) < 1.0:
                self._suppressed[reason] += 1
                return
            self._log_stamp[reason] = now
            suppressed = self._suppressed.pop(reason, 0)
        log.warning(
            "media-node heartbeat rejected in region %s: %s%s",
            self.region_id,
            message,
            f" ({suppressed} similar suppressed)" if suppressed else "",
        )

    # -- reads ----------------------------------------------------------------------

    def nodes(self) -> list[RegisteredNode]:
        with self._lock:
            return list(self.state.nodes.values())

    def node(self, node_id: str) -> RegisteredNode | None:
        with self._lock:
            return self.state.nodes.get(node_id)

    def is_alive(self, node: str | RegisteredNode, now: float | None = None) -> bool:
        found = self.node(node) if isinstance(node, str) else node
        if found is None:
            return False
        now = self._clock() if now is None else now
        return found.healthy and now - found.last_seen <= self.dead_after

    def now(self) -> float:
        return self._clock()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"accepted": self.accepted, "rejected": dict(self.rejected), "nodes": len(self.state.nodes)}

    # -- ops and allocation ---------------------------------------------------------

    def cordon(self, node_id: str) -> None:
        """No new calls for this node; it keeps heartbeating and keeps its calls."""
        self._set_cordon(node_id, True)

    def drain(self, node_id: str) -> None:
        """A cordon that ops watch until the node's calls have ended."""
        self._set_cordon(node_id, True, drain=True)

    def follow_cordons(self, cordoned: set[str], drains: set[str] | None = None) -> None:
        """Make the cordons exactly ``cordoned`` (the ops' table, read by every replica);
        ``drains`` is the subset that ops asked as a drain."""
        drains = set() if drains is None else drains & cordoned
        for node_id in cordoned:
            if node_id not in self.state.cordoned or (node_id in drains) != (node_id in self.state.drains):
                self._set_cordon(node_id, True, drain=node_id in drains)
        for node_id in self.state.cordoned - cordoned:
            self._set_cordon(node_id, False)

    def uncordon(self, node_id: str) -> None:
        self._set_cordon(node_id, False)

    def _set_cordon(self, node_id: str, cordoned: bool, drain: bool = False) -> None:
        drain = drain and cordoned
        with self._lock:
            (self.state.cordoned.add if cordoned else self.state.cordoned.discard)(node_id)
            (self.state.drains.add if drain else self.state.drains.discard)(node_id)
            found = self.state.nodes.get(node_id)
            if found is not None:
                self.state.nodes[node_id] = replace(found, cordoned=cordoned, draining_by_ops=drain)
        log.info("media node %s %s in region %s", node_id, "cordoned" if cordoned else "uncordoned", self.region_id)

    def remember_sequences(self, marks: dict[str, int]) -> None:
        """Replay marks kept in the region DB (by any replica, before any restart): a
        heartbeat captured earlier cannot be replayed to a freshly started replica."""
        with self._lock:
            for node_id, seq in marks.items():
                if seq > self.state.last_seq.get(node_id, -1):
                    self.state.last_seq[node_id] = seq

    def snapshot(self) -> tuple[list[RegisteredNode], dict[str, int]]:
        """The live nodes and the nodes that left (their last seq), for the region DB."""
        with self._lock:
            return list(self.state.nodes.values()), dict(self.state.left)

    def note_allocation(self, node_id: str) -> None:
        """Count a call handed to the node until its next heartbeat reports it."""
        with self._lock:
            found = self.state.nodes.get(node_id)
            if found is not None:
                self.state.nodes[node_id] = replace(found, pending=found.pending + 1)


class HeartbeatConsumer:
    """Consumes the region's heartbeats into a ``NodeRegistry`` on a daemon thread.

    Its exclusive, auto-delete queue is bound to ``heartbeat.<region>.*`` only, so
    another region's heartbeats never reach it. A lost broker is retried with
    backoff; heartbeats missed meanwhile simply age the nodes out.
    """

    def __init__(
        self,
        registry: NodeRegistry,
        broker_url: str,
        *,
        prefetch: int = 100,
        poll_seconds: float = 0.2,
        max_backoff_seconds: float = 10.0,
    ) -> None:
        self.registry = registry
        self.broker_url = broker_url
        self.prefetch = prefetch
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff_seconds
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.connections = 0

    def start(self) -> HeartbeatConsumer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"media-node-heartbeats-{self.registry.region_id}", daemon=True
            )
            self._thread.start()
        return self

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once the queue is bound (heartbeats published from now on arrive)."""
        return self._ready.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        backoff = 0.5
        broker.quiet_pika()
        while not self._stop.is_set():
            try:
                self._consume()
                backoff = 0.5
            except (pika.exceptions.AMQPError, OSError) as exc:
                self._ready.clear()
                # One line per retry, no trace: what is wrong (a missing vhost, a refused
                # login, nothing listening) and when the next try is.
                log.warning(
                    "media-node heartbeats of region %s: %s; retrying in %.1f s",
                    self.registry.region_id,
                    broker.describe(exc, self.broker_url),
                    backoff,
                )
                self._stop.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)
            except Exception:
                self._ready.clear()
                log.exception("media-node heartbeat consumer of region %s failed", self.registry.region_id)
                self._stop.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)

    def _consume(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.broker_url))
        self.connections += 1
        try:
            channel = connection.channel()
            channel.exchange_declare(exchange=heartbeat.EXCHANGE, exchange_type="topic", durable=True)
            queue = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
            channel.queue_bind(
                queue=queue, exchange=heartbeat.EXCHANGE, routing_key=f"heartbeat.{self.registry.region_id}.*"
            )
            channel.basic_qos(prefetch_count=self.prefetch)
            self._ready.set()
            for method, properties, body in channel.consume(queue, inactivity_timeout=self.poll_seconds):
                if self._stop.is_set():
                    break
                if method is None:
                    continue
                headers = properties.headers or {}
                signature = headers.get(heartbeat.SIGNATURE_HEADER)
                if isinstance(signature, bytes):
                    signature = signature.decode("ascii", "replace")
                try:
                    with message_span("process", heartbeat.EXCHANGE, headers):  # telemetry (wt2): the node's trace
                        self.registry.accept(
                            body, signature if isinstance(signature, str) else None, routing_key=method.routing_key
                        )
                except HeartbeatRejected:
                    pass  # counted and logged by the registry
                channel.basic_ack(delivery_tag=method.delivery_tag)
            channel.cancel()
        finally:
            self._ready.clear()
            if connection.is_open:
                connection.close()
