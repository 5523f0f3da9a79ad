"""The access log: append-only, hash-chained per organisation, and verification names
the first entry that was modified, deleted or reordered behind the service's back.

Every database test runs on the real PostgreSQL region database and on a migrated
SQLite file (the embedded mode); tampering is done with raw SQL, as an intruder would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from piccolo.engine.base import Engine

from konsil.compliance.access_log import chain
from konsil.compliance.access_log.service import (
    AccessEvent,
    PruneRefused,
    VerifyReport,
    Walked,
    append,
    append_many,
    entries,
    head_row,
    iter_entries,
    organisations_due,
    prune,
    verify,
    walk,
)
from konsil.compliance.access_log.tables import ACCESS_LOG_TABLES, AccessLogEntry, AccessLogHead
from konsil.platform.cli.audit import format_report
from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core import database
from tests.conftest import bindings_restored


@pytest.fixture(scope="session")
async def pg_region_engine(pg_database: Callable[[str, str], str]) -> AsyncIterator[Engine[Any]]:
    """A migrated PostgreSQL region database of our own.

    The shared ``region_engine`` fixture cannot be used yet: it migrates from inside the
    running event loop and ``migrate_target`` calls ``asyncio.run``. Migrating in a
    worker thread avoids that; drop this fixture for ``region_engine`` once it does too.
    """
    engine = database.engine_for(await asyncio.to_thread(pg_database, "access_log_region", "region"))
    await database.start(engine)
    yield engine
    await database.stop(engine)


@pytest.fixture(scope="session")
def sqlite_region_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("access_log") / "region.sqlite"
    dsn = f"sqlite://{path}"
    migrate_target(Target("sqlite region", "region", dsn))
    return dsn


@pytest.fixture(scope="session")
def sqlite_region_engine(sqlite_region_dsn: str) -> Engine[Any]:
    return database.engine_for(sqlite_region_dsn)


@pytest.fixture(params=["postgres", "sqlite"])
async def log_engine(
    request: pytest.FixtureRequest, pg_region_engine: Engine[Any], sqlite_region_engine: Engine[Any]
) -> AsyncIterator[Engine[Any]]:
    """The access-log tables bound to PostgreSQL or to SQLite (embedded mode). The binding
    is process-wide, so the previous one is put back for the tests that follow."""
    engine = pg_region_engine if request.param == "postgres" else sqlite_region_engine
    with bindings_restored(ACCESS_LOG_TABLES):
        database.bind(ACCESS_LOG_TABLES, engine)
        yield engine


def event(org_id: uuid.UUID, n: int = 0, **changes: str) -> AccessEvent:
    base = AccessEvent(
        org_id=org_id,
        actor=f"member:{uuid.uuid4()}",
        actor_role="expert",
        subject_ref=f"member:{uuid.uuid4()}",
        action="read",
        object_type="visit",
        object_id=f"visit-{n}",
        source_address="203.0.113.7",
        outcome="success",
        purpose="provide the consultation",
        source="region:eu/region-service",
    )
    return msgspec.structs.replace(base, **changes) if changes else base


async def fill(org_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    return [await append(event(org_id, n)) for n in range(count)]


async def sql(query: str, *args: object) -> None:
    await AccessLogEntry.raw(query, *args)


def problem_of(report: VerifyReport) -> tuple[int, uuid.UUID | None, str]:
    assert not report.ok
    assert report.problem is not None
    return report.problem.seq, report.problem.entry_id, report.problem.kind


# --- the chain ---------------------------------------------------------------------


def _record(**changes: object) -> chain.EntryRecord:
    record = chain.EntryRecord(
        id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
        org_id=uuid.UUID("00000000-0000-4000-8000-000000000002"),
        seq=7,
        at=datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC),
        actor="member:a",
        actor_role="expert",
        on_behalf_of="member:a",
        subject_ref="member:b",
        action="read",
        object_type="visit",
        object_id="v1",
        source_address="203.0.113.7",
        outcome="success",
        purpose="care",
        source="region:eu/region-service",
        prev_hash=chain.GENESIS_HASH,
        entry_hash="",
    )
    return msgspec.structs.replace(record, **changes)


def test_canonical_encoding_is_fixed_and_independent_of_how_time_was_returned() -> None:
    utc = _record()
    assert chain.canonical(utc) == (
        b'{"v":1,"id":"00000000-0000-4000-8000-000000000001",'
        b'"org_id":"00000000-0000-4000-8000-000000000002","seq":7,'
        b'"at":"2026-03-01T12:00:00.000000+00:00","actor":"member:a","actor_role":"expert",'
        b'"on_behalf_of":"member:a","subject_ref":"member:b","action":"read","object_type":"visit",'
        b'"object_id":"v1","source_address":"203.0.113.7","outcome":"success","purpose":"care",'
        b'"source":"region:eu/region-service"}'
    )
    same_instant = _record(at=datetime(2026, 3, 1, 13, 0, 0, tzinfo=timezone(timedelta(hours=1))))
    naive_utc = _record(at=datetime(2026, 3, 1, 12, 0, 0))
    assert chain.canonical(same_instant) == chain.canonical(utc) == chain.canonical(naive_utc)
    assert chain.entry_hash(utc) != chain.entry_hash(_record(seq=8))
    assert chain.entry_hash(utc) != chain.entry_hash(_record(prev_hash="1" * 64))
    assert len(chain.entry_hash(utc)) == 64


def test_a_row_hashes_as_its_entry_does() -> None:
    """A chain walk hashes entries as the rows it reads; the bytes must be the entry's."""
    records = [
        _record(),
        _record(at=datetime(2026, 3, 1, 13, 0, 0, tzinfo=timezone(timedelta(hours=1))), seq=1),
        _record(at=datetime(2026, 3, 1, 12, 0, 0), prev_hash="f" * 64, actor='a "quoted" \\ name ü'),
        _record(subject_ref="", purpose="\u2028", source_address="2001:db8::1"),
    ]
    for record in records:
        assert chain.row_hash(msgspec.structs.astuple(record)) == chain.entry_hash(record)
    assert chain.ENTRY_FIELDS == chain.EntryRecord.__struct_fields__


