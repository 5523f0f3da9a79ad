"""The pre-call network test's verdict, advice, offers, relays and stored result. The
probe peer against a real coturn relay is in tests/e2e/test_network_test_relay.py."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import msgspec
import pytest
from piccolo.columns import ForeignKey, Varchar
from piccolo.engine.base import Engine

from konsil.media_nodes.network_test import service
from konsil.media_nodes.network_test.measures import (
    Figures,
    OfferRefused,
    Plan,
    check_offer,
    relay_candidates_only,
    rfc3550_jitter,
)
from konsil.media_nodes.network_test.peer import ProbePeer
from konsil.media_nodes.network_test.tables import NetworkTestResult
from konsil.media_nodes.registry import NodeRegistry
from konsil.media_nodes.relays import RegionRelays
from konsil.platform.core.region import NetworkTests, RegionContext
from konsil.platform.core.settings import RegionSettings
from tests.conftest import bare_region
from tests.media_nodes.test_registry import beat, registry, send


def region(**extra: Any) -> RegionSettings:
    return bare_region(**extra)


def context(settings: RegionSettings, media_nodes: NodeRegistry | None = None, turn_secret: str = "") -> RegionContext:
    # Only .region and .relays are read on the relay path.
    ctx = RegionContext.__new__(RegionContext)
    ctx.region = settings
    ctx.relays = RegionRelays(settings, media_nodes, turn_secret)
    return ctx


SECRET = "network-test-relay-secret"


def test_verdict_thresholds() -> None:
    good = Figures(connected=True, rtt_ms=40, jitter_ms=3, loss_percent=0, throughput_kbps=5_000)
    assert service.verdict_of(good) == "good"
    assert service.advice_for("udp", "good", good) == ["Your connection is good for a video call."]
    for change in (
        {"rtt_ms": service.GOOD_RTT_MS + 1},
        {"jitter_ms": service.GOOD_JITTER_MS + 1},
        {"loss_percent": service.GOOD_LOSS_PERCENT + 1},
        {"throughput_kbps": service.GOOD_THROUGHPUT_KBPS - 1},
        {"throughput_kbps": None},
    ):
        figures = dataclasses.replace(good, **change)
        assert service.verdict_of(figures) == "may be unstable", change
        advice = " ".join(service.advice_for("udp", "may be unstable", figures))
        assert "wired connection" in advice or "upload speed" in advice
    assert service.verdict_of(Figures()) == "cannot connect"
    assert "IT department" in " ".join(service.advice_for("tcp", "cannot connect", Figures()))


def test_jitter_is_smoothed_as_in_rfc3550() -> None:
    assert rfc3550_jitter([0.05] * 20) == 0
    assert rfc3550_jitter([0.05, 0.07]) == pytest.approx(0.02 / 16)
    steady, shaky = rfc3550_jitter([0.05, 0.06] * 20), rfc3550_jitter([0.05, 0.15] * 20)
    assert 0 < steady < shaky


def test_the_service_peer_never_sees_the_visitors_own_addresses() -> None:
    offer = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        "a=candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host\r\n"
        "a=candidate:2 1 udp 1694498815 203.0.113.7 50001 typ srflx raddr 192.168.1.20 rport 50000\r\n"
        "a=candidate:3 1 udp 16777215 198.51.100.1 49152 typ relay raddr 203.0.113.7 rport 50001\r\n"
    )
    stripped, kept = relay_candidates_only(offer)
    assert kept == 1
    assert "192.168.1.20" not in stripped and "203.0.113.7" not in stripped and "198.51.100.1 49152" in stripped


@pytest.mark.parametrize(
    "sdp",
    [
        "hello",
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
        "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
        "v=0\r\nm=application 9 TCP/MSRP *\r\n",
    ],
)
def test_only_a_data_channel_offer_is_answered(sdp: str) -> None:
    with pytest.raises(OfferRefused):
        check_offer(sdp)


async def test_a_broken_offer_is_refused_not_crashed() -> None:
    peer = ProbePeer([], Plan(0.5, 0.5, 1))
    try:
        with pytest.raises(OfferRefused):
            await peer.answer("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=garbage\r\n")
    finally:
        await peer.close()


def test_relays_come_only_from_this_region_and_this_transport() -> None:
    urls = ["turn:relay.eu.example:3478?transport=udp", "turn:relay.eu.example:3478?transport=tcp", "stun:s.example"]
    ctx = context(region(ice_servers=urls, turn_secret=SECRET))
    udp = service.relays(ctx, "udp", "nt-1").servers
    assert [s.urls for s in udp] == [["turn:relay.eu.example:3478?transport=udp"]] and udp[0].username
    assert [s.urls for s in service.relays(ctx, "tcp", "nt-1").servers] == [
        ["turn:relay.eu.example:3478?transport=tcp"]
    ]
    with pytest.raises(service.NoRelay):
        service.relays(context(region()), "udp", "nt-1")  # no relay configured
    with pytest.raises(service.NoRelay):
        service.relays(context(region(ice_servers=urls[1:], turn_secret=SECRET)), "udp", "nt-1")  # TCP only
    # A region with a media-node registry but no healthy node: cannot connect, never elsewhere.
    empty = NodeRegistry("eu", "heartbeat-key-0123456789")
    with pytest.raises(service.NoRelay, match="region eu"):
        service.relays(context(region(turn_secret=SECRET), media_nodes=empty, turn_secret=SECRET), "udp", "nt-1")


def test_no_column_can_hold_a_visits_identity() -> None:
    """P10: support metadata is not linked to the visitor's personal data."""
    columns = {column._meta.name: column for column in NetworkTestResult._meta.columns}
    assert set(columns) == {
        "id",
        "org_id",
        "created_at",
        "runner",
        "transport",
        "verdict",
        "reason",
        "connect_ms",
        "rtt_ms",
        "jitter_ms",
        "loss_percent",
        "throughput_kbps",
        "probes_sent",
        "probes_answered",
        "browser",
        "browser_version",
        "language",
    }
    assert not [c for c in columns.values() if isinstance(c, ForeignKey)], "no link to another table"
    # Free text is short and validated at the edge: no room for a name, token, UUID or address.
    widths = {name: int(c.length or 0) for name, c in columns.items() if isinstance(c, Varchar)}
    assert max(widths.values()) <= 35
    assert "language" in widths and widths["browser"] <= 12
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"transport":"udp","sdp":"v=0 ...........","visit_id":"x"}', type=service.NetworkTestIn)
    for bad in ('"language":"Vera Visitor"', '"language":"203.0.113.7"', '"browser":{"family":"Vera","major":1}'):
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(f'{{"transport":"udp","sdp":"v=0 ...........",{bad}}}', type=service.NetworkTestIn)


