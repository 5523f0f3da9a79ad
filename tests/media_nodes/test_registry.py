from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
import time
from typing import Any

import msgspec
import pytest

from konsil.media_nodes import heartbeat
from konsil.media_nodes.allocation import NoHealthyNode, allocate
from konsil.media_nodes.heartbeat import Heartbeat, HeartbeatRejected
from konsil.media_nodes.registry import HeartbeatConsumer, NodeRegistry
from konsil.platform.core.settings import RegionSettings
from tests.conftest import AMQP_SERVER, bare_region, wait_until

KEY = "media-node-key-0123456789"
TURN_SECRET = "turn-secret-0123456789"
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def beat(node: str = "eu-1", seq: int = 1, region: str = "eu", **fields: Any) -> Heartbeat:
    values: dict[str, Any] = {
        "region": region,
        "node_id": node,
        "seq": seq,
        "sent_at": NOW,
        "state": "active",
        "healthy": True,
        "allocations": 0,
        "relayed_kbps": 0.0,
        "turn_urls": [
            f"turn:{node}.example:3478?transport=udp",
            f"turn:{node}.example:3478?transport=tcp",
            f"turns:{node}.example:5349?transport=tcp",
        ],
    }
    return Heartbeat(**(values | fields))


def registry(clock: Clock | None = None, **kwargs: Any) -> NodeRegistry:
    return NodeRegistry("eu", KEY, clock=clock or Clock(), wall_clock=lambda: NOW, **kwargs)


def send(reg: NodeRegistry, hb: Heartbeat, key: str = KEY) -> Heartbeat:
    return reg.accept(*heartbeat.encode(key, hb))


def region_settings(region_id: str = "eu") -> RegionSettings:
    return bare_region(region_id, turn_secret=TURN_SECRET, turn_credential_seconds=600, media_node_key=KEY)


def test_a_signed_heartbeat_registers_the_node() -> None:
    reg = registry()
    send(reg, beat(allocations=3, relayed_kbps=12.5))
    (node,) = reg.nodes()
    assert (node.node_id, node.state, node.allocations, node.relayed_kbps) == ("eu-1", "active", 3, 12.5)
    assert node.turn_urls[2] == "turns:eu-1.example:5349?transport=tcp"
    assert reg.is_alive("eu-1")
    assert reg.stats()["accepted"] == 1


def test_a_replayed_or_older_seq_is_rejected() -> None:
    reg = registry()
    body, sig = heartbeat.encode(KEY, beat(seq=5))
    reg.accept(body, sig)
    with pytest.raises(HeartbeatRejected, match="replayed"):
        reg.accept(body, sig)
    with pytest.raises(HeartbeatRejected, match="replayed"):
        send(reg, beat(seq=4))
    send(reg, beat(seq=6))
    assert reg.rejected["replay"] == 2


