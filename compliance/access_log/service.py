"""Appending to, reading and verifying the access log.

Every read or change of personal data in the service layer calls ``append`` with an
``AccessEvent``. Entries are append-only and hash-chained per organisation
(``chain.py``); ``access_log_head`` holds each organisation's last seq and hash, so
appends serialise on it and verification notices a deleted tail.

Every append also seals the head with this process's sealing key (``seal.py``), and
``verify`` checks that seal and signed checkpoints (``checkpoints.py``) when given the
region's key set: together they catch a chain rewritten consistently, head included.
Before it extends a head, an append checks that head's seal, and records a head the
region did not seal in the chain itself (``alarm.py``), which ``verify`` then reports.

Works on PostgreSQL and SQLite with the engine the tables are bound to.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from piccolo.columns import Varchar
from piccolo.custom_types import Combinable
from piccolo.engine.base import Engine

from konsil.compliance.access_log import alarm, chain, seal
from konsil.compliance.access_log.chain import GENESIS_HASH, EntryRecord, format_time
from konsil.compliance.access_log.documents import Checkpoint
from konsil.compliance.access_log.seal import HeadRow
from konsil.compliance.access_log.tables import AccessLogEntry, AccessLogHead
from konsil.platform.core import database
from konsil.platform.core.access import ACTIONS, OUTCOMES, AccessEvent, Action, Outcome
from konsil.platform.core.keys.region_signing import KeySet
from konsil.platform.core.telemetry import metrics

# modified, deleted, reordered: one entry changed beside the service. rewritten: the log no
# longer matches what the region sealed or signed (a consistent rewrite). forged: an entry
# after a checkpoint dated before it. uncheckable: a checkpoint in the range retention removed.
# tampered: an entry in which the region recorded that it found the head tampered with.
ProblemKind = Literal["modified", "deleted", "reordered", "rewritten", "forged", "uncheckable", "tampered"]
# SQLite binds at most 32766 parameters a statement, 17 an entry; PostgreSQL takes arrays.
SQLITE_ROWS_PER_INSERT = 1000
# What the view's actor and subject filters accept: references as the log writes them
# (no LIKE wildcards), an actor's optionally ending in "*" (every actor it begins).
FILTER_PATTERN = r"^[a-z0-9][a-z0-9:.-]{0,79}\*?\Z"
# Entries read per query when a checkpoint walks the chain: fewer round trips (a million
# entries in 200 queries, not 1,000) for a few MB of rows in memory (bench/report.py).
WALK_BATCH = 5000

log = logging.getLogger("konsil.access_log")

__all__ = [
    "ACTIONS",
    "OUTCOMES",
    "AccessEvent",
    "Action",
    "EntryRecord",
    "Outcome",
    "Problem",
    "ProblemKind",
    "VerifyReport",
    "Walked",
    "append",
    "count",
    "entries",
    "extends",
    "head_row",
    "iter_entries",
    "locked_head",
    "page",
    "prune",
    "verify",
    "walk",
]


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    entry_id: uuid.UUID | None  # None when the entry is gone
    kind: ProblemKind
    detail: str


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    checked: int  # entries that verified before the first problem (all of them when ok)
    problem: Problem | None = None
    pruned: int = 0  # entries #1..#pruned removed by retention; the walk starts after them
    sealed: bool = False  # the head's seal was checked against the region's keys and holds
    extends: list[Checkpoint] = msgspec.field(default_factory=list)  # checkpoints the log was shown to extend
    # The region's alarm entries (``alarm.py``) in the range walked, in chain order: any of
    # them fails the log, even when everything else verifies (``problem`` is then the first).
    alarms: list[Problem] = msgspec.field(default_factory=list)
    # Of ``checked``: entries the caller's own walk moments before had shown intact
    # (``verify(walked=…)``), not walked again.
    taken_from_walk: int = 0


class Walked(msgspec.Struct, frozen=True, kw_only=True):
    """What one walk of the chain showed (``walk``): entries #from_seq+1 to #upto_seq of
    the organisation's log, each intact and following the one before, from ``from_hash``
    to ``upto_hash``, the last retention note among them and the region's alarm entries
    among them (``alarm.py``). ``verify`` takes one made moments earlier (a report's own
    checkpoint) and walks only the entries after it, when it starts where verification
    starts (see ``verify``); the alarms it carries still fail the log."""

    org_id: uuid.UUID
    from_seq: int
    from_hash: str
    upto_seq: int
    upto_hash: str
    retention_note: str | None  # the object_id of the last retention note among them
    alarms: list[EntryRecord] = msgspec.field(default_factory=list)


class PruneRefused(Exception):
    """The entries retention would remove do not form an intact chain: removing them
    would erase the evidence of tampering, so nothing is removed."""


_ENTRY_COLUMNS = (
    AccessLogEntry.id,
    AccessLogEntry.org_id,
    AccessLogEntry.seq,
    AccessLogEntry.at,
    AccessLogEntry.actor,
    AccessLogEntry.actor_role,
    AccessLogEntry.on_behalf_of,
    AccessLogEntry.subject_ref,
    AccessLogEntry.action,
    AccessLogEntry.object_type,
    AccessLogEntry.object_id,
    AccessLogEntry.source_address,
    AccessLogEntry.outcome,
    AccessLogEntry.purpose,
    AccessLogEntry.source,
    AccessLogEntry.prev_hash,
    AccessLogEntry.entry_hash,
)


def _engine() -> Engine[Any]:
    return AccessLogEntry._meta.db


def _bounded(value: str, column: Varchar) -> str:
    """Fit a value into its column instead of failing the caller's request: NUL is
    refused by PostgreSQL, lone surrogates by UTF-8, and an overlong value by varchar(n)."""
    clean = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    return clean[: column.length]


def _uuid(value: Any) -> uuid.UUID:
    """asyncpg already returns UUIDs (its own fast subclass, also faster to print when the
    entry is hashed); parsing each again cost a third of a chain walk's Python time."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _record(row: dict[str, Any]) -> EntryRecord:
    return EntryRecord(
        id=_uuid(row["id"]),
        org_id=_uuid(row["org_id"]),
        seq=int(row["seq"]),
        at=row["at"],
        actor=row["actor"],
        actor_role=row["actor_role"],
        on_behalf_of=row["on_behalf_of"],
        subject_ref=row["subject_ref"],
        action=row["action"],
        object_type=row["object_type"],
        object_id=row["object_id"],
        source_address=row["source_address"],
        outcome=row["outcome"],
        purpose=row["purpose"],
        source=row["source"],
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
    )


