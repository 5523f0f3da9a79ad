"""Telemetry on vs off: what OpenTelemetry (spans, metrics, scrubbing, export) costs.

Two stacks run side by side in one run, alike but for ``[telemetry]``: **off** (the
embedded default: nothing exported, no metrics port) and **on** (OTLP/HTTP to a local
collector stand-in, a Prometheus ``/metrics`` port per process, JSON log lines). The
collector stand-in is a child process that reads and counts what it is sent.

Measured with rounds interleaved ABBA (off, on, on, off, …) so that drift hits both:

* **gateway_read**: the read of ``gateway_vs_direct`` through the API gateway
  (``GET /api/v1/orgs/{slug}/rooms``, Bearer token): a server span in the control
  plane, one in the region service with its database spans;
* **direct_read**: the same read at the region service;
* **waiting_room_arrivals**: the waiting room's arrival (``waiting_room`` part A's form
  post, ``POST /{org}/{room}/visits``): field encryption, inserts, an access-log
  append, the waiting-visitor metric.

Result per measure: requests/s off and on, ``throughput_ratio`` = on / off (aim: at
least 0.95, i.e. at most 5% throughput cost), p50/p99; and what the collector received.

    .venv/bin/python -m bench.telemetry_overhead [--requests N] [--concurrency C]
        [--database postgres|sqlite] [--seconds S] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench import harness
from bench.gateway_vs_direct import Fixture, prepare
from bench.harness import (
    DATABASES,
    LOOPBACK,
    PG_SERVER,
    LoadResult,
    abba,
    check_postgres,
    closed_loop,
    conditions,
    drop_quietly,
    free_ports,
    interrupt_on_terminate,
    load_client,
    log,
    machine,
    ratio,
    require_positive,
    run_async,
    run_standalone,
    set_quiet,
    signals_deferred,
    stack_settings,
    summarise,
    wait_healthy,
)
from konsil.platform.cli.launcher import stop_processes
from konsil.platform.cli.migrations import migrate_all
from konsil.platform.core.settings import ServiceSettings, Settings, dump_settings
from konsil.platform.core.telemetry.config import TelemetrySettings

NAME = "telemetry_overhead"
AIM = 0.95
SIDES = ("off", "on")

# The collector stand-in (a child process): answers every OTLP/HTTP post with 200 and
# counts requests and bytes per path; GET /stats gives the counts.
SINK = """
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
counts = {}
lock = threading.Lock()
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            seen = counts.setdefault(self.path, [0, 0])
            seen[0] += 1
            seen[1] += len(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        with lock:
            body = json.dumps({p: {"requests": c[0], "bytes": c[1]} for p, c in counts.items()}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000, help="measured requests per side and measure")
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop workers")
    p.add_argument("--database", choices=DATABASES, default="postgres")
    p.add_argument("--seconds", type=float, default=40.0, help="cap on the measured time of one measure, both sides")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds per side")
    p.add_argument("--warmup", type=int, default=200, help="discarded requests per side before the first round")
    p.add_argument(
        "--sample-ratio",
        type=float,
        default=TelemetrySettings().trace_sample_ratio,
        help="[telemetry] trace_sample_ratio of the on side (default: the setting's default)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    [port] = free_ports(1)
    proc = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{url}/stats", timeout=1, trust_env=False)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the OTLP collector stand-in did not start") from None
                time.sleep(0.05)
        log(f"collector stand-in on {url} (pid {proc.pid})")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _start(
    work: Path, settings: Settings, telemetry: TelemetrySettings | None, metrics_urls: list[str]
) -> dict[str, subprocess.Popen[bytes]]:
    """The control plane and region ``eu`` as ``konsil up`` starts them; with ``telemetry``
    each gets it, with a metrics port of its own (its URL added to ``metrics_urls``)."""
    run_dir = work / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    region_id = settings.regions[0].id
    parts: dict[str, tuple[list[str], ServiceSettings]] = {
        "control": (["serve", "control"], settings.for_control()),
        f"region {region_id}": (["serve", "region", "--region", region_id], settings.for_region(region_id)),
    }
    ports = free_ports(len(parts))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KONSIL_", "OTEL_"))}
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "5000"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for (name, (command, part)), port in zip(parts.items(), ports, strict=True):
        if telemetry is not None:
            part = msgspec.structs.replace(
                part, telemetry=msgspec.structs.replace(telemetry, metrics_listen=f"{LOOPBACK}:{port}")
            )
            metrics_urls.append(f"http://{LOOPBACK}:{port}/metrics")
        path = run_dir / f"{name.replace(' ', '-')}.toml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(dump_settings(part))
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "konsil.platform.cli.main", *command, "--config", str(path)],
            stdout=sys.stderr.fileno(),  # stdout is JSON
            env=env,
            start_new_session=True,
        )
    return procs


