"""Signed checkpoints, head seals and deletion certificates of the access log, on a real
region database with the region's real (local keyring) signing key.

The four direct-database edits an outside run found that plain chain verification
reports as OK are made here with the exact SQL an intruder would send, on its own
PostgreSQL connection: each is shown to pass the chain walk alone (the gap) and to be
caught by what this adds: the region's seal on the head, checked by ``verify`` itself,
and a checkpoint an auditor kept, checked by ``verify --since-checkpoint``.

And since every append seals the head it extends, the edits are made again followed by
one legitimate append, as a busy organisation's next read would follow within seconds:
the append finds the head unsealed and records that in the chain, so ``verify`` still
fails, while a busy log written by several processes, across a rotation of the
region's key, raises no such alarm.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import msgspec
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from konsil.compliance.access_log import alarm, certificates, chain, seal
from konsil.compliance.access_log.checkpoints import (
    CheckpointFileError,
    CheckpointRefused,
    checkpoint_moved,
    latest_stored,
    load_checkpoint,
    make_checkpoint,
    verify_log,
)
from konsil.compliance.access_log.documents import CertifiedSealKey, SealKey, SignedCheckpoint, canonical, now_text
from konsil.compliance.access_log.service import (
    AccessEvent,
    VerifyReport,
    append_many,
    entries,
    head_row,
    prune,
    verify,
)
from konsil.compliance.access_log.tables import AccessLogCheckpoint, AccessLogEntry, DeletionCertificate
from konsil.platform.cli.audit import format_report
from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core.keys.region_signing import KeySet, LocalSigner, Signature, key_id
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import LifecycleSettings, RegionSettings, Settings, VaultSettings
from konsil.regions import container, tasks
from konsil.regions.container import build_region
from konsil.regions.tables import ORGANISATION_OWNED, REGION_TABLES
from konsil.tenants import removal
from konsil.tenants.actors import Actor
from konsil.tenants.tables import Member, Organisation
from tests.conftest import bindings_restored, wait_until_async

OPERATOR = Actor("operator:cli", "operator", "operator:cli", "local", "delete the customer account")


@pytest.fixture(scope="session")
async def checkpoint_dsns(
    pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    sqlite = tmp_path_factory.mktemp("checkpoints") / "region.sqlite"
    migrate_target(Target("sqlite region", "region", f"sqlite://{sqlite}"))
    return {
        "postgres": await asyncio.to_thread(pg_database, "checkpoints_region", "region"),
        "sqlite": f"sqlite://{sqlite}",
    }


def region_settings(dsn: str, keyring: Path) -> Settings:
    region = RegionSettings(
        id="eu",
        jurisdiction="EU/EEA",
        public_url="http://127.0.0.1:9",
        listen="127.0.0.1:9",
        database=dsn,
        internal_secret="eu-secret-for-tests-only",
        vault=VaultSettings(backend="local", keyring_path=str(keyring)),
        lifecycle=LifecycleSettings(purge_every_seconds=3600),
    )
    return Settings(mode="embedded", discovery_key="discovery-key-for-tests", regions=[region])


@contextlib.asynccontextmanager
async def started(dsn: str, keyring: Path) -> AsyncIterator[RegionContext]:
    """A region container started as a region process starts it (tables bound, this
    process sealing the heads it writes); bindings and sealer put back afterwards."""
    settings = region_settings(dsn, keyring)
    ctx = build_region(settings, settings.regions[0], service_name="test")
    previous = seal.current_sealer()
    with bindings_restored(REGION_TABLES):
        await container.start(ctx)
        try:
            yield ctx
        finally:
            await container.stop(ctx)
            seal.use_sealer(previous)


@pytest.fixture
async def pg_ctx(checkpoint_dsns: dict[str, str], tmp_path: Path) -> AsyncIterator[RegionContext]:
    async with started(checkpoint_dsns["postgres"], tmp_path / "keyring") as ctx:
        yield ctx


@pytest.fixture(params=["postgres", "sqlite"])
async def ctx(
    request: pytest.FixtureRequest, checkpoint_dsns: dict[str, str], tmp_path: Path
) -> AsyncIterator[RegionContext]:
    async with started(checkpoint_dsns[request.param], tmp_path / "keyring") as context:
        yield context


def event(org_id: uuid.UUID, subject: str, n: int) -> AccessEvent:
    return AccessEvent(
        org_id=org_id,
        actor="member:00000000-0000-4000-8000-00000000000a",
        actor_role="expert",
        subject_ref=subject,
        action="read",
        object_type="visit",
        object_id=f"{n}",
        source_address="203.0.113.7",
        outcome="success",
        purpose="provide the consultation",
        source="region:eu/test",
    )


async def fill(org_id: uuid.UUID, count: int, subjects: list[str] | None = None) -> None:
    """``count`` entries, one append each, about the given subjects in turn."""
    subjects = subjects or [f"visit:{uuid.uuid4()}"]
    start = await AccessLogEntry.count().where(AccessLogEntry.org_id == org_id)
    for n in range(start, start + count):
        await append_many([event(org_id, subjects[n % len(subjects)], n)])


@contextlib.asynccontextmanager
async def intruder(ctx: RegionContext) -> AsyncIterator[asyncpg.Connection]:
    """A connection of someone with write access to the region database, nothing more."""
    conn = await asyncpg.connect(ctx.region.database)
    try:
        yield conn
    finally:
        await conn.close()


async def chain_rows(conn: asyncpg.Connection, org_id: uuid.UUID) -> list[chain.EntryRecord]:
    rows = await conn.fetch("SELECT * FROM access_log_entry WHERE org_id = $1 ORDER BY seq", org_id)
    return [chain.EntryRecord(**dict(row)) for row in rows]


async def rehash_from(conn: asyncpg.Connection, org_id: uuid.UUID, first_seq: int) -> None:
    """Renumber and re-hash every entry from ``first_seq`` on, then point the head at the
    new end: a chain rewritten so that it is consistent again."""
    records = await chain_rows(conn, org_id)
    prev_hash = chain.GENESIS_HASH
    for seq, record in enumerate(records, start=1):
        if seq >= first_seq:
            moved = msgspec.structs.replace(record, seq=seq, prev_hash=prev_hash)
            new_hash = chain.entry_hash(moved)
            await conn.execute(
                "UPDATE access_log_entry SET seq = $1, prev_hash = $2, entry_hash = $3 WHERE id = $4",
                seq,
                prev_hash,
                new_hash,
                record.id,
            )
            prev_hash = new_hash
        else:
            prev_hash = record.entry_hash
    await conn.execute(
        "UPDATE access_log_head SET seq = $1, entry_hash = $2 WHERE org_id = $3", len(records), prev_hash, org_id
    )


async def forge_entry(conn: asyncpg.Connection, org_id: uuid.UUID, at: dt.datetime, **fields: str) -> chain.EntryRecord:
    """Append a well-formed entry after the last one and move the head to it."""
    last = (await chain_rows(conn, org_id))[-1]
    values = {**msgspec.structs.asdict(event(org_id, "visit:forged", 0)), **fields}
    del values["org_id"]
    unhashed = chain.EntryRecord(
        id=uuid.uuid4(),
        org_id=org_id,
        seq=last.seq + 1,
        at=at,
        prev_hash=last.entry_hash,
        entry_hash="",
        **{k: v for k, v in values.items() if k in chain.EntryRecord.__struct_fields__},
    )
    forged = msgspec.structs.replace(unhashed, entry_hash=chain.entry_hash(unhashed))
    columns = list(chain.EntryRecord.__struct_fields__)
    await conn.execute(
        f"INSERT INTO access_log_entry ({', '.join(columns)}) "  # noqa: S608 - fixed names
        f"VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})",
        *(getattr(forged, c) for c in columns),
    )
    await conn.execute(
        "UPDATE access_log_head SET seq = $1, entry_hash = $2 WHERE org_id = $3", forged.seq, forged.entry_hash, org_id
    )
    return forged


async def forge_retention(conn: asyncpg.Connection, org_id: uuid.UUID, upto: int) -> None:
    """Delete entries #1 to #upto, move the head's retention point there and forge the
    retention note that would record it."""
    last_gone = await conn.fetchval(
        "SELECT entry_hash FROM access_log_entry WHERE org_id = $1 AND seq = $2", org_id, upto
    )
    await conn.execute("DELETE FROM access_log_entry WHERE org_id = $1 AND seq <= $2", org_id, upto)
    await conn.execute(
        "UPDATE access_log_head SET pruned_seq = $1, pruned_hash = $2 WHERE org_id = $3", upto, last_gone, org_id
    )
    await forge_entry(
        conn,
        org_id,
        dt.datetime.now(dt.UTC),
        actor="system:retention",
        actor_role="system",
        on_behalf_of="system",
        subject_ref="purge-run:forged",
        action="delete",
        object_type="access_log_entry",
        object_id=f"count:{upto};upto:{upto}:{last_gone[:32]}",
        purpose="retention purge",
    )


async def rotate(ctx: RegionContext) -> str:
    """``konsil keys rotate-signing``: a new current key, the old one kept as retired."""
    signer = ctx.signer
    assert isinstance(signer, LocalSigner)
    return await signer.rotate_key()


async def keys(ctx: RegionContext) -> KeySet:
    return await ctx.signer.key_set()


def problem(report: VerifyReport) -> tuple[str, int]:
    assert not report.ok and report.problem is not None, report
    return report.problem.kind, report.problem.seq


# --- checkpoints -------------------------------------------------------------------------------


async def test_a_checkpoint_verifies_with_a_few_lines_of_plain_python(pg_ctx: RegionContext) -> None:
    """What docs/verifying.md tells an auditor: the signed bytes are the checkpoint's JSON
    with sorted keys and no whitespace; the key is the key set's JWK ``x``."""
    org_id = uuid.uuid4()
    await fill(org_id, 3)
    made = await make_checkpoint(pg_ctx, org_id)
    kept = msgspec.json.format(canonical(made), indent=2)  # the file `konsil audit checkpoint` writes
    key_set = json.loads(msgspec.json.encode(await keys(pg_ctx)))

    document = json.loads(kept)
    signed = json.dumps(document["checkpoint"], sort_keys=True, separators=(",", ":")).encode()
    [key] = [k for k in key_set["keys"] if k["kid"] == document["signature"]["kid"]]
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key["x"] + "=="))
    public.verify(base64.b64decode(document["signature"]["value"]), signed)
    with pytest.raises(InvalidSignature):
        public.verify(base64.b64decode(document["signature"]["value"]), signed.replace(b'"seq":3', b'"seq":4'))

    assert document["checkpoint"]["seq"] == 3 and document["checkpoint"]["org"] == str(org_id)
    assert document["checkpoint"]["type"] == "konsil.access-log.checkpoint"
    head = (await chain_head(org_id))[1]
    assert document["checkpoint"]["head_hash"] == head
    stored = await latest_stored(org_id)
    assert stored == made, "the region keeps what it signed"