# --- appending ---------------------------------------------------------------------


class _Locked(msgspec.Struct, frozen=True):
    row: HeadRow
    at: datetime | None


async def _lock_head(engine: Engine[Any], org_id: uuid.UUID) -> _Locked:
    """Take the organisation's append lock and return its head.

    The insert comes first so that a new organisation's first two appends cannot
    both see "no head"; on SQLite it is also the write that takes the database lock
    if the caller's transaction was opened deferred."""
    await AccessLogHead.insert(AccessLogHead(org_id=org_id, seq=0, entry_hash=GENESIS_HASH)).on_conflict(
        target=AccessLogHead.org_id, action="DO NOTHING"
    )
    head = await _locked_row(engine, org_id)
    assert head is not None
    return head


async def _locked_row(engine: Engine[Any], org_id: uuid.UUID) -> _Locked | None:
    """The organisation's head row, locked until the transaction ends (None: no row)."""
    query = AccessLogHead.select(
        AccessLogHead.seq,
        AccessLogHead.entry_hash,
        AccessLogHead.pruned_seq,
        AccessLogHead.pruned_hash,
        AccessLogHead.at,
        AccessLogHead.seal_key,
        AccessLogHead.seal,
    ).where(AccessLogHead.org_id == org_id)
    if database.is_postgres(engine):
        query = query.lock_rows("UPDATE")  # SQLite's write transaction already serialises
    rows = await query
    return _Locked(_head_row(org_id, rows[0]), _utc(rows[0]["at"])) if rows else None


def _head_row(org_id: uuid.UUID, row: dict[str, Any]) -> HeadRow:
    return HeadRow(
        org_id=org_id,
        seq=int(row["seq"]),
        entry_hash=str(row["entry_hash"]),
        pruned_seq=int(row["pruned_seq"]),
        pruned_hash=str(row["pruned_hash"]),
        seal_key=str(row["seal_key"] or ""),
        seal=str(row["seal"] or ""),
    )


def _utc(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)  # both engines store UTC


def _not_before(at: datetime | None) -> datetime:
    """Now, but never before ``at`` (the last entry's time): time follows seq even when
    the clock steps back, so a checkpoint's time splits the chain cleanly."""
    now = datetime.now(UTC)
    return max(now, at) if at is not None else now


async def append(event: AccessEvent) -> uuid.UUID:
    """Append one entry and return its id.

    Joins the caller's transaction when there is one, so a data change and its log
    entry commit (or roll back) together; the organisation's head row stays locked
    until then. On SQLite, open that outer transaction with ``database.transaction``
    (immediate), or a lock upgrade can fail with "database is locked".

    An unknown action or outcome raises ValueError (a programming error mypy already
    catches); overlong or unstorable strings are trimmed to fit, never refused.
    """
    return (await append_many([event]))[0]


async def append_many(events: list[AccessEvent]) -> list[uuid.UUID]:
    """Append entries of one organisation under one lock and one insert (a list read
    that shows many data subjects logs one entry per subject, in order).

    Never refused for the state of the log: over a head the region did not seal, the
    region's alarm entry goes first (``_extend``), and these entries after it."""
    if not events:
        return []
    org_id = events[0].org_id
    for event in events:
        if event.org_id != org_id:
            raise ValueError("append_many takes entries of one organisation")
        if event.action not in ACTIONS:
            raise ValueError(f"unknown access-log action {event.action!r}")
        if event.outcome not in OUTCOMES:
            raise ValueError(f"unknown access-log outcome {event.outcome!r}")
    engine = _engine()
    sealer = seal.current_sealer()
    if sealer is not None and not sealer.certified:
        await sealer.certify()  # once per process; outside the lock
    async with database.transaction(engine):
        head = await _lock_head(engine, org_id)
        records = await _extend(engine, head, events)
    metrics.access_log_appends.add(len(records))
    return [r.id for r in records]


async def _extend(
    engine: Engine[Any], head: _Locked, events: Sequence[AccessEvent], *, pruned: tuple[int, str] | None = None
) -> list[EntryRecord]:
    """Under the head's lock: append ``events`` after ``head``, move the head to the
    last of them (and its retention point to ``pruned``), seal it, and return the
    entries written for ``events``.

    When this process seals heads, the head it extends must carry the region's seal
    (``HeadSealer.vet``); if not, an alarm entry (``alarm.py``) goes first, so the
    finding stays in the chain under the new seal, and the events are appended all the
    same: the reads they log happened."""
    org_id = head.row.org_id
    sealer = seal.current_sealer()
    finding = await sealer.vet(head.row) if sealer is not None else None
    if finding is not None:
        log.error(
            "access log of org %s: the chain head at #%d is not sealed by the region (%s); recorded as entry #%d",
            org_id,
            head.row.seq,
            finding.code,
            head.row.seq + 1,
        )
        events = [alarm.event(org_id, head.row.seq, finding, events[0].source), *events]
    records: list[EntryRecord] = []
    last_seq, last_hash = head.row.seq, head.row.entry_hash
    now = _not_before(head.at)  # taken under the lock, so time follows seq
    for event in events:
        unhashed = EntryRecord(
            id=uuid.uuid4(),
            org_id=org_id,
            seq=last_seq + 1,
            at=now,
            actor=_bounded(event.actor, AccessLogEntry.actor),
            actor_role=_bounded(event.actor_role, AccessLogEntry.actor_role),
            on_behalf_of=_bounded(event.on_behalf_of or event.actor, AccessLogEntry.on_behalf_of),
            subject_ref=_bounded(event.subject_ref, AccessLogEntry.subject_ref),
            action=event.action,
            object_type=_bounded(event.object_type, AccessLogEntry.object_type),
            object_id=_bounded(event.object_id, AccessLogEntry.object_id),
            source_address=_bounded(event.source_address, AccessLogEntry.source_address),
            outcome=event.outcome,
            purpose=_bounded(event.purpose, AccessLogEntry.purpose),
            source=_bounded(event.source, AccessLogEntry.source),
            prev_hash=last_hash,
            entry_hash="",
        )
        record = msgspec.structs.replace(unhashed, entry_hash=chain.entry_hash(unhashed))
        records.append(record)
        last_seq, last_hash = record.seq, record.entry_hash
    await _insert(engine, records)
    pruned_seq, pruned_hash = pruned if pruned is not None else (head.row.pruned_seq, head.row.pruned_hash)
    sealed = ("", "")
    if sealer is not None:
        sealed = sealer.seal(seal.head_state(org_id, last_seq, last_hash, pruned_seq, pruned_hash))
    await AccessLogHead.update(
        {
            AccessLogHead.seq: last_seq,
            AccessLogHead.entry_hash: last_hash,
            AccessLogHead.pruned_seq: pruned_seq,
            AccessLogHead.pruned_hash: pruned_hash,
            AccessLogHead.at: now,
            AccessLogHead.seal_key: sealed[0],
            AccessLogHead.seal: sealed[1],
        }
    ).where(AccessLogHead.org_id == org_id)
    return records[1:] if finding is not None else records


