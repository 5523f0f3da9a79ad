"""Compliance report: one organisation's report (1,000,000 access-log entries, 100,000 visits)
against a plain SQL scan plus hash verification of the same entries, in the same run.

Set-up (not timed): a fresh migrated PostgreSQL region database (dropped afterwards), the
region container on a local keyring (``open_region``), one organisation with its keys
provisioned, 5 rooms and 10 members, ``--visits`` visits with sealed names (and every
other one a sealed phone and its blind index: real envelopes from the organisation's
cipher), a call for every ``--calls-every``-th visit with a residency receipt signed by
the region's own key (``ctx.signer``, key id stored) naming one of the region's two media
nodes, and ``--entries`` access-log entries forming a valid hash chain (each visit's
arrival, the expert's reads, the call, its receipt and its end, a sign-in now and then;
all but the last written with COPY, hashed with ``compliance/access_log/chain.py``; the
last appended through the log service, so the head is sealed as the region seals it).
Everything else is written with COPY too. Then ``VACUUM ANALYZE`` and a
``CHECKPOINT``, outside the timings. The data spans the last 80 days (retention 90 days),
the report's period the last 85.

Measured, per round (the order of the two sides alternates):

* **baseline**: the same entries read with plain SQL ordered by seq (asyncpg, a
  server-side cursor fetched in batches, in one read-only transaction), every entry's
  hash recomputed with ``chain.entry_hash`` and every ``prev_hash`` link and seq
  checked, the last against ``access_log_head``. No service code.
* **report**: the report job end to end through the product's own code,
  ``compliance.reports.jobs.create`` then ``jobs.generate`` (a signed checkpoint, the
  framework's evidence collectors, the observations stored, PDF/JSON/CSV/ZIP/ROPA/OSCAL
  rendered and saved), with the time of each step. The organisation's checkpoints are
  removed before each round, so each report signs the first one and walks the whole
  chain; ``--scheduled-checkpoint`` signs one untimed first, as the region's schedule does.

Peak memory: the growth of this process's peak resident set (``VmHWM``) during a side,
after resetting the peak to the current size (``/proc/self/clear_refs``, "5") once the
garbage collector and ``malloc_trim`` have returned what the set-up freed.

Result: ``ratio`` = report seconds / baseline seconds (aim: at most 2), ``cpu_ratio`` (the
same in CPU seconds of this process and its database backends), the report's peak memory
growth (aim: below 500 MB), and the per-step breakdown. bench/README.md has figures.

    .venv/bin/python -m bench.report [--entries 1000000] [--visits 100000]
        [--calls-every 1] [--framework gdpr] [--rounds 1] [--scheduled-checkpoint]
        [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ctypes
import ctypes.util
import datetime as dt
import gc
import hashlib
import io
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from bench.harness import (
    _database_cpu_seconds,
    event_loop_name,
    interrupt_on_terminate,
    log,
    machine,
    migrated_postgres,
    run_async,
    run_standalone,
    set_quiet,
)
from bench.purge import bench_settings
from konsil.compliance.access_log import chain, seal
from konsil.compliance.access_log import service as access_log_service
from konsil.compliance.access_log.chain import GENESIS_HASH, EntryRecord
from konsil.compliance.access_log.checkpoints import make_checkpoint
from konsil.compliance.access_log.tables import AccessLogCheckpoint
from konsil.compliance.controls.catalog import FRAMEWORK_IDS
from konsil.compliance.evidence import collectors
from konsil.compliance.evidence import store as evidence_store
from konsil.compliance.evidence.model import Check
from konsil.compliance.evidence.tables import EvidenceObservation
from konsil.compliance.reports import csv_workbook, jobs, json_report, oscal, pdf_report, ropa
from konsil.compliance.reports.jobs import ReportRequest
from konsil.compliance.reports.tables import ReportFile
from konsil.media_nodes import receipts
from konsil.media_nodes.receipts import ResidencyReceipt
from konsil.platform.core import database
from konsil.platform.core.access import AccessEvent
from konsil.platform.core.keys.cipher import FieldRef, OrgCipher
from konsil.platform.core.lookup import email_lookup
from konsil.platform.core.region import RegionContext
from konsil.regions.container import open_region

NAME = "report"
AIM_RATIO = 2.0  # report seconds / baseline seconds, at most (issue 13, item 8)
AIM_PEAK_MB = 500.0  # the report's peak memory growth, below (issue 13, item 8)

SPAN = dt.timedelta(days=80)  # the seeded data lies in the last 80 days…
RETENTION_DAYS = 90  # …within the organisation's retention (the purge's bound is 1..90)
PERIOD = dt.timedelta(days=85)  # the report's period: the last 85 days, so it covers all of it
CHUNK = 5000  # visits seeded per round of COPYs
BASELINE_BATCH = 10_000  # rows per cursor fetch of the baseline
ROOMS = 5
EXPERTS = 9
NODES = ("eu-node-1", "eu-node-2")
SIGN_IN_EVERY = 100  # a member signs in once per this many visits

ENTRY_COLUMNS = (
    "id",
    "org_id",
    "seq",
    "at",
    "actor",
    "actor_role",
    "on_behalf_of",
    "subject_ref",
    "action",
    "object_type",
    "object_id",
    "source_address",
    "outcome",
    "purpose",
    "source",
    "prev_hash",
    "entry_hash",
)
VISIT_COLUMNS = (
    "id",
    "org_id",
    "room_id",
    "name",
    "phone",
    "phone_index",
    "status",
    "token_hash",
    "consented_at",
    "arrived_at",
    "admitted_at",
    "ended_at",
    "expires_at",
)
CALL_COLUMNS = (
    "id",
    "org_id",
    "room_id",
    "visit_id",
    "expert_id",
    "started_at",
    "ended_at",
    "duration_seconds",
    "expires_at",
)
RECEIPT_COLUMNS = ("id", "org_id", "call_id", "body", "signature", "key_id", "issued_at", "expires_at")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--entries", type=int, default=1_000_000, help="access-log entries (default 1000000)")
    p.add_argument("--visits", type=int, default=100_000, help="visits (default 100000)")
    p.add_argument("--calls-every", type=int, default=1, help="every N-th visit has a call and receipt (default 1)")
    p.add_argument("--framework", choices=FRAMEWORK_IDS, default="gdpr", help="the report's framework (default gdpr)")
    p.add_argument("--rounds", type=int, default=1, help="rounds, each a baseline and a report (default 1)")
    p.add_argument(
        "--scheduled-checkpoint",
        action="store_true",
        help="sign a checkpoint before each report (untimed), as the region's schedule does: the report's "
        "checkpoint then walks only the entries since (default: every report signs the first one)",
    )
    p.add_argument("--profile", metavar="FILE", help="profile the report side with cProfile into FILE (pstats)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


# --- memory ---------------------------------------------------------------------------------


def _status_kib(name: str) -> int | None:
    """A ``/proc/self/status`` figure in KiB (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim() -> None:
    """Collect garbage and hand freed heap back to the system, so that what the set-up
    (or the other side) allocated and freed does not hide the next side's growth."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None)
        if trim is not None:
            trim(0)


@dataclass
class PeakMemory:
    """The growth of this process's peak resident set over a measured side.

    ``/proc/self/clear_refs`` "5" resets ``VmHWM`` to the current resident set (Linux
    4.0+), so ``VmHWM`` afterwards is the peak of that side alone. Without it, the
    lifetime peak (``ru_maxrss``) is all there is, and the figure says so."""

    method: str = ""
    start_kib: int = 0

    def start(self) -> None:
        _trim()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM after clear_refs reset"
        except OSError:
            self.method = "ru_maxrss (lifetime peak; no reset possible)"
        self.start_kib = _status_kib("VmRSS") or 0

    def stop(self) -> dict[str, Any]:
        peak = _status_kib("VmHWM") if self.method.startswith("VmHWM") else None
        if peak is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "peak_growth_mb": round((peak - self.start_kib) / 1024, 1),
            "peak_rss_mb": round(peak / 1024, 1),
            "rss_at_start_mb": round(self.start_kib / 1024, 1),
            "method": self.method,
        }


class CpuMeter:
    """CPU seconds over a side: this process (``process_time``: every thread, so the
    report's rendering threads too) and the PostgreSQL backends serving the benchmark's
    database (``/proc``, by process title; sampled while they are connected). Less moved
    by other work on a shared machine than the wall-clock time."""

    def __init__(self, database_name: str) -> None:
        self.database_name = database_name
        self._process = 0.0
        self._database: float | None = None

    def start(self) -> None:
        self._process = time.process_time()
        self._database = _database_cpu_seconds([self.database_name])

    def stop(self) -> dict[str, float | None]:
        process = time.process_time() - self._process
        now = _database_cpu_seconds([self.database_name])
        database = None if now is None or self._database is None else now - self._database
        return {
            "process": round(process, 3),
            "database": None if database is None else round(database, 3),
            "total": round(process + (database or 0.0), 3),
        }


# --- seeding --------------------------------------------------------------------------------


@dataclass
class Chain:
    """Builds the organisation's hash chain entry by entry, as ``append_many`` would,
    with times spread evenly over the seeded span, and COPYs it in batches."""

    org_id: uuid.UUID
    start: dt.datetime
    step: dt.timedelta
    source: str
    seq: int = 0
    prev_hash: str = GENESIS_HASH
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def at(self, seq: int) -> dt.datetime:
        return self.start + self.step * (seq - 1)

    def add(
        self,
        actor: str,
        role: str,
        subject_ref: str,
        action: str,
        object_type: str,
        object_id: uuid.UUID,
        address: str,
        purpose: str,
    ) -> dt.datetime:
        self.seq += 1
        at = self.at(self.seq)
        unhashed = EntryRecord(
            id=uuid.uuid4(),
            org_id=self.org_id,
            seq=self.seq,
            at=at,
            actor=actor,
            actor_role=role,
            on_behalf_of=actor,
            subject_ref=subject_ref,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            source_address=address,
            outcome="success",
            purpose=purpose,
            source=self.source,
            prev_hash=self.prev_hash,
            entry_hash="",
        )
        self.prev_hash = chain.entry_hash(unhashed)
        self.rows.append((*(getattr(unhashed, name) for name in ENTRY_COLUMNS[:-1]), self.prev_hash))
        return at

    async def flush(self, conn: asyncpg.Connection) -> None:
        if self.rows:
            await conn.copy_records_to_table("access_log_entry", records=self.rows, columns=ENTRY_COLUMNS)
            self.rows = []


@dataclass
class Staff:
    owner: uuid.UUID
    experts: list[uuid.UUID]
    rooms: list[tuple[uuid.UUID, uuid.UUID]]  # (room, its expert)


@dataclass
class Seeded:
    org_id: uuid.UUID
    period_start: dt.datetime
    period_end: dt.datetime
    entries: int
    visits: int
    calls: int
    head_seq: int
    head_hash: str
    seconds: float
    rows: dict[str, int]


def _member_address(n: int) -> str:
    return f"192.0.2.{10 + n}"


def _visitor_address(n: int) -> str:
    return f"198.51.100.{n % 250 + 1}"


async def _organisation(ctx: RegionContext, conn: asyncpg.Connection, created: dt.datetime) -> uuid.UUID:
    org_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO organisation (id, slug, name, retention_days, relay_only, created_at) "
        "VALUES ($1, $2, 'Bench practice', $3, true, $4)",
        org_id,
        f"bench-{org_id.hex[:12]}",
        RETENTION_DAYS,
        created,
    )
    async with database.transaction(ctx.engine):
        await ctx.keys.provision(org_id)
    for node in NODES:
        await conn.execute(
            "INSERT INTO media_node (node_id, state, healthy, last_seen_at) VALUES ($1, 'active', true, now())", node
        )
    return org_id


async def _staff(
    ctx: RegionContext, conn: asyncpg.Connection, cipher: OrgCipher, log_chain: Chain, org_id: uuid.UUID
) -> Staff:
    """An owner and the experts (sealed names and e-mails, keyed lookups), their rooms,
    and each member's creation in the chain."""
    owner = uuid.uuid4()
    experts = [uuid.uuid4() for _ in range(EXPERTS)]
    rows = []
    for n, (member_id, role) in enumerate([(owner, "owner"), *((e, "expert") for e in experts)]):
        email = f"member{n}@practice.example"

        def seal(column: str, value: str, member_id: uuid.UUID = member_id) -> str:
            return cipher.seal(FieldRef(org_id, "member", column, member_id), value)

        created = log_chain.add(
            f"member:{owner}",
            "owner",
            f"member:{member_id}",
            "create",
            "member",
            member_id,
            _member_address(0),
            "provide the service",
        )
        rows.append(
            (
                member_id,
                org_id,
                seal("name", f"Member {n}"),
                seal("email", email),
                email_lookup(ctx.discovery_key, email),
                cipher.blind_index("email", email),
                role,
                "!no-password",
                created,
            )
        )
    await conn.copy_records_to_table(
        "member",
        records=rows,
        columns=("id", "org_id", "name", "email", "email_lookup", "email_index", "role", "password_hash", "created_at"),
    )
    rooms = [(uuid.uuid4(), experts[n % len(experts)]) for n in range(ROOMS)]
    made = [
        log_chain.add(
            f"member:{owner}",
            "owner",
            f"member:{expert}",
            "create",
            "room",
            room,
            _member_address(0),
            "provide the service",
        )
        for room, expert in rooms
    ]
    await conn.copy_records_to_table(
        "room",
        records=[(room, org_id, f"room-{n}", f"Room {n}", expert, made[n]) for n, (room, expert) in enumerate(rooms)],
        columns=("id", "org_id", "slug", "title", "expert_id", "created_at"),
    )
    return Staff(owner, experts, rooms)


def _entries_per_visit(entries: int, visits: int, already: int) -> list[int]:
    """How many entries each visit's story gets, so that the chain has exactly
    ``entries`` in all (sign-ins included): an even share, the remainder spread."""
    sign_ins = visits // SIGN_IN_EVERY
    left = entries - already - sign_ins
    if left < visits:
        raise SystemExit(f"--entries must be at least {already + sign_ins + visits} for {visits} visits")
    base, extra = divmod(left, visits)
    return [base + ((j + 1) * extra // visits - j * extra // visits) for j in range(visits)]


def _owner_read(ctx: RegionContext, org_id: uuid.UUID, owner: uuid.UUID) -> AccessEvent:
    """The chain's last entry, appended by the log service: the owner opens a member's record."""
    return AccessEvent(
        org_id=org_id,
        actor=f"member:{owner}",
        actor_role="owner",
        on_behalf_of=f"member:{owner}",
        subject_ref=f"member:{owner}",
        action="read",
        object_type="member",
        object_id=str(owner),
        source_address=_member_address(0),
        outcome="success",
        purpose="provide the service",
        source=ctx.source,
    )


async def seed(ctx: RegionContext, conn: asyncpg.Connection, args: argparse.Namespace, now: dt.datetime) -> Seeded:
    began = time.monotonic()
    start = now - SPAN
    org_id = await _organisation(ctx, conn, start - dt.timedelta(days=1))
    cipher = await ctx.keys.cipher(org_id)
    log_chain = Chain(
        org_id, start, (SPAN - dt.timedelta(hours=1)) / args.entries, f"region:{ctx.region.id}/region-service"
    )
    staff = await _staff(ctx, conn, cipher, log_chain, org_id)
    # All but the last entry by COPY; the last through the log service, which seals the head.
    shares = _entries_per_visit(args.entries - 1, args.visits, log_chain.seq)
    keep = dt.timedelta(days=RETENTION_DAYS)
    calls = 0
    for first in range(0, args.visits, CHUNK):
        visits: list[tuple[Any, ...]] = []
        calls_rows: list[tuple[Any, ...]] = []
        to_sign: list[tuple[uuid.UUID, uuid.UUID, bytes, dt.datetime, dt.datetime]] = []
        for j in range(first, min(first + CHUNK, args.visits)):
            if j % SIGN_IN_EVERY == 0:
                n = j // SIGN_IN_EVERY % len(staff.experts)
                who = staff.experts[n]
                log_chain.add(
                    f"member:{who}", "expert", f"member:{who}", "read", "member", who, _member_address(n + 1), "log in"
                )
            visit_id, call_id, receipt_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            room_id, expert = staff.rooms[j % len(staff.rooms)]
            expert_no = staff.experts.index(expert) + 1
            subject = f"visit:{visit_id}"
            visitor = f"visitor:{visit_id}"
            has_call = j % args.calls_every == 0
            share = shares[j]
            reads = share - 1 - (3 if has_call and share >= 4 else 0)
            arrived = log_chain.add(
                visitor,
                "visitor",
                subject,
                "create",
                "visit",
                visit_id,
                _visitor_address(j),
                "video consultation (consent)",
            )
            member, address = f"member:{expert}", _member_address(expert_no)
            for _ in range(reads):
                log_chain.add(member, "expert", subject, "read", "visit", visit_id, address, "provide the service")
            admitted = ended = None
            if has_call and share >= 4:
                admitted = log_chain.add(
                    member, "expert", subject, "create", "call", call_id, address, "provide the service"
                )
                issued = log_chain.add(
                    member, "expert", subject, "create", "residency_receipt", receipt_id, address, "provide the service"
                )
                ended = log_chain.add(
                    member, "expert", subject, "update", "call", call_id, address, "provide the service"
                )
                receipt = ResidencyReceipt(
                    call_id=str(call_id),
                    region=ctx.region.id,
                    jurisdiction=ctx.region.jurisdiction,
                    relays=[NODES[j % len(NODES)]],
                    issued_at=issued.isoformat(),
                )
                to_sign.append((receipt_id, call_id, receipts.signed_bytes(receipt), issued, arrived + keep))
                calls_rows.append(
                    (
                        call_id,
                        org_id,
                        room_id,
                        visit_id,
                        expert,
                        admitted,
                        ended,
                        int((ended - admitted).total_seconds()),
                        arrived + keep,
                    )
                )
            phone = f"+47 4{j:07d}" if j % 2 == 0 else None
            visits.append(
                (
                    visit_id,
                    org_id,
                    room_id,
                    cipher.seal(FieldRef(org_id, "visit", "name", visit_id), f"Visitor {j}"),
                    cipher.seal(FieldRef(org_id, "visit", "phone", visit_id), phone) if phone else None,
                    cipher.blind_index("phone", phone.replace(" ", "")) if phone else None,
                    "ended" if admitted else "left",
                    hashlib.sha256(os.urandom(16)).hexdigest(),
                    arrived,
                    arrived,
                    admitted,
                    ended or arrived,
                    arrived + keep,
                )
            )
        signatures = await asyncio.gather(*(ctx.signer.sign(signed) for _, _, signed, _, _ in to_sign))
        receipt_rows = [
            (receipt_id, org_id, call_id, signed.decode(), signature.value, signature.kid, issued, expires)
            for (receipt_id, call_id, signed, issued, expires), signature in zip(to_sign, signatures, strict=True)
        ]
        await conn.copy_records_to_table("visit", records=visits, columns=VISIT_COLUMNS)
        await conn.copy_records_to_table("call", records=calls_rows, columns=CALL_COLUMNS)
        await conn.copy_records_to_table("call_relay_receipt", records=receipt_rows, columns=RECEIPT_COLUMNS)
        await log_chain.flush(conn)
        calls += len(calls_rows)
        done = min(first + CHUNK, args.visits)
        if done % (CHUNK * 4) == 0 or done == args.visits:
            log(f"seeded {done} visits, {log_chain.seq} entries ({time.monotonic() - began:.0f} s)")
    # The head as this region process would have written it: sealed with its own sealing
    # key (an unsealed head would be recorded as tampering by the next append).
    sealer = seal.current_sealer()
    assert sealer is not None and sealer.certified, "the bench's region container seals heads"
    seal_key, head_seal = sealer.seal(seal.head_state(org_id, log_chain.seq, log_chain.prev_hash, 0, GENESIS_HASH))
    await conn.execute(
        "INSERT INTO access_log_head (org_id, seq, entry_hash, pruned_seq, pruned_hash, at, seal_key, seal) "
        "VALUES ($1, $2, $3, 0, $4, $5, $6, $7)",
        org_id,
        log_chain.seq,
        log_chain.prev_hash,
        GENESIS_HASH,
        log_chain.at(log_chain.seq),
        seal_key,
        head_seal,
    )
    await ctx.access_log.append_many([_owner_read(ctx, org_id, staff.owner)])
    head = await conn.fetchrow("SELECT seq, entry_hash FROM access_log_head WHERE org_id = $1", org_id)
    assert head is not None and head["seq"] == args.entries, (head, args.entries)
    log("VACUUM ANALYZE and CHECKPOINT")
    await conn.execute("VACUUM ANALYZE")
    await conn.execute("CHECKPOINT")
    rows = {
        table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 - fixed names
        for table in ("access_log_entry", "visit", "call", "call_relay_receipt", "member", "room")
    }
    return Seeded(
        org_id=org_id,
        period_start=now - PERIOD,
        period_end=now,
        entries=int(head["seq"]),
        visits=args.visits,
        calls=calls,
        head_seq=int(head["seq"]),
        head_hash=str(head["entry_hash"]),
        seconds=time.monotonic() - began,
        rows=rows,
    )


# --- the baseline ---------------------------------------------------------------------------

_SCAN = f"SELECT {', '.join(ENTRY_COLUMNS)} FROM access_log_entry WHERE org_id = $1 ORDER BY seq, id"  # noqa: S608


async def baseline(conn: asyncpg.Connection, org_id: uuid.UUID) -> dict[str, Any]:
    """Every entry of the organisation in seq order, its hash recomputed and its link to
    the one before checked, then the head; plain asyncpg, no service code."""
    checked = broken = 0
    prev_hash, expect = GENESIS_HASH, 1
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        head = await conn.fetchrow("SELECT seq, entry_hash FROM access_log_head WHERE org_id = $1", org_id)
        cursor = await conn.cursor(_SCAN, org_id)
        while rows := await cursor.fetch(BASELINE_BATCH):
            for r in rows:
                record = EntryRecord(
                    id=r[0],
                    org_id=r[1],
                    seq=r[2],
                    at=r[3],
                    actor=r[4],
                    actor_role=r[5],
                    on_behalf_of=r[6],
                    subject_ref=r[7],
                    action=r[8],
                    object_type=r[9],
                    object_id=r[10],
                    source_address=r[11],
                    outcome=r[12],
                    purpose=r[13],
                    source=r[14],
                    prev_hash=r[15],
                    entry_hash=r[16],
                )
                if (
                    record.seq != expect
                    or record.prev_hash != prev_hash
                    or chain.entry_hash(record) != record.entry_hash
                ):
                    broken += 1
                checked += 1
                expect += 1
                prev_hash = record.entry_hash
    ok = broken == 0 and head is not None and head["seq"] == checked and head["entry_hash"] == prev_hash
    return {"entries_checked": checked, "broken_links": broken, "chain_ok": ok}


# --- the report ---------------------------------------------------------------------------


class StepTimes:
    """Where a report's time goes, two ways.

    ``progress``: the job's own progress steps (``jobs.generate``'s ``on_progress``), each
    timed from its start to the next step's, the last to the end of ``generate``.
    ``calls``: the total time inside named functions the job calls, measured by wrapping
    them for the duration of the side (module attributes and the collector registry;
    nothing else changes). A step missing from ``calls`` was not reached or renamed."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []
        self.calls: dict[str, float] = {}
        self._undo: list[tuple[Any, str, Any, bool]] = []

    async def progress(self, percent: int, step: str) -> None:
        self.marks.append((step, time.perf_counter()))

    def steps(self, ended: float) -> list[dict[str, Any]]:
        ends = [at for _, at in self.marks[1:]] + [ended]
        return [
            {"step": step, "seconds": round(end - began, 3)}
            for (step, began), end in zip(self.marks, ends, strict=True)
        ]

    def _add(self, label: str, began: float) -> None:
        self.calls[label] = self.calls.get(label, 0.0) + time.perf_counter() - began

    def wrap(self, owner: Any, name: str, label: str) -> None:
        """Time every call of ``owner.name`` (or ``owner[name]`` for a dict) as ``label``."""
        is_dict = isinstance(owner, dict)
        original = owner.get(name) if is_dict else getattr(owner, name, None)
        if original is None:
            return
        if asyncio.iscoroutinefunction(original):

            async def timed_async(*a: Any, **k: Any) -> Any:
                began = time.perf_counter()
                try:
                    return await original(*a, **k)
                finally:
                    self._add(label, began)

            wrapper: Any = timed_async
        else:

            def timed_sync(*a: Any, **k: Any) -> Any:
                began = time.perf_counter()
                try:
                    return original(*a, **k)
                finally:
                    self._add(label, began)

            wrapper = timed_sync
        if is_dict:
            owner[name] = wrapper
        else:
            setattr(owner, name, wrapper)
        self._undo.append((owner, name, original, is_dict))

    def restore(self) -> None:
        for owner, name, original, is_dict in reversed(self._undo):
            if is_dict:
                owner[name] = original
            else:
                setattr(owner, name, original)
        self._undo = []


def _instrument(times: StepTimes) -> None:
    times.wrap(jobs, "make_report_checkpoint", "checkpoint")
    times.wrap(access_log_service, "walk", "checkpoint: chain walk since the last checkpoint")
    times.wrap(access_log_service, "verify", "access_log collector: chain verify")
    for name in list(collectors.COLLECTORS):
        times.wrap(collectors.COLLECTORS, name, f"collector: {name}")
    times.wrap(evidence_store, "store", "store observations")
    times.wrap(jobs, "_attested", "attestations")
    times.wrap(jobs, "assemble", "assemble the document")
    times.wrap(json_report, "json_bytes", "render: json")
    times.wrap(csv_workbook, "csv_bytes", "render: csv workbook")
    times.wrap(ropa, "ropa_bytes", "render: ropa")
    times.wrap(oscal, "oscal_bytes", "render: oscal")
    times.wrap(pdf_report, "pdf_bytes", "render: pdf")
    times.wrap(jobs, "evidence_zip_bytes", "render: evidence zip (signed)")


def report_request(framework: str, seeded: Seeded) -> ReportRequest:
    """Whole UTC days from the period's first day to today: all of the seeded data."""
    fields = {"framework": framework, "from": str(seeded.period_start.date()), "to": str(seeded.period_end.date())}
    return msgspec.convert(fields, ReportRequest)  # the framework checked as the API checks it


def requested_by(ctx: RegionContext, org_id: uuid.UUID) -> AccessEvent:
    """The access-log event of asking for the report, as ``konsil report`` writes it."""
    return AccessEvent(
        org_id=org_id,
        actor="cli",
        actor_role="system",
        on_behalf_of="cli",
        subject_ref=f"org:{org_id}",
        action="create",
        object_type="compliance report",
        object_id="",
        source_address="local",
        outcome="success",
        purpose="compliance audit",
        source=ctx.source,
    )


async def _files(job_id: uuid.UUID) -> dict[str, int]:
    rows = await ReportFile.select(ReportFile.format, ReportFile.size).where(ReportFile.report_id == job_id)
    return {str(r["format"]): int(r["size"]) for r in rows}


async def timed_report(
    ctx: RegionContext, args: argparse.Namespace, seeded: Seeded, database_name: str
) -> dict[str, Any]:
    """One report job, created and generated in this process as ``konsil report`` runs it.
    The organisation's stored checkpoints are removed first, so that every round signs
    its first checkpoint and walks the whole chain, as the baseline does; with
    ``--scheduled-checkpoint`` one is then made (untimed), as the region's schedule would
    have, and the report's own checkpoint walks only what was appended since."""
    await AccessLogCheckpoint.delete().where(AccessLogCheckpoint.org_id == seeded.org_id)
    if args.scheduled_checkpoint:
        log("making the scheduled checkpoint the report will extend (not timed)")
        await make_checkpoint(ctx, seeded.org_id)
    times = StepTimes()
    _instrument(times)
    profiler = cProfile.Profile() if args.profile else None
    memory, cpu = PeakMemory(), CpuMeter(database_name)
    try:
        memory.start()
        cpu.start()
        began = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        job_id = await jobs.create(
            ctx, seeded.org_id, report_request(args.framework, seeded), requested_by(ctx, seeded.org_id)
        )
        created = time.perf_counter()
        status = await jobs.generate(ctx, job_id, times.progress)
        ended = time.perf_counter()
        if profiler is not None:
            profiler.disable()
        cpu_used = cpu.stop()
        used = memory.stop()
    finally:
        times.restore()
    job = await jobs.get(seeded.org_id, job_id)
    if status != "done" or job is None:
        raise RuntimeError(f"the report job ended {status}: {job.message if job else 'gone'}")
    profile = None
    if profiler is not None:
        profiler.dump_stats(args.profile)
        profile = _top(profiler)
    found = await _observations(job_id)
    return {
        "seconds": round(ended - began, 3),
        "create_seconds": round(created - began, 3),
        "cpu_seconds": cpu_used,
        "steps": times.steps(ended),
        "calls_seconds": {label: round(sec, 3) for label, sec in times.calls.items()},
        "results": found,
        "files_bytes": await _files(job_id),
        "memory": used,
        **({"profile_top_cumulative": profile} if profile is not None else {}),
    }


async def _observations(job_id: uuid.UUID) -> dict[str, Any]:
    """Each collector's result, and the checks that failed with the start of their reason
    (expected here: no TLS on the benchmark's loopback address, no purge run seeded)."""
    rows = await EvidenceObservation.select(
        EvidenceObservation.collector, EvidenceObservation.result, EvidenceObservation.checks
    ).where(EvidenceObservation.report_id == job_id)
    failing = {
        f"{r['collector']}.{c.name}": c.reason[:160]
        for r in rows
        for c in msgspec.json.decode(r["checks"], type=list[Check])
        if c.result == "fail"
    }
    return {"collectors": {str(r["collector"]): str(r["result"]) for r in rows}, "failed_checks": failing}


def _top(profiler: cProfile.Profile, count: int = 25) -> list[str]:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(count)
    return [line.rstrip() for line in out.getvalue().splitlines() if line.strip()][-count - 1 :]


# --- the run --------------------------------------------------------------------------------


async def timed_baseline(dsn: str, database_name: str, org_id: uuid.UUID) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        memory, cpu = PeakMemory(), CpuMeter(database_name)
        memory.start()
        cpu.start()
        began = time.perf_counter()
        result = await baseline(conn, org_id)
        seconds = time.perf_counter() - began
        used = cpu.stop()  # before the connection's backend exits
    finally:
        await conn.close()
    return {"seconds": round(seconds, 3), **result, "cpu_seconds": used, "memory": memory.stop()}


async def measure(args: argparse.Namespace, dsn: str, work: Path) -> dict[str, Any]:
    settings = bench_settings(dsn, work, 1000)
    database_name = dsn.rsplit("/", 1)[1]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    async with open_region(settings, settings.regions[0]) as ctx:
        conn = await asyncpg.connect(dsn)
        try:
            log(f"seeding {args.visits} visits and {args.entries} access-log entries")
            seeded = await seed(ctx, conn, args, now)
        finally:
            await conn.close()
        log(f"seeded in {seeded.seconds:.1f} s: {seeded.rows}")
        rounds: list[dict[str, Any]] = []
        for number in range(args.rounds):
            order = ("baseline", "report") if number % 2 == 0 else ("report", "baseline")
            sides: dict[str, Any] = {}
            for side in order:
                if side == "baseline":
                    sides["baseline"] = await timed_baseline(dsn, database_name, seeded.org_id)
                    log(f"round {number + 1}: baseline {sides['baseline']['seconds']:.1f} s")
                else:
                    sides["report"] = await timed_report(ctx, args, seeded, database_name)
                    log(f"round {number + 1}: report {sides['report']['seconds']:.1f} s")
            sides["ratio"] = round(sides["report"]["seconds"] / sides["baseline"]["seconds"], 3)
            sides["cpu_ratio"] = round(
                sides["report"]["cpu_seconds"]["total"] / sides["baseline"]["cpu_seconds"]["total"], 3
            )
            rounds.append(sides)
    return {"seeded": seeded, "rounds": rounds}


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    if min(args.entries, args.visits, args.calls_every, args.rounds) < 1:
        raise SystemExit("--entries, --visits, --calls-every and --rounds must be positive")
    set_quiet(args.quiet)
    host = machine()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="konsil-bench-report-") as work, interrupt_on_terminate():
        with migrated_postgres("report") as dsn:
            measured = run_async(measure(args, dsn, Path(work)))
    seeded: Seeded = measured["seeded"]
    rounds = measured["rounds"]
    ratio = round(statistics.median(r["ratio"] for r in rounds), 3)
    labels = dict.fromkeys(label for r in rounds for label in r["report"]["calls_seconds"])
    breakdown = {
        label: round(statistics.median(r["report"]["calls_seconds"].get(label, 0.0) for r in rounds), 3)
        for label in labels
    }
    peak = max(r["report"]["memory"]["peak_growth_mb"] for r in rounds)
    return {
        "benchmark": NAME,
        "database": "postgres",
        "framework": args.framework,
        "scheduled_checkpoint": args.scheduled_checkpoint,
        "seeded": {
            "entries": seeded.entries,
            "visits": seeded.visits,
            "calls_with_receipts": seeded.calls,
            "rows": seeded.rows,
            "period_start": seeded.period_start.isoformat(),
            "period_end": seeded.period_end.isoformat(),
            "seconds": round(seeded.seconds, 1),
        },
        "rounds": rounds,
        "baseline_seconds": round(statistics.median(r["baseline"]["seconds"] for r in rounds), 3),
        "report_seconds": round(statistics.median(r["report"]["seconds"] for r in rounds), 3),
        "ratio": ratio,
        # The same comparison in CPU seconds (this process and its database backends): what
        # the ratio tends to when the machine's cores are the bottleneck, and less noisy.
        "cpu_ratio": round(statistics.median(r["cpu_ratio"] for r in rounds), 3),
        # Median seconds inside each step of the report (its checkpoint, collectors, renderers).
        "report_breakdown_seconds": breakdown,
        "report_peak_memory_growth_mb": peak,
        "aim": {"ratio_at_most": AIM_RATIO, "peak_memory_growth_mb_below": AIM_PEAK_MB},
        "meets_aim": ratio <= AIM_RATIO and peak < AIM_PEAK_MB,
        "event_loop": event_loop_name(),
        "machine": host | {"load_average_1m_after": machine().get("load_average_1m")},
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone(run, argv, "the database dropped")


if __name__ == "__main__":
    sys.exit(main())
