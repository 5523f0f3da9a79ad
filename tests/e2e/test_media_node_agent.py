"""The media node agent against a real RabbitMQ (127.0.0.1:5672) and a real coturn."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from konsil.media_nodes import heartbeat
from konsil.media_nodes.agent import NodeAgent
from konsil.media_nodes.coturn import PID_FILE, CoturnConfig, CoturnProcess, command_line
from konsil.media_nodes.ice import turn_credentials
from tests.conftest import AMQP_SERVER, TurnClient, free_port, release_turn

BROKER = AMQP_SERVER
INTERVAL = 0.5


class Heartbeats:
    """An exclusive queue bound to one node's heartbeats."""

    def __init__(self, node_id: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(BROKER))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(exchange=heartbeat.EXCHANGE, exchange_type="topic", durable=True)
        self.queue = self.channel.queue_declare(queue="", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, heartbeat.EXCHANGE, routing_key=heartbeat.routing_key("eu", node_id))

    def next(self, key: str, timeout: float = 30.0) -> tuple[heartbeat.Heartbeat, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                self.connection.sleep(0.02)
                continue
            signature = (properties.headers or {}).get(heartbeat.SIGNATURE_HEADER)
            return heartbeat.verify(key, body, signature, "eu"), time.monotonic()
        raise AssertionError(f"no heartbeat within {timeout} s")

    def until(self, key: str, predicate, timeout: float = 60.0) -> list[heartbeat.Heartbeat]:  # type: ignore[no-untyped-def]
        seen: list[heartbeat.Heartbeat] = []
        deadline = time.monotonic() + timeout
        while True:
            beat, _ = self.next(key, max(0.1, deadline - time.monotonic()))
            seen.append(beat)
            if predicate(beat):
                return seen

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[NodeAgent, Heartbeats, str, str]]:
    node_id = f"node-{secrets.token_hex(4)}"
    key = secrets.token_urlsafe(24)
    secret = secrets.token_urlsafe(24)
    port = free_port()
    relay_min = 42000 + (port % 200) * 100
    beats = Heartbeats(node_id)
    agent = NodeAgent(
        region_id="eu",
        node_id=node_id,
        broker_url=BROKER,
        media_node_key=key,
        turn_secret=secret,
        public_host="127.0.0.1",
        listen_ip="127.0.0.1",
        port=port,
        relay_ports=(relay_min, relay_min + 99),
        heartbeat_seconds=INTERVAL,
        relay_ip="127.0.0.1",
        realm="konsil.test",
        allow_loopback_peers=True,
        denied_peer_ranges=("0.0.0.0-126.255.255.255", "128.0.0.0-255.255.255.255"),
        workdir=tmp_path / "coturn",
        drain_timeout=5,
    )
    agent.start()
    try:
        yield agent, beats, key, secret
    finally:
        agent.close()
        beats.close()


async def allocate(port: int, username: str, password: str) -> tuple[str, int]:
    transport, client = await asyncio.wait_for(
        create_turn_endpoint(TurnClient, ("127.0.0.1", port), username, password, lifetime=60), 5
    )
    relayed: tuple[str, int] = transport.get_extra_info("sockname")
    await release_turn(transport, client)
    return relayed


def test_signed_heartbeats_arrive_at_the_interval(node: tuple[NodeAgent, Heartbeats, str, str]) -> None:
    agent, beats, key, _ = node
    received = [beats.next(key) for _ in range(5)]
    port = agent.config.listening_port
    for beat, _ in received:
        assert beat.node_id == agent.node_id and beat.region == "eu"
        assert beat.state == "active" and beat.healthy and beat.allocations == 0
        assert beat.turn_urls == [f"turn:127.0.0.1:{port}?transport=udp", f"turn:127.0.0.1:{port}?transport=tcp"]
    assert [b.seq for b, _ in received] == sorted(b.seq for b, _ in received)
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(received)]
    print(f"heartbeat gaps: {[round(g, 3) for g in gaps]}")
    assert all(INTERVAL * 0.6 < gap < INTERVAL * 2 for gap in gaps), gaps
    # The configuration holds the TURN secret: only the agent's user may read it.
    assert stat.S_IMODE(agent.coturn.config_path.stat().st_mode) == 0o600


def test_a_heartbeat_signed_with_another_key_is_refused(node: tuple[NodeAgent, Heartbeats, str, str]) -> None:
    _, beats, _, _ = node
    with pytest.raises(heartbeat.HeartbeatRejected, match="signature"):
        beats.next("another-key-0123456789")