_COLUMN_NAMES = tuple(column._meta.db_column_name for column in _ENTRY_COLUMNS)
_ARRAY_TYPES = {"id": "uuid", "org_id": "uuid", "seq": "bigint", "at": "timestamptz"}
# PostgreSQL: one INSERT of column arrays. Building a piccolo row object per entry cost
# about 0.2 ms each, which dominated large appends (a purge logs one entry per visit).
_UNNEST_INSERT = "INSERT INTO access_log_entry ({}) SELECT * FROM unnest({})".format(  # noqa: S608 - fixed names
    ", ".join(_COLUMN_NAMES),
    ", ".join("{}::" + _ARRAY_TYPES.get(name, "text") + "[]" for name in _COLUMN_NAMES),
)


async def _insert(engine: Engine[Any], records: list[EntryRecord]) -> None:
    if database.is_postgres(engine):
        await AccessLogEntry.raw(
            _UNNEST_INSERT, *([getattr(record, name) for record in records] for name in _COLUMN_NAMES)
        )
        return
    for start in range(0, len(records), SQLITE_ROWS_PER_INSERT):
        chunk = records[start : start + SQLITE_ROWS_PER_INSERT]
        await AccessLogEntry.insert(*(AccessLogEntry(**msgspec.structs.asdict(r)) for r in chunk))


# --- reading -----------------------------------------------------------------------


@functools.cache
def _walk_sql(*, first: bool, after: bool, upto: bool) -> str:
    """One batch of the walk as fixed PostgreSQL SQL: the same rows, order and bounds as
    the piccolo query of ``_batches`` (``$1`` the organisation, then the bounds, the
    batch size last)."""
    args = iter(range(2, 7))
    where = ["org_id = $1"]
    if first:
        if after:
            where.append(f"seq > ${next(args)}")
    else:
        seq, id_ = next(args), next(args)
        where.append(f"seq >= ${seq} AND (seq > ${seq} OR (seq = ${seq} AND id > ${id_}))")
    if upto:
        where.append(f"seq <= ${next(args)}")
    return (
        f"SELECT {', '.join(_COLUMN_NAMES)} FROM access_log_entry "  # noqa: S608 - fixed names, values are parameters
        f"WHERE {' AND '.join(where)} ORDER BY seq, id LIMIT ${next(args)}"
    )


# An entry as the walk reads it: its values in ``EntryRecord``'s field order
# (``chain.ENTRY_FIELDS``, which ``_COLUMN_NAMES`` follows); an asyncpg record on PostgreSQL.
Row = Sequence[Any]
if _COLUMN_NAMES != chain.ENTRY_FIELDS:
    raise AssertionError("access_log_entry's columns are read in EntryRecord's field order")
_SEQ, _ID = chain.ENTRY_FIELDS.index("seq"), chain.ENTRY_FIELDS.index("id")
_PREV_HASH, _ENTRY_HASH = chain.ENTRY_FIELDS.index("prev_hash"), chain.ENTRY_FIELDS.index("entry_hash")


def _from_row(row: Row) -> EntryRecord:
    """The entry of a row (asyncpg gives UUIDs, ints and datetimes already, as piccolo does)."""
    return EntryRecord(
        id=row[0],
        org_id=row[1],
        seq=row[2],
        at=row[3],
        actor=row[4],
        actor_role=row[5],
        on_behalf_of=row[6],
        subject_ref=row[7],
        action=row[8],
        object_type=row[9],
        object_id=row[10],
        source_address=row[11],
        outcome=row[12],
        purpose=row[13],
        source=row[14],
        prev_hash=row[15],
        entry_hash=row[16],
    )


async def _pg_rows(
    engine: Engine[Any], org_id: uuid.UUID, *, after_seq: int | None, upto_seq: int | None, batch_size: int
) -> AsyncIterator[Sequence[Row]]:
    """``_rows`` on PostgreSQL: fixed SQL read with asyncpg directly. A chain walk reads
    a million rows; piccolo's query building, a dict and an ``EntryRecord`` per row
    cost about a third of its Python time (bench/README.md, report)."""
    last: tuple[int, uuid.UUID] | None = None
    while True:
        args: list[Any] = [org_id]
        if last is None:
            if after_seq is not None:
                args.append(after_seq)
        else:
            args += last
        if upto_seq is not None:
            args.append(upto_seq)
        sql = _walk_sql(first=last is None, after=after_seq is not None, upto=upto_seq is not None)
        rows = await database.fetch_records(engine, sql, *args, batch_size)
        if not rows:
            return
        yield rows
        if len(rows) < batch_size:
            return
        last = (rows[-1][_SEQ], rows[-1][_ID])


async def _rows(
    org_id: uuid.UUID, *, after_seq: int | None, upto_seq: int | None, batch_size: int
) -> AsyncIterator[Sequence[Row]]:
    """``_batches`` as rows: what a chain walk reads, making an ``EntryRecord`` only of
    an entry it has to look at more closely."""
    engine = _engine()
    if database.is_postgres(engine):
        async for rows in _pg_rows(engine, org_id, after_seq=after_seq, upto_seq=upto_seq, batch_size=batch_size):
            yield rows
        return
    async for batch in _batches(org_id, after_seq=after_seq, upto_seq=upto_seq, batch_size=batch_size):
        yield [msgspec.structs.astuple(record) for record in batch]


