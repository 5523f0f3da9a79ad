"""Waiting sockets: 1,000 waiting visitors with open sockets on one region process.

An organisation with an expert and a few rooms; the expert's dashboard socket
``/{org}/portal/ws`` is open. Visitors join as a browser does (the visitor form
``POST /{org}/{room}/visits``, then the visit's waiting socket, which answers
``waiting``) and stay connected. Two phases of probe arrivals, timed from the form
POST to the dashboard receiving the matching ``waiting-changed`` event:

* **baseline**: with ``--baseline-sockets`` (10) visitors waiting;
* **loaded**: after ``--sockets`` (1,000) visitors in all have joined and keep their
  sockets open.

Result: p50/p90/p99 of both, ``p99_ratio`` = loaded ÷ baseline, the region process's
memory per open socket (its RSS after the crowd joined less before, over the sockets
added) and CPU. Aims: loaded event p99 at most 1 s and at most 4 times the baseline's; at
most 256 KiB of region memory per waiting socket; no failed join, no missed event.

    .venv/bin/python -m bench.waiting_sockets [--sockets 1000] [--probes 100] [--database postgres|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    DATABASES,
    Stack,
    conditions,
    log,
    machine,
    ratio,
    run_async,
    run_standalone,
    running_stack,
    set_quiet,
)
from bench.waiting_room import (
    Arrival,
    Dashboard,
    Practice,
    _cpu_ms_per,
    _visitor,
    arrival_figures,
    dashboard_and_visitors,
    prepare,
)

NAME = "waiting_sockets"
AIM_EVENT_P99_MS = 1000.0
AIM_P99_RATIO = 4.0
AIM_KIB_PER_SOCKET = 256.0
REGION = "region eu"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--sockets", type=int, default=1000, help="waiting visitors with open sockets, in all")
    p.add_argument("--baseline-sockets", type=int, default=10, help="waiting visitors during the baseline probes")
    p.add_argument("--probes", type=int, default=100, help="timed arrivals per phase")
    p.add_argument("--probe-rate", type=float, default=10.0, help="timed arrivals per second")
    p.add_argument("--join-rate", type=float, default=50.0, help="arrivals per second while the crowd joins")
    p.add_argument("--rooms", type=int, default=20, help="rooms of the expert; arrivals go round-robin")
    p.add_argument("--database", choices=DATABASES, default="postgres")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to wait for late dashboard events")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (the servers it starts inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, wanted))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        raise SystemExit(f"the open-file limit is {target}; {wanted} are needed (raise the hard limit)")
    return target


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


class Crowd:
    """Visitors who joined and wait with their sockets open, and the dashboard that hears them."""

    def __init__(self, stack: Stack, practice: Practice, client: httpx.AsyncClient, sockets: Any) -> None:
        self.stack, self.practice, self.client, self.sockets = stack, practice, client, sockets
        self.joined = 0
        self.dashboard = Dashboard()
        self.rooms = dict(practice.rooms)

    async def listen(self, board: Any) -> None:
        """As ``Dashboard.listen``, matching each event in the current phase's dashboard."""
        async for raw in board:
            self.dashboard.hear(raw, time.perf_counter())

    async def arrive(self, count: int, rate: float, grace: float) -> list[Arrival]:
        self.dashboard = dashboard = Dashboard(expected=count)
        people = [
            Arrival(self.joined + i, self.practice.rooms[(self.joined + i) % len(self.practice.rooms)][0])
            for i in range(count)
        ]
        self.joined += count
        base = self.stack.region_url()
        start = time.perf_counter() + 0.2
        await asyncio.gather(
            *(
                _visitor(
                    self.client,
                    base,
                    self.practice,
                    a,
                    self.rooms[a.room],
                    dashboard,
                    self.sockets,
                    start + i / rate,
                )
                for i, a in enumerate(people)
            )
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(dashboard.heard_all.wait(), grace)
        return people


def figures(people: list[Arrival]) -> dict[str, Any]:
    return {"arrivals": len(people), **arrival_figures(people)}


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    practice = await prepare(stack, args.rooms)  # type: ignore[arg-type]
    region = stack.procs[REGION].pid
    async with dashboard_and_visitors(stack.region_url(), practice, request_timeout=60) as (board, client, sockets):
        crowd = Crowd(stack, practice, client, sockets)
        listener = asyncio.create_task(crowd.listen(board))
        try:
            log(f"{args.baseline_sockets} visitors join")
            first = await crowd.arrive(args.baseline_sockets, args.join_rate, args.grace)
            log(f"baseline: {args.probes} timed arrivals at {args.probe_rate:g}/s")
            baseline = await crowd.arrive(args.probes, args.probe_rate, args.grace)
            await asyncio.sleep(1.0)
            before = {"rss_kib": rss_kib(region), "fds": open_fds(region), "sockets": crowd.joined}
            fill = args.sockets - crowd.joined
            log(f"{fill} more visitors join at {args.join_rate:g}/s")
            cpu_before = stack.cpu_seconds()
            crowd_joined = await crowd.arrive(fill, args.join_rate, args.grace)
            cpu_after = stack.cpu_seconds()
            await asyncio.sleep(2.0)  # let the joins' garbage go before reading the RSS
            after = {"rss_kib": rss_kib(region), "fds": open_fds(region), "sockets": crowd.joined}
            log(f"loaded: {args.probes} timed arrivals with {crowd.joined} sockets open")
            loaded = await crowd.arrive(args.probes, args.probe_rate, args.grace)
            stack.check_alive()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        log(f"closing {crowd.joined} visitor sockets")
    failed = sum(a.error is not None for a in first + baseline + crowd_joined + loaded)
    added = after["sockets"] - before["sockets"]
    per_socket = (after["rss_kib"] - before["rss_kib"]) / added if added else None
    return {
        "baseline": {"sockets_open": args.baseline_sockets, **figures(baseline)},
        "loaded": {"sockets_open": args.sockets, **figures(loaded)},
        "crowd_join": {**figures(crowd_joined), "cpu_ms_per_arrival": _cpu_ms_per(cpu_before, cpu_after, max(1, fill))},
        "failed_joins": failed,
        "region_memory": {
            "before": before,
            "after": after,
            "kib_per_socket": None if per_socket is None else round(per_socket, 1),
            "fds_per_socket": round((after["fds"] - before["fds"]) / added, 2) if added else None,
        },
    }


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    if args.sockets < args.baseline_sockets + args.probes or min(args.probes, args.rooms, args.baseline_sockets) < 1:
        raise SystemExit("--sockets must exceed --baseline-sockets + --probes; all counts positive")
    set_quiet(args.quiet)
    fd_limit = raise_fd_limit(2 * (args.sockets + 2 * args.probes) + 256)  # our client ends and the servers'
    host = machine()
    with running_stack(args.database) as stack:
        found = run_async(measure(stack, args))
    base_p99 = found["baseline"]["dashboard_event"]["p99_ms"]
    loaded_p99 = found["loaded"]["dashboard_event"]["p99_ms"]
    p99_ratio = ratio(loaded_p99, base_p99)
    per_socket = found["region_memory"]["kib_per_socket"]
    missed = found["baseline"]["events_missed"] + found["loaded"]["events_missed"]
    return {
        "benchmark": NAME,
        "database": args.database,
        "sockets": args.sockets,
        "probes_per_phase": args.probes,
        "probe_rate_per_s": args.probe_rate,
        **found,
        "p50_ratio": ratio(
            found["loaded"]["dashboard_event"]["p50_ms"], found["baseline"]["dashboard_event"]["p50_ms"]
        ),
        "p99_ratio": p99_ratio,
        "aim": {
            "loaded_event_p99_ms_at_most": AIM_EVENT_P99_MS,
            "p99_ratio_at_most": AIM_P99_RATIO,
            "kib_per_socket_at_most": AIM_KIB_PER_SOCKET,
        },
        "meets_aim": bool(
            loaded_p99 is not None
            and loaded_p99 <= AIM_EVENT_P99_MS
            and p99_ratio is not None
            and p99_ratio <= AIM_P99_RATIO
            and per_socket is not None
            and per_socket <= AIM_KIB_PER_SOCKET
            and not found["failed_joins"]
            and not missed
        ),
        "open_file_limit": fd_limit,
        **conditions(host),
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone(run, argv, "servers stopped and databases dropped")


if __name__ == "__main__":
    sys.exit(main())