@contextlib.contextmanager
def two_stacks(
    database: str, telemetry_on: TelemetrySettings, metrics_urls: list[str], server: str = PG_SERVER
) -> Iterator[dict[str, harness.Stack]]:
    """An ``off`` and an ``on`` stack on fresh databases; always stopped and dropped."""
    if database == "postgres":
        asyncio.run(check_postgres(server))
    stacks: dict[str, harness.Stack] = {}
    with interrupt_on_terminate(), contextlib.ExitStack() as cleanup:
        for side in SIDES:
            work = Path(tempfile.mkdtemp(prefix=f"konsil-bench-{side}-"))
            cleanup.callback(shutil.rmtree, work, True)
            settings, names = stack_settings(work, database, (("eu", "EU/EEA (GDPR)"),), server)
            cleanup.callback(drop_quietly, names, server)
            log(f"migrating {database} databases of telemetry {side}: {' '.join(names) or work}")
            migrate_all(settings, echo=lambda line: None)
            telemetry = telemetry_on if side == "on" else None
            procs = _start(work, settings, telemetry, metrics_urls)
            cleanup.callback(_stopped, procs)
            urls = {"control": settings.require_control().public_url, "region eu": settings.regions[0].public_url}
            wait_healthy(urls, procs, timeout=60)
            stacks[side] = harness.Stack(database, settings, procs, names)
            log(f"stack with telemetry {side} is up")
        yield stacks