async def _batches(
    org_id: uuid.UUID, *, after_seq: int | None, upto_seq: int | None, batch_size: int
) -> AsyncIterator[list[EntryRecord]]:
    """Entries in (seq, id) order, one batch at a time. Paging on (seq, id) rather than
    seq alone keeps a tampered log with duplicate seq numbers from skipping rows."""
    engine = _engine()
    if database.is_postgres(engine):
        async for found in _pg_rows(engine, org_id, after_seq=after_seq, upto_seq=upto_seq, batch_size=batch_size):
            yield [_from_row(row) for row in found]
        return
    last: tuple[int, uuid.UUID] | None = None
    while True:
        where: Combinable = AccessLogEntry.org_id == org_id
        if last is None:
            if after_seq is not None:
                where &= AccessLogEntry.seq > after_seq
        else:
            # ``seq >= last`` on its own too: the OR alone is no index range, and each batch
            # would scan the chain from its start (minutes on a million entries).
            where &= (AccessLogEntry.seq >= last[0]) & (
                (AccessLogEntry.seq > last[0]) | ((AccessLogEntry.seq == last[0]) & (AccessLogEntry.id > last[1]))
            )
        if upto_seq is not None:
            where &= AccessLogEntry.seq <= upto_seq
        rows = await (
            AccessLogEntry.select(*_ENTRY_COLUMNS)
            .where(where)
            .order_by(AccessLogEntry.seq, AccessLogEntry.id)
            .limit(batch_size)
        )
        if not rows:
            return
        batch = [_record(row) for row in rows]
        yield batch
        if len(rows) < batch_size:
            return
        last = (batch[-1].seq, batch[-1].id)


async def iter_entries(
    org_id: uuid.UUID, *, after_seq: int = 0, upto_seq: int | None = None, batch_size: int = 1000
) -> AsyncIterator[EntryRecord]:
    """All entries of an organisation in chain order, fetched ``batch_size`` at a time."""
    async for batch in _batches(org_id, after_seq=after_seq, upto_seq=upto_seq, batch_size=batch_size):
        for record in batch:
            yield record


async def entries(
    org_id: uuid.UUID, limit: int = 100, *, after_seq: int = 0, subject_ref: str | None = None
) -> list[EntryRecord]:
    """Up to ``limit`` entries after ``after_seq`` in chain order (page on the last seq),
    optionally only those about one data subject ("who accessed my data")."""
    where: Combinable = (AccessLogEntry.org_id == org_id) & (AccessLogEntry.seq > after_seq)
    if subject_ref is not None:
        where &= AccessLogEntry.subject_ref == subject_ref
    rows = await (
        AccessLogEntry.select(*_ENTRY_COLUMNS).where(where).order_by(AccessLogEntry.seq, AccessLogEntry.id).limit(limit)
    )
    return [_record(row) for row in rows]


async def page(
    org_id: uuid.UUID,
    *,
    limit: int,
    before_seq: int | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    subject: str | None = None,
) -> list[EntryRecord]:
    """The newest ``limit`` entries (before ``before_seq``), newest first, filtered by
    outcome, time (``since`` inclusive, ``until`` exclusive), actor and data subject
    (see ``_filter``): the organisation's view."""
    where = _filter(org_id, outcome, since, until, actor, subject)
    if before_seq is not None:
        where &= AccessLogEntry.seq < before_seq
    rows = await (
        AccessLogEntry.select(*_ENTRY_COLUMNS)
        .where(where)
        .order_by(AccessLogEntry.seq, AccessLogEntry.id, ascending=False)
        .limit(limit)
    )
    return [_record(row) for row in rows]


async def count(
    org_id: uuid.UUID,
    *,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    subject: str | None = None,
) -> int:
    return int(await AccessLogEntry.count().where(_filter(org_id, outcome, since, until, actor, subject)))


def _filter(
    org_id: uuid.UUID,
    outcome: str | None,
    since: datetime | None,
    until: datetime | None,
    actor: str | None = None,
    subject: str | None = None,
) -> Combinable:
    """``actor``: a reference (``member:<id>``, ``token:<id>``, ``anonymous``), or one
    ending in ``*`` for every actor it begins (``visitor:*``, ``system*``). ``subject``:
    a data subject's reference (``visit:<id>``), or an id or its beginning, of any kind
    of subject (visit, member, request, payment). Both are checked at the edge to hold
    no LIKE wildcards of their own (``FILTER_PATTERN``)."""
    where: Combinable = AccessLogEntry.org_id == org_id
    if outcome is not None:
        where &= AccessLogEntry.outcome == outcome
    if since is not None:
        where &= AccessLogEntry.at >= since
    if until is not None:
        where &= AccessLogEntry.at < until
    if actor:
        if actor.endswith("*"):
            where &= AccessLogEntry.actor.like(actor[:-1] + "%")
        else:
            where &= AccessLogEntry.actor == actor
    if subject:
        if ":" in subject:
            where &= AccessLogEntry.subject_ref == subject
        else:
            where &= AccessLogEntry.subject_ref.like(f"%:{subject}%")
    return where


# --- verifying ---------------------------------------------------------------------


async def _head(org_id: uuid.UUID) -> tuple[int, str] | None:
    rows = await AccessLogHead.select(AccessLogHead.seq, AccessLogHead.entry_hash).where(AccessLogHead.org_id == org_id)
    return (int(rows[0]["seq"]), str(rows[0]["entry_hash"])) if rows else None


async def _pruned_point(org_id: uuid.UUID) -> tuple[int, str]:
    """The last entry removed by retention and its hash (0 and genesis: none)."""
    rows = await AccessLogHead.select(AccessLogHead.pruned_seq, AccessLogHead.pruned_hash).where(
        AccessLogHead.org_id == org_id
    )
    return (int(rows[0]["pruned_seq"]), str(rows[0]["pruned_hash"])) if rows else (0, GENESIS_HASH)


async def _find(
    org_id: uuid.UUID, *, entry_hash: str | None = None, prev_hash: str | None = None
) -> EntryRecord | None:
    """The entry carrying a given hash, or following a given hash (tampered case only:
    these columns are not indexed)."""
    where: Combinable = AccessLogEntry.org_id == org_id
    if entry_hash is not None:
        where &= AccessLogEntry.entry_hash == entry_hash
    if prev_hash is not None:
        where &= AccessLogEntry.prev_hash == prev_hash
    rows = await AccessLogEntry.select(*_ENTRY_COLUMNS).where(where).order_by(AccessLogEntry.seq).limit(1)
    return _record(rows[0]) if rows else None


async def _is_in_chain(org_id: uuid.UUID, hash_: str) -> bool:
    """Whether some entry of the log (or the genesis) carries this hash."""
    return hash_ == GENESIS_HASH or await _find(org_id, entry_hash=hash_) is not None


