"""DSR export: the data-subject export of a person with 1,000 visits, against reading the same rows with plain SQL.

Set-up (not timed): fresh migrated region and control databases, an organisation
with its keys on the local keyring, and one visitor phone with ``--visits`` visits
made through the product's own services (``visits.arrive``; every ``--calls-every``
-th visit admitted and ended with two telemetry records and a relay receipt), so
the access log holds what real use leaves. A second phone's visits are noise.

Measured, interleaved per round (medians):

* **dsr**: ``compliance.dsr.service.export`` (find by blind index, the visits'
  calls, telemetry and receipts, open every sealed field, the "who accessed"
  entries, one access-log entry per record, the request marked fulfilled) and the
  JSON encoding the API sends. Each round runs in a transaction that is rolled
  back, so every round exports the same state (an export adds log entries).
* **baseline**: the same rows read with plain SQL (joins on the visit's phone
  index), the same fields opened with the same cipher, the same access-log rows
  read, encoded as JSON; no service code, nothing written.

* **log writes**: the access-log append alone of as many entries as the export
  writes (rolled back too), to show how much of the difference the log is.

Result: median milliseconds, ``ratio`` = dsr / baseline, and
``ratio_without_access_log_writes`` = (dsr - log writes) / baseline.

    .venv/bin/python -m bench.dsr_export [--visits 1000] [--calls-every 1] [--rounds 7]
        [--database postgres|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from bench.harness import (
    DATABASES,
    PG_SERVER,
    check_postgres,
    drop_quietly,
    event_loop_name,
    interrupt_on_terminate,
    log,
    machine,
    run_async,
    run_standalone,
    set_quiet,
    stack_settings,
)
from konsil.platform.cli.migrations import migrate_all
from konsil.platform.core import database

NAME = "dsr_export"
# This benchmark's own aims (P17 sets none beyond "within 4 weeks"): the export of a
# subject with 1,000 visits takes at most 2 s, and apart from the access-log entries it
# must write (one per record, measured on their own) at most 3x reading the same rows.
AIM_MS = 2000.0
AIM_RATIO = 3.0
PHONE = "+4712345678"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--visits", type=int, default=1000, help="visits of the data subject")
    p.add_argument("--calls-every", type=int, default=1, help="every N-th visit has a call (0: none)")
    p.add_argument("--rounds", type=int, default=7, help="measured rounds of each side (interleaved)")
    p.add_argument("--database", choices=DATABASES, default="postgres")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


class _Rollback(Exception):
    """Ends a measured round's transaction without committing it."""


async def populate(ctx: Any, visits_count: int, calls_every: int) -> tuple[dict[str, Any], uuid.UUID, dict[str, int]]:
    from konsil.compliance.dsr import service
    from konsil.compliance.dsr.schemas import RequestIn
    from konsil.tenants import records, visits
    from konsil.tenants.actors import Actor
    from konsil.tenants.tables import Organisation, Room

    org_id = uuid.uuid4()
    async with database.transaction(ctx.engine):
        await Organisation.insert(Organisation(id=org_id, slug=f"bench-{org_id.hex[:6]}", name="DSR practice")).run()
        await ctx.keys.provision(org_id)
    org_row = await Organisation.select().where(Organisation.id == org_id).first().run()
    assert org_row is not None
    org = records.Organisation.of(org_row)  # the tenant area's record; compliance reads the row
    room_id, expert_id = uuid.uuid4(), uuid.uuid4()
    await Room.insert(Room(id=room_id, org_id=org_id, slug="room", title="Room", expert_id=expert_id)).run()
    room_row = await Room.select().where(Room.id == room_id).first().run()
    assert room_row is not None
    room = records.Room.of(room_row)
    expert = Actor(f"member:{expert_id}", "expert", f"member:{expert_id}", "127.0.0.1")
    calls = 0
    started = time.monotonic()
    for number in range(visits_count):
        for phone in (PHONE, "+4798765432") if number % 10 == 0 else (PHONE,):
            form = visits.VisitorForm(name=f"Kari Nordmann {number}", consent=True, phone=phone)
            visit_id, _ = await visits.arrive(ctx, org, room, form, "127.0.0.1")
            if phone == PHONE and calls_every and number % calls_every == 0:
                call = await visits.admit(ctx, expert, org, visit_id, expert_id, "owner")
                row = await visits.call_by_id(org_id, call.id)
                assert row is not None
                await visits.store_telemetry(row, "visitor", "quality", b'{"rtt_ms":40,"loss":0.0}')
                await visits.store_telemetry(row, "expert", "action", b'{"action":"mute"}')
                await visits.record_relay(ctx, expert, row, "eu-node-1")
                await visits.end_call(ctx, expert, org_id, call.id)
                calls += 1
        if (number + 1) % 200 == 0:
            log(f"{number + 1} visits made ({time.monotonic() - started:.0f} s)")
    owner = Actor("member:bench-owner", "owner", "member:bench-owner", "127.0.0.1")
    made = await service.file(ctx, owner, org_row, msgspec.convert({"kind": "access", "phone": PHONE}, RequestIn))
    return org_row, made.id, {"visits": visits_count, "calls": calls}