async def chain_head(org_id: uuid.UUID) -> tuple[int, str]:
    rows = await AccessLogEntry.select(AccessLogEntry.seq, AccessLogEntry.entry_hash).where(
        AccessLogEntry.org_id == org_id
    )
    last = max(rows, key=lambda r: r["seq"])
    return int(last["seq"]), str(last["entry_hash"])


async def test_the_log_extends_a_kept_checkpoint_on_both_databases(ctx: RegionContext, tmp_path: Path) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 5)
    kept_file = tmp_path / "kept.json"
    kept_file.write_bytes(msgspec.json.format(canonical(await make_checkpoint(ctx, org_id)), indent=2))
    await fill(org_id, 3)
    assert await prune(org_id, dt.datetime.now(dt.UTC), limit=2, reference="purge-run:t", source="t") == 2

    kept = load_checkpoint(kept_file)
    report = await verify_log(org_id, await keys(ctx), kept)

    assert report.ok and report.sealed and report.pruned == 2 and report.checked == 7
    assert kept.checkpoint in report.extends
    line = format_report(report, "acme")
    assert line.startswith("audit log of org 'acme' (entries #1 to #2 removed by retention): OK, 7 entries verified")
    assert "the head carries the region's seal" in line
    assert f"it extends the region's checkpoint of {kept.checkpoint.at} (#5)" in line
    assert (await checkpoint_moved(ctx)).made >= 1  # the schedule's run: from the kept one on, across the note
    later = await latest_stored(org_id)
    assert later is not None and later.checkpoint.seq == 9


