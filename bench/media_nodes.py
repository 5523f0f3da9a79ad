"""Media nodes: allocation decisions per second with 50 registered nodes; relayed packets per second through one node.

Part A (allocation, in process): a ``NodeRegistry`` of region ``eu`` with 50 nodes,
each fed a real signed heartbeat (varying allocations and relayed kbit/s) through
``registry.accept``. Then ``allocate(registry, region, call_ref)`` is timed: the
least-loaded pick over the 50 nodes, the pending-call bookkeeping and the TURN REST
credential HMAC. Baselines in the same run: ``pick_node`` alone (the decision without
credentials and bookkeeping), and ``accept`` of a signed heartbeat (what the registry
does per node per heartbeat interval). Rounds rotate the order of the sides.

Part B (relay throughput, real coturn): one coturn started as the media-node agent
starts it (``CoturnProcess``, loopback, TURN REST secret, loopback peers only). A TURN
allocation is made with aioice (valid REST credentials) and a channel is bound to a
UDP sink (a separate process that counts what arrives). Then N small packets are
sent as ChannelData frames through the relay to the sink; the baseline, interleaved
(ABBA), sends the same packets from the same kind of socket straight to the sink over
loopback UDP. Both sides send as fast as the socket takes the packets, so the
figure is the most the path delivers, with the loss that costs. Then a paced side:
the same packets through the relay at ``--paced-rate`` (default 20,000/s), for the
loss at a given load. Result: packets/s received at the sink, the ratio and the loss.

    .venv/bin/python -m bench.media_nodes [--nodes 50] [--decisions 50000]
        [--packets 20000] [--size 200] [--rounds 3] [--paced-rate 20000] [--skip-relay]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import (
    LOOPBACK,
    coturn_node,
    event_loop_name,
    interrupt_on_terminate,
    log,
    machine,
    run_async,
    run_standalone,
    set_quiet,
    signals_deferred,
)
from konsil.media_nodes import heartbeat
from konsil.media_nodes.allocation import allocate, pick_node
from konsil.media_nodes.coturn import CoturnProcess
from konsil.media_nodes.ice import turn_credentials
from konsil.media_nodes.registry import NodeRegistry
from konsil.platform.core.settings import RegionSettings

NAME = "media_nodes"
# Aims (this benchmark's own; the requirements set no figures): an allocation decision
# costs at most 100 µs with 50 nodes (10,000 decisions/s on one core), and one node on
# this machine relays at least 20,000 small packets/s (unpaced) and loses at most 1% of
# them when they are sent at that rate (paced).
AIM_US_PER_DECISION = 100.0
AIM_RELAYED_PPS = 20_000.0
AIM_LOSS = 0.01
CHANNEL = 0x4000

# The sink: counts datagrams on a loopback UDP port; on stdin "report" it prints
# "count first last" (monotonic clock, shared by processes on Linux), "reset" zeroes it.
SINK = r"""
import os, select, socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
sock.bind(("127.0.0.1", 0))
sock.setblocking(False)
print(sock.getsockname()[1], sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), flush=True)
count, first, last = 0, 0.0, 0.0
stdin = sys.stdin.fileno()
clock = time.monotonic
recv = sock.recv
while True:
    ready, _, _ = select.select([sock, stdin], [], [], 1.0)
    if sock in ready:
        while True:
            try:
                recv(4096)
            except BlockingIOError:
                break
            now = clock()
            if not count:
                first = now
            count += 1
            last = now
    if stdin in ready:
        line = os.read(stdin, 64)
        if not line:
            break
        for cmd in line.split():
            if cmd == b"report":
                print(count, first, last, flush=True)
            elif cmd == b"reset":
                count, first, last = 0, 0.0, 0.0
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=50, help="registered media nodes")
    p.add_argument("--decisions", type=int, default=50_000, help="allocation decisions per side over all rounds")
    p.add_argument("--packets", type=int, default=20_000, help="packets per round and side")
    p.add_argument("--size", type=int, default=200, help="payload bytes per packet")
    p.add_argument("--rounds", type=int, default=3, help="rounds per side (both parts)")
    p.add_argument("--paced-rate", type=float, default=AIM_RELAYED_PPS, help="packets/s of the paced relay rounds")
    p.add_argument("--seconds", type=float, default=5.0, help="cap on one relay round's sending time")
    p.add_argument("--skip-relay", action="store_true", help="part A only (no coturn)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


# --- part A: allocation decisions -----------------------------------------------------------


def _region(turn_secret: str) -> RegionSettings:
    return RegionSettings(
        id="eu",
        jurisdiction="EU/EEA (GDPR)",
        public_url=f"http://{LOOPBACK}:1",
        listen=f"{LOOPBACK}:1",
        database="sqlite:///unused.db",
        internal_secret=secrets.token_urlsafe(32),
        turn_secret=turn_secret,
        media_node_key=secrets.token_urlsafe(32),
    )


def _beat(node: int, seq: int) -> heartbeat.Heartbeat:
    port = 3478 + node
    return heartbeat.Heartbeat(
        region="eu",
        node_id=f"node-{node:03d}",
        seq=seq,
        sent_at=time.time(),
        state="active",
        healthy=True,
        allocations=(node * 37) % 200,  # varying loads
        relayed_kbps=float((node * 7919) % 50_000),
        turn_urls=[
            f"turn:10.0.0.{node % 250 + 1}:{port}?transport=udp",
            f"turn:10.0.0.{node % 250 + 1}:{port}?transport=tcp",
        ],
    )


def part_a(args: argparse.Namespace) -> dict[str, Any]:
    region = _region(secrets.token_urlsafe(24))
    key = region.media_node_key
    # Alive for the whole run: the benchmark measures decisions, not expiry.
    registry = NodeRegistry("eu", key, dead_after_seconds=3600)
    for node in range(args.nodes):
        body, signature = heartbeat.encode(key, _beat(node, 1))
        registry.accept(body, signature, heartbeat.routing_key("eu", f"node-{node:03d}"))
    assert len(registry.nodes()) == args.nodes and registry.stats()["rejected"] == {}
    # The accept baseline needs its own registry without the per-node rate limit.
    feed = NodeRegistry("eu", key, dead_after_seconds=3600, rate_per_second=1e12, burst=10**9)
    per_round = max(1, args.decisions // args.rounds)
    beats = [
        (*heartbeat.encode(key, _beat(i % args.nodes, 2 + i // args.nodes)), f"heartbeat.eu.node-{i % args.nodes:03d}")
        for i in range(per_round * args.rounds)
    ]
    call_refs = [f"call-{i}" for i in range(per_round)]

    def run_allocate() -> int:
        picked = set()
        for ref in call_refs:
            servers = allocate(registry, region, ref)
            picked.add(servers[0].urls[0])
        return len(picked)

    def run_pick() -> int:
        picked = set()
        for _ in call_refs:
            picked.add(pick_node(registry).node_id)  # type: ignore[union-attr]
        return len(picked)

    cursor = 0

    def run_accept() -> int:
        nonlocal cursor
        chunk = beats[cursor : cursor + per_round]
        cursor += per_round
        for body, signature, rk in chunk:
            feed.accept(body, signature, rk)
        return len(chunk)

    sides = {"allocate": run_allocate, "pick_node": run_pick, "accept_heartbeat": run_accept}
    # Warm-up (discarded): a tenth of a round of each decision side.
    for ref in call_refs[: per_round // 10]:
        allocate(registry, region, ref)
        pick_node(registry)
    timings: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    distinct: dict[str, int] = {}
    order = list(sides)
    for round_no in range(args.rounds):
        for name in order[round_no % len(order) :] + order[: round_no % len(order)]:
            wall, cpu0 = time.perf_counter(), time.process_time()
            distinct[name] = sides[name]()
            timings[name].append((time.perf_counter() - wall) / per_round * 1e6)
            cpu[name].append((time.process_time() - cpu0) / per_round * 1e6)
    out: dict[str, Any] = {"nodes": args.nodes, "decisions_per_side": per_round * args.rounds, "rounds": args.rounds}
    for name in sides:
        us = statistics.median(timings[name])
        out[name] = {
            "us_per_op": round(us, 3),
            "ops_per_s": round(1e6 / us, 1),
            "cpu_us_per_op": round(statistics.median(cpu[name]), 3),
            "rounds_us_per_op": [round(x, 3) for x in timings[name]],
        }
    out["allocate"]["nodes_used"] = distinct["allocate"]
    out["allocate_vs_pick_node_ratio"] = round(out["allocate"]["us_per_op"] / out["pick_node"]["us_per_op"], 3)
    out["allocate_vs_accept_ratio"] = round(out["allocate"]["us_per_op"] / out["accept_heartbeat"]["us_per_op"], 3)
    out["rejected_heartbeats"] = dict(feed.stats()["rejected"])
    out["aim_us_per_decision"] = AIM_US_PER_DECISION
    out["meets_aim"] = out["allocate"]["us_per_op"] <= AIM_US_PER_DECISION
    return out


# --- part B: relayed packets per second -----------------------------------------------------


class Sink:
    """The counting UDP sink in its own process (so it does not share our CPU time slice)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        assert self.proc.stdout is not None
        port, rcvbuf = self.proc.stdout.readline().split()
        self.port = int(port)
        self.rcvbuf = int(rcvbuf)

    def _ask(self, command: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + b"\n")

    def report(self) -> tuple[int, float, float]:
        self._ask(b"report")
        assert self.proc.stdout is not None
        count, first, last = self.proc.stdout.readline().split()
        return int(count), float(first), float(last)

    def settle(self, expected: int, quiet_seconds: float = 0.3, timeout: float = 5.0) -> tuple[int, float, float]:
        """The count once it reached ``expected`` or stopped moving for ``quiet_seconds``."""
        deadline = time.monotonic() + timeout
        seen = self.report()
        stable_since = time.monotonic()
        while seen[0] < expected and time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.report()
            if now[0] != seen[0]:
                seen, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= quiet_seconds:
                break
        return seen

    def reset(self) -> None:
        self._ask(b"reset")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _blast(
    transport: asyncio.DatagramTransport, frames: list[bytes], seconds: float, rate: float | None = None
) -> tuple[int, float]:
    """Send the frames as fast as the socket takes them (yielding every 64), or paced at
    ``rate`` packets/s in batches of 64; capped in time."""
    clock = time.monotonic
    start = clock()
    deadline = start + seconds
    sent = 0
    send = transport.sendto
    for i in range(0, len(frames), 64):
        for frame in frames[i : i + 64]:
            send(frame)
        sent += len(frames[i : i + 64])
        pause = start + sent / rate - clock() if rate else 0.0
        await asyncio.sleep(max(0.0, pause))
        if clock() > deadline:
            break
    return sent, start


async def part_b(args: argparse.Namespace, coturn: CoturnProcess, sink: Sink) -> dict[str, Any]:
    from aioice.turn import TurnClientUdpProtocol

    loop = asyncio.get_running_loop()
    server = (LOOPBACK, coturn.config.listening_port)
    sink_addr = (LOOPBACK, sink.port)
    username, password = turn_credentials(coturn.config.static_auth_secret, "bench-relay", 600)
    turn_transport, turn = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(
            server, username=username, password=password, lifetime=600, channel_refresh_time=500
        ),
        remote_addr=server,
    )
    direct_transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=sink_addr)
    try:
        relayed = await asyncio.wait_for(turn.connect(), 5)  # Allocate (401 challenge, then with credentials)
        await asyncio.wait_for(turn.channel_bind(CHANNEL, sink_addr), 5)  # permission + channel for the sink
        log(f"TURN allocation {relayed[0]}:{relayed[1]}, channel {CHANNEL:#x} bound to the sink {sink_addr[1]}")
        payloads = [struct.pack("!I", i) + b"\x00" * (args.size - 4) for i in range(args.packets)]
        # ChannelData (RFC 8656 section 12.4): channel number, length, data (no padding over UDP).
        sides = {
            "relay": ([struct.pack("!HH", CHANNEL, len(p)) + p for p in payloads], turn_transport),
            "direct": (payloads, direct_transport),
        }
        # Warm-up (discarded), and a check that the relay delivers at all.
        for frames, transport in sides.values():
            await _blast(transport, frames[:500], args.seconds)
        warm = await asyncio.to_thread(sink.settle, 1000)
        if warm[0] < 500:
            raise RuntimeError(f"the sink received {warm[0]} of 1000 warm-up packets (relay not delivering?)")
        sink.reset()
        results: dict[str, list[dict[str, float]]] = {"relay": [], "direct": [], "relay_paced": []}
        pattern = ["direct", "relay", "relay", "direct"]
        order = [pattern[i % 4] for i in range(2 * args.rounds)] + ["relay_paced"] * args.rounds
        for side in order:
            frames, transport = sides[side.removesuffix("_paced")]
            rate = args.paced_rate if side == "relay_paced" else None
            sent, started = await _blast(transport, frames, args.seconds, rate)
            sent_seconds = time.monotonic() - started
            count, _first, last = await asyncio.to_thread(sink.settle, sent)
            sink.reset()
            span = max(last - started, 1e-9)
            results[side].append(
                {
                    "sent": sent,
                    "received": count,
                    "loss": round(1 - count / sent, 4) if sent else 0.0,
                    "sent_pps": round(sent / sent_seconds, 1),
                    "received_pps": round(count / span, 1),
                }
            )
            await asyncio.sleep(0.1)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(turn.delete(), 2)
        turn_transport.close()
        direct_transport.close()

    out: dict[str, Any] = {"packets_per_round": args.packets, "payload_bytes": args.size, "rounds": args.rounds}
    for side, rounds in results.items():
        sent = sum(int(r["sent"]) for r in rounds)
        received = sum(int(r["received"]) for r in rounds)
        out[side] = {
            "received_pps": round(statistics.median(r["received_pps"] for r in rounds), 1),
            "sent_pps": round(statistics.median(r["sent_pps"] for r in rounds), 1),
            "sent": sent,
            "received": received,
            "loss": round(1 - received / sent, 4) if sent else None,
            "rounds_received_pps": [r["received_pps"] for r in rounds],
        }
    out["relay_vs_direct_ratio"] = round(out["relay"]["received_pps"] / out["direct"]["received_pps"], 3)
    out["relayed_mbit_per_s"] = round(out["relay"]["received_pps"] * args.size * 8 / 1e6, 2)
    out["sink_rcvbuf_bytes"] = sink.rcvbuf
    out["relay_paced"]["rate_pps"] = args.paced_rate
    out["aim"] = {"relayed_pps_at_least": AIM_RELAYED_PPS, "loss_at_most": AIM_LOSS}
    out["meets_aim"] = out["relay"]["received_pps"] >= AIM_RELAYED_PPS and (out["relay_paced"]["loss"] or 0) <= AIM_LOSS
    return out


def relay_part(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="konsil-bench-media-"))
    sink: Sink | None = None
    try:
        with coturn_node(secrets.token_urlsafe(24), work) as coturn:
            sink = Sink()
            log(f"UDP sink on {LOOPBACK}:{sink.port} (pid {sink.proc.pid})")
            return run_async(part_b(args, coturn, sink))
    finally:
        with signals_deferred():
            if sink is not None:
                sink.close()
            shutil.rmtree(work, ignore_errors=True)


# --- the benchmark --------------------------------------------------------------------------


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    if args.nodes < 1 or args.decisions < 1 or args.packets < 1 or args.rounds < 1 or not 4 <= args.size <= 1200:
        raise SystemExit("--nodes, --decisions, --packets and --rounds must be positive, --size 4..1200")
    set_quiet(args.quiet)
    host = machine()
    started = time.monotonic()
    with interrupt_on_terminate():
        log(f"part A: {args.decisions} allocation decisions with {args.nodes} nodes")
        allocation = part_a(args)
        relay = None
        if not args.skip_relay:
            log(f"part B: {args.rounds} x {args.packets} packets of {args.size} bytes, relayed and direct")
            relay = relay_part(args)
    decision = allocation["allocate"]
    return {
        "benchmark": NAME,
        "allocation": allocation,
        "allocations_per_s": decision["ops_per_s"],
        "us_per_allocation": decision["us_per_op"],
        "relay_throughput": relay,
        "relayed_pps": relay["relay"]["received_pps"] if relay else None,
        "relay_vs_direct_ratio": relay["relay_vs_direct_ratio"] if relay else None,
        "call_setup": "measured by bench/waiting_room.py (part B: admit to ICE connected through the relay)",
        "meets_aim": allocation["meets_aim"] and (relay is None or relay["meets_aim"]),
        "seconds": round(time.monotonic() - started, 1),
        "load_generator": {"event_loop": event_loop_name(), "same_host": True, "pid": os.getpid()},
        "machine": host | {"load_average_1m_after": machine().get("load_average_1m")},
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone(run, argv, "coturn and the sink stopped")


if __name__ == "__main__":
    sys.exit(main())