def test_original_seq_finds_where_an_intact_entry_belongs() -> None:
    intact = _record(seq=5)
    intact = msgspec.structs.replace(intact, entry_hash=chain.entry_hash(intact))
    moved = msgspec.structs.replace(intact, seq=2)
    assert chain.original_seq(moved, upto=10) == 5
    assert chain.original_seq(msgspec.structs.replace(moved, actor="member:x"), upto=10) is None


# --- appending ---------------------------------------------------------------------


async def test_appends_form_one_linear_chain_even_when_concurrent(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    first = await fill(org_id, 3)
    concurrent = await asyncio.gather(*(append(event(org_id, n)) for n in range(3, 23)))

    stored = [record async for record in iter_entries(org_id, batch_size=4)]
    assert [record.seq for record in stored] == list(range(1, 24))
    assert {record.id for record in stored} == {*first, *concurrent}
    previous = chain.GENESIS_HASH
    for record in stored:
        assert record.prev_hash == previous
        assert chain.entry_hash(record) == record.entry_hash
        previous = record.entry_hash
    head = await AccessLogHead.select().where(AccessLogHead.org_id == org_id)
    assert (head[0]["seq"], head[0]["entry_hash"]) == (23, previous)

    report = await verify(org_id, batch_size=5)
    assert report == VerifyReport(ok=True, checked=23)
    assert format_report(report, "acme") == "audit log of org 'acme': OK, 23 entries verified"


async def test_a_batch_appends_in_order_under_one_lock_and_mixes_with_single_appends(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 2)
    batch = await append_many([event(org_id, n) for n in range(2, 7)])
    await fill(org_id, 1)
    stored = [record async for record in iter_entries(org_id)]
    assert [record.seq for record in stored] == list(range(1, 9))
    assert [record.id for record in stored[2:7]] == batch
    assert [record.object_id for record in stored[2:7]] == [f"visit-{n}" for n in range(2, 7)]
    assert (await verify(org_id)).ok
    assert await append_many([]) == []
    with pytest.raises(ValueError, match="one organisation"):
        await append_many([event(org_id), event(uuid.uuid4())])


async def test_an_entry_records_who_did_what_for_whom_and_the_responsible_user_defaults_to_the_actor(
    log_engine: Engine[Any],
) -> None:
    org_id = uuid.uuid4()
    delegated = event(org_id, 1, on_behalf_of="org:owner", action="export")
    await append(delegated)
    await append(event(org_id, 2))
    one, two = await entries(org_id, limit=10)
    assert (one.actor, one.on_behalf_of, one.action, one.subject_ref) == (
        delegated.actor,
        "org:owner",
        "export",
        delegated.subject_ref,
    )
    assert two.on_behalf_of == two.actor
    assert one.at <= two.at
    assert datetime.now(UTC) - two.at < timedelta(minutes=5)


async def test_overlong_or_unstorable_values_are_trimmed_not_refused(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    await append(
        event(
            org_id,
            actor="member:" + "x" * 500,
            purpose="nul\x00byte and lone surrogate \ud800 " + "p" * 200,
            source_address="2001:db8::1" * 20,
        )
    )
    (stored,) = await entries(org_id)
    assert stored.actor == ("member:" + "x" * 500)[:80]
    assert len(stored.purpose) == 60
    assert "\x00" not in stored.purpose
    assert len(stored.source_address) == 64
    assert (await verify(org_id)).ok


async def test_an_unknown_action_is_refused_before_anything_is_written(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    with pytest.raises(ValueError, match="action"):
        await append(event(org_id, action="peek"))
    with pytest.raises(ValueError, match="outcome"):
        await append(event(org_id, outcome="maybe"))
    assert await entries(org_id) == []


async def test_entries_pages_in_chain_order_and_filters_by_data_subject(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 5)
    await append(event(org_id, 9, subject_ref="member:patient-1"))
    page1 = await entries(org_id, limit=4)
    page2 = await entries(org_id, limit=4, after_seq=page1[-1].seq)
    assert [r.seq for r in page1 + page2] == [1, 2, 3, 4, 5, 6]
    about = await entries(org_id, subject_ref="member:patient-1")
    assert [(r.seq, r.object_id) for r in about] == [(6, "visit-9")]


# --- transactions ------------------------------------------------------------------


async def test_an_append_in_a_rolled_back_transaction_leaves_no_entry(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 2)
    with pytest.raises(RuntimeError, match="change failed"):
        async with database.transaction(log_engine):
            await append(event(org_id, 3))
            raise RuntimeError("the data change failed")

    assert [r.seq for r in await entries(org_id)] == [1, 2]
    assert await verify(org_id) == VerifyReport(ok=True, checked=2)
    await append(event(org_id, 4))
    assert await verify(org_id) == VerifyReport(ok=True, checked=3)

    # A new organisation's first append rolled back: not even a head row remains.
    fresh = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with database.transaction(log_engine):
            await append(event(fresh))
            raise RuntimeError("the data change failed")
    assert await AccessLogHead.count().where(AccessLogHead.org_id == fresh) == 0
    assert await verify(fresh) == VerifyReport(ok=True, checked=0)


async def test_appends_in_a_committed_transaction_commit_with_it(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    async with database.transaction(log_engine):
        await append(event(org_id, 1))
        await append(event(org_id, 2))
    assert [r.seq for r in await entries(org_id)] == [1, 2]
    assert (await verify(org_id)).ok


# --- tampering ---------------------------------------------------------------------


async def test_a_modified_entry_is_named(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    ids = await fill(org_id, 6)
    await sql("UPDATE access_log_entry SET actor = {} WHERE org_id = {} AND seq = {}", "member:evil", org_id, 4)

    report = await verify(org_id, batch_size=2)
    assert problem_of(report) == (4, ids[3], "modified")
    assert report.checked == 3
    line = format_report(report, "acme")
    assert line.startswith(f"audit log of org 'acme': entry #4 (id {ids[3]}) was modified: ")
    assert line.endswith("(3 entries before it verified)")


async def test_a_deleted_middle_entry_is_named(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 6)
    await sql("DELETE FROM access_log_entry WHERE org_id = {} AND seq = {}", org_id, 3)

    report = await verify(org_id)
    assert problem_of(report) == (3, None, "deleted")
    assert format_report(report, "acme").startswith("audit log of org 'acme': entry #3 was deleted: ")


async def test_a_deleted_last_entry_is_noticed_through_the_head(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 6)
    await sql("DELETE FROM access_log_entry WHERE org_id = {} AND seq = {}", org_id, 6)

    report = await verify(org_id)
    assert problem_of(report) == (6, None, "deleted")
    assert report.checked == 5


async def test_a_deleted_entry_with_the_rest_renumbered_is_named(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    ids = await fill(org_id, 5)
    await sql("DELETE FROM access_log_entry WHERE org_id = {} AND seq = {}", org_id, 2)
    await sql("UPDATE access_log_entry SET seq = seq - 1 WHERE org_id = {} AND seq > {}", org_id, 2)
    await sql("UPDATE access_log_head SET seq = seq - 1 WHERE org_id = {}", org_id)

    assert problem_of(await verify(org_id)) == (2, ids[2], "deleted")


async def swap(org_id: uuid.UUID, a: int, b: int) -> None:
    update = "UPDATE access_log_entry SET seq = {} WHERE org_id = {} AND seq = {}"
    await sql(update, -1, org_id, a)
    await sql(update, a, org_id, b)
    await sql(update, b, org_id, -1)


async def test_swapped_entries_are_reported_as_reordered(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    ids = await fill(org_id, 6)
    await swap(org_id, 2, 5)

    report = await verify(org_id)
    assert problem_of(report) == (2, ids[4], "reordered")
    assert report.problem is not None and "#5" in report.problem.detail
    assert "was reordered" in format_report(report, "acme")


async def test_swapped_neighbours_are_reported_as_reordered(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    ids = await fill(org_id, 5)
    await swap(org_id, 3, 4)

    assert problem_of(await verify(org_id)) == (3, ids[3], "reordered")


async def test_the_first_problem_in_chain_order_is_reported(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 8)
    await sql("UPDATE access_log_entry SET purpose = {} WHERE org_id = {} AND seq = {}", "x", org_id, 6)
    await sql("DELETE FROM access_log_entry WHERE org_id = {} AND seq = {}", org_id, 8)
    await sql("DELETE FROM access_log_entry WHERE org_id = {} AND seq = {}", org_id, 2)

    report = await verify(org_id, batch_size=2)
    assert problem_of(report) == (2, None, "deleted")
    assert report.checked == 1


async def test_a_tampered_head_is_noticed(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    ids = await fill(org_id, 3)
    await sql("UPDATE access_log_head SET entry_hash = {} WHERE org_id = {}", "f" * 64, org_id)
    assert problem_of(await verify(org_id)) == (3, ids[2], "modified")

    # The head rolled back by one: the last entry now lies beyond it.
    other = uuid.uuid4()
    await fill(other, 3)
    (second,) = [r for r in await entries(other) if r.seq == 2]
    await sql("UPDATE access_log_head SET seq = {}, entry_hash = {} WHERE org_id = {}", 2, second.entry_hash, other)
    seq, _, kind = problem_of(await verify(other))
    assert (seq, kind) == (3, "modified")


async def test_a_missing_head_is_noticed(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 2)
    await sql("DELETE FROM access_log_head WHERE org_id = {}", org_id)
    assert problem_of(await verify(org_id)) == (3, None, "deleted")


async def test_tampering_in_one_organisation_leaves_another_intact(log_engine: Engine[Any]) -> None:
    tampered, bystander = uuid.uuid4(), uuid.uuid4()
    for n in range(4):  # interleaved, as real traffic would be
        await append(event(tampered, n))
        await append(event(bystander, n))
    await sql("DELETE FROM access_log_entry WHERE org_id = {} AND seq = {}", tampered, 2)
    await sql("UPDATE access_log_entry SET actor = {} WHERE org_id = {} AND seq = {}", "x", tampered, 3)

    assert problem_of(await verify(tampered)) == (2, None, "deleted")
    assert await verify(bystander) == VerifyReport(ok=True, checked=4)


# --- retention (6 years) ---------------------------------------------------------------


async def times_of(org_id: uuid.UUID) -> dict[int, datetime]:
    rows = await AccessLogEntry.select(AccessLogEntry.seq, AccessLogEntry.at).where(AccessLogEntry.org_id == org_id)
    return {int(r["seq"]): r["at"] if r["at"].tzinfo else r["at"].replace(tzinfo=UTC) for r in rows}


async def fill_apart(org_id: uuid.UUID, count: int) -> dict[int, datetime]:
    """``count`` entries, each appended at a later time than the one before."""
    for n in range(count):
        await append(event(org_id, n))
        await asyncio.sleep(0.002)
    return await times_of(org_id)


async def prune_before(org_id: uuid.UUID, before: datetime, limit: int = 100) -> int:
    return await prune(org_id, before, limit=limit, reference="purge-run:test", source="region:eu/test")


async def test_retention_removes_a_leading_run_and_verification_starts_after_it(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    at = await fill_apart(org_id, 6)

    assert await prune_before(org_id, at[4], limit=2) == 2, "a batch is bounded"
    assert await prune_before(org_id, at[4]) == 1, "entry #4 was written at the cutoff: it stays"
    assert await prune_before(org_id, at[4]) == 0

    # Each batch wrote an entry saying what it removed (#7 and #8).
    assert sorted(await times_of(org_id)) == [4, 5, 6, 7, 8]
    notes = [e.object_id for e in await entries(org_id) if e.actor == "system:retention"]
    assert [n.split(";")[0] for n in notes] == ["count:2", "count:1"]
    assert notes[-1].startswith("count:1;upto:3:")
    report = await verify(org_id)
    assert report.ok and report.checked == 5 and report.pruned == 3
    assert format_report(report, "acme") == (
        "audit log of org 'acme' (entries #1 to #3 removed by retention): OK, 5 entries verified"
    )
    await append(event(org_id, 9))
    assert (await verify(org_id)).checked == 6, "appends go on after a prune"


async def test_after_a_prune_a_deleted_entry_is_still_named(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    at = await fill_apart(org_id, 6)
    await prune_before(org_id, at[3])
    await sql("DELETE FROM access_log_entry WHERE org_id = {} AND seq = {}", org_id, 3)

    report = await verify(org_id)
    assert problem_of(report) == (3, None, "deleted") and report.pruned == 2


async def test_a_retention_point_moved_by_hand_is_noticed(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    await fill_apart(org_id, 5)
    third = next(e for e in await entries(org_id) if e.seq == 3)
    move = "UPDATE access_log_head SET pruned_seq = {}, pruned_hash = {} WHERE org_id = {}"
    await sql(move, 3, third.entry_hash, org_id)

    report = await verify(org_id)  # the entries are all still there
    assert problem_of(report)[0] == 1 and problem_of(report)[2] == "modified"
    assert "range #1 to #3 that retention removed" in format_report(report, "acme")

    await sql("DELETE FROM access_log_entry WHERE org_id = {} AND seq <= {}", org_id, 3)  # and gone
    report = await verify(org_id)
    assert problem_of(report) == (3, None, "modified")
    assert "no" in report.problem.detail and "retention entry" in report.problem.detail  # type: ignore[union-attr]

    await sql(move, 9, third.entry_hash, org_id)
    assert "beyond its last entry" in format_report(await verify(org_id), "acme")


async def test_retention_never_removes_a_tampered_entry(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    at = await fill_apart(org_id, 5)
    await sql("UPDATE access_log_entry SET actor = {} WHERE org_id = {} AND seq = {}", "member:evil", org_id, 2)

    with pytest.raises(PruneRefused, match="entry #2"):
        await prune_before(org_id, at[5])

    assert sorted(await times_of(org_id)) == [1, 2, 3, 4, 5], "nothing removed, the evidence stays"
    assert problem_of(await verify(org_id))[:1] == (2,)
    assert await prune_before(uuid.uuid4(), at[5]) == 0, "an organisation without a log"


async def test_retention_never_lets_a_forged_twin_slip_past_a_batch_end(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    at = await fill_apart(org_id, 5)
    # A copy of entry #2 under an id that sorts after the real one's: a batch of two
    # (#1, #2) must not end between them.
    await sql(
        "INSERT INTO access_log_entry SELECT {}, org_id, seq, at, actor, actor_role, on_behalf_of, subject_ref, "
        "action, object_type, object_id, source_address, outcome, purpose, source, prev_hash, entry_hash "
        "FROM access_log_entry WHERE org_id = {} AND seq = 2",
        uuid.UUID("ffffffff-ffff-4fff-bfff-ffffffffffff"),
        org_id,
    )

    with pytest.raises(PruneRefused, match="entry #2"):
        await prune_before(org_id, at[5], limit=2)
    assert (
        len(await times_of(org_id)) == 5 and (await AccessLogEntry.count().where(AccessLogEntry.org_id == org_id)) == 6
    )


async def test_the_chains_due_for_retention_are_found_in_one_read(log_engine: Engine[Any]) -> None:
    old, young = uuid.uuid4(), uuid.uuid4()
    at = await fill_apart(old, 2)
    await fill_apart(young, 1)

    due = await organisations_due(at[2])
    if database.is_postgres(log_engine):  # exactly the chains whose oldest kept entry is older
        assert old in due and young not in due
        await prune_before(old, at[2])
        assert old not in await organisations_due(at[2]), "its oldest kept entry is now #2, at the cutoff"
    else:  # the embedded default looks at every chain
        assert {old, young} <= set(due)


# --- building on a walk made moments before (a report's own checkpoint) ------------------


async def walk_to_head(org_id: uuid.UUID, from_seq: int = 0) -> Walked:
    """The walk a checkpoint makes: from ``from_seq`` (the retention point, or an earlier
    checkpoint's entry) to the head."""
    head = await head_row(org_id)
    assert head is not None
    start = head.pruned_hash  # the genesis hash when nothing was removed
    if from_seq != head.pruned_seq:
        start = next(e.entry_hash for e in await entries(org_id) if e.seq == from_seq)
    walked = await walk(org_id, from_seq=from_seq, from_hash=start, upto_seq=head.seq, upto_hash=head.entry_hash)
    assert isinstance(walked, Walked)
    return walked


async def test_verify_builds_on_a_walk_from_the_start_and_walks_only_the_entries_after_it(
    log_engine: Engine[Any],
) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 6)
    walked = await walk_to_head(org_id)
    assert (walked.from_seq, walked.upto_seq, walked.retention_note) == (0, 6, None)
    await fill(org_id, 3)

    report = await verify(org_id, batch_size=2, walked=walked)
    assert report.ok and report.checked == 9 and report.taken_from_walk == 6
    # The entries after the walk are still checked, against the hash it ended at.
    await sql("UPDATE access_log_entry SET actor = {} WHERE org_id = {} AND seq = {}", "member:evil", org_id, 8)
    assert problem_of(await verify(org_id, walked=walked))[0] == 8
    await sql("DELETE FROM access_log_entry WHERE org_id = {} AND seq = {}", org_id, 7)
    assert problem_of(await verify(org_id, walked=walked))[:2] == (7, None)
    # Another organisation's walk stands for nothing here.
    other = uuid.uuid4()
    await fill(other, 2)
    assert (await verify(other, walked=walked)).taken_from_walk == 0


async def test_a_walk_since_a_checkpoint_is_not_taken_for_the_whole_chain(log_engine: Engine[Any]) -> None:
    """A checkpoint that walked only since an earlier one vouches for nothing before it:
    verification still walks from the start and names an early entry that was edited."""
    org_id = uuid.uuid4()
    ids = await fill(org_id, 6)
    walked = await walk_to_head(org_id, from_seq=3)
    assert (await verify(org_id, walked=walked)).taken_from_walk == 0
    await sql("UPDATE access_log_entry SET actor = {} WHERE org_id = {} AND seq = {}", "member:evil", org_id, 2)

    report = await verify(org_id, walked=walked)
    assert problem_of(report) == (2, ids[1], "modified") and report.checked == 1


async def test_a_walk_is_not_taken_once_retention_moved_the_start(log_engine: Engine[Any]) -> None:
    org_id = uuid.uuid4()
    at = await fill_apart(org_id, 6)
    walked = await walk_to_head(org_id)
    assert await prune_before(org_id, at[3]) == 2

    report = await verify(org_id, walked=walked)
    assert report.ok and report.pruned == 2 and report.checked == 5 and report.taken_from_walk == 0
    # A walk from the new retention point is taken, its retention note with it.
    again = await walk_to_head(org_id, from_seq=2)
    assert again.retention_note is not None and again.retention_note.startswith("count:2;upto:2:")
    report = await verify(org_id, walked=again)
    assert report.ok and report.checked == 5 and report.taken_from_walk == 5


async def test_an_entry_stored_before_the_walk_started_is_still_named(log_engine: Engine[Any]) -> None:
    """A walk from the start reads seq > 0; a row stored at #0 beside the chain makes
    verification walk the whole way, which names it."""
    org_id = uuid.uuid4()
    await fill(org_id, 4)
    walked = await walk_to_head(org_id)
    await sql(
        "INSERT INTO access_log_entry SELECT {}, org_id, 0, at, actor, actor_role, on_behalf_of, subject_ref, "
        "action, object_type, object_id, source_address, outcome, purpose, source, prev_hash, entry_hash "
        "FROM access_log_entry WHERE org_id = {} AND seq = 1",
        uuid.uuid4(),
        org_id,
    )

    report = await verify(org_id, walked=walked)
    assert not report.ok and report.taken_from_walk == 0 and report.checked == 0
