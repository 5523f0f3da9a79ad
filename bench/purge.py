"""Retention purge throughput: expired visits with their calls and telemetry removed by
Konsil's purge, against a plain SQL DELETE of the same rows, in the same run.

Set-up: a fresh, migrated PostgreSQL region database (dropped afterwards). Each round
seeds ``--visits`` expired visits spread over ``--orgs`` organisations, each visit with
one call and ``--telemetry`` telemetry samples, twice: once for the baseline, a plain
``DELETE`` of the telemetry, calls and visits before the cutoff in one transaction;
once for Konsil's purge (``compliance/retention``): batches of ``--batch-size`` visits
per transaction (no long locks; one statement per batch on PostgreSQL), an access-log
entry per batch, evidence advanced per batch. ``VACUUM ANALYZE`` and a ``CHECKPOINT`` run
before each phase, outside the timings.

Result: rows removed per second for both, and ``ratio`` = purge rows/s / plain DELETE
rows/s (aim: at least 0.5).

    .venv/bin/python -m bench.purge [--visits N] [--orgs N] [--telemetry N]
        [--batch-size N] [--rounds R]
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness import (
    interrupt_on_terminate,
    log,
    machine,
    migrated_postgres,
    run_async,
    run_standalone,
    set_quiet,
)
from konsil.compliance.retention.purge import PurgeRequest, purge, summary
from konsil.platform.core.access import AccessEvent, AccessLog, OrganisationRemoved
from konsil.platform.core.settings import RegionSettings, Settings, VaultSettings
from konsil.regions.container import open_region

NAME = "purge"
AIM_RATIO = 0.5  # purge rows/s / plain DELETE rows/s, at least


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--visits", type=int, default=200_000, help="expired visits per phase (default 200000)")
    p.add_argument("--orgs", type=int, default=20, help="organisations they are spread over (default 20)")
    p.add_argument("--telemetry", type=int, default=2, help="telemetry samples per call (default 2)")
    p.add_argument("--batch-size", type=int, default=5000, help="visits per purge transaction (default 5000)")
    p.add_argument("--rounds", type=int, default=1, help="rounds, each a baseline and a purge phase (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


async def seed(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    """Expired visits with a call and telemetry each, in ``args.orgs`` organisations
    (retention 1 day, visits 3 days old). Returns the number of rows made."""
    per_org = args.visits // args.orgs
    for n in range(args.orgs):
        org_id = uuid.uuid4()
        count = per_org + (args.visits % args.orgs if n == 0 else 0)
        await conn.execute(
            "INSERT INTO organisation (id, slug, name, retention_days, relay_only, created_at) "
            "VALUES ($1, $2, 'Bench practice', 1, true, now())",
            org_id,
            f"bench-{org_id.hex[:12]}",
        )
        await conn.execute(
            "INSERT INTO visit (id, org_id, room_id, name, status, token_hash, consented_at, arrived_at, expires_at) "
            "SELECT gen_random_uuid(), $1, $1, 'kf1:sealed', 'ended', md5(random()::text || g), "
            "now() - interval '3 days', now() - interval '3 days', now() FROM generate_series(1, $2) g",
            org_id,
            count,
        )
    await conn.execute(
        "INSERT INTO call (id, org_id, room_id, visit_id, expert_id, started_at, expires_at) "
        "SELECT gen_random_uuid(), org_id, room_id, id, org_id, arrived_at, expires_at FROM visit"
    )
    await conn.execute(
        "INSERT INTO call_telemetry (id, org_id, call_id, visit_id, participant, kind, data, at, expires_at) "
        "SELECT gen_random_uuid(), c.org_id, c.id, c.visit_id, 'visitor', 'quality', '{\"rtt_ms\": 42}', now(), now() "
        "FROM call c CROSS JOIN generate_series(1, $1)",
        args.telemetry,
    )
    await conn.execute("VACUUM ANALYZE")
    # Each timed phase starts just after a checkpoint, so neither pays for the other's
    # dirty pages or gets the full-page writes of a checkpoint that falls inside it.
    await conn.execute("CHECKPOINT")
    rows: int = args.visits * (2 + args.telemetry)
    return rows


async def plain_delete(conn: asyncpg.Connection) -> int:
    """The baseline: one transaction, three statements, the same rows."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    async with conn.transaction():
        expired = "SELECT id FROM visit WHERE arrived_at < $1"
        telemetry = await conn.execute(f"DELETE FROM call_telemetry WHERE visit_id IN ({expired})", cutoff)  # noqa: S608
        calls = await conn.execute(f"DELETE FROM call WHERE visit_id IN ({expired})", cutoff)  # noqa: S608
        visits = await conn.execute("DELETE FROM visit WHERE arrived_at < $1", cutoff)
    return sum(int(status.rsplit(" ", 1)[1]) for status in (telemetry, calls, visits))