def _stopped(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    with signals_deferred():
        stop_processes(procs)


async def _post_loop(
    client: httpx.AsyncClient, url: str, form: Mapping[str, str], concurrency: int, requests: int, seconds: float
) -> LoadResult:
    """``closed_loop`` for a form post answered 303 (a visitor's arrival)."""
    issued = errors = 0
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        nonlocal issued, errors
        while issued < requests and time.perf_counter() < deadline:
            issued += 1
            sent = time.perf_counter()
            try:
                response = await client.post(url, data=form)
                status, good = str(response.status_code), response.status_code == 303
            except httpx.HTTPError as exc:
                status, good = type(exc).__name__, False
            statuses[status] += 1
            if good:
                latencies.append((time.perf_counter() - sent) * 1000)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return LoadResult("", latencies, errors, elapsed, statuses, "requests" if issued >= requests else "time")


async def _measure(
    what: str,
    targets: Mapping[str, tuple[str, Mapping[str, str]]],
    args: argparse.Namespace,
    stacks: Mapping[str, harness.Stack],
    form: Mapping[str, str] | None = None,
) -> dict[str, list[LoadResult]]:
    """ABBA rounds of one measure, off against on (``targets``: side → URL, headers)."""
    per_round = math.ceil(args.requests / args.rounds)
    round_seconds = args.seconds / (2 * args.rounds)
    results: dict[str, list[LoadResult]] = {side: [] for side in SIDES}
    clients = {side: load_client(args.concurrency) for side in SIDES}

    async def once(side: str, requests: int, seconds: float) -> LoadResult:
        url, headers = targets[side]
        if form is not None:
            return await _post_loop(clients[side], url, form, args.concurrency, requests, seconds)
        return await closed_loop(
            clients[side], url, headers=headers, concurrency=args.concurrency, requests=requests, seconds=seconds
        )

    try:
        for side in SIDES:
            await once(side, args.warmup, 30.0)
        for number, side in enumerate(abba(SIDES, args.rounds), start=1):
            for stack in stacks.values():
                stack.check_alive()
            result = await once(side, per_round, round_seconds)
            log(f"{what} round {number}/{2 * args.rounds} telemetry {side:<3} {result.rps:8.1f} req/s")
            results[side].append(result)
    finally:
        for client in clients.values():
            await client.aclose()
    return results


def _compare(results: dict[str, list[LoadResult]]) -> dict[str, Any]:
    off, on = summarise(results["off"]), summarise(results["on"])
    return {
        "off": off,
        "on": on,
        "throughput_ratio": ratio(on["rps"], off["rps"]),
        "p50_ratio": ratio(on["p50_ms"], off["p50_ms"]),
        "p99_ratio": ratio(on["p99_ms"], off["p99_ms"]),
        "pair_throughput_ratios": [ratio(b.rps, a.rps) for a, b in zip(results["off"], results["on"], strict=True)],
    }


def _scraped(metrics_urls: Sequence[str]) -> dict[str, int]:
    """konsil_ samples on each /metrics page of the ``on`` stack (the scrape endpoint works)."""
    found = {}
    for url in metrics_urls:
        text = httpx.get(url, timeout=5, trust_env=False).text
        found[url.rsplit(":", 1)[1]] = sum(1 for line in text.splitlines() if line.startswith("konsil_"))
    return found


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    require_positive(args, "requests", "concurrency", "rounds", "seconds")
    set_quiet(args.quiet)
    host = machine()
    metrics_urls: list[str] = []
    with contextlib.ExitStack() as running:
        collector = running.enter_context(otlp_sink())
        telemetry = TelemetrySettings(otlp_endpoint=collector, log_format="json", trace_sample_ratio=args.sample_ratio)
        stacks = running.enter_context(two_stacks(args.database, telemetry, metrics_urls))
        fixtures: dict[str, Fixture] = {side: run_async(prepare(stacks[side], 5)) for side in SIDES}
        measures: dict[str, Any] = {}
        for what, url_of in (("gateway_read", "gateway_url"), ("direct_read", "direct_url")):
            targets = {
                side: (str(getattr(fx, url_of)), {"authorization": f"Bearer {fx.token}"})
                for side, fx in fixtures.items()
            }
            measures[what] = _compare(run_async(_measure(what, targets, args, stacks)))
        arrivals: dict[str, tuple[str, Mapping[str, str]]] = {
            side: (f"{stacks[side].region_url()}/{fx.slug}/{fx.slug}-room-0/visits", {})
            for side, fx in fixtures.items()
        }
        form = {"name": "Bench Visitor", "phone": "+47 12345678", "consent": "yes"}
        measures["waiting_room_arrivals"] = _compare(
            run_async(_measure("waiting_room_arrivals", arrivals, args, stacks, form))
        )
        time.sleep(6)  # a last metric export
        received = httpx.get(f"{collector}/stats", timeout=5, trust_env=False).json()
        scraped = _scraped(metrics_urls)
    ratios = [m["throughput_ratio"] for m in measures.values()]
    errors = sum(m[side]["errors"] for m in measures.values() for side in SIDES)
    return {
        "benchmark": NAME,
        "database": args.database,
        "concurrency": args.concurrency,
        "requests": args.requests,
        "rounds": args.rounds,
        "telemetry_on": {
            "otlp": "local collector stand-in",
            "metrics_listen": "per process",
            "log_format": "json",
            "trace_sample_ratio": args.sample_ratio,
        },
        "order": abba(SIDES, args.rounds),
        **measures,
        "collector_received": received,
        "metrics_samples_scraped": scraped,
        "aim": AIM,
        "meets_aim": not errors and all(r is not None and r >= AIM for r in ratios),
        **conditions(host, http_client=True),
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone(run, argv, "servers stopped and databases dropped")


if __name__ == "__main__":
    sys.exit(main())