async def test_a_kept_checkpoint_that_is_not_the_regions_is_refused(pg_ctx: RegionContext, tmp_path: Path) -> None:
    org_id, other = uuid.uuid4(), uuid.uuid4()
    await fill(org_id, 2)
    await fill(other, 2)
    made = await make_checkpoint(pg_ctx, org_id)
    key_set = await keys(pg_ctx)

    changed = SignedCheckpoint(checkpoint=msgspec.structs.replace(made.checkpoint, seq=1), signature=made.signature)
    with pytest.raises(CheckpointFileError, match="signature does not verify"):
        await verify_log(org_id, key_set, changed)
    with pytest.raises(CheckpointFileError, match=f"is of organisation {org_id}, not {other}"):
        await verify_log(other, key_set, made)
    broken = tmp_path / "broken.json"
    broken.write_text('{"checkpoint": {"seq": "three"}}')
    with pytest.raises(CheckpointFileError, match=re.escape("field 'checkpoint.seq'")):
        load_checkpoint(broken)
    with pytest.raises(CheckpointFileError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.json")


# --- the four edits ------------------------------------------------------------------------------


async def test_a_cut_tail_with_the_head_moved_back_is_caught(pg_ctx: RegionContext) -> None:
    """(a) The last entries deleted and the head set to the new last entry's hash."""
    org_id = uuid.uuid4()
    await fill(org_id, 30)
    kept = await make_checkpoint(pg_ctx, org_id)
    await fill(org_id, 5)
    async with intruder(pg_ctx) as conn:
        await conn.execute("DELETE FROM access_log_entry WHERE org_id = $1 AND seq > 25", org_id)
        new_last = await conn.fetchval("SELECT entry_hash FROM access_log_entry WHERE org_id = $1 AND seq = 25", org_id)
        await conn.execute("UPDATE access_log_head SET seq = 25, entry_hash = $1 WHERE org_id = $2", new_last, org_id)

    assert (await verify(org_id)).ok, "the chain alone cannot tell"
    report = await verify_log(org_id, await keys(pg_ctx), kept)
    assert problem(report) == ("deleted", 26)
    assert "entries #26 to #30 are missing: the log now ends at #25" in format_report(report, "acme")
    assert problem(await verify(org_id, key_set=await keys(pg_ctx))) == ("rewritten", 25), "the seal, too"


async def test_a_head_put_back_from_an_earlier_copy_is_caught_only_by_a_kept_checkpoint(
    pg_ctx: RegionContext,
) -> None:
    """(a) done carefully: the head row the region itself sealed at #25, copied then and
    put back after the tail is cut, with the region's stored checkpoints deleted too."""
    org_id = uuid.uuid4()
    await fill(org_id, 25)
    async with intruder(pg_ctx) as conn:
        saved = await conn.fetchrow("SELECT * FROM access_log_head WHERE org_id = $1", org_id)
    await fill(org_id, 5)
    kept = await make_checkpoint(pg_ctx, org_id)
    await fill(org_id, 5)
    key_set = await keys(pg_ctx)
    async with intruder(pg_ctx) as conn:
        await conn.execute("DELETE FROM access_log_entry WHERE org_id = $1 AND seq > 25", org_id)
        await conn.execute(
            "UPDATE access_log_head SET seq = $1, entry_hash = $2, seal_key = $3, seal = $4 WHERE org_id = $5",
            saved["seq"],
            saved["entry_hash"],
            saved["seal_key"],
            saved["seal"],
            org_id,
        )
        assert problem(await verify_log(org_id, key_set)) == ("deleted", 26), "the stored checkpoint catches it"
        await conn.execute("DELETE FROM access_log_checkpoint WHERE org_id = $1", org_id)

    assert (await verify_log(org_id, key_set)).ok, "a genuine earlier head: only a checkpoint kept outside tells"
    assert problem(await verify_log(org_id, key_set, kept)) == ("deleted", 26)


async def test_the_entries_about_one_visit_dropped_and_the_chain_re_hashed_are_caught(pg_ctx: RegionContext) -> None:
    """(b) Every entry about one visit deleted, the rest renumbered and re-hashed, the
    head consistent with the new chain."""
    org_id = uuid.uuid4()
    visits = [f"visit:{uuid.uuid4()}" for _ in range(4)]
    await fill(org_id, 30, visits)
    kept = await make_checkpoint(pg_ctx, org_id)
    await fill(org_id, 10, visits)
    async with intruder(pg_ctx) as conn:
        first = await conn.fetchval(
            "SELECT min(seq) FROM access_log_entry WHERE org_id = $1 AND subject_ref = $2", org_id, visits[1]
        )
        await conn.execute("DELETE FROM access_log_entry WHERE org_id = $1 AND subject_ref = $2", org_id, visits[1])
        await rehash_from(conn, org_id, first)

    assert (await verify(org_id)).ok, "the chain alone cannot tell"
    report = await verify_log(org_id, await keys(pg_ctx), kept)
    assert problem(report) == ("rewritten", 30)
    assert "no longer has the hash the region signed in its checkpoint" in format_report(report, "acme")
    assert problem(await verify(org_id, key_set=await keys(pg_ctx))) == ("rewritten", 30)
    with pytest.raises(CheckpointRefused):
        await make_checkpoint(pg_ctx, org_id)  # the region does not sign the rewritten log


async def test_a_forged_entry_appended_with_the_head_moved_is_caught(pg_ctx: RegionContext) -> None:
    """(c) A well-formed entry appended after the checkpoint and the head moved to it:
    dated now, only the seal shows it; dated before the checkpoint, its date does too."""
    org_id = uuid.uuid4()
    await fill(org_id, 30)
    kept = await make_checkpoint(pg_ctx, org_id)
    await fill(org_id, 5)
    key_set = await keys(pg_ctx)
    async with intruder(pg_ctx) as conn:
        await forge_entry(conn, org_id, dt.datetime.now(dt.UTC), actor="member:someone-else")

    assert (await verify(org_id)).ok, "the chain alone cannot tell"
    report = await verify_log(org_id, key_set, kept)
    assert problem(report) == ("rewritten", 36)
    assert "the chain head's seal does not match it" in format_report(report, "acme")
    with pytest.raises(CheckpointRefused, match="seal does not match"):
        await make_checkpoint(pg_ctx, org_id)

    async with intruder(pg_ctx) as conn:
        await conn.execute("DELETE FROM access_log_entry WHERE org_id = $1 AND seq = 36", org_id)
        last = await conn.fetchval("SELECT entry_hash FROM access_log_entry WHERE org_id = $1 AND seq = 35", org_id)
        await conn.execute("UPDATE access_log_head SET seq = 35, entry_hash = $1 WHERE org_id = $2", last, org_id)
        assert (await verify_log(org_id, key_set, kept)).ok, "back to the head the region sealed"
        backdated = kept.checkpoint.moment - dt.timedelta(hours=1)
        await forge_entry(conn, org_id, backdated)
    report = await verify_log(org_id, key_set, kept)
    assert problem(report) == ("forged", 36)
    assert f"before the region's checkpoint of {kept.checkpoint.at}" in format_report(report, "acme")


async def test_the_oldest_entries_deleted_as_if_by_retention_are_caught_by_verify_itself(
    pg_ctx: RegionContext,
) -> None:
    """(d) Entries #1-20 deleted minutes after they were written (6 years' retention),
    the retention point moved to #20 and a retention note forged in the chain. No
    checkpoint needed: the head's retention point is under the region's seal."""
    org_id = uuid.uuid4()
    await fill(org_id, 40)
    key_set = await keys(pg_ctx)
    async with intruder(pg_ctx) as conn:
        await forge_retention(conn, org_id, 20)
    assert await AccessLogCheckpoint.count().where(AccessLogCheckpoint.org_id == org_id) == 0

    plain = await verify(org_id)
    assert plain.ok and plain.pruned == 20, "the chain alone takes the forged note at its word"
    report = await verify(org_id, key_set=key_set)
    assert problem(report) == ("rewritten", 41)
    assert "the chain head's seal does not match it" in format_report(report, "acme")
    assert problem(await verify_log(org_id, key_set)) == ("rewritten", 41)


async def test_an_unsealed_or_foreign_head_is_reported(pg_ctx: RegionContext) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 3)
    key_set = await keys(pg_ctx)
    async with intruder(pg_ctx) as conn:
        sealed = await conn.fetchrow("SELECT seal_key, seal FROM access_log_head WHERE org_id = $1", org_id)
        await conn.execute("UPDATE access_log_head SET seal_key = '', seal = '' WHERE org_id = $1", org_id)
    assert "carries no seal" in format_report(await verify(org_id, key_set=key_set), "acme")

    other_region = msgspec.structs.replace(key_set, region="us")
    async with intruder(pg_ctx) as conn:
        await conn.execute(
            "UPDATE access_log_head SET seal_key = $1, seal = $2 WHERE org_id = $3",
            sealed["seal_key"],
            sealed["seal"],
            org_id,
        )
    assert (await verify(org_id, key_set=key_set)).sealed
    assert "sealed for region 'eu', not 'us'" in format_report(await verify(org_id, key_set=other_region), "acme")