async def test_turn_rest_credentials_work_and_expired_ones_do_not(
    node: tuple[NodeAgent, Heartbeats, str, str],
) -> None:
    agent, beats, key, secret = node
    port = agent.config.listening_port
    username, password = turn_credentials(secret, "call-1", 60)
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", port), username, password, lifetime=60), 5
    )
    try:
        host, relay_port = transport.get_extra_info("sockname")
        assert host == "127.0.0.1" and agent.config.min_port <= relay_port <= agent.config.max_port
        # The allocation shows in the node's load.
        await asyncio.to_thread(beats.until, key, lambda b: b.allocations == 1)
    finally:
        transport.close()
    expired = turn_credentials(secret, "call-2", 60, now=time.time() - 120)
    with pytest.raises(stun.TransactionFailed, match="401"):
        await allocate(port, *expired)
    forged = turn_credentials("not-the-secret-0123456789", "call-3", 60)
    with pytest.raises(stun.TransactionFailed, match="401"):
        await allocate(port, *forged)


def test_a_killed_coturn_is_restarted_and_reported(node: tuple[NodeAgent, Heartbeats, str, str]) -> None:
    agent, beats, key, _ = node
    beats.until(key, lambda b: b.healthy)
    old_pid = agent.coturn.pid
    assert old_pid
    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    seen = beats.until(key, lambda b: not b.healthy, timeout=5)
    seen += beats.until(key, lambda b: b.healthy, timeout=10)
    recovered_after = time.monotonic() - killed_at
    print(f"restarts={agent.restarts} recovered in {recovered_after:.2f} s: {[b.healthy for b in seen]}")
    assert agent.restarts == 1
    assert seen[-1].restarts == 1, "the heartbeat tells the registry (and ops) about the restart"
    assert agent.coturn.pid not in (None, old_pid)
    assert agent.coturn.accepts_connections()


def test_drain_announces_draining_then_leaving_and_stops_coturn(node: tuple[NodeAgent, Heartbeats, str, str]) -> None:
    agent, beats, key, _ = node
    beats.until(key, lambda b: b.state == "active")
    started = time.monotonic()
    agent.drain(timeout=5)
    took = time.monotonic() - started
    states = [b.state for b in beats.until(key, lambda b: b.state == "leaving", timeout=5)]
    assert "draining" in states and states[-1] == "leaving"
    assert states.index("draining") < len(states) - 1
    assert took < 3, took  # no allocations: nothing to wait for
    assert not agent.coturn.is_alive() and not agent.coturn.accepts_connections()
    # Nothing after leaving.
    with pytest.raises(AssertionError, match="no heartbeat"):
        beats.next(key, timeout=INTERVAL * 3)


async def test_drain_waits_for_the_last_allocation(node: tuple[NodeAgent, Heartbeats, str, str]) -> None:
    agent, beats, key, secret = node
    username, password = turn_credentials(secret, "call-drain", 60)
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(
            asyncio.DatagramProtocol, ("127.0.0.1", agent.config.listening_port), username, password, lifetime=60
        ),
        5,
    )
    draining = asyncio.create_task(asyncio.to_thread(agent.drain, 10))
    try:
        seen = await asyncio.to_thread(beats.until, key, lambda b: b.state == "draining" and b.allocations == 1)
        assert agent.coturn.is_alive() and not draining.done()  # the call goes on
    finally:
        transport.close()  # the call ends: its allocation is released
    await asyncio.wait_for(draining, 60)
    seen += await asyncio.to_thread(beats.until, key, lambda b: b.state == "leaving")
    assert seen[-1].allocations == 0
    assert not agent.coturn.is_alive()