async def _seq_bound(org_id: uuid.UUID, head_seq: int) -> int:
    """How far an entry's original seq can lie: no further than the appends counted."""
    count = await AccessLogEntry.count().where(AccessLogEntry.org_id == org_id)
    return max(head_seq, int(count))


def _missing(first: int, last: int) -> str:
    return f"entry #{first} is missing" if first == last else f"entries #{first} to #{last} are missing"


def _intact(row: Row, seq: int, prev_hash: str) -> bool:
    """The common case of ``_check``, decided on the row without a coroutine: it is
    entry #seq, follows ``prev_hash`` and hashes to its stored hash. When not,
    ``_check`` (on its ``EntryRecord``) says what is wrong."""
    return bool(row[_SEQ] == seq and row[_PREV_HASH] == prev_hash and chain.row_hash(row) == row[_ENTRY_HASH])


async def _check(org_id: uuid.UUID, record: EntryRecord, seq: int, prev_hash: str, head_seq: int) -> Problem | None:
    """Whether ``record``, next in (seq, id) order, is entry #seq following ``prev_hash``."""
    if record.seq > seq:
        # Entry #seq is not where it belongs. Its true successor in the chain would say so.
        moved = await _find(org_id, prev_hash=prev_hash)
        if moved is not None:
            return Problem(
                seq=seq,
                entry_id=moved.id,
                kind="reordered",
                detail=f"it is stored as #{moved.seq}",
            )
        return Problem(
            seq=seq,
            entry_id=None,
            kind="deleted",
            detail=f"{_missing(seq, record.seq - 1)}; the log continues at #{record.seq} (id {record.id})",
        )

    if chain.entry_hash(record) != record.entry_hash:
        # Content edited, or an intact entry moved to another seq? Only the latter
        # hashes correctly at some other position.
        bound = await _seq_bound(org_id, head_seq)
        original = await asyncio.to_thread(chain.original_seq, record, bound)
        if original is None:
            return Problem(
                seq=seq,
                entry_id=record.id,
                kind="modified",
                detail="its content no longer matches its hash",
            )
        if record.prev_hash == prev_hash:
            return Problem(
                seq=seq,
                entry_id=record.id,
                kind="modified",
                detail=f"its sequence number was changed from #{original} to #{record.seq}",
            )
        if await _is_in_chain(org_id, record.prev_hash):
            return Problem(
                seq=seq,
                entry_id=record.id,
                kind="reordered",
                detail=f"it is entry #{original} of the chain, stored as #{record.seq}",
            )
        return Problem(
            seq=seq,
            entry_id=record.id,
            kind="deleted",
            detail=f"it is entry #{original} of the chain, renumbered to #{record.seq} "
            "after the entries before it were deleted",
        )

    if record.prev_hash != prev_hash:
        # Consistent by itself (re-hashed after the fact) but not linked to its predecessor.
        if await _is_in_chain(org_id, record.prev_hash):
            return Problem(
                seq=seq,
                entry_id=record.id,
                kind="reordered",
                detail=f"it does not follow entry #{seq - 1} but another entry of the log",
            )
        return Problem(
            seq=seq,
            entry_id=record.id,
            kind="deleted",
            detail=f"the entry it followed is missing before #{seq}",
        )

    if record.seq < seq:  # a second, self-consistent entry with a seq already seen
        return Problem(seq=seq, entry_id=record.id, kind="modified", detail=f"it repeats sequence number #{record.seq}")
    return None


async def verify(
    org_id: uuid.UUID,
    *,
    batch_size: int = 1000,
    key_set: KeySet | None = None,
    checkpoints: Sequence[Checkpoint] = (),
    walked: Walked | None = None,
) -> VerifyReport:
    """Walk the organisation's chain in seq order, batch by batch, and report the first
    problem: an entry modified, deleted or reordered, or a head that does not match.

    Reads the head first and checks entries up to it: an append commits its entry and
    the head together, so entries appended while verifying do not count as tampering.
    A retention purge that removes old entries meanwhile moves the head's pruned point:
    the walk then starts again from there (a few times at most).

    The chain alone shows changes made beside the service. Two more checks catch a
    chain rewritten consistently, head included:

    - with ``key_set`` (the region's published keys), the head must carry the region's
      seal (``seal.py``): a head written straight into the database has none;
    - with ``checkpoints`` (signed by the region; the caller has checked their
      signatures, ``checkpoints.py``), the log must *extend* each one: entry #seq still
      hashes to the signed hash (so no entry up to it changed: the walk recomputes every
      hash from the retention point on), the log reaches that far, and no entry after
      it is dated before it or before the entry it follows.

    And with or without them: an entry in which the region recorded that it found the
    head tampered with, when an append was about to extend it (``alarm.py``), fails the
    log for good, although the chain and the seal written since hold (``alarms``; the
    walk goes on past it, so a later problem is still named).

    ``walked``: a walk of this chain made moments earlier by the caller's own job (a
    report's checkpoint, ``checkpoints.make_report_checkpoint``). It stands in for the
    entries it covers only when it started exactly where this walk starts (the head's
    retention point as read now) and the head has not gone back before its end, no
    checkpoint is to be compared and nothing is stored at or before the retention
    point; then only the entries after it are walked, from its end hash, and the alarm
    entries it found count as found here. Otherwise (a walk since an earlier
    checkpoint, a retention purge in between) the whole chain is walked as without it.
    What it does not see: an entry changed in the seconds between the two walks, which
    the signed checkpoint of the first one then shows.
    """
    for _ in range(3):
        pruned_before = await _pruned_point(org_id)
        report = await _verify_once(org_id, batch_size, key_set, checkpoints, walked)
        if report.ok or await _pruned_point(org_id) == pruned_before:
            return report
    return report


async def head_row(org_id: uuid.UUID) -> HeadRow | None:
    """The organisation's head, read in one go (its seal covers all of it)."""
    rows = await AccessLogHead.select(
        AccessLogHead.seq,
        AccessLogHead.entry_hash,
        AccessLogHead.pruned_seq,
        AccessLogHead.pruned_hash,
        AccessLogHead.seal_key,
        AccessLogHead.seal,
    ).where(AccessLogHead.org_id == org_id)
    return _head_row(org_id, rows[0]) if rows else None


def _failed(problem: Problem, checked: int, pruned: int) -> VerifyReport:
    return VerifyReport(ok=False, checked=checked, problem=problem, pruned=pruned)