# --- the next append over a tampered head ---------------------------------------------------------


async def alarm_entries(org_id: uuid.UUID) -> list[chain.EntryRecord]:
    return [record for record in await entries(org_id, 10_000) if alarm.is_alarm(record)]


async def test_a_forged_entry_sealed_over_by_the_next_append_is_still_caught(
    pg_ctx: RegionContext, caplog: pytest.LogCaptureFixture
) -> None:
    """(c), then one legitimate append: it finds the head it extends not sealed by the
    region, records that first and appends the read all the same. From then on the chain
    and the new seal agree, and ``verify`` still fails, naming the forgery."""
    org_id = uuid.uuid4()
    await fill(org_id, 35)
    key_set = await keys(pg_ctx)
    async with intruder(pg_ctx) as conn:
        await forge_entry(conn, org_id, dt.datetime.now(dt.UTC), actor="member:someone-else")

    with caplog.at_level(logging.ERROR, "konsil.access_log"):
        [read_id] = await append_many([event(org_id, "visit:next-read", 99)])

    [found] = await alarm_entries(org_id)
    assert (found.seq, found.object_id, found.action, found.outcome) == (37, "head:36:mismatch", "update", "failure")
    assert (found.actor, found.actor_role, found.subject_ref, found.purpose) == (
        "system:integrity",
        "system",
        "access_log",
        "tamper evidence",
    )
    [read] = [r for r in await entries(org_id, 100, after_seq=37) if r.id == read_id]
    assert read.seq == 38 and read.subject_ref == "visit:next-read", "the read is logged all the same, after it"
    head = await head_row(org_id)
    assert head is not None and head.seq == 38 and seal.check(head, key_set) is None, "the new seal holds"
    [logged] = [r for r in caplog.records if r.name == "konsil.access_log"]
    message = logged.getMessage()
    assert logged.levelno == logging.ERROR and str(org_id) in message and "#36" in message and "mismatch" in message
    assert "visit:" not in message and "member:" not in message, "no data subject or actor in the service log"

    for report in (await verify(org_id), await verify(org_id, key_set=key_set), await verify_log(org_id, key_set)):
        assert problem(report) == ("tampered", 36)
        assert report.checked == 38 and len(report.alarms) == 1
    line = format_report(await verify_log(org_id, key_set), "acme")
    assert re.search(
        r"^audit log of org 'acme': the region found the chain head tampered at entry #36 on "
        r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00: its seal did not match it: its last entry or its retention point was set "
        r"outside the log service; it recorded this in the log as entry #37 \(apart from this, 38 entries "
        r"verified\); the head carries the region's seal$",
        line,
    ), line

    # Taking the alarm out means rewriting the chain from it: the head's seal breaks
    # again, and the next append records that again.
    async with intruder(pg_ctx) as conn:
        await conn.execute("DELETE FROM access_log_entry WHERE org_id = $1 AND seq = 37", org_id)
        await rehash_from(conn, org_id, 37)
    assert (await verify(org_id)).ok, "the chain alone cannot tell"
    await append_many([event(org_id, "visit:next-read", 100)])
    [again] = await alarm_entries(org_id)
    assert (again.seq, again.object_id) == (38, "head:37:mismatch")
    assert problem(await verify(org_id, key_set=key_set)) == ("tampered", 37)


