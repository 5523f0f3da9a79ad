"""Small reusable pieces for Konsil benchmarks.

* ``free_ports``: loopback ports nobody listens on.
* ``running_stack``: the control plane and one region service as real processes
  (started exactly as ``konsil up`` starts them) on fresh PostgreSQL databases
  (``konsil_bench_<random>_control`` / ``_<region>``, dropped afterwards, also on
  failure or Ctrl-C) or on SQLite files in a temporary directory.
* ``closed_loop``: a closed-loop HTTP load generator (N workers, each sends its
  next request when the previous answered), bounded by a request count and a
  time limit, with a discarded warm-up; reports requests/s and p50/p90/p99.
* ``interleaved_rounds``: the same read against two sides in ABBA rounds (``abba``).
* ``summarise`` / ``ratio`` / ``conditions`` / ``emit``: merge rounds, compare the
  sides, say what else ran, and print JSON on stdout.

Progress goes to stderr; stdout carries JSON only (the servers' own output is
sent to stderr as well). All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx

from konsil.media_nodes.coturn import CoturnConfig, CoturnProcess
from konsil.platform.cli import launcher
from konsil.platform.cli.launcher import start_processes, stop_processes
from konsil.platform.cli.migrations import Target, migrate_all, migrate_target
from konsil.platform.core.settings import Settings, load_settings

LOOPBACK = "127.0.0.1"
# The PostgreSQL server benchmarks create their databases on (trust auth, loopback only).
PG_SERVER = os.environ.get("BENCH_PG_SERVER", f"postgresql://postgres@{LOOPBACK}:5432")
DATABASES = ("postgres", "sqlite")

T = TypeVar("T")

wait_healthy = launcher.wait_healthy

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def log(message: str) -> None:
    """Progress for humans, on stderr (stdout is for JSON)."""
    if not _quiet:
        print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- ports ----------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


# --- signals --------------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached this process (not, as Ctrl-C does, the whole process group)."""


@contextlib.contextmanager
def interrupt_on_terminate() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt, so ``finally`` blocks clean up."""

    def raise_interrupt(signum: int, _frame: object) -> None:
        raise Terminated(f"signal {signum}")

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, raise_interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ignore Ctrl-C/SIGTERM while cleaning up, so a second Ctrl-C cannot leave debris."""
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_server(what: str, proc: subprocess.Popen[bytes]) -> None:
    """Stop a server process the benchmark started (SIGTERM, a kill after 10 s), a
    second Ctrl-C ignored meanwhile, and say so."""
    with signals_deferred():
        stop_processes({what: proc})
        log(f"stopped {what} (pid {proc.pid})")


# --- PostgreSQL databases -------------------------------------------------------------------


def _require_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in {LOOPBACK, "localhost"}:
        raise ValueError(f"benchmarks only talk to {LOOPBACK}; got database host {host!r}")


async def _pg_admin(server: str) -> Any:
    import asyncpg

    return await asyncpg.connect(f"{server.rstrip('/')}/postgres", timeout=5)


async def check_postgres(server: str = PG_SERVER) -> None:
    _require_loopback(server)
    try:
        conn = await _pg_admin(server)
    except (TimeoutError, OSError) as exc:
        raise RuntimeError(f"PostgreSQL is not reachable at {server} ({exc}); use --database sqlite") from None
    await conn.close()


async def drop_databases(names: Sequence[str], server: str = PG_SERVER) -> None:
    conn = await _pg_admin(server)
    try:
        for name in names:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"refusing to drop database {name!r}")
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def drop_quietly(names: Sequence[str], server: str = PG_SERVER) -> None:
    """Drop a run's databases (signals deferred); report a failure, never mask the
    error that ended the run."""
    if not names:
        return
    with signals_deferred():
        try:
            asyncio.run(drop_databases(names, server))
            log(f"dropped databases {' '.join(names)}")
        except Exception as exc:
            print(f"[bench] WARNING: could not drop {' '.join(names)}: {exc}", file=sys.stderr)