async def _walked_from_start(
    org_id: uuid.UUID, walked: Walked | None, head: HeadRow | None, checkpoints: Sequence[Checkpoint]
) -> Walked | None:
    """``walked`` when it covers the chain from where verification starts now (see
    ``verify``), else None (walk it all)."""
    if walked is None or head is None or checkpoints or walked.org_id != org_id:
        return None
    if (walked.from_seq, walked.from_hash) != (head.pruned_seq, head.pruned_hash) or walked.upto_seq > head.seq:
        return None
    # The walk it stands for had a lower bound (seq > from_seq); the full walk has none
    # when nothing was pruned. Anything stored there sends it the full way, to be named.
    stray = await AccessLogEntry.count().where(
        (AccessLogEntry.org_id == org_id) & (AccessLogEntry.seq <= walked.from_seq)
    )
    return walked if not stray else None


async def _verify_once(
    org_id: uuid.UUID,
    batch_size: int,
    key_set: KeySet | None,
    checkpoints: Sequence[Checkpoint],
    walked: Walked | None = None,
) -> VerifyReport:
    head = await head_row(org_id)
    head_seq = head.seq if head is not None else 0
    pruned, pruned_hash = (head.pruned_seq, head.pruned_hash) if head is not None else (0, GENESIS_HASH)
    problem = await _check_pruned_range(org_id, pruned, head_seq)
    if problem is not None:
        return _failed(problem, 0, pruned)
    pending = sorted(checkpoints, key=lambda c: c.seq)
    problem = _checkpoints_removed(pending, pruned, pruned_hash)
    if problem is not None:
        return _failed(problem, 0, pruned)
    passed = [c for c in pending if c.seq <= pruned]
    pending = [c for c in pending if c.seq > pruned]
    seq, prev_hash, checked = pruned + 1, pruned_hash, 0
    last_retention_note: str | None = None
    alarms: list[Problem] = []
    upto = head.seq if head is not None else None
    after = pruned or None  # entries up to the pruned point were removed by retention
    done = await _walked_from_start(org_id, walked, head, checkpoints)
    if done is not None:  # the caller's walk showed these entries intact moments ago
        seq, prev_hash, checked = done.upto_seq + 1, done.upto_hash, done.upto_seq - pruned
        last_retention_note, after = done.retention_note, done.upto_seq
        alarms.extend(_alarm_problem(record) for record in done.alarms)
    last_row: Row | None = None
    async for rows in _rows(org_id, after_seq=after, upto_seq=upto, batch_size=batch_size):
        for row in rows:
            problem = None  # the common case, decided on the row
            if not _intact(row, seq, prev_hash):
                problem = await _check(org_id, _from_row(row), seq, prev_hash, head_seq)
            if problem is None and (pending or passed):
                previous = _from_row(last_row) if last_row is not None else None
                problem = _against_checkpoints(_from_row(row), pending, passed, previous)
            if problem is not None:
                return msgspec.structs.replace(_failed(problem, checked, pruned), alarms=alarms)
            checked += 1
            seq += 1
            prev_hash = row[_ENTRY_HASH]
            last_row = row
            if _is_retention_note(row):
                last_retention_note = row[_OBJECT_ID]
            if _is_alarm_row(row):
                alarms.append(_alarm_problem(_from_row(row)))
    last = _from_row(last_row) if last_row is not None else None

    head_pair = (head.seq, head.entry_hash) if head is not None else None
    report = await _check_head(org_id, head_pair, seq, prev_hash, checked, last)
    if report.ok and pruned and not (last_retention_note or "").endswith(_pruned_mark(pruned, pruned_hash)):
        report = _failed(
            Problem(
                seq=pruned,
                entry_id=None,
                kind="modified",
                detail=f"the chain head says entries #1 to #{pruned} were removed by retention, "
                "but the chain's last retention entry does not record that point",
            ),
            checked,
            pruned,
        )
    if report.ok and pending:
        checkpoint = pending[0]
        report = _failed(
            Problem(
                seq=seq,
                entry_id=None,
                kind="deleted",
                detail=f"{_missing(seq, checkpoint.seq)}: the log now ends at #{seq - 1}, but the region's "
                f"checkpoint of {checkpoint.at} covers it up to #{checkpoint.seq}",
            ),
            checked,
            pruned,
        )
    sealed = False
    if report.ok and key_set is not None and head is not None:
        unsealed = seal.check(head, key_set)
        if unsealed is not None:
            report = _failed(Problem(seq=head.seq, entry_id=None, kind="rewritten", detail=unsealed), checked, pruned)
        sealed = unsealed is None
    report = msgspec.structs.replace(
        report,
        pruned=pruned,
        sealed=sealed,
        extends=passed if report.ok else [],
        alarms=alarms,
        taken_from_walk=done.upto_seq - pruned if done is not None else 0,
    )
    if report.ok and alarms:
        # The chain, the head and the checkpoints hold now, but the region recorded that
        # it found the head tampered with: that does not heal.
        report = msgspec.structs.replace(report, ok=False, problem=alarms[0])
    return report


def _is_alarm_row(row: Any) -> bool:
    return bool(row[_OBJECT_TYPE] == alarm.OBJECT_TYPE and alarm.is_alarm(_from_row(row)))


def _alarm_problem(record: EntryRecord) -> Problem:
    named = alarm.head_seq(record)
    return Problem(
        seq=named if named is not None else record.seq,
        entry_id=record.id,
        kind="tampered",
        detail=alarm.describe(record),
    )


def _checkpoints_removed(pending: list[Checkpoint], pruned: int, pruned_hash: str) -> Problem | None:
    """Checkpoints at or before the retention point: the entry at the point itself is
    known by its hash; anything before it is gone and cannot be compared any more."""
    for checkpoint in pending:
        if checkpoint.seq == 0 or checkpoint.seq > pruned:
            continue
        if checkpoint.seq < pruned:
            return Problem(
                seq=checkpoint.seq,
                entry_id=None,
                kind="uncheckable",
                detail=f"retention has removed entries #1 to #{pruned} since the checkpoint of {checkpoint.at} "
                "was made, so it can no longer be compared; compare with a newer checkpoint",
            )
        if checkpoint.head_hash != pruned_hash:
            return Problem(
                seq=pruned,
                entry_id=None,
                kind="rewritten",
                detail=f"the last entry retention removed does not have the hash the region signed in its "
                f"checkpoint of {checkpoint.at}",
            )
    return None