async def test_entries_deleted_under_a_forged_retention_point_and_sealed_over_are_still_caught(
    pg_ctx: RegionContext,
) -> None:
    """(d), then one legitimate append: the retention point is part of the head the
    append checks, so it records the head before sealing its own."""
    org_id = uuid.uuid4()
    await fill(org_id, 40)
    key_set = await keys(pg_ctx)
    async with intruder(pg_ctx) as conn:
        await forge_retention(conn, org_id, 20)

    await append_many([event(org_id, "visit:next-read", 99)])

    report = await verify(org_id, key_set=key_set)
    assert problem(report) == ("tampered", 41) and report.pruned == 20
    line = format_report(report, "acme")
    assert line.startswith(
        "audit log of org 'acme' (entries #1 to #20 removed by retention): the region found the chain head "
        "tampered at entry #41 on "
    )
    assert ": its seal did not match it: its last entry or its retention point was set outside" in line
    assert "recorded this in the log as entry #42" in line
    assert problem(await verify_log(org_id, key_set)) == ("tampered", 41)


async def test_retention_over_a_tampered_head_records_it_before_its_note(pg_ctx: RegionContext) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 10)
    async with intruder(pg_ctx) as conn:
        await forge_entry(conn, org_id, dt.datetime.now(dt.UTC))

    assert await prune(org_id, dt.datetime.now(dt.UTC), limit=3, reference="purge-run:t", source="t") == 3

    [found] = await alarm_entries(org_id)
    assert (found.seq, found.object_id) == (12, "head:11:mismatch")
    [note] = await entries(org_id, 1, after_seq=12)
    assert note.actor == "system:retention" and note.object_id.startswith("count:3;upto:3:")
    report = await verify(org_id, key_set=await keys(pg_ctx))
    assert problem(report) == ("tampered", 11) and report.pruned == 3