async def test_a_result_is_stored_without_a_visit_and_read_back(region_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    data = service.NetworkTestIn(
        transport="tcp",
        sdp="v=0 unused",
        browser=service.BrowserInfo("firefox", 128),
        language="nb-NO",
    )
    figures = Figures(connected=True, connect_ms=300, rtt_ms=420, jitter_ms=12, loss_percent=0, throughput_kbps=3000)
    stored = await service.store(uuid.uuid4(), org_id, "visitor", data, figures)
    assert stored.verdict == "may be unstable" and any("wired" in a for a in stored.advice)
    [listed] = await service.results(org_id, 10)
    assert listed.id == stored.id and listed.browser == "firefox" and listed.browser_version == 128
    assert listed.language == "nb-NO" and listed.rtt_ms == 420 and listed.transport == "tcp"
    with contextlib.suppress(Exception):
        await NetworkTestResult.delete().where(NetworkTestResult.org_id == org_id).run()


def test_the_service_end_of_a_test_uses_the_browsers_media_node() -> None:
    nodes = registry()
    send(nodes, beat("eu-1", allocations=0))
    send(nodes, beat("eu-2", allocations=5))
    ctx = context(region(turn_secret=SECRET), media_nodes=nodes, turn_secret=SECRET)
    browser_end = service.relays(ctx, "udp", "nt-1")
    assert browser_end.node_id == "eu-1" and browser_end.servers[0].urls == ["turn:eu-1.example:3478?transport=udp"]
    service_end = service.relays(ctx, "udp", "nt-2", browser_end.node_id)
    assert service_end.node_id == "eu-1" and service_end.servers[0].urls == browser_end.servers[0].urls
    assert nodes.node("eu-1").pending == 1, "one test, one allocation"  # type: ignore[union-attr]
    # The browser's node was cordoned meanwhile: the service's end goes to a node that may take work.
    nodes.cordon("eu-1")
    assert service.relays(ctx, "udp", "nt-3", "eu-1").node_id == "eu-2"


async def test_without_its_webrtc_library_the_region_says_the_test_is_not_available() -> None:
    ctx = context(region(turn_secret=SECRET))
    ctx.network_tests = NetworkTests(unavailable="the pre-call connection test is off: aiortc is not installed")
    offer = (
        "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ relay\r\n"
    )
    with pytest.raises(service.TestUnavailable, match="aiortc is not installed"):
        await service.start(ctx, uuid.uuid4(), "visitor", service.NetworkTestIn(transport="udp", sdp=offer))
    assert ctx.network_tests.active == 0 and not ctx.network_tests.tasks


def test_the_region_service_imports_and_names_what_is_missing_without_aiortc() -> None:
    """A production install has no aiortc (it is the ``network-test`` extra): the region
    service, its worker and its commands still import, and the container says why the
    connection test is off."""
    blocked = textwrap.dedent(
        """
        import sys

        class NoAiortc:
            def find_spec(self, name, path=None, target=None):
                if name == "aiortc" or name.startswith("aiortc."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, NoAiortc())
        import konsil.regions.app, konsil.regions.tasks, konsil.platform.cli.processes
        from konsil.regions.container import missing
        assert "aiortc" not in sys.modules
        print(missing("network_tests"))
        """
    )
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "the pre-call connection test is off: aiortc is not installed (pip install 'konsil[network-test]')"
    )