@contextlib.contextmanager
def migrated_postgres(label: str, app: str = "region") -> Iterator[str]:
    """A fresh PostgreSQL database migrated for ``app``; dropped afterwards."""
    asyncio.run(check_postgres(PG_SERVER))
    name = f"konsil_bench_{secrets.token_hex(4)}_{label}"
    dsn = f"{PG_SERVER.rstrip('/')}/{name}"
    try:
        log(f"migrating PostgreSQL database {name}")
        migrate_target(Target(label, app, dsn))
        yield dsn
    finally:
        drop_quietly([name])


# --- the stack ------------------------------------------------------------------------------


def _cpu_seconds_of(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _database_cpu_seconds(names: Sequence[str]) -> float | None:
    """CPU time of the PostgreSQL backends serving the named databases (found by their
    process title, ``postgres: … <database> 127.0.0.1(port) …``). Pooled connections
    live for the whole run, so differences between two readings are meaningful."""
    if not names:
        return None
    wanted = [f" {name} ".encode() for name in names]
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if title.startswith(b"postgres:") and any(name in title for name in wanted):
            total += _cpu_seconds_of(int(entry.name)) or 0.0
    return total


def _machine_busy_seconds() -> float | None:
    """CPU time all processes on the machine used so far (Linux /proc/stat), or None."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    """A running control plane + region service(s)."""

    database: str
    settings: Settings
    procs: dict[str, subprocess.Popen[bytes]]
    databases: list[str] = field(default_factory=list)  # PostgreSQL database names (to be dropped)

    @property
    def control_url(self) -> str:
        return self.settings.require_control().public_url.rstrip("/")

    def region_url(self, region_id: str | None = None) -> str:
        region = self.settings.regions[0] if region_id is None else self.settings.region(region_id)
        return region.public_url.rstrip("/")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                continue
            if proc.returncode in (0, -signal.SIGINT, -signal.SIGTERM):
                # A clean shutdown: the server got Ctrl-C (same process group) or was stopped.
                raise KeyboardInterrupt(f"{name} was stopped by a signal")
            raise RuntimeError(f"{name} stopped during the benchmark (exit code {proc.returncode})")

    def cpu_seconds(self) -> dict[str, float | None]:
        """CPU time used so far by each server process, by this (load-generating) process,
        and by the whole machine (the database server and anything else running too)."""
        found: dict[str, float | None] = {name: _cpu_seconds_of(proc.pid) for name, proc in self.procs.items()}
        found["load generator"] = time.process_time()
        if self.databases:
            found["database (our backends)"] = _database_cpu_seconds(self.databases)
        found["machine (all processes)"] = _machine_busy_seconds()
        return found


# A benchmark's load comes from one loopback address: the per-address rate limits (which
# protect a real deployment from one client) would refuse it, so they are lifted here.
CALLERS_FROM_ONE_ADDRESS: dict[str, dict[str, int]] = {
    "control": {"signups_per_address_hour": 1_000_000, "discoveries_per_address_minute": 1_000_000},
    "region": {
        "joins_per_address_minute": 1_000_000,
        "joins_per_room_minute": 1_000_000,
        "login_failures_per_address_minute": 1_000_000,
        "invitations_per_organisation_minute": 1_000_000,
    },
}


def stack_settings(
    work: Path,
    database: str,
    regions: Sequence[tuple[str, str]],
    server: str,
    region_extra: Mapping[str, Any] | None = None,
) -> tuple[Settings, list[str]]:
    """Write the stack's configuration (``region_extra`` is merged into each region)."""
    import tomli_w

    ports = free_ports(1 + len(regions))
    tag = f"konsil_bench_{secrets.token_hex(4)}"
    names: list[str] = []

    def dsn(label: str) -> str:
        if database == "sqlite":
            return f"sqlite://{work}/{label}.db"
        names.append(f"{tag}_{label}")
        return f"{server.rstrip('/')}/{tag}_{label}"

    raw: dict[str, Any] = {
        "mode": "services" if database == "postgres" else "embedded",
        "data_dir": str(work),
        "discovery_key": secrets.token_urlsafe(32),
        "control": {
            "database": dsn("control"),
            "listen": f"{LOOPBACK}:{ports[0]}",
            "public_url": f"http://{LOOPBACK}:{ports[0]}",
            **CALLERS_FROM_ONE_ADDRESS["control"],
        },
        "regions": [
            {
                "id": region_id,
                "jurisdiction": jurisdiction,
                "public_url": f"http://{LOOPBACK}:{port}",
                "listen": f"{LOOPBACK}:{port}",
                "database": dsn(region_id),
                "internal_secret": secrets.token_urlsafe(32),
                "vault": {"backend": "local", "keyring_path": str(work / f"keyring-{region_id}")},
                "limits": CALLERS_FROM_ONE_ADDRESS["region"],
                **(region_extra or {}),
            }
            for (region_id, jurisdiction), port in zip(regions, ports[1:], strict=True)
        ],
    }
    path = work / "konsil.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(tomli_w.dumps(raw))
    # No environment overrides: a benchmark runs the configuration it states.
    return load_settings(path, environ={}), names


def _start_quietly(settings: Settings, run_dir: Path) -> dict[str, subprocess.Popen[bytes]]:
    """``start_processes`` with the children's stdout pointed at our stderr (stdout is JSON)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        return start_processes(settings, run_dir)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _wait_for_exit(procs: Mapping[str, subprocess.Popen[bytes]], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(p.poll() is None for p in procs.values()):
        time.sleep(0.1)


@contextlib.contextmanager
def running_stack(
    database: str = "postgres",
    regions: Sequence[tuple[str, str]] = (("eu", "EU/EEA (GDPR)"),),
    server: str = PG_SERVER,
    startup_timeout: float = 60,
) -> Iterator[Stack]:
    """Migrate fresh databases, start control + regions, yield; always stop and drop."""
    if database not in DATABASES:
        raise ValueError(f"database must be one of {', '.join(DATABASES)}")
    if database == "postgres":
        asyncio.run(check_postgres(server))
    work = Path(tempfile.mkdtemp(prefix="konsil-bench-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    names: list[str] = []
    ctrl_c = False
    with interrupt_on_terminate():
        try:
            settings, names = stack_settings(work, database, regions, server)
            log(f"migrating {database} databases {' '.join(names) or work}")
            migrate_all(settings, echo=lambda line: None)
            procs = _start_quietly(settings, work / "run")
            urls = {"control": settings.require_control().public_url.rstrip("/")}
            urls |= {f"region {r.id}": r.public_url.rstrip("/") for r in settings.regions}
            wait_healthy(urls, procs, timeout=startup_timeout)
            log("stack is up: " + ", ".join(f"{name} {url} (pid {procs[name].pid})" for name, url in urls.items()))
            yield Stack(database, settings, procs, names)
        except KeyboardInterrupt as exc:
            ctrl_c = not isinstance(exc, Terminated)
            raise
        finally:
            with signals_deferred():
                if procs:
                    if ctrl_c:
                        # Ctrl-C in a terminal reached the servers too (same process group):
                        # let them finish shutting down rather than signal them a second time.
                        _wait_for_exit(procs, seconds=5)
                    stop_processes(procs)
                    log("stopped " + ", ".join(f"{name} (pid {p.pid})" for name, p in procs.items()))
                drop_quietly(names, server)
                shutil.rmtree(work, ignore_errors=True)


# --- event loop -----------------------------------------------------------------------------


def event_loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_async(coro: Awaitable[T]) -> T:
    """Run a coroutine on uvloop when available (a lighter load generator), else asyncio."""
    factory = None
    if event_loop_name() == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


# --- load generation ------------------------------------------------------------------------


def load_client(concurrency: int, timeout: float = 10.0) -> httpx.AsyncClient:
    """One keep-alive connection per worker; no proxies from the environment."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False, follow_redirects=False)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass
class LoadResult:
    """One measured phase: latencies of successful requests, errors, elapsed time."""

    label: str
    latencies_ms: list[float]
    errors: int
    seconds: float
    statuses: Counter[str]
    stopped_by: str  # "requests" or "time"
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # per process, during the phase

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


async def _phase(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: Mapping[str, str] | None,
    concurrency: int,
    requests: int,
    seconds: float,
    expect: int,
    label: str,
) -> LoadResult:
    issued = 0
    errors = 0
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    clock = time.perf_counter
    start = clock()
    deadline = start + seconds

    async def worker() -> None:
        nonlocal issued, errors
        while issued < requests and clock() < deadline:
            issued += 1
            sent = clock()
            try:
                response = await client.request(method, url, headers=headers)
                status: str = str(response.status_code)
                good = response.status_code == expect
            except httpx.HTTPError as exc:
                status, good = type(exc).__name__, False
            took = (clock() - sent) * 1000
            statuses[status] += 1
            if good:
                latencies.append(took)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = clock() - start
    return LoadResult(label, latencies, errors, elapsed, statuses, "requests" if issued >= requests else "time")


async def closed_loop(
    client: httpx.AsyncClient,
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    concurrency: int = 8,
    requests: int = 1000,
    seconds: float = 30.0,
    warmup: int = 0,
    expect: int = 200,
    label: str = "",
    cpu_probe: Callable[[], Mapping[str, float | None]] | None = None,
) -> LoadResult:
    """Closed loop: ``concurrency`` workers, each sending its next request when the last
    answered, until ``requests`` were sent or ``seconds`` passed (in-flight requests
    finish). ``warmup`` requests go first and are discarded. A response other than
    ``expect`` (or a transport error) counts as an error, not as a latency sample."""
    if warmup:
        await _phase(client, method, url, headers, concurrency, warmup, seconds, expect, label)
    before = cpu_probe() if cpu_probe else {}
    result = await _phase(client, method, url, headers, concurrency, requests, seconds, expect, label)
    if cpu_probe:
        after = cpu_probe()
        result.cpu_seconds = {
            name: after[name] - start  # type: ignore[operator]
            for name, start in before.items()
            if start is not None and after.get(name) is not None
        }
    return result


def abba(sides: Sequence[str], rounds: int) -> list[str]:
    """``rounds`` rounds of each of two sides, interleaved A, B, B, A, A, B, …, so that
    drift (caches, CPU frequency, other load) hits both sides alike."""
    first, second = sides
    return [side for number in range(rounds) for side in ((first, second) if number % 2 == 0 else (second, first))]


async def interleaved_rounds(
    urls: Mapping[str, str],
    *,
    headers: Mapping[str, str] | None,
    concurrency: int,
    requests: int,
    rounds: int,
    seconds: float,
    warmup: int,
    warmup_seconds: float = 30.0,
    cpu_probe: Callable[[], Mapping[str, float | None]] | None = None,
    before_round: Callable[[], None] = lambda: None,
    describe: Callable[[str, LoadResult], str] = lambda side, result: "",
) -> dict[str, list[LoadResult]]:
    """The same read against two sides (``urls``: side → URL, A then B), each on its own
    keep-alive client: ``warmup`` discarded requests per side, then ``rounds`` closed-loop
    rounds per side in ABBA order, ``requests`` per side over all rounds, ``seconds`` the
    cap of all rounds together. ``before_round`` may raise (a server stopped); each round
    is logged with its requests/s and ``describe(side, result)``."""
    per_round = math.ceil(requests / rounds)
    round_seconds = seconds / (2 * rounds)
    order = abba(list(urls), rounds)
    width = max(len(side) for side in urls)
    results: dict[str, list[LoadResult]] = {side: [] for side in urls}
    clients = {side: load_client(concurrency) for side in urls}
    try:
        for side, url in urls.items():
            log(f"warm-up {side}: {warmup} requests")
            await closed_loop(
                clients[side], url, headers=headers, concurrency=concurrency, requests=warmup, seconds=warmup_seconds
            )
        for number, side in enumerate(order, start=1):
            before_round()
            result = await closed_loop(
                clients[side],
                urls[side],
                headers=headers,
                concurrency=concurrency,
                requests=per_round,
                seconds=round_seconds,
                label=side,
                cpu_probe=cpu_probe,
            )
            log(f"round {number}/{len(order)} {side:<{width}} {result.rps:8.1f} req/s  {describe(side, result)}")
            results[side].append(result)
    finally:
        for client in clients.values():
            await client.aclose()
    return results


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` to three places; None when either is missing or zero."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def require_positive(args: Any, *names: str) -> None:
    """Refuse a run whose named options (``--name``) are not all above zero."""
    if any(getattr(args, name.replace("-", "_")) <= 0 for name in names):
        listed = [f"--{name}" for name in names]
        raise SystemExit(f"{', '.join(listed[:-1])} and {listed[-1]} must be positive")


def summarise(results: Sequence[LoadResult]) -> dict[str, Any]:
    """Merge phases (e.g. interleaved rounds) into one figure set: requests/s over the
    summed measured time, percentiles over all latency samples."""
    latencies = sorted(x for r in results for x in r.latencies_ms)
    ok = len(latencies)
    seconds = sum(r.seconds for r in results)
    statuses: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    for r in results:
        statuses.update(r.statuses)
        cpu.update(r.cpu_seconds)
    out: dict[str, Any] = {
        "requests": ok + sum(r.errors for r in results),
        "ok": ok,
        "errors": sum(r.errors for r in results),
        "seconds": round(seconds, 3),
        "rps": round(ok / seconds, 1) if seconds else 0.0,
        "p50_ms": _ms(percentile(latencies, 50)),
        "p90_ms": _ms(percentile(latencies, 90)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "mean_ms": _ms(sum(latencies) / ok if ok else None),
        "max_ms": _ms(latencies[-1] if latencies else None),
        "rounds_rps": [round(r.rps, 1) for r in results],
        "stopped_by": sorted({r.stopped_by for r in results}),
    }
    if set(statuses) - {"200"}:
        out["statuses"] = dict(statuses)
    if cpu and ok:
        per_request = {name: round(total * 1000 / ok, 3) for name, total in cpu.items()}
        machine_total = per_request.get("machine (all processes)")
        if machine_total is not None:
            ours = sum(v for k, v in per_request.items() if k != "machine (all processes)")
            per_request["other (rest of machine)"] = round(max(0.0, machine_total - ours), 3)
        out["cpu_ms_per_request"] = per_request
    return out


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --- output ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    found: dict[str, Any] = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}
    with contextlib.suppress(OSError):
        found["load_average_1m"] = round(os.getloadavg()[0], 2)
    return found


def conditions(before: Mapping[str, Any], *, http_client: bool = False) -> dict[str, Any]:
    """A result's ``load_generator`` and ``machine`` entries: this process (its event loop,
    with ``http_client`` the httpx version) shares the machine with the servers, and the
    load average before (``before``, taken by ``machine()`` at the start) and after the
    run says how much other work skewed the figures."""
    generator: dict[str, Any] = {"client": f"httpx {httpx.__version__}"} if http_client else {}
    return {
        "load_generator": generator | {"event_loop": event_loop_name(), "same_host": True},
        "machine": dict(before) | {"load_average_1m_after": machine().get("load_average_1m")},
    }


def emit(result: Any, stream: Any = None) -> None:
    """Print one JSON document (stdout by default)."""
    stream = stream or sys.stdout
    stream.write(json.dumps(result, indent=2) + "\n")
    stream.flush()


@contextlib.contextmanager
def coturn_node(secret: str, work: Path, realm: str = "konsil.bench") -> Iterator[CoturnProcess]:
    """coturn on loopback as the media-node agent configures it (``CoturnConfig.loopback``);
    always stopped."""
    [port] = free_ports(1)
    coturn = CoturnProcess(CoturnConfig.loopback(port, secret, realm), work / "coturn")
    try:
        coturn.start()
        config = coturn.config
        log(f"coturn on {LOOPBACK}:{port} (pid {coturn.pid}, relay ports {config.min_port}-{config.max_port})")
        yield coturn
    finally:
        with signals_deferred():
            pid = coturn.pid
            coturn.stop()
            if pid:
                log(f"stopped coturn (pid {pid})")


def run_standalone(
    run: Callable[[Sequence[str] | None], dict[str, Any]], argv: Sequence[str] | None, cleaned_up: str
) -> int:
    """``python -m bench.<name>``: print the result as JSON; exit 130 on Ctrl-C."""
    try:
        emit(run(argv))
    except KeyboardInterrupt:
        print(f"[bench] interrupted; {cleaned_up}", file=sys.stderr)
        return 130
    return 0
