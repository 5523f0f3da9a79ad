"""The ``audit_records`` retention class on the real region databases (PostgreSQL, and a
migrated SQLite file for the embedded default), with the region's own signing and
sealing keys: evidence observations, compliance reports with their files and control
attestations go 6 years after their own time, one second either side of the line;
checkpoints and deletion certificates go only once the log entries they vouch for are
gone; every batch is access-logged and the run leaves its evidence."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from konsil.compliance.access_log import certificates, seal
from konsil.compliance.access_log.checkpoints import make_checkpoint, verify_log
from konsil.compliance.access_log.service import AccessEvent, append_many, verify
from konsil.compliance.access_log.tables import (
    AccessLogCheckpoint,
    AccessLogEntry,
    AccessLogHead,
    DeletionCertificate,
)
from konsil.compliance.attestations.tables import ControlAttestation
from konsil.compliance.evidence.tables import EvidenceObservation
from konsil.compliance.reports.tables import ReportFile, ReportJob
from konsil.compliance.retention.policy import RetentionPolicy
from konsil.compliance.retention.purge import ClassResult, PurgeRequest, purge
from konsil.compliance.retention.tables import PurgeRun
from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import LifecycleSettings, RegionSettings, Settings, VaultSettings
from konsil.regions import container
from konsil.regions.container import build_region
from konsil.regions.tables import REGION_TABLES
from konsil.tenants import removal
from konsil.tenants.actors import Actor
from konsil.tenants.tables import Organisation
from tests.conftest import bindings_restored

SECOND = dt.timedelta(seconds=1)
DAY = dt.timedelta(days=1)
OPERATOR = Actor("operator:cli", "operator", "operator:cli", "local", "delete the customer account")
AUDIT_TABLES = (
    "report_job",
    "report_file",
    "evidence_observation",
    "control_attestation",
    "access_log_checkpoint",
    "organisation_deletion_certificate",
)


@pytest.fixture(scope="session")
async def audit_dsns(
    pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    sqlite = tmp_path_factory.mktemp("audit-retention") / "region.sqlite"
    migrate_target(Target("sqlite region", "region", f"sqlite://{sqlite}"))
    return {
        "postgres": await asyncio.to_thread(pg_database, "audit_retention_region", "region"),
        "sqlite": f"sqlite://{sqlite}",
    }


@contextlib.asynccontextmanager
async def started(dsn: str, keyring: Path) -> AsyncIterator[RegionContext]:
    """A region container started as a region process starts it (tables bound, heads
    sealed, the region's signing key at hand); bindings and sealer put back afterwards."""
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
    settings = Settings(mode="embedded", discovery_key="discovery-key-for-tests", regions=[region])
    ctx = build_region(settings, region, service_name="test")
    previous = seal.current_sealer()
    with bindings_restored(REGION_TABLES):
        await container.start(ctx)
        try:
            yield ctx
        finally:
            await container.stop(ctx)
            seal.use_sealer(previous)


@pytest.fixture(params=["postgres", "sqlite"])
async def ctx(
    request: pytest.FixtureRequest, audit_dsns: dict[str, str], tmp_path: Path
) -> AsyncIterator[RegionContext]:
    async with started(audit_dsns[request.param], tmp_path / "keyring") as context:
        yield context


@pytest.fixture
async def pg_ctx(audit_dsns: dict[str, str], tmp_path: Path) -> AsyncIterator[RegionContext]:
    async with started(audit_dsns["postgres"], tmp_path / "keyring") as context:
        yield context


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def new_org(ctx: RegionContext) -> uuid.UUID:
    org_id = uuid.uuid4()
    await Organisation.insert(Organisation(id=org_id, slug=f"org-{org_id.hex[:10]}", name="Praxis"))
    await ctx.keys.provision(org_id)
    return org_id


async def slug_of(org_id: uuid.UUID) -> str:
    row = await Organisation.select(Organisation.slug).where(Organisation.id == org_id).first()
    assert row is not None
    return str(row["slug"])


def read_event(org_id: uuid.UUID, n: int) -> AccessEvent:
    return AccessEvent(
        org_id=org_id,
        actor="member:00000000-0000-4000-8000-00000000000a",
        actor_role="expert",
        subject_ref=f"visit:{n}",
        action="read",
        object_type="visit",
        object_id=str(n),
        source_address="203.0.113.7",
        outcome="success",
        purpose="provide the consultation",
        source="region:eu/test",
    )


async def fill(org_id: uuid.UUID, count: int) -> None:
    """``count`` entries, a few milliseconds apart, so each has its own time."""
    for n in range(count):
        await append_many([read_event(org_id, n)])
        await asyncio.sleep(0.003)


async def observation(org_id: uuid.UUID, collected_at: dt.datetime, report_id: uuid.UUID | None = None) -> uuid.UUID:
    row_id = uuid.uuid4()
    await EvidenceObservation.insert(
        EvidenceObservation(
            id=row_id,
            org_id=org_id,
            collector="retention",
            method="EXAMINE",
            description="Read the retention setting.",
            period_start=collected_at - 30 * DAY,
            period_end=collected_at,
            collected_at=collected_at,
            result="pass",
            checks="[]",
            evidence="{}",
            evidence_sha256="0" * 64,
            report_id=report_id,
        )
    )
    return row_id


async def report(
    org_id: uuid.UUID, created_at: dt.datetime, finished_at: dt.datetime | None, files: int = 2
) -> uuid.UUID:
    """A report job (done when ``finished_at`` is given, else failed) with its files."""
    job_id = uuid.uuid4()
    await ReportJob.insert(
        ReportJob(
            id=job_id,
            org_id=org_id,
            framework="gdpr",
            period_start=created_at - 30 * DAY,
            period_end=created_at,
            status="done" if finished_at else "failed",
            requested_by="cli",
            created_at=created_at,
            finished_at=finished_at,
        )
    )
    for fmt in ("pdf", "json", "csv")[:files]:
        await ReportFile.insert(
            ReportFile(
                id=uuid.uuid4(),
                report_id=job_id,
                format=fmt,
                content=b"%PDF-1.7",
                sha256="0" * 64,
                size=8,
                created_at=finished_at or created_at,
            )
        )
    return job_id


async def attestation(
    org_id: uuid.UUID, signed_at: dt.datetime, expires_at: dt.datetime, withdrawn_at: dt.datetime | None = None
) -> uuid.UUID:
    row_id = uuid.uuid4()
    await ControlAttestation.insert(
        ControlAttestation(
            id=row_id,
            org_id=org_id,
            framework="gdpr",
            control_id="Art. 28",
            statement="Every processor has a signed data processing agreement.",
            signed_by=uuid.uuid4(),
            signed_at=signed_at,
            expires_at=expires_at,
            withdrawn_at=withdrawn_at,
            withdrawn_by=uuid.uuid4() if withdrawn_at else None,
        )
    )
    return row_id


async def ids(table: Any, org_id: uuid.UUID) -> set[uuid.UUID]:
    return {row["id"] for row in await table.select(table.id).where(table.org_id == org_id)}


def run(as_of: dt.datetime, org_slug: str | None = None, **changes: Any) -> PurgeRequest:
    return PurgeRequest(run_id=uuid.uuid4(), as_of=as_of, trigger="cli", org_slug=org_slug, batch_size=2, **changes)


def audit_result(results: list[ClassResult]) -> ClassResult:
    [found] = [r for r in results if r.data_class == "audit_records"]
    return found


async def removals_logged(org_id: uuid.UUID, run_id: uuid.UUID) -> dict[str, int]:
    """Rows removed per table, as the organisation's own access log records them."""
    rows = await AccessLogEntry.select(AccessLogEntry.object_type, AccessLogEntry.object_id).where(
        (AccessLogEntry.org_id == org_id)
        & (AccessLogEntry.subject_ref == f"purge-run:{run_id}")
        & AccessLogEntry.object_type.is_in(list(AUDIT_TABLES))
    )
    logged: dict[str, int] = {}
    for row in rows:
        logged[row["object_type"]] = logged.get(row["object_type"], 0) + int(row["object_id"].removeprefix("count:"))
    return logged


# --- by their own time ------------------------------------------------------------------------


async def test_audit_records_go_six_years_after_their_own_time_and_younger_ones_stay(ctx: RegionContext) -> None:
    org_id = await new_org(ctx)
    as_of = now()
    cutoff = RetentionPolicy.audit_records(as_of)
    assert cutoff == as_of.replace(year=as_of.year - 6)
    # Reports: by finished_at; one that never finished by created_at. Files go with their job.
    old_report = await report(org_id, cutoff - 10 * DAY, cutoff - SECOND)
    finished_late = await report(org_id, cutoff - 10 * DAY, cutoff + SECOND)
    never_finished = await report(org_id, cutoff - SECOND, None, files=0)
    # Observations: by collected_at; one pinned to a report that stays, stays with it.
    old_obs = await observation(org_id, cutoff - SECOND)
    at_line = await observation(org_id, cutoff)
    pinned_kept = await observation(org_id, cutoff - 20 * DAY, report_id=finished_late)
    pinned_gone = await observation(org_id, cutoff - 20 * DAY, report_id=old_report)
    # Attestations: by when they were last in effect (expiry, or an earlier withdrawal).
    expired = await attestation(org_id, cutoff - 400 * DAY, cutoff - SECOND)
    withdrawn = await attestation(org_id, cutoff - 400 * DAY, cutoff + 300 * DAY, withdrawn_at=cutoff - SECOND)
    in_effect = await attestation(org_id, cutoff - 400 * DAY, cutoff + SECOND)
    slug = await slug_of(org_id)
    plan = audit_result(await purge(ctx, run(as_of, slug, dry_run=True)))
    request = run(as_of, slug)

    result = audit_result(await purge(ctx, request))

    expected = {
        "report_job": 2,
        "report_file": 2,
        "evidence_observation": 2,
        "control_attestation": 2,
        "access_log_checkpoint": 0,
        "organisation_deletion_certificate": 0,
    }
    assert plan.rows == expected
    assert result.outcome == "success" and result.cutoff == cutoff
    assert {k: v for k, v in result.rows.items() if v} == {k: v for k, v in expected.items() if v}
    assert await ids(ReportJob, org_id) == {finished_late}
    assert never_finished not in await ids(ReportJob, org_id)
    assert await ReportFile.count().where(ReportFile.report_id == old_report) == 0
    assert await ReportFile.count().where(ReportFile.report_id == finished_late) == 2
    assert await ids(EvidenceObservation, org_id) == {at_line, pinned_kept}
    assert old_obs not in await ids(EvidenceObservation, org_id) and pinned_gone not in await ids(
        EvidenceObservation, org_id
    )
    assert await ids(ControlAttestation, org_id) == {in_effect}
    assert {expired, withdrawn}.isdisjoint(await ids(ControlAttestation, org_id))
    # Evidence of the run, and one access-log entry per table and batch in the organisation's log.
    [row] = await PurgeRun.select().where(
        (PurgeRun.run_id == request.run_id) & (PurgeRun.data_class == "audit_records")
    )
    assert row["outcome"] == "success" and row["org_id"] == org_id and row["rows_removed"] == 8
    assert json.loads(row["detail"]) == {k: v for k, v in expected.items() if v}
    assert await removals_logged(org_id, request.run_id) == {k: v for k, v in expected.items() if v}
    entries = await AccessLogEntry.select(AccessLogEntry.actor, AccessLogEntry.action).where(
        (AccessLogEntry.org_id == org_id) & (AccessLogEntry.subject_ref == f"purge-run:{request.run_id}")
    )
    assert len(entries) == 4, "batches of 2: the jobs and their files (an entry each), observations, attestations"
    assert {(e["actor"], e["action"]) for e in entries} == {("system:retention", "delete")}
    assert (await verify(org_id, key_set=await ctx.signer.key_set())).ok

    again = audit_result(await purge(ctx, run(as_of, slug)))
    assert again.outcome == "success" and not any(again.rows.values()), "nothing more is due"


async def test_a_region_wide_run_reaches_the_records_of_a_removed_organisation(pg_ctx: RegionContext) -> None:
    org_id = await new_org(pg_ctx)
    await removal.remove_organisation(pg_ctx, OPERATOR, org_id, tell=False)
    as_of = now()
    cutoff = RetentionPolicy.audit_records(as_of)
    old = await observation(org_id, cutoff - DAY)
    young = await observation(org_id, cutoff + DAY)
    request = run(as_of)

    result = audit_result(await purge(pg_ctx, request))

    assert result.outcome == "success" and result.org_id is None
    assert await ids(EvidenceObservation, org_id) == {young} and old not in await ids(EvidenceObservation, org_id)
    assert await removals_logged(org_id, request.run_id) == {"evidence_observation": 1}
    assert await DeletionCertificate.exists().where(DeletionCertificate.org_id == org_id), "removed today: kept"


# --- checkpoints and certificates: not before the entries they cover ---------------------------


async def checkpoint_ids(org_id: uuid.UUID) -> dict[int, uuid.UUID]:
    rows = await AccessLogCheckpoint.select(AccessLogCheckpoint.id, AccessLogCheckpoint.seq).where(
        AccessLogCheckpoint.org_id == org_id
    )
    return {int(r["seq"]): r["id"] for r in rows}


async def pruned_seq(org_id: uuid.UUID) -> int:
    row = await AccessLogHead.select(AccessLogHead.pruned_seq).where(AccessLogHead.org_id == org_id).first()
    assert row is not None
    return int(row["pruned_seq"])


async def entry_time(org_id: uuid.UUID, seq: int) -> dt.datetime:
    row = (
        await AccessLogEntry.select(AccessLogEntry.at)
        .where((AccessLogEntry.org_id == org_id) & (AccessLogEntry.seq == seq))
        .first()
    )
    assert row is not None
    at: dt.datetime = row["at"]
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


async def test_a_checkpoint_goes_only_once_the_entries_it_covers_are_pruned(ctx: RegionContext) -> None:
    org_id = await new_org(ctx)
    await fill(org_id, 3)
    await make_checkpoint(ctx, org_id)  # #3
    await fill(org_id, 2)
    await make_checkpoint(ctx, org_id)  # #5
    await fill(org_id, 2)
    await make_checkpoint(ctx, org_id)  # #7, the latest
    made = await checkpoint_ids(org_id)
    assert sorted(made) == [3, 5, 7]
    # The checkpoint of #5, as if made 7 years ago; the entries it covers are younger.
    seven_years = now().replace(year=now().year - 7)
    await AccessLogCheckpoint.update({AccessLogCheckpoint.at: seven_years}).where(AccessLogCheckpoint.id == made[5])
    # Six years after entry #4 was written: entries #1 to #3 go (retention point #3).
    as_of = await entry_time(org_id, 4)
    as_of = as_of.replace(year=as_of.year + 6)
    slug = await slug_of(org_id)
    request = run(as_of, slug)

    results = await purge(ctx, request)

    assert [r.outcome for r in results if r.data_class == "access_log"] == ["success"]
    assert await pruned_seq(org_id) == 3
    left = await checkpoint_ids(org_id)
    assert 3 not in left, "its entries are pruned and it is older than 6 years"
    assert left[5] == made[5], "older than 6 years, but the entries it covers (#4, #5) remain"
    assert left[7] == made[7]
    assert await removals_logged(org_id, request.run_id) == {"access_log_checkpoint": 1}
    report = await verify_log(org_id, await ctx.signer.key_set())
    assert report.ok and report.pruned == 3

    # Everything pruned (a clock years ahead): every checkpoint but the latest goes, and the
    # region's next checkpoint still builds on it.
    far = now().replace(year=now().year + 7)
    await purge(ctx, run(far, slug))
    assert await pruned_seq(org_id) >= 7
    assert list(await checkpoint_ids(org_id)) == [7], "the latest stays: the next checkpoint is checked against it"
    nxt = await make_checkpoint(ctx, org_id)
    assert nxt.checkpoint.seq > 7
    assert (await verify_log(org_id, await ctx.signer.key_set())).ok


async def removed_org(ctx: RegionContext) -> tuple[uuid.UUID, str, int]:
    """An organisation with a few log entries, removed: its id, slug and the seq its
    deletion certificate's checkpoint covers the log up to."""
    org_id = await new_org(ctx)
    await fill(org_id, 3)
    await removal.remove_organisation(ctx, OPERATOR, org_id, tell=False)
    signed = await certificates.stored_certificate(org_id)
    assert signed is not None and signed.certificate.checkpoint is not None
    return org_id, signed.certificate.slug, signed.certificate.checkpoint.checkpoint.seq


async def test_a_deletion_certificate_stays_while_the_log_it_vouches_for_is_within_six_years(
    ctx: RegionContext,
) -> None:
    org_id, _, covered = await removed_org(ctx)
    # Its row says removed 7 years ago, but the log it vouches for was written minutes ago.
    seven_years = now().replace(year=now().year - 7)
    await DeletionCertificate.update({DeletionCertificate.removed_at: seven_years}).where(
        DeletionCertificate.org_id == org_id
    )
    request = run(now())

    result = audit_result(await purge(ctx, request))

    assert result.outcome == "success"
    assert await pruned_seq(org_id) == 0 < covered
    assert await DeletionCertificate.exists().where(DeletionCertificate.org_id == org_id)
    assert await removals_logged(org_id, request.run_id) == {}


async def test_a_deletion_certificate_goes_once_the_entries_it_covers_are_pruned(ctx: RegionContext) -> None:
    org_id, slug, covered = await removed_org(ctx)
    request = run(now().replace(year=now().year + 7))

    result = audit_result(await purge(ctx, request))

    assert result.outcome == "success"
    assert await pruned_seq(org_id) >= covered
    assert not await DeletionCertificate.exists().where(DeletionCertificate.org_id == org_id)
    assert await certificates.removed_with_slug(slug) == []
    assert (await removals_logged(org_id, request.run_id))["organisation_deletion_certificate"] == 1
    # What remains of its log (the retention notes) still verifies, by id.
    report = await verify_log(org_id, await ctx.signer.key_set())
    assert report.ok and report.pruned >= covered


async def test_a_tampered_log_keeps_its_certificate_and_checkpoints(pg_ctx: RegionContext) -> None:
    org_id, _, covered = await removed_org(pg_ctx)
    before = await checkpoint_ids(org_id)
    await AccessLogEntry.update({AccessLogEntry.actor: "member:evil"}).where(
        (AccessLogEntry.org_id == org_id) & (AccessLogEntry.seq == 2)
    )
    request = run(now().replace(year=now().year + 7))

    results = await purge(pg_ctx, request)

    [log_result] = [r for r in results if r.data_class == "access_log"]
    assert log_result.outcome == "failure" and str(org_id) in log_result.message
    assert await pruned_seq(org_id) < covered, "retention stopped before the changed entry #2"
    assert await DeletionCertificate.exists().where(DeletionCertificate.org_id == org_id)
    assert await checkpoint_ids(org_id) == before
    assert await removals_logged(org_id, request.run_id) == {}