def _against_checkpoints(
    record: EntryRecord, pending: list[Checkpoint], passed: list[Checkpoint], previous: EntryRecord | None
) -> Problem | None:
    """``record`` (already shown to follow the chain) against the checkpoints: it must
    carry the signed hash at a checkpoint's seq; after one, time must not go back."""
    if passed:
        at, since = _utc(record.at), passed[-1]
        assert at is not None
        if at < since.moment:
            return Problem(
                seq=record.seq,
                entry_id=record.id,
                kind="forged",
                detail=f"it is dated {format_time(at)}, before the region's checkpoint of {since.at} "
                f"that it follows (#{since.seq}): it was written later, with a false date",
            )
        before = _utc(previous.at) if previous is not None and previous.seq > since.seq else None
        if before is not None and at < before:
            return Problem(
                seq=record.seq,
                entry_id=record.id,
                kind="forged",
                detail=f"it is dated {format_time(at)}, before the entry it follows ({format_time(before)}), "
                f"although it was written after the region's checkpoint of {since.at}",
            )
    while pending and pending[0].seq == record.seq:
        checkpoint = pending.pop(0)
        if record.entry_hash != checkpoint.head_hash:
            return Problem(
                seq=record.seq,
                entry_id=record.id,
                kind="rewritten",
                detail=f"it no longer has the hash the region signed in its checkpoint of {checkpoint.at}: "
                "entries up to it were changed and the chain re-hashed",
            )
        passed.append(checkpoint)
    return None


async def locked_head(org_id: uuid.UUID) -> tuple[HeadRow, datetime] | None:
    """The head as a checkpoint signs it: read under the append lock, with a time that
    no entry up to it is dated after. The head keeps that time as the earliest the next
    entry may carry, so no later entry is dated before it even if the clock steps back."""
    engine = _engine()
    async with database.transaction(engine):
        query = AccessLogHead.select(AccessLogHead.at).where(AccessLogHead.org_id == org_id)
        if database.is_postgres(engine):
            query = query.lock_rows("UPDATE")
        rows = await query
        if not rows:
            return None
        at = _not_before(_utc(rows[0]["at"]))
        head = await head_row(org_id)
        assert head is not None
        await AccessLogHead.update({AccessLogHead.at: at}).where(AccessLogHead.org_id == org_id)
    return head, at


async def extends(
    org_id: uuid.UUID, *, from_seq: int, from_hash: str, upto_seq: int, upto_hash: str, batch_size: int = WALK_BATCH
) -> Problem | None:
    """Whether entries #from_seq+1 to #upto_seq follow ``from_hash``, each intact, and
    end at ``upto_hash``: the part a new checkpoint adds to the one before it (which
    already vouches for everything up to ``from_seq``)."""
    walked = await walk(
        org_id, from_seq=from_seq, from_hash=from_hash, upto_seq=upto_seq, upto_hash=upto_hash, batch_size=batch_size
    )
    return walked if isinstance(walked, Problem) else None


async def walk(
    org_id: uuid.UUID, *, from_seq: int, from_hash: str, upto_seq: int, upto_hash: str, batch_size: int = WALK_BATCH
) -> Walked | Problem:
    """``extends``, returning what the walk showed (``Walked``, which ``verify`` can
    build on) or the first problem."""
    seq, prev_hash = from_seq + 1, from_hash
    retention_note: str | None = None
    alarms: list[EntryRecord] = []
    async for rows in _rows(org_id, after_seq=from_seq, upto_seq=upto_seq, batch_size=batch_size):
        for row in rows:
            if not _intact(row, seq, prev_hash):
                problem = await _check(org_id, _from_row(row), seq, prev_hash, upto_seq)
                if problem is not None:
                    return problem
            seq, prev_hash = seq + 1, row[_ENTRY_HASH]
            if _is_retention_note(row):
                retention_note = row[_OBJECT_ID]
            if _is_alarm_row(row):
                alarms.append(_from_row(row))
    if seq <= upto_seq:
        return Problem(seq=seq, entry_id=None, kind="deleted", detail=f"{_missing(seq, upto_seq)} before the head")
    if prev_hash != upto_hash:
        return Problem(
            seq=upto_seq,
            entry_id=None,
            kind="modified",
            detail="the chain head records a different hash for the last entry",
        )
    return Walked(
        org_id=org_id,
        from_seq=from_seq,
        from_hash=from_hash,
        upto_seq=upto_seq,
        upto_hash=upto_hash,
        retention_note=retention_note,
        alarms=alarms,
    )


async def _check_pruned_range(org_id: uuid.UUID, pruned: int, head_seq: int) -> Problem | None:
    """Nothing may lie in the range retention removed, nor the range beyond the head."""
    if pruned > head_seq:
        return Problem(
            seq=pruned,
            entry_id=None,
            kind="modified",
            detail=f"the chain head's retention point #{pruned} lies beyond its last entry #{head_seq}",
        )
    if not pruned:
        return None
    rows = (
        await AccessLogEntry.select(AccessLogEntry.id, AccessLogEntry.seq)
        .where((AccessLogEntry.org_id == org_id) & (AccessLogEntry.seq <= pruned))
        .order_by(AccessLogEntry.seq)
        .limit(1)
    )
    if not rows:
        return None
    return Problem(
        seq=int(rows[0]["seq"]),
        entry_id=uuid.UUID(str(rows[0]["id"])),
        kind="modified",
        detail=f"it lies in the range #1 to #{pruned} that retention removed: the head's retention point was moved",
    )


async def _check_head(
    org_id: uuid.UUID, head: tuple[int, str] | None, seq: int, prev_hash: str, checked: int, last: EntryRecord | None
) -> VerifyReport:
    """After the walk: the head must record exactly where the chain ended."""
    head_seq = head[0] if head is not None else 0
    if head is None:
        if last is None:
            return VerifyReport(ok=True, checked=0)
        return VerifyReport(
            ok=False,
            checked=checked,
            problem=Problem(
                seq=last.seq + 1,
                entry_id=None,
                kind="deleted",
                detail="the chain head record is missing, so deleted entries at the end cannot be ruled out",
            ),
        )
    if head_seq >= seq:
        return VerifyReport(
            ok=False,
            checked=checked,
            problem=Problem(
                seq=seq,
                entry_id=None,
                kind="deleted",
                detail=f"{_missing(seq, head_seq)} at the end; the chain head records {head_seq} entries",
            ),
        )
    if head[1] != prev_hash:
        return VerifyReport(
            ok=False,
            checked=checked,
            problem=Problem(
                seq=head_seq,
                entry_id=last.id if last is not None else None,
                kind="modified",
                detail="the chain head records a different hash for the last entry",
            ),
        )
    beyond = await _beyond_head(org_id, head_seq)
    if beyond is not None:
        return VerifyReport(
            ok=False,
            checked=checked,
            problem=Problem(
                seq=beyond.seq,
                entry_id=beyond.id,
                kind="modified",
                detail="it lies beyond the chain head: it was written outside the log service, "
                "or the head was rolled back",
            ),
        )
    return VerifyReport(ok=True, checked=checked)