def bench_settings(dsn: str, work: Path, batch_size: int) -> Settings:
    region = RegionSettings(
        id="eu",
        jurisdiction="EU/EEA",
        public_url="http://127.0.0.1:9",
        listen="127.0.0.1:9",
        database=dsn,
        internal_secret=secrets.token_urlsafe(24),
        vault=VaultSettings(backend="local", keyring_path=str(work / "keyring")),
    )
    return Settings(mode="services", discovery_key=secrets.token_urlsafe(24), regions=[region])


class TimedAccessLog:
    """The region's access log, timing the purge's appends (one per batch)."""

    def __init__(self, inner: AccessLog) -> None:
        self.inner = inner
        self.seconds = 0.0

    async def append_many(self, events: list[AccessEvent]) -> list[uuid.UUID]:
        started = time.perf_counter()
        try:
            return await self.inner.append_many(events)
        finally:
            self.seconds += time.perf_counter() - started

    async def certify_removal(self, removed: OrganisationRemoved) -> None:
        await self.inner.certify_removal(removed)


async def measure(args: argparse.Namespace, dsn: str, work: Path) -> dict[str, Any]:
    settings = bench_settings(dsn, work, args.batch_size)
    conn = await asyncpg.connect(dsn)
    rounds: list[dict[str, Any]] = []
    try:
        for round_no in range(1, args.rounds + 1):
            log(f"round {round_no}: seeding {args.visits} visits for the plain DELETE")
            made = await seed(conn, args)
            started = time.perf_counter()
            removed = await plain_delete(conn)
            plain_seconds = time.perf_counter() - started
            assert removed == made, (removed, made)
            log(f"round {round_no}: plain DELETE removed {removed} rows in {plain_seconds:.2f} s")
            await conn.execute("VACUUM ANALYZE")

            log(f"round {round_no}: seeding {args.visits} visits for the purge")
            made = await seed(conn, args)
            async with open_region(settings, settings.regions[0]) as ctx:
                request = PurgeRequest(
                    run_id=uuid.uuid4(), as_of=dt.datetime.now(dt.UTC), trigger="cli", batch_size=args.batch_size
                )
                timed = TimedAccessLog(ctx.access_log)
                ctx.access_log = timed
                started = time.perf_counter()
                results = await purge(ctx, request)
                purge_seconds = time.perf_counter() - started
            removed = summary(results).get("visits", 0)
            assert removed == made, (removed, made)
            log(f"round {round_no}: purge removed {removed} rows in {purge_seconds:.2f} s")
            await conn.execute("VACUUM ANALYZE")
            rounds.append(
                {
                    "rows": made,
                    "plain_delete_seconds": round(plain_seconds, 3),
                    "purge_seconds": round(purge_seconds, 3),
                    "plain_delete_rows_per_second": round(made / plain_seconds),
                    "purge_rows_per_second": round(made / purge_seconds),
                    "ratio": round(plain_seconds / purge_seconds, 3),
                    "purge_access_log_seconds": round(timed.seconds, 3),
                    "purge_without_access_log_ratio": round(plain_seconds / (purge_seconds - timed.seconds), 3),
                }
            )
        logged = await conn.fetchval("SELECT count(*) FROM access_log_entry WHERE action = 'delete'")
    finally:
        await conn.close()
    return {"rounds": rounds, "access_log_entries_written": logged}


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    if min(args.visits, args.orgs, args.telemetry, args.batch_size, args.rounds) < 1:
        raise SystemExit("--visits, --orgs, --telemetry, --batch-size and --rounds must be positive")
    if args.batch_size > 10_000:
        raise SystemExit("--batch-size is at most 10000 (the purge's own bound)")
    set_quiet(args.quiet)
    host = machine()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="konsil-bench-purge-") as work, interrupt_on_terminate():
        with migrated_postgres("purge") as dsn:
            measured = run_async(measure(args, dsn, Path(work)))
    rounds = measured["rounds"]
    ratio = statistics.median(r["ratio"] for r in rounds)
    return {
        "benchmark": NAME,
        "database": "postgres",
        "visits": args.visits,
        "orgs": args.orgs,
        "telemetry_per_call": args.telemetry,
        "batch_size": args.batch_size,
        "rows_per_phase": rounds[0]["rows"],
        "rounds": rounds,
        "plain_delete_rows_per_second": statistics.median(r["plain_delete_rows_per_second"] for r in rounds),
        "purge_rows_per_second": statistics.median(r["purge_rows_per_second"] for r in rounds),
        "ratio": ratio,
        # For reading the ratio: the purge's time less the time spent appending access-log entries.
        "purge_without_access_log_ratio": statistics.median(r["purge_without_access_log_ratio"] for r in rounds),
        "access_log_entries_written": measured["access_log_entries_written"],
        "aim": {"ratio_at_least": AIM_RATIO},
        "meets_aim": ratio >= AIM_RATIO,
        "machine": host,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone(run, argv, "the database dropped")


if __name__ == "__main__":
    sys.exit(main())