def test_a_replay_cannot_bring_back_a_node_that_left() -> None:
    reg = registry()
    old = heartbeat.encode(KEY, beat(seq=1))
    reg.accept(*old)
    send(reg, beat(seq=2, state="leaving"))
    assert reg.nodes() == []
    with pytest.raises(HeartbeatRejected):
        reg.accept(*old)
    assert reg.nodes() == []


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: heartbeat.encode(KEY, beat(region="us")), "region"),
        (lambda: heartbeat.encode("another-region-key-0123", beat()), "signature"),
        (lambda: (msgspec.json.encode(beat()), None), "signature"),
        (lambda: (b"{not json", heartbeat.sign(KEY, b"{not json")), "malformed"),
        (lambda: _signed(msgspec.to_builtins(beat()) | {"extra": 1}), "malformed"),
        (lambda: _signed(msgspec.to_builtins(beat()) | {"node_id": "Bad Node!"}), "malformed"),
        (lambda: _signed(msgspec.to_builtins(beat()) | {"turn_urls": ["http://evil.example"]}), "malformed"),
        (lambda: (b" " * (heartbeat.MAX_BODY_BYTES + 1), heartbeat.sign(KEY, b" " * 4097)), "oversize"),
        (lambda: heartbeat.encode(KEY, beat(sent_at=NOW - 3600)), "stale"),
    ],
)
def test_bad_heartbeats_are_rejected_and_counted(make: Any, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    reg = registry()
    body, sig = make()
    with pytest.raises(HeartbeatRejected):
        reg.accept(body, sig)
    assert reg.rejected == {reason: 1}
    assert reg.nodes() == []
    assert "rejected" in caplog.text
    assert KEY not in caplog.text


def _signed(doc: dict[str, Any]) -> tuple[bytes, str]:
    body = msgspec.json.encode(doc)
    return body, heartbeat.sign(KEY, body)


def test_unknown_node_and_mismatched_routing_key_are_rejected() -> None:
    reg = registry(known_nodes={"eu-1"})
    with pytest.raises(HeartbeatRejected, match="unknown node"):
        send(reg, beat("eu-9"))
    body, sig = heartbeat.encode(KEY, beat("eu-1"))
    with pytest.raises(HeartbeatRejected, match="routing key"):
        reg.accept(body, sig, routing_key="heartbeat.eu.eu-2")
    reg.accept(body, sig, routing_key="heartbeat.eu.eu-1")
    assert reg.rejected == {"unknown_node": 1, "routing": 1}


def test_a_node_is_dead_after_missed_heartbeats_and_healthy_false_is_not_alive() -> None:
    clock = Clock()
    reg = registry(clock, dead_after_seconds=6.0)
    send(reg, beat(seq=1))
    clock.t += 5.9
    assert reg.is_alive("eu-1")
    clock.t += 0.2
    assert not reg.is_alive("eu-1")
    send(reg, beat(seq=2, healthy=False))
    assert not reg.is_alive("eu-1")
    with pytest.raises(NoHealthyNode):
        allocate(reg, region_settings(), "call-1")


def test_leaving_removes_the_node() -> None:
    reg = registry()
    send(reg, beat(seq=1))
    send(reg, beat(seq=2, state="leaving"))
    assert reg.nodes() == []
    assert not reg.is_alive("eu-1")


def test_least_loaded_node_is_picked_with_credentials_bound_to_the_call() -> None:
    reg = registry()
    send(reg, beat("eu-1", allocations=5))
    send(reg, beat("eu-2", allocations=2, relayed_kbps=900.0))
    send(reg, beat("eu-3", allocations=2, relayed_kbps=100.0))
    send(reg, beat("eu-4", allocations=0, state="draining"))
    before = time.time()
    (server,) = allocate(reg, region_settings(), "call-42")
    assert server.urls == [
        "turn:eu-3.example:3478?transport=udp",
        "turn:eu-3.example:3478?transport=tcp",
        "turns:eu-3.example:5349?transport=tcp",
    ]
    assert server.username is not None and server.credential is not None
    expiry, ref = server.username.split(":", 1)
    assert ref == "call-42"
    assert before + 600 <= int(expiry) + 1 <= time.time() + 601
    expected = hmac.new(TURN_SECRET.encode(), server.username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(server.credential) == expected


def test_calls_between_heartbeats_spread_over_nodes() -> None:
    reg = registry()
    send(reg, beat("eu-1"))
    send(reg, beat("eu-2"))
    picked = {allocate(reg, region_settings(), f"c{i}")[0].urls[0].split(":")[1] for i in range(2)}
    assert picked == {"eu-1.example", "eu-2.example"}


def test_a_cordoned_node_gets_no_new_calls_but_keeps_heartbeating() -> None:
    reg = registry()
    send(reg, beat("eu-1", seq=1))
    reg.cordon("eu-1")
    with pytest.raises(NoHealthyNode, match="no media relay is available in region eu right now"):
        allocate(reg, region_settings(), "call-1")
    send(reg, beat("eu-1", seq=2))
    assert reg.nodes()[0].cordoned and reg.is_alive("eu-1")
    reg.uncordon("eu-1")
    assert allocate(reg, region_settings(), "call-1")


def test_no_node_means_no_healthy_node_and_never_another_region() -> None:
    reg = registry()
    with pytest.raises(NoHealthyNode, match="no media relay is available in region eu right now"):
        allocate(reg, region_settings(), "call-1")
    send(reg, beat())
    with pytest.raises(ValueError, match="region"):
        allocate(reg, region_settings("us"), "call-1")


def test_a_flood_from_one_node_is_rate_limited_and_others_still_get_through() -> None:
    clock = Clock()
    reg = registry(clock, rate_per_second=5.0, burst=10)
    flood = [heartbeat.encode(KEY, beat("eu-1", seq=i)) for i in range(1, 10_001)]
    accepted_other = 0
    for i, (body, sig) in enumerate(flood):
        clock.t += 0.0001  # 10,000 heartbeats in one second
        try:
            reg.accept(body, sig)
        except HeartbeatRejected:
            pass
        if i % 1000 == 0:
            send(reg, beat("eu-2", seq=i + 1))
            accepted_other += 1
    assert reg.rejected["rate_limited"] >= 9_980
    assert reg.accepted - accepted_other <= 16  # burst + one second of refill
    assert accepted_other == 10 and reg.is_alive("eu-2")


@pytest.mark.services  # RabbitMQ
def test_consumer_against_rabbitmq_takes_only_its_regions_signed_heartbeats() -> None:
    pika = pytest.importorskip("pika")
    url = AMQP_SERVER
    # The exchange is shared with every other run on this broker and their "eu" nodes: a
    # region code of this test's own keeps their heartbeats out of its queue.
    region = secrets.choice([a + b for a in string.ascii_lowercase for b in string.ascii_lowercase])
    region = region if region not in {"eu", "us"} else "zq"
    reg = NodeRegistry(region, KEY)
    consumer = HeartbeatConsumer(reg, url, poll_seconds=0.05).start()
    try:
        assert consumer.wait_ready(10), "consumer did not bind its queue"
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        channel.exchange_declare(exchange=heartbeat.EXCHANGE, exchange_type="topic", durable=True)

        def publish(hb: Heartbeat, key: str = KEY, routing: str | None = None) -> None:
            body, sig = heartbeat.encode(key, hb)
            channel.basic_publish(
                exchange=heartbeat.EXCHANGE,
                routing_key=routing or heartbeat.routing_key(hb.region, hb.node_id),
                body=body,
                properties=pika.BasicProperties(headers={heartbeat.SIGNATURE_HEADER: sig}),
            )

        now = time.time()
        publish(beat("us-x", region="us", sent_at=now), routing="heartbeat.us.x")
        publish(beat("eu-forged", region=region, sent_at=now), key="not-the-region-key-000")
        publish(beat("eu-1", region=region, sent_at=now))
        # Last, on the same channel: once the consumer has taken it, it has taken all that
        # reached its queue before it (a queue keeps one channel's order), wrong ones too.
        publish(beat("eu-last", region=region, sent_at=now))
        connection.close()
        wait_until(lambda: reg.node("eu-last"), "the last heartbeat to reach the registry", within=60, every=0.02)
        assert sorted(n.node_id for n in reg.nodes()) == ["eu-1", "eu-last"]
        assert reg.rejected == {"signature": 1}
    finally:
        consumer.stop()
