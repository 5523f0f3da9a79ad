"""Telemetry on vs off: what OpenTelemetry (spans, metrics, scrubbing, export) costs,
told apart from the benchmark's own noise.

Two physical stacks, **x** and **y** (each its own databases, ports and processes: a
control plane and region ``eu``), run in four phases; before each phase both stacks are
restarted with that phase's ``[telemetry]`` (it cannot change at run time):

1. **a/a 1**: x off, y off (calibration: identical configurations);
2. **y on**: x off, y on;
3. **a/a 2**: x off, y off;
4. **x on**: x on, y off.

"off" is the embedded default (nothing exported, no metrics port); "on" exports by
OTLP/HTTP to a local collector stand-in (a child process that reads and counts what it
is sent), serves ``/metrics`` on an ops port per process and writes JSON log lines.

Each phase measures, rounds interleaved ABBA (x, y, y, x, ...) so that drift hits both:

* **gateway_read**: the read of ``gateway_vs_direct`` through the API gateway
  (``GET /api/v1/orgs/{slug}/rooms``, Bearer token): a server span in the control
  plane, one in the region service with its database spans;
* **direct_read**: the same read at the region service;
* **waiting_room_arrivals**: the waiting room's arrival (``waiting_room`` part A's form
  post, ``POST /{org}/{room}/visits``): field encryption, inserts, an access-log append.

Each physical stack is on in one phase and off in the other, so whatever differs between
the two stacks (their databases, ports, start order) cancels:
``throughput_ratio`` (on / off) = sqrt((y/x in "y on") / (y/x in "x on")). The same
estimate over the two a/a phases, ``aa_ratio`` = sqrt((y/x in "a/a 1") / (y/x in
"a/a 2")), compares identical configurations the same way: its distance from 1 is the
noise floor of this run. The verdict says whether the cost is beyond it. The stacks'
own difference is reported too (``stack_bias_y_over_x``).

    .venv/bin/python -m bench.telemetry_overhead [--rounds R] [--seconds S] [--requests N]
        [--concurrency C] [--warmup W] [--database postgres|sqlite] [--sample-ratio F]
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
STACKS = ("x", "y")
# (phase, the stack with telemetry on or None): a/a phases between on/off phases, so
# that both estimates compare phases the same time apart.
PHASES: tuple[tuple[str, str | None], ...] = (("a/a 1", None), ("y on", "y"), ("a/a 2", None), ("x on", "x"))
MEASURES = ("gateway_read", "direct_read", "waiting_room_arrivals")

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
    p.add_argument("--rounds", type=int, default=2, help="measured rounds per stack, phase and measure")
    p.add_argument("--seconds", type=float, default=3.0, help="cap on one round's measured time")
    p.add_argument("--requests", type=int, default=1500, help="cap on one round's requests")
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop workers")
    p.add_argument("--warmup", type=int, default=100, help="discarded requests per stack, phase and measure")
    p.add_argument("--database", choices=DATABASES, default="postgres")
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


class Physical:
    """One physical stack (databases, keyring, ports), restarted with the ``[telemetry]``
    of each phase; its processes are always stopped."""

    def __init__(self, label: str, database: str, work: Path, settings: Settings, names: list[str]) -> None:
        self.label = label
        self.work = work
        self.settings = settings
        self.stack = harness.Stack(database, settings, {}, names)
        self.metrics_urls: list[str] = []

    def restart(self, telemetry: TelemetrySettings | None) -> None:
        self.stop()
        self.metrics_urls = []
        self.stack.procs = _start(self.work, self.settings, telemetry, self.metrics_urls)
        urls = {"control": self.settings.require_control().public_url, "region eu": self.settings.regions[0].public_url}
        wait_healthy(urls, self.stack.procs, timeout=60)

    def stop(self) -> None:
        if self.stack.procs:
            with signals_deferred():
                stop_processes(self.stack.procs)
            self.stack.procs = {}


@contextlib.contextmanager
def two_stacks(database: str, server: str = PG_SERVER) -> Iterator[dict[str, Physical]]:
    """Stacks ``x`` and ``y`` on fresh databases, not started; always stopped and dropped."""
    if database == "postgres":
        asyncio.run(check_postgres(server))
    stacks: dict[str, Physical] = {}
    with interrupt_on_terminate(), contextlib.ExitStack() as cleanup:
        for label in STACKS:
            work = Path(tempfile.mkdtemp(prefix=f"konsil-bench-{label}-"))
            cleanup.callback(shutil.rmtree, work, True)
            settings, names = stack_settings(work, database, (("eu", "EU/EEA (GDPR)"),), server)
            cleanup.callback(drop_quietly, names, server)
            log(f"migrating {database} databases of stack {label}: {' '.join(names) or work}")
            migrate_all(settings, echo=lambda line: None)
            stacks[label] = Physical(label, database, work, settings, names)
            cleanup.callback(stacks[label].stop)
        yield stacks


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
    phase: str,
    what: str,
    targets: Mapping[str, tuple[str, Mapping[str, str]]],
    args: argparse.Namespace,
    stacks: Mapping[str, Physical],
    form: Mapping[str, str] | None = None,
) -> dict[str, list[LoadResult]]:
    """ABBA rounds of one measure in one phase, stack x against y (``targets``: stack →
    URL, headers)."""
    results: dict[str, list[LoadResult]] = {label: [] for label in STACKS}
    clients = {label: load_client(args.concurrency) for label in STACKS}

    async def once(label: str, requests: int, seconds: float) -> LoadResult:
        url, headers = targets[label]
        if form is not None:
            return await _post_loop(clients[label], url, form, args.concurrency, requests, seconds)
        return await closed_loop(
            clients[label], url, headers=headers, concurrency=args.concurrency, requests=requests, seconds=seconds
        )

    try:
        for label in STACKS:
            await once(label, args.warmup, 30.0)
        for number, label in enumerate(abba(STACKS, args.rounds), start=1):
            for stack in stacks.values():
                stack.stack.check_alive()
            result = await once(label, args.requests, args.seconds)
            log(f"{phase:<6} {what} round {number}/{2 * args.rounds} stack {label} {result.rps:8.1f} req/s")
            results[label].append(result)
    finally:
        for client in clients.values():
            await client.aclose()
    return results


def _rps(rounds: Sequence[LoadResult]) -> float:
    seconds = sum(r.seconds for r in rounds)
    return len([x for r in rounds for x in r.latencies_ms]) / seconds if seconds else 0.0


def _y_over_x(rounds: Mapping[str, list[LoadResult]]) -> float | None:
    """Requests/s of stack y over stack x in one phase (unrounded)."""
    x, y = _rps(rounds["x"]), _rps(rounds["y"])
    return y / x if x and y else None


def _geometric(a: float | None, b: float | None, invert_b: bool = True) -> float | None:
    """sqrt(a / b) (``invert_b``) or sqrt(a * b), to three places; None when either is missing."""
    if not a or not b:
        return None
    return round(math.sqrt(a / b if invert_b else a * b), 3)


def _compare(phases: Mapping[str, Mapping[str, list[LoadResult]]]) -> dict[str, Any]:
    """One measure over the four phases: on/off with the stacks' difference cancelled,
    the same estimate over the a/a phases (the noise floor), and the stacks' difference."""
    y_over_x = {phase: _y_over_x(rounds) for phase, rounds in phases.items()}
    on_rounds = phases["y on"]["y"] + phases["x on"]["x"]
    off_rounds = phases["y on"]["x"] + phases["x on"]["y"]
    on, off = summarise(on_rounds), summarise(off_rounds)
    return {
        "throughput_ratio": _geometric(y_over_x["y on"], y_over_x["x on"]),
        "aa_ratio": _geometric(y_over_x["a/a 1"], y_over_x["a/a 2"]),
        "stack_bias_y_over_x": {
            "a/a phases": _geometric(y_over_x["a/a 1"], y_over_x["a/a 2"], invert_b=False),
            "on/off phases": _geometric(y_over_x["y on"], y_over_x["x on"], invert_b=False),
        },
        "phase_y_over_x": {phase: None if r is None else round(r, 3) for phase, r in y_over_x.items()},
        "off": off,
        "on": on,
        "p50_ratio": ratio(on["p50_ms"], off["p50_ms"]),
        "p99_ratio": ratio(on["p99_ms"], off["p99_ms"]),
    }


