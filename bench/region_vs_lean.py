"""Region vs lean: the region service's CPU per authenticated read against a minimal app.

The same read, ``GET /api/v1/orgs/{slug}/rooms`` with ``Authorization: Bearer
<token>`` (an integration token with scope rooms:read; a few rooms), is served by
the region service and by ``bench/lean_rooms.py`` (Litestar + asyncpg, the same
token check, byte-identical JSON), two server processes run by uvicorn with the
same settings on the same migrated PostgreSQL database. Before measuring, the
bodies are compared byte for byte and both refuse the read without the token and
for an unknown organisation. Rounds are interleaved ABBA; a closed-loop load
generator (this process) drives one side at a time.

Result: each server process's CPU time per request (``/proc/<pid>/stat``),
requests/s, latencies, and ``cpu_ratio`` = region ÷ lean server CPU per request
(aim: at most 1.3, so the region's guard and queries never grow back).

    .venv/bin/python -m bench.region_vs_lean [--requests N] [--concurrency C] [--rounds R]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench import gateway_vs_direct
from bench.harness import (
    DATABASES,
    LOOPBACK,
    LoadResult,
    Stack,
    _cpu_seconds_of,
    _database_cpu_seconds,
    _machine_busy_seconds,
    abba,
    conditions,
    free_port,
    interleaved_rounds,
    log,
    machine,
    ratio,
    require_positive,
    run_async,
    run_standalone,
    running_stack,
    set_quiet,
    stop_server,
    summarise,
)

NAME = "region_vs_lean"
# Region server CPU per request at most 1.3 times the lean app's (an outside run measured 2.7-3.1).
AIM = 1.3
ROOT = Path(__file__).resolve().parent.parent
REGION = "region eu"
SIDES = ("region", "lean")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--requests", type=int, default=6000, help="measured requests per side, over all rounds")
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop workers")
    p.add_argument("--seconds", type=float, default=80.0, help="cap on the measured time, both sides together")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds per side")
    p.add_argument("--warmup", type=int, default=400, help="discarded requests per side before the first round")
    p.add_argument("--rooms", type=int, default=5, help="rooms in the listed organisation")
    p.add_argument("--database", choices=DATABASES, default="postgres", help="postgres only (the lean app's)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


@contextlib.contextmanager
def lean_server(dsn: str, timeout: float = 30.0) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``bench/lean_rooms.py`` on a free loopback port; always stopped."""
    port = free_port()
    sys.stdout.flush()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.lean_rooms", "--database", dsn, "--listen", f"{LOOPBACK}:{port}"],
        cwd=ROOT,
        stdout=sys.stderr,  # stdout carries our JSON only
        start_new_session=True,
    )
    base = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the lean app stopped during start-up (exit code {proc.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/api/v1/orgs/x/rooms", timeout=1, trust_env=False).status_code == 401:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the lean app did not answer within {timeout:.0f}s")
            time.sleep(0.2)
        log(f"lean app is up: {base} (pid {proc.pid})")
        yield base, proc
    finally:
        stop_server("the lean app", proc)


async def sanity_check(urls: dict[str, str], token: str, rooms: int) -> int:
    """Byte-identical bodies for the token; 401 without it; 404 for an unknown organisation."""
    auth = {"authorization": f"Bearer {token}"}
    bodies: dict[str, bytes] = {}
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        for side, url in urls.items():
            answer = await client.get(url, headers=auth)
            if answer.status_code != 200:
                raise RuntimeError(f"{side}: expected 200, got {answer.status_code}: {answer.text[:300]}")
            bodies[side] = answer.content
            refused = (await client.get(url)).status_code
            if refused != 401:
                raise RuntimeError(f"{side}: expected 401 without the token, got {refused}")
            unknown = (await client.get(url.replace("/orgs/", "/orgs/no-such-"), headers=auth)).status_code
            if unknown != 404:
                raise RuntimeError(f"{side}: expected 404 for an unknown organisation, got {unknown}")
    if bodies["region"] != bodies["lean"]:
        raise RuntimeError(f"the bodies differ:\nregion {bodies['region'][:300]!r}\nlean   {bodies['lean'][:300]!r}")
    if len(httpx.Response(200, content=bodies["region"]).json()) != rooms:
        raise RuntimeError(f"expected {rooms} rooms")
    return len(bodies["region"])


def _system_seconds_of(pid: int) -> float | None:
    """Kernel-mode CPU time of a process (its share of ``_cpu_seconds_of``), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def cpu_probe(stack: Stack, lean: subprocess.Popen[bytes]) -> Callable[[], dict[str, float | None]]:
    region = stack.procs[REGION]

    def probe() -> dict[str, float | None]:
        return {
            "region": _cpu_seconds_of(region.pid),
            "lean": _cpu_seconds_of(lean.pid),
            "region (kernel)": _system_seconds_of(region.pid),
            "lean (kernel)": _system_seconds_of(lean.pid),
            "load generator": time.process_time(),
            "database (our backends)": _database_cpu_seconds(stack.databases),
            "machine (all processes)": _machine_busy_seconds(),
        }

    return probe


async def measure(
    stack: Stack, urls: dict[str, str], token: str, lean: subprocess.Popen[bytes], args: argparse.Namespace
) -> dict[str, list[LoadResult]]:
    def both_running() -> None:
        stack.check_alive()
        if lean.poll() is not None:
            raise RuntimeError(f"the lean app stopped (exit code {lean.returncode})")

    def server_cpu(side: str, result: LoadResult) -> str:
        server_ms = result.cpu_seconds.get(side, 0.0) * 1000 / max(1, result.ok)
        return f"server {server_ms:.3f} ms CPU/request, {result.errors} errors"

    return await interleaved_rounds(
        {side: urls[side] for side in SIDES},
        headers={"authorization": f"Bearer {token}"},
        concurrency=args.concurrency,
        requests=args.requests,
        rounds=args.rounds,
        seconds=args.seconds,
        warmup=args.warmup,
        cpu_probe=cpu_probe(stack, lean),
        before_round=both_running,
        describe=server_cpu,
    )


def _server_ms(result: LoadResult, side: str) -> float | None:
    seconds = result.cpu_seconds.get(side)
    return None if seconds is None or not result.ok else seconds * 1000 / result.ok


def side_figures(summary: dict[str, Any], side: str) -> dict[str, Any]:
    cpu = summary.pop("cpu_ms_per_request", {})
    other_server = "lean" if side == "region" else "region"
    cpu.pop(other_server, None)  # idle during this side's rounds
    cpu.pop(f"{other_server} (kernel)", None)
    summary["server_cpu_ms_per_request"] = cpu.pop(side, None)
    summary["server_kernel_cpu_ms_per_request"] = cpu.pop(f"{side} (kernel)", None)
    machine_total = cpu.get("machine (all processes)")
    if machine_total is not None:  # recomputed without the kernel shares (counted twice) and the idle server
        ours = (summary["server_cpu_ms_per_request"] or 0) + sum(
            v for k, v in cpu.items() if k not in {"machine (all processes)", "other (rest of machine)"}
        )
        cpu["other (rest of machine)"] = round(max(0.0, machine_total - ours), 3)
    summary["cpu_ms_per_request"] = cpu
    return summary


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    require_positive(args, "requests", "concurrency", "rounds", "seconds")
    set_quiet(args.quiet)
    if args.database != "postgres":  # e.g. `python -m bench -- --database sqlite` for the whole suite
        return {"benchmark": NAME, "database": args.database, "skipped": "the lean app runs on PostgreSQL only"}
    host = machine()
    with running_stack("postgres") as stack:
        fx = run_async(gateway_vs_direct.prepare(stack, args.rooms))
        with lean_server(stack.settings.regions[0].database) as (lean_base, lean):
            path = f"/api/v1/orgs/{fx.slug}/rooms"
            urls = {"region": fx.direct_url, "lean": lean_base + path}
            body_bytes = run_async(sanity_check(urls, fx.token, args.rooms))
            log(f"bodies identical ({body_bytes} bytes); measuring {args.requests} requests per side")
            results = run_async(measure(stack, urls, fx.token, lean, args))
    figures = {side: side_figures(summarise(results[side]), side) for side in SIDES}
    cpu_ratio = ratio(figures["region"]["server_cpu_ms_per_request"], figures["lean"]["server_cpu_ms_per_request"])
    pairs = [
        ratio(_server_ms(r, "region"), _server_ms(lean_round, "lean"))
        for r, lean_round in zip(results["region"], results["lean"], strict=True)
    ]

    def with_database(side: str) -> float | None:
        server = figures[side]["server_cpu_ms_per_request"]
        db = figures[side]["cpu_ms_per_request"].get("database (our backends)")
        return None if server is None or db is None else server + db

    errors = figures["region"]["errors"] + figures["lean"]["errors"]
    return {
        "benchmark": NAME,
        "database": "postgres",
        "concurrency": args.concurrency,
        "requests": args.requests,
        "rounds": args.rounds,
        "order": abba(SIDES, args.rounds),
        "read": f"GET /api/v1/orgs/{{slug}}/rooms (Bearer token, scope rooms:read, {args.rooms} rooms)",
        "body_bytes": body_bytes,
        "bodies_identical": True,
        "region": figures["region"],
        "lean": figures["lean"],
        "cpu_ratio": cpu_ratio,
        "pair_cpu_ratios": pairs,
        "pair_cpu_ratio_median": round(statistics.median([p for p in pairs if p]), 3) if any(pairs) else None,
        "cpu_ratio_with_database": ratio(with_database("region"), with_database("lean")),
        "database_cpu_ratio": ratio(
            figures["region"]["cpu_ms_per_request"].get("database (our backends)"),
            figures["lean"]["cpu_ms_per_request"].get("database (our backends)"),
        ),
        "throughput_ratio": ratio(figures["region"]["rps"], figures["lean"]["rps"]),
        "aim": {"cpu_ratio_at_most": AIM},
        "meets_aim": cpu_ratio is not None and cpu_ratio <= AIM and not errors,
        "servers": "uvicorn (uvloop, httptools), one process each, log level warning, no access log",
        **conditions(host, http_client=True),
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone(run, argv, "servers stopped and databases dropped")


if __name__ == "__main__":
    sys.exit(main())