async def dsr_round(ctx: Any, org: dict[str, Any], request_id: uuid.UUID) -> tuple[float, int, int]:
    from konsil.compliance.dsr import service
    from konsil.tenants.actors import Actor

    owner = Actor("member:bench-owner", "owner", "member:bench-owner", "127.0.0.1")
    size = accessed = 0
    begun = time.perf_counter()
    try:
        async with database.transaction(ctx.engine):
            exported = await service.export(ctx, owner, org, request_id)
            size, accessed = len(msgspec.json.encode(exported)), len(exported.accessed_by)
            took = time.perf_counter() - begun
            raise _Rollback
    except _Rollback:
        pass
    return took, size, accessed


async def log_round(ctx: Any, org: dict[str, Any], entries: int) -> float:
    """Only the access-log writes an export makes: ``entries`` "export" entries in one
    append, rolled back like the export's."""
    from konsil.compliance.access_log.service import AccessEvent, append_many

    events = [
        AccessEvent(
            org_id=org["id"],
            actor="member:bench-owner",
            actor_role="owner",
            subject_ref=f"visit:{uuid.uuid4()}",
            action="export",
            object_type="visit",
            object_id=str(uuid.uuid4()),
            source_address="127.0.0.1",
            outcome="success",
            purpose="data-subject request (access)",
            source=ctx.source,
        )
        for _ in range(entries)
    ]
    begun = time.perf_counter()
    try:
        async with database.transaction(ctx.engine):
            await append_many(events)
            took = time.perf_counter() - begun
            raise _Rollback
    except _Rollback:
        pass
    return took


def _access_columns() -> list[Any]:
    from konsil.compliance.access_log.tables import AccessLogEntry as E

    return [
        E.at,
        E.actor,
        E.actor_role,
        E.on_behalf_of,
        E.action,
        E.object_type,
        E.object_id,
        E.purpose,
        E.outcome,
        E.source,
    ]


async def baseline_round(ctx: Any, org: dict[str, Any]) -> tuple[float, int, int]:
    """The same rows with plain SQL, opened with the same cipher; no service code."""
    from konsil.compliance.access_log.tables import AccessLogEntry
    from konsil.platform.core.keys.cipher import FieldRef
    from konsil.tenants import members
    from konsil.tenants.tables import Visit

    begun = time.perf_counter()
    org_id = org["id"]
    cipher = await ctx.keys.cipher(org_id)
    index = members.phone_index(cipher, PHONE)
    visit_rows = await Visit.raw("SELECT * FROM visit WHERE org_id = {} AND phone_index = {}", org_id, index)
    # Fixed text only; the values are bound parameters.
    subject = "JOIN visit v ON v.id = {alias}.visit_id WHERE v.org_id = {{}} AND v.phone_index = {{}}"
    call_rows = await Visit.raw("SELECT c.* FROM call c " + subject.format(alias="c"), org_id, index)  # noqa: S608
    telemetry = await Visit.raw(
        "SELECT t.* FROM call_telemetry t " + subject.format(alias="t"),  # noqa: S608
        org_id,
        index,
    )
    receipts = await Visit.raw(
        "SELECT r.* FROM call_relay_receipt r JOIN call c ON c.id = r.call_id " + subject.format(alias="c"),  # noqa: S608
        org_id,
        index,
    )
    refs = [f"visit:{v['id']}" for v in visit_rows]
    entries = await AccessLogEntry.select(*_access_columns()).where(
        (AccessLogEntry.org_id == org_id) & AccessLogEntry.subject_ref.is_in(refs)
    )
    out = {
        "visits": [
            {
                **v,
                "name": cipher.open(FieldRef(org_id, "visit", "name", v["id"]), v["name"]),
                "phone": cipher.open(FieldRef(org_id, "visit", "phone", v["id"]), v["phone"]),
            }
            for v in visit_rows
        ],
        "calls": call_rows,
        "telemetry": [{**t, "data": msgspec.Raw(t["data"].encode())} for t in telemetry],
        "receipts": receipts,
        "accessed_by": entries,
    }
    size = len(msgspec.json.encode(out))
    return time.perf_counter() - begun, size, len(entries)