def _verdict(measures: Mapping[str, dict[str, Any]]) -> tuple[float | None, dict[str, str]]:
    """The run's noise floor (the largest a/a distance from 1 over the measures: they are
    measured alike) and, per measure, whether the on/off ratio is beyond it."""
    distances = [abs(1 - m["aa_ratio"]) for m in measures.values() if m["aa_ratio"] is not None]
    if len(distances) < len(measures):
        return None, dict.fromkeys(measures, "no verdict: a phase measured nothing")
    floor = round(max(distances), 3)
    verdicts = {}
    for what, m in measures.items():
        r = m["throughput_ratio"]
        if r is None:
            verdicts[what] = "no verdict: a phase measured nothing"
        elif r < 1 - floor:
            verdicts[what] = f"cost {1 - r:.1%} is beyond the noise floor ({floor:.1%}): telemetry costs throughput"
        elif r > 1 + floor:
            verdicts[what] = (
                f"on is {r - 1:.1%} faster, beyond the noise floor ({floor:.1%}): "
                "the noise is larger than the a/a shows"
            )
        else:
            verdicts[what] = (
                f"on/off {r:.3f} is within the noise floor ({floor:.1%}): no cost distinguishable from noise"
            )
    return floor, verdicts


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
    form = {"name": "Bench Visitor", "phone": "+47 12345678", "consent": "yes"}
    results: dict[str, dict[str, dict[str, list[LoadResult]]]] = {what: {} for what in MEASURES}
    with contextlib.ExitStack() as running:
        collector = running.enter_context(otlp_sink())
        telemetry = TelemetrySettings(otlp_endpoint=collector, log_format="json", trace_sample_ratio=args.sample_ratio)
        stacks = running.enter_context(two_stacks(args.database))
        fixtures: dict[str, Fixture] = {}
        for phase, on in PHASES:
            for label, stack in stacks.items():
                stack.restart(telemetry if label == on else None)
            log(f"phase {phase}: stack x {'on' if on == 'x' else 'off'}, stack y {'on' if on == 'y' else 'off'}")
            if not fixtures:
                fixtures = {label: run_async(prepare(stack.stack, 5)) for label, stack in stacks.items()}
            for what, url_of in (("gateway_read", "gateway_url"), ("direct_read", "direct_url")):
                targets = {
                    label: (str(getattr(fx, url_of)), {"authorization": f"Bearer {fx.token}"})
                    for label, fx in fixtures.items()
                }
                results[what][phase] = run_async(_measure(phase, what, targets, args, stacks))
            arrivals: dict[str, tuple[str, Mapping[str, str]]] = {
                label: (f"{stacks[label].stack.region_url()}/{fx.slug}/{fx.slug}-room-0/visits", {})
                for label, fx in fixtures.items()
            }
            results["waiting_room_arrivals"][phase] = run_async(
                _measure(phase, "waiting_room_arrivals", arrivals, args, stacks, form)
            )
        time.sleep(6)  # a last metric export of the on stack
        received = httpx.get(f"{collector}/stats", timeout=5, trust_env=False).json()
        scraped = _scraped(stacks["x"].metrics_urls)  # on in the last phase
    measures = {what: _compare(phases) for what, phases in results.items()}
    floor, verdicts = _verdict(measures)
    ratios = [m["throughput_ratio"] for m in measures.values()]
    errors = sum(
        r.errors for phases in results.values() for rounds in phases.values() for rs in rounds.values() for r in rs
    )
    return {
        "benchmark": NAME,
        "database": args.database,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "round_seconds": args.seconds,
        "telemetry_on": {
            "otlp": "local collector stand-in",
            "metrics_listen": "per process",
            "log_format": "json",
            "trace_sample_ratio": args.sample_ratio,
        },
        "phases": [{"phase": phase, "on": on or "neither"} for phase, on in PHASES],
        "order_in_a_phase": abba(STACKS, args.rounds),
        **measures,
        "noise_floor": floor,
        "verdict": verdicts,
        "cost_beyond_noise": [what for what, v in verdicts.items() if v.startswith("cost ")],
        "collector_received": received,
        "metrics_samples_scraped": scraped,
        "aim": AIM,
        "errors": errors,
        "meets_aim": not errors and all(r is not None and r >= AIM for r in ratios),
        **conditions(host, http_client=True),
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone(run, argv, "servers stopped and databases dropped")


if __name__ == "__main__":
    sys.exit(main())