async def test_a_head_without_a_seal_is_recorded_as_possibly_older_than_seals(pg_ctx: RegionContext) -> None:
    """A process without a sealer (a test, a tool) appends as before: it checks nothing
    and leaves the head unsealed. Such a head, or one last written before heads were
    sealed, looks exactly like one whose seal an intruder blanked: the first sealed
    append records it, with a reason that says it may be either."""
    org_id = uuid.uuid4()
    await fill(org_id, 2)
    ours = seal.current_sealer()
    async with intruder(pg_ctx) as conn:
        await forge_entry(conn, org_id, dt.datetime.now(dt.UTC))
    seal.use_sealer(None)
    try:
        await fill(org_id, 1)
    finally:
        seal.use_sealer(ours)
    head = await head_row(org_id)
    assert head is not None and (head.seq, head.seal_key, head.seal) == (4, "", "")
    assert await alarm_entries(org_id) == [], "without a sealer nothing is checked"

    await fill(org_id, 1)

    [found] = await alarm_entries(org_id)
    assert found.object_id == "head:4:unsealed"
    report = await verify(org_id, key_set=await keys(pg_ctx))
    assert problem(report) == ("tampered", 4) and report.problem is not None
    assert (
        "it carried no seal (it was set outside the log service, or last written before the region sealed heads)"
        in report.problem.detail
    )


@pytest.mark.parametrize("made_up", ["uncertified", "not-certified"])
async def test_a_head_sealed_with_a_key_of_the_intruders_own_is_recorded(pg_ctx: RegionContext, made_up: str) -> None:
    """Someone with database access can make a sealing key and seal a head with it, but
    cannot have the region certify it: left uncertified, or "certified" under a key id
    the region's key set does not hold (looked up once, then known to be absent)."""
    org_id = uuid.uuid4()
    await fill(org_id, 3)
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = SealKey(
        region="eu", kid=key_id(raw), x=base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), created_at=now_text()
    )
    signature = None
    if made_up == "not-certified":
        signature = Signature(kid=key_id(os.urandom(32)), value=base64.b64encode(private.sign(canonical(key))).decode())
    async with intruder(pg_ctx) as conn:
        forged = await forge_entry(conn, org_id, dt.datetime.now(dt.UTC))
        state = seal.head_state(org_id, forged.seq, forged.entry_hash, 0, chain.GENESIS_HASH)
        await conn.execute(
            "UPDATE access_log_head SET seal_key = $1, seal = $2 WHERE org_id = $3",
            msgspec.json.encode(CertifiedSealKey(key=key, signature=signature)).decode(),
            base64.b64encode(private.sign(canonical(state))).decode(),
            org_id,
        )

    await fill(org_id, 1)

    [found] = await alarm_entries(org_id)
    assert found.object_id == f"head:4:{made_up}"
    assert problem(await verify(org_id, key_set=await keys(pg_ctx))) == ("tampered", 4)