async def _beyond_head(org_id: uuid.UUID, head_seq: int) -> EntryRecord | None:
    """The first entry past the head that is not a legitimate append made while verifying."""
    above = (AccessLogEntry.org_id == org_id) & (AccessLogEntry.seq > head_seq)
    rows = (
        await AccessLogEntry.select(AccessLogEntry.seq)
        .where(above)
        .order_by(AccessLogEntry.seq, ascending=False)
        .limit(1)
    )
    if not rows:
        return None
    # Read after the entries: an append commits its entry and the head together.
    now = await _head(org_id)
    now_seq = now[0] if now is not None else 0
    if now_seq >= int(rows[0]["seq"]):
        return None
    rows = await (
        AccessLogEntry.select(*_ENTRY_COLUMNS)
        .where((AccessLogEntry.org_id == org_id) & (AccessLogEntry.seq > now_seq))
        .order_by(AccessLogEntry.seq, AccessLogEntry.id)
        .limit(1)
    )
    return _record(rows[0]) if rows else None


# --- retention ----------------------------------------------------------------------


RETENTION_ACTOR = "system:retention"


def _pruned_mark(seq: int, hash_: str) -> str:
    return f"upto:{seq}:{hash_[:32]}"


_ACTOR, _ACTION = chain.ENTRY_FIELDS.index("actor"), chain.ENTRY_FIELDS.index("action")
_OBJECT_TYPE, _OBJECT_ID = chain.ENTRY_FIELDS.index("object_type"), chain.ENTRY_FIELDS.index("object_id")


def _is_retention_note(row: Row) -> bool:
    return bool(row[_ACTOR] == RETENTION_ACTOR and row[_ACTION] == "delete" and row[_OBJECT_TYPE] == "access_log_entry")


async def prune(org_id: uuid.UUID, before: datetime, *, limit: int, reference: str, source: str) -> int:
    """Remove up to ``limit`` of the organisation's oldest entries written before
    ``before`` (docs/promises.md, retention table: the access log is kept at least 6
    years), and return how many went.

    Only a leading run of the chain goes, and only if it is intact: each entry must
    hash correctly and follow the one before it, starting from the last pruned point,
    and nothing else may be left at or below the new point. Otherwise this batch
    removes nothing (``PruneRefused``): retention stops before the first entry that is
    not intact and never erases the evidence of tampering. In the same transaction the
    head records the new pruned point, and the chain gets an entry saying so
    (``count:<n>;upto:<seq>:<hash prefix>``), which ``verify`` checks the head against.
    Joins the caller's transaction when there is one."""
    engine = _engine()
    async with database.transaction(engine):
        head = await _locked_row(engine, org_id)  # appends wait; they touch only the newest entries
        if head is None:
            return 0
        seq, prev_hash = head.row.pruned_seq, head.row.pruned_hash
        candidates = [
            _record(row)
            for row in await AccessLogEntry.select(*_ENTRY_COLUMNS)
            .where((AccessLogEntry.org_id == org_id) & (AccessLogEntry.seq > seq))
            .order_by(AccessLogEntry.seq, AccessLogEntry.id)
            .limit(limit + 1)  # one more: a forged twin of the last one must not slip past
        ]
        doomed: list[EntryRecord] = []
        for record in candidates[:limit]:
            at = record.at if record.at.tzinfo else record.at.replace(tzinfo=UTC)
            if at >= before:
                break
            if record.seq != seq + 1 or record.prev_hash != prev_hash or chain.entry_hash(record) != record.entry_hash:
                raise PruneRefused(f"entry #{seq + 1} of the chain is not intact; run `konsil audit verify`")
            doomed.append(record)
            seq, prev_hash = record.seq, record.entry_hash
        if not doomed:
            return 0
        following = candidates[len(doomed)] if len(candidates) > len(doomed) else None
        if following is not None and following.seq <= seq:
            raise PruneRefused(f"entry #{following.seq} of the chain is not intact; run `konsil audit verify`")
        await AccessLogEntry.delete().where(
            (AccessLogEntry.org_id == org_id) & AccessLogEntry.id.is_in([r.id for r in doomed])
        )
        left = await AccessLogEntry.count().where((AccessLogEntry.org_id == org_id) & (AccessLogEntry.seq <= seq))
        if left:  # rolled back with the transaction
            raise PruneRefused(f"entries at or before #{seq} remain beside the chain; run `konsil audit verify`")
        # The note and the new retention point under one seal, after the head found is
        # checked as any append checks it.
        note = AccessEvent(
            org_id=org_id,
            actor=RETENTION_ACTOR,
            actor_role="system",
            on_behalf_of="system",
            subject_ref=reference,
            action="delete",
            object_type="access_log_entry",
            object_id=f"count:{len(doomed)};{_pruned_mark(seq, prev_hash)}",
            source_address="local",
            outcome="success",
            purpose="retention purge",
            source=source,
        )
        await _extend(engine, head, [note], pruned=(seq, prev_hash))
    return len(doomed)


# PostgreSQL: the organisations whose oldest kept entry was written before the cutoff,
# in one statement (an index probe per chain) instead of one transaction per chain.
_DUE = """
SELECT h.org_id FROM access_log_head h
WHERE (SELECT e.at FROM access_log_entry e WHERE e.org_id = h.org_id AND e.seq > h.pruned_seq
       ORDER BY e.seq LIMIT 1) < {}
ORDER BY h.org_id
"""


async def organisations_due(before: datetime) -> list[uuid.UUID]:
    """The organisations (also those already removed: their log outlives them) whose
    chain may hold entries written before ``before``: on PostgreSQL exactly those whose
    oldest kept entry is; on SQLite (the embedded default, few chains) every chain."""
    if database.is_postgres(_engine()):
        rows = await AccessLogHead.raw(_DUE, before)
    else:
        rows = await AccessLogHead.select(AccessLogHead.org_id).order_by(AccessLogHead.org_id)
    return [uuid.UUID(str(row["org_id"])) for row in rows]