async def measure(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    from konsil.regions.container import open_region

    async with open_region(settings, settings.regions[0]) as ctx:
        log(f"making {args.visits} visits of one data subject")
        org, request_id, made = await populate(ctx, args.visits, args.calls_every)
        await dsr_round(ctx, org, request_id)  # warm-up (caches, plans)
        await baseline_round(ctx, org)
        dsr_ms: list[float] = []
        base_ms: list[float] = []
        log_ms: list[float] = []
        logged = made["visits"] + 1  # one entry per visit, one for the request
        sizes: dict[str, int] = {}
        for number in range(args.rounds):
            order = ("dsr", "baseline") if number % 2 == 0 else ("baseline", "dsr")
            for side in order:
                if side == "dsr":
                    took, size, accessed = await dsr_round(ctx, org, request_id)
                    dsr_ms.append(took * 1000)
                    sizes |= {"dsr_json_bytes": size, "accessed_by_entries": accessed}
                else:
                    took, size, _ = await baseline_round(ctx, org)
                    base_ms.append(took * 1000)
                    sizes["baseline_json_bytes"] = size
            log_ms.append(await log_round(ctx, org, logged) * 1000)
            log(
                f"round {number + 1}: dsr {dsr_ms[-1]:.0f} ms (log writes {log_ms[-1]:.0f}), "
                f"baseline {base_ms[-1]:.0f} ms"
            )
    dsr_median, base_median = statistics.median(dsr_ms), statistics.median(base_ms)
    log_median = statistics.median(log_ms)
    ratio = dsr_median / base_median
    without_log = (dsr_median - log_median) / base_median
    return {
        "subject": made | {"telemetry_records": 2 * made["calls"], "relay_receipts": made["calls"]} | sizes,
        "dsr_export_ms": {"median": round(dsr_median, 1), "min": round(min(dsr_ms), 1), "max": round(max(dsr_ms), 1)},
        "baseline_ms": {"median": round(base_median, 1), "min": round(min(base_ms), 1), "max": round(max(base_ms), 1)},
        "access_log_writes_ms": {"median": round(log_median, 1), "entries": logged},
        "ratio": round(ratio, 2),
        "ratio_without_access_log_writes": round(without_log, 2),
        "meets_aim": dsr_median <= AIM_MS and without_log <= AIM_RATIO,
    }


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    if args.visits < 1 or args.rounds < 1 or args.calls_every < 0:
        raise SystemExit("--visits and --rounds must be positive, --calls-every at least 0")
    set_quiet(args.quiet)
    host = machine()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="konsil-bench-dsr-"))
    names: list[str] = []
    try:
        with interrupt_on_terminate():
            if args.database == "postgres":
                asyncio.run(check_postgres(PG_SERVER))
            settings, names = stack_settings(work, args.database, (("eu", "EU/EEA (GDPR)"),), PG_SERVER)
            log(f"migrating {args.database} databases {' '.join(names) or work}")
            migrate_all(settings, echo=lambda line: None)
            result = run_async(measure(args, settings))
    finally:
        drop_quietly(names)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "benchmark": NAME,
        "database": args.database,
        **result,
        "aim": {"dsr_export_ms_at_most": AIM_MS, "ratio_without_access_log_writes_at_most": AIM_RATIO},
        "event_loop": event_loop_name(),
        "seconds": round(time.monotonic() - started, 1),
        "machine": host | {"load_average_1m_after": machine().get("load_average_1m")},
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone(run, argv, "the databases were dropped")


if __name__ == "__main__":
    sys.exit(main())