OTHER_PROCESS = """
import asyncio, sys, uuid
import msgspec
from konsil.compliance.access_log import seal
from konsil.compliance.access_log.documents import CertifiedSealKey
from konsil.compliance.access_log.service import AccessEvent, append_many
from konsil.platform.core.settings import LifecycleSettings, RegionSettings, Settings, VaultSettings
from konsil.regions.container import open_region


async def main(dsn: str, keyring: str, org_id: str, count: int) -> None:
    region = RegionSettings(
        id="eu", jurisdiction="EU/EEA", public_url="http://127.0.0.1:9", listen="127.0.0.1:9", database=dsn,
        internal_secret="eu-secret-for-tests-only", vault=VaultSettings(backend="local", keyring_path=keyring),
        lifecycle=LifecycleSettings(purge_every_seconds=3600),
    )
    settings = Settings(mode="embedded", discovery_key="discovery-key-for-tests", regions=[region])
    async with open_region(settings, region, service_name="worker"):
        for n in range(count):
            await append_many([AccessEvent(
                org_id=uuid.UUID(org_id), actor="system:worker", actor_role="system", subject_ref="visit:other-process",
                action="read", object_type="visit", object_id=str(n), source_address="local", outcome="success",
                purpose="provide the consultation", source="region:eu/worker",
            )])
        sealer = seal.current_sealer()
        stored = msgspec.json.decode(sealer.seal(seal.head_state(uuid.UUID(org_id), 0, "0" * 64, 0, "0" * 64))[0],
                                     type=CertifiedSealKey)
        print(stored.signature.kid)


asyncio.run(main(*sys.argv[1:4], int(sys.argv[4])))
"""


async def test_a_busy_log_written_by_two_processes_across_a_key_rotation_raises_no_alarm(
    pg_ctx: RegionContext, caplog: pytest.LogCaptureFixture
) -> None:
    """This process (its sealing key certified with the region's first key, which is then
    rotated out) and a worker started after the rotation (its key certified with the new
    one) append to one log at the same time: each extends heads the other sealed, and
    checks them (the key set fetched again for the new key id), and nothing is recorded."""
    org_id = uuid.uuid4()
    await fill(org_id, 5)
    first_kid = (await keys(pg_ctx)).current().kid
    new_kid = await rotate(pg_ctx)
    ours = seal.current_sealer()
    assert ours is not None and ours.certified

    with caplog.at_level(logging.WARNING, "konsil.access_log"):
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            OTHER_PROCESS,
            pg_ctx.region.database,
            pg_ctx.region.vault.keyring_path,
            str(org_id),
            "150",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        finished = asyncio.create_task(worker.communicate())
        n = 0
        while not finished.done() or n < 10:
            await append_many([event(org_id, "visit:this-process", n)])
            n += 1
            await asyncio.sleep(0.002)
        out, err = await finished

    assert worker.returncode == 0, err.decode()
    assert out.decode().split() == [new_kid], "the worker's sealing key is certified with the new key"
    ours_certified = msgspec.json.decode(
        ours.seal(seal.head_state(org_id, 0, chain.GENESIS_HASH, 0, chain.GENESIS_HASH))[0], type=CertifiedSealKey
    )
    assert ours_certified.signature is not None and ours_certified.signature.kid == first_kid != new_kid
    written = [record.subject_ref for record in await entries(org_id, 10_000)]
    assert written.count("visit:other-process") == 150
    turns = set(itertools.pairwise(written))
    assert ("visit:other-process", "visit:this-process") in turns, "this process extended the worker's heads"
    assert ("visit:this-process", "visit:other-process") in turns, "the worker extended this process's heads"
    assert await alarm_entries(org_id) == []
    assert [r.getMessage() for r in caplog.records if r.name == "konsil.access_log"] == [], "every head was checked"
    report = await verify_log(org_id, await keys(pg_ctx))
    assert report.ok and report.sealed and report.checked == len(written) and report.alarms == []


async def test_a_head_is_not_checked_while_the_key_set_cannot_be_had(
    pg_ctx: RegionContext, caplog: pytest.LogCaptureFixture
) -> None:
    """Appends never wait for, nor fail with, the key service: a head sealed by a key
    this process has not seen certified is then extended unchecked, and the service
    log says so."""
    org_id = uuid.uuid4()
    await fill(org_id, 2)
    ours = seal.current_sealer()
    await rotate(pg_ctx)
    other = seal.HeadSealer(pg_ctx.signer, "eu")  # another process, started after the rotation
    assert await other.certify()
    seal.use_sealer(other)
    try:
        await fill(org_id, 1)
    finally:
        seal.use_sealer(ours)
    signer = pg_ctx.signer
    assert isinstance(signer, LocalSigner)
    signer.path.chmod(0o644)  # the keyring refuses to be read: the key set cannot be had
    try:
        with caplog.at_level(logging.WARNING, "konsil.access_log"):
            await fill(org_id, 1)
    finally:
        signer.path.chmod(0o600)

    assert await alarm_entries(org_id) == []
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "konsil.access_log")
    assert "the region's key set cannot be had" in logged
    assert f"access log of org {org_id}: the head at #3 was not checked before appending" in logged
    report = await verify(org_id, key_set=await keys(pg_ctx))
    assert report.ok and report.sealed


# --- the schedule ------------------------------------------------------------------------------