class Peer(asyncio.DatagramProtocol):
    """The far end of a relayed call: counts what the relay delivers."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += len(data)


async def test_relayed_kbps_is_live_during_a_call_and_zero_after(node: tuple[NodeAgent, Heartbeats, str, str]) -> None:
    """``relayed_kbps`` was 0 during a live call and non-zero after it: the agent counted
    coturn's usage reports in a 10 s window, and coturn reports a session only every 2048
    relayed packets and once more when it ends. Now a session's rate is measured between
    its reports and an ended session counts no more. The call sends 1000-byte packets at
    about 400 a second (a video call's order) for 15 s through the node's relay."""
    agent, beats, key, secret = node
    username, password = turn_credentials(secret, "call-kbps", 600)
    loop = asyncio.get_running_loop()
    peer_transport, peer = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    peer_address = peer_transport.get_extra_info("sockname")
    relay, client = await asyncio.wait_for(
        create_turn_endpoint(TurnClient, ("127.0.0.1", agent.config.listening_port), username, password, lifetime=60),
        5,
    )
    sending = True

    async def media() -> None:
        while sending:
            for _ in range(20):
                relay.sendto(b"\x80" * 1000, peer_address)
            await asyncio.sleep(0.05)

    call = asyncio.create_task(media())
    try:
        beats.channel.queue_purge(beats.queue)
        during = await asyncio.to_thread(
            beats.until, key, lambda b: b.allocations == 1 and b.relayed_kbps > 0, timeout=15
        )
        live = during[-1].relayed_kbps
        # Mid-call, the rate is of the order of what is sent (~ 8 Mbit/s, counted once).
        assert 500 < live < 100_000, live
        await asyncio.sleep(4)
        later = await asyncio.to_thread(beats.next, key)
        assert later[0].allocations == 1 and later[0].relayed_kbps > 0, later[0]
    finally:
        sending = False
        await call
        await release_turn(relay, client)
        peer_transport.close()
    assert peer.received > 1_000_000, "the media went through the relay"
    after = await asyncio.to_thread(beats.until, key, lambda b: b.allocations == 0, timeout=10)
    assert after[-1].relayed_kbps == 0, [(b.allocations, b.relayed_kbps) for b in after]
    # ... and stays 0 (before, the call's last report showed for the next 10 s).
    for _ in range(3):
        beat, _ = await asyncio.to_thread(beats.next, key)
        assert (beat.allocations, beat.relayed_kbps) == (0, 0), beat


def test_the_command_runs_until_sigterm_then_drains(tmp_path: Path) -> None:
    import subprocess
    import sys

    node_id = f"cli-{secrets.token_hex(4)}"
    key = secrets.token_urlsafe(24)
    port = free_port()
    relay_min = 44000 + (port % 200) * 100
    config = tmp_path / "konsil.toml"
    config.write_text(
        "[[regions]]\n"
        'id = "eu"\n'
        'jurisdiction = "EU"\n'
        'public_url = "http://127.0.0.1:1"\n'
        'listen = "127.0.0.1:1"\n'
        'database = "sqlite:///x.db"\n'
        'internal_secret = "0123456789abcdef"\n'
        f'broker_url = "{BROKER}"\n'
        f'turn_secret = "{secrets.token_urlsafe(24)}"\n'
        f'media_node_key = "{key}"\n'
    )
    beats = Heartbeats(node_id)
    argv = ["run", "--region", "eu", "--node-id", node_id, "--config", str(config), "--public-host", "relay.test"]
    argv += ["--listen-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--port", str(port)]
    argv += ["--min-port", str(relay_min), "--max-port", str(relay_min + 99), "--heartbeat-seconds", "0.5"]
    argv += ["--workdir", str(tmp_path / "coturn")]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from konsil.media_nodes.agent import main; sys.exit(main(sys.argv[1:]))",
            *argv,
        ]
    )
    try:
        first, _ = beats.next(key, timeout=10)
        assert first.healthy and first.turn_urls[0] == f"turn:relay.test:{port}?transport=udp"
        proc.send_signal(signal.SIGTERM)
        states = [b.state for b in beats.until(key, lambda b: b.state == "leaving")]
        assert "draining" in states
        assert proc.wait(timeout=10) == 0
        pid_file = tmp_path / "coturn" / "turnserver.pid"
        coturn_pid = int(pid_file.read_text().strip()) if pid_file.exists() else None
        if coturn_pid:
            with pytest.raises(ProcessLookupError):
                os.kill(coturn_pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        beats.close()


def test_heartbeats_resume_after_the_broker_drops_the_connection(
    node: tuple[NodeAgent, Heartbeats, str, str],
) -> None:
    import shutil
    import subprocess

    agent, beats, key, _ = node
    rabbitmqctl = shutil.which("rabbitmqctl")
    if not rabbitmqctl:
        pytest.skip("rabbitmqctl is not available")
    beats.next(key)  # connected and publishing
    listing = subprocess.run(
        [rabbitmqctl, "list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    name = f"konsil-media-node eu/{agent.node_id}"
    pids = [line.split("\t", 1)[0] for line in listing.stdout.splitlines() if name in line]
    assert len(pids) == 1, listing.stdout
    subprocess.run([rabbitmqctl, "close_connection", pids[0], "test: broker loss"], timeout=20, check=True)
    dropped_at = time.time()
    after = beats.until(key, lambda b: b.sent_at > dropped_at + 1.0, timeout=10)
    gap = after[-1].sent_at - dropped_at
    print(f"heartbeats after the broker dropped the connection: seq {[b.seq for b in after]}, {gap:.2f} s")
    assert after[-1].healthy and after[-1].state == "active"
    relisted = subprocess.run(
        [rabbitmqctl, "list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    now = [line.split("\t", 1)[0] for line in relisted.splitlines() if name in line]
    assert len(now) == 1 and now != pids  # a new connection


def test_a_port_already_taken_is_refused_at_start(node: tuple[NodeAgent, Heartbeats, str, str], tmp_path: Path) -> None:
    from konsil.media_nodes.coturn import CoturnError, CoturnProcess

    agent, _, _, _ = node
    with pytest.raises(CoturnError, match="already in use"):
        CoturnProcess(agent.config, tmp_path / "other").start()


class AgentProcess:
    """``konsil media-node run`` as a real process (its log in a file), on loopback."""

    def __init__(self, tmp_path: Path) -> None:
        self.node_id = f"node-{secrets.token_hex(4)}"
        self.key = secrets.token_urlsafe(24)
        self.port = free_port()
        self.workdir = tmp_path / "work"
        self.config = tmp_path / "node.toml"
        self.config.write_text(
            "[[regions]]\n"
            'id = "eu"\n'
            f'broker_url = "{BROKER}"\n'
            f'media_node_key = "{self.key}"\n'
            f'turn_secret = "{secrets.token_urlsafe(24)}"\n'
        )
        self.logs = tmp_path
        self.started = 0

    def start(self) -> tuple[subprocess.Popen[bytes], Path]:
        self.started += 1
        log = self.logs / f"agent-{self.started}.log"
        relay_min = 42000 + (self.port % 200) * 100
        argv = [
            *(sys.executable, "-m", "konsil.platform.cli.main", "media-node", "run"),
            *("--region", "eu", "--node-id", self.node_id, "--config", str(self.config)),
            *("--public-host", "127.0.0.1", "--listen-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"),
            *("--port", str(self.port), "--min-port", str(relay_min), "--max-port", str(relay_min + 99)),
            *("--heartbeat-seconds", "0.5", "--drain-timeout", "2", "--workdir", str(self.workdir)),
            "--loopback-only",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")}
        with log.open("wb") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return process, log

    def coturn_pid(self) -> int:
        return int((self.workdir / PID_FILE).read_text().strip())


def wait_for(what: str, check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_agent_leaves_no_coturn_behind(tmp_path: Path) -> None:
    """A killed agent orphaned coturn, and the next start failed with "port … already in
    use (a leftover turnserver?)" although its own pid file named the leftover. Now
    coturn dies with the agent (Linux), and a leftover that outlived its agent anyway
    (one left by an agent without the kernel's help) is reaped by the next agent, which
    logs so."""
    agent = AgentProcess(tmp_path)
    beats = Heartbeats(agent.node_id)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        first, _ = agent.start()
        processes.append(first)
        beats.next(agent.key, timeout=20)
        coturn = agent.coturn_pid()
        first.kill()  # SIGKILL: the agent cleans up nothing
        first.wait(timeout=10)
        wait_for("coturn to die with its agent", lambda: command_line(coturn) is None, timeout=60)

        # What a killed agent leaves where the kernel does not stop coturn: coturn running
        # on the agent's configuration, its pid file naming it, its port taken.
        left = subprocess.Popen(
            ["turnserver", "-c", str(agent.workdir / "turnserver.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        processes.append(left)
        wait_for("the leftover's pid file", lambda: agent.coturn_pid() == left.pid)
        wait_for("the leftover to listen", lambda: listening(agent.port))

        second, log = agent.start()
        processes.append(second)
        beats.until(agent.key, lambda beat: beat.healthy, timeout=30)
        assert left.wait(timeout=10) is not None, "the leftover is gone"
        assert agent.coturn_pid() != left.pid and command_line(agent.coturn_pid()) is not None
        text = log.read_text()
        assert f"stopped coturn pid {left.pid} left running by a previous agent" in text, text
        assert "already in use" not in text
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, "the agent drains and leaves cleanly"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        beats.close()


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_pid_file_naming_another_program_is_left_alone(tmp_path: Path) -> None:
    """A pid is reused: a stranger named by the pid file, even a turnserver of another
    folder, is never stopped."""
    stranger = subprocess.Popen(["sleep", "60"])
    other = CoturnProcess(CoturnConfig.loopback(free_port(), secrets.token_urlsafe(24)), tmp_path / "other")
    try:
        other.start()
        ours = CoturnProcess(CoturnConfig.loopback(free_port(), secrets.token_urlsafe(24)), tmp_path / "ours")
        for pid in (stranger.pid, other.pid):
            (ours.workdir / PID_FILE).write_text(f"{pid}\n")
            assert ours.reap_leftover() is None
            assert not (ours.workdir / PID_FILE).exists(), "the stale pid file is removed"
        assert stranger.poll() is None and other.is_alive()
    finally:
        other.stop()
        stranger.kill()
        stranger.wait()
