"""The local relay ``konsil up`` runs per region, without starting coturn (that is in
tests/e2e/test_konsil_up_relay.py), and what the connection test keeps of a direct offer."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from konsil.media_nodes.coturn import PID_FILE, reap_leftover
from konsil.media_nodes.local_relay import LocalRelay, has_own_relay, read_or_make_secret
from konsil.media_nodes.network_test import reach
from konsil.media_nodes.network_test.measures import direct_candidates
from tests.conftest import bare_region


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "turn-secret"
    made = read_or_make_secret(path)
    assert len(made) == 48 and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    assert read_or_make_secret(path) == made, "kept across starts"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "tightened again"
    path.write_text("short\n")
    again = read_or_make_secret(path)
    assert again != made and len(again) == 48, "a malformed secret is replaced"


def test_the_region_gets_the_relay_and_its_secret(tmp_path: Path) -> None:
    relay = LocalRelay("eu", tmp_path, 27311, binary="/bin/true")
    assert stat.S_IMODE(relay.workdir.stat().st_mode) == 0o700
    region = relay.for_region(bare_region(ice_servers=["stun:stun.example:3478"]))
    assert region.ice_servers == [
        "stun:stun.example:3478",
        "turn:127.0.0.1:27311?transport=udp",
        "turn:127.0.0.1:27311?transport=tcp",
    ]
    assert region.turn_secret == relay.secret == (relay.workdir / "turn-secret").read_text().strip()
    text = relay.config.render(relay.workdir)
    assert "listening-ip=127.0.0.1" in text and "relay-ip=127.0.0.1" in text and "allow-loopback-peers" in text


def test_a_region_with_relays_of_its_own_gets_none() -> None:
    assert not has_own_relay(bare_region())
    assert not has_own_relay(bare_region(ice_servers=["stun:stun.example:3478"]))
    assert has_own_relay(bare_region(ice_servers=["turn:relay.example:3478?transport=udp"]))
    assert has_own_relay(bare_region(broker_url="amqp://x", media_node_key="k" * 24))


def test_a_stale_pid_file_never_stops_another_program(tmp_path: Path) -> None:
    pid_file = tmp_path / PID_FILE
    pid_file.write_text(f"{os.getpid()}\n")  # this test's own process: not a turnserver
    assert reap_leftover(tmp_path) is None
    assert not pid_file.exists(), "the stale pid file is removed"
    pid_file.write_text("not a pid")
    assert reap_leftover(tmp_path) is None
    assert reap_leftover(tmp_path) is None, "no pid file at all"


def test_a_direct_offer_keeps_its_candidates_without_related_addresses() -> None:
    offer = (
        "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        "a=candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host\r\n"
        "a=candidate:2 1 udp 1694498815 203.0.113.7 50001 typ srflx raddr 192.168.1.20 rport 50000\r\n"
    )
    kept, count = direct_candidates(offer)
    assert count == 2
    assert "203.0.113.7 50001 typ srflx\r\n" in kept and "raddr" not in kept


def test_the_relay_check_reads_turn_urls() -> None:
    assert reach._host_port("turn:relay.example:3478?transport=udp") == ("relay.example", 3478, "udp")
    assert reach._host_port("turn:127.0.0.1:8011?transport=tcp") == ("127.0.0.1", 8011, "tcp")
    assert reach._host_port("turns:relay.example?transport=tcp") == ("relay.example", 5349, "tls")
    assert reach._host_port("turn:[::1]:3478") == ("::1", 3478, "udp")