async def test_the_scheduled_run_checkpoints_the_logs_that_moved_and_not_a_tampered_one(pg_ctx: RegionContext) -> None:
    moved, quiet, tampered = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for org_id in (moved, quiet, tampered):
        await fill(org_id, 2)
        await make_checkpoint(pg_ctx, org_id)
    await fill(moved, 1)
    await fill(tampered, 1)
    async with intruder(pg_ctx) as conn:
        await conn.execute("UPDATE access_log_entry SET actor = 'x' WHERE org_id = $1 AND seq = 3", tampered)

    result = await tasks.checkpoint_task(pg_ctx, "eu", uuid.uuid4())

    assert str(tampered) in result["refused"] and result["checkpoints"] >= 1
    latest = await latest_stored(moved)
    assert latest is not None and latest.checkpoint.seq == 3
    assert await AccessLogCheckpoint.count().where(AccessLogCheckpoint.org_id == quiet) == 1
    assert (await checkpoint_moved(pg_ctx)).made == 0, "nothing moved since"
    with pytest.raises(tasks.WrongRegion):
        await tasks.checkpoint_task(pg_ctx, "us", uuid.uuid4())


async def test_the_embedded_default_checkpoints_on_its_own_schedule(pg_ctx: RegionContext) -> None:
    org_id = uuid.uuid4()
    await fill(org_id, 2)
    scheduler = tasks.InProcessScheduler(
        tasks.InProcessRunner(pg_ctx), every_seconds=3600, checkpoint_every_seconds=0.2
    ).start()
    try:

        async def checkpointed() -> bool:
            return bool(await AccessLogCheckpoint.count().where(AccessLogCheckpoint.org_id == org_id))

        await wait_until_async(checkpointed, "a scheduled checkpoint of the organisation's log")
    finally:
        await scheduler.stop()
    assert tasks.checkpoint_every(pg_ctx.region) == 3600


# --- removed organisations ---------------------------------------------------------------------


async def test_a_removed_organisation_has_a_signed_certificate_and_its_log_still_verifies(
    ctx: RegionContext,
) -> None:
    org_id = uuid.uuid4()
    slug = f"gone-{org_id.hex[:8]}"
    await Organisation.insert(Organisation(id=org_id, slug=slug, name="Praxis"))
    await ctx.keys.provision(org_id)
    await ctx.keys.rotate(org_id)  # versions 1 and 2
    for n in range(2):
        await Member.insert(
            Member(
                id=uuid.uuid4(),
                org_id=org_id,
                name="kf1:x",
                email="kf1:y",
                email_lookup=f"l{n}",
                role="owner",
                password_hash="h",
            )
        )
    await fill(org_id, 3)

    removed = await removal.remove_organisation(ctx, OPERATOR, org_id)
    signed = await certificates.stored_certificate(org_id)

    assert removed.found and signed is not None
    key_set = await keys(ctx)
    assert certificates.signature_problem(signed, key_set) is None
    certificate = signed.certificate
    assert (certificate.org, certificate.slug, certificate.region) == (str(org_id), slug, "eu")
    assert certificate.key_destroyed and certificate.key_versions == [1, 2]
    assert certificate.rows_removed == removed.rows
    assert certificate.rows_removed["member"] == 2 and certificate.rows_removed["organisation"] == 1
    assert certificate.removed_by == "operator:cli" and certificate.log_problem == ""
    inner = certificate.checkpoint
    assert inner is not None
    last_seq, last_hash = await chain_head(org_id)
    assert (inner.checkpoint.seq, inner.checkpoint.head_hash) == (last_seq, last_hash), "covers the removal's entries"
    # The signed bytes are the stored document, and plain Python checks them.
    [row] = await DeletionCertificate.select().where(DeletionCertificate.org_id == org_id)
    as_json = json.loads(row["document"])
    assert json.dumps(as_json, sort_keys=True, separators=(",", ":")).encode() == row["document"].encode()
    assert as_json["type"] == "konsil.organisation.deletion-certificate"

    assert DeletionCertificate not in ORGANISATION_OWNED
    assert await certificates.removed_with_slug(slug) == [org_id]
    report = await verify_log(org_id, key_set, inner)
    assert report.ok and report.sealed and inner.checkpoint in report.extends


async def test_a_changed_certificate_no_longer_verifies(pg_ctx: RegionContext) -> None:
    org_id = uuid.uuid4()
    await Organisation.insert(Organisation(id=org_id, slug=f"gone-{org_id.hex[:8]}", name="Praxis"))
    await pg_ctx.keys.provision(org_id)
    await removal.remove_organisation(pg_ctx, OPERATOR, org_id)
    async with intruder(pg_ctx) as conn:
        await conn.execute(
            "UPDATE organisation_deletion_certificate SET document = replace(document, "
            "'\"key_destroyed\":true', '\"key_destroyed\":false') WHERE org_id = $1",
            org_id,
        )
    signed = await certificates.stored_certificate(org_id)
    assert signed is not None and not signed.certificate.key_destroyed
    assert "signature does not verify" in str(certificates.signature_problem(signed, await keys(pg_ctx)))
    async with intruder(pg_ctx) as conn:
        await conn.execute(
            "UPDATE organisation_deletion_certificate SET document = document || ' ' WHERE org_id = $1", org_id
        )
    with pytest.raises(certificates.CertificateDamaged, match="not in its signed form"):
        await certificates.stored_certificate(org_id)
