"""Which audit records are past their 6 years (data class ``audit_records``), and
removing them one batch at a time.

Audit records are documentation in HIPAA's sense (164.316(b)(2)(i): kept 6 years from
its creation or from when it was last in effect, whichever is later). No organisation
owns them (``regions.tables.ORGANISATION_OWNED`` leaves them out), so they outlive a
removed organisation, and the 1 to 90 day data retention never touches them. They are
kept as long as the access log (``policy.AUDIT_RECORD_YEARS``), each table measured by
its own time, chosen here:

- ``report_job``: ``finished_at``, when the report was made (the document's creation);
  a job that never finished (failed, or queued and forgotten) by ``created_at``. Its
  ``report_file`` rows go with it in the same batch, never apart: a job without its
  files would list a report that cannot be fetched, files without a job nobody can reach.
- ``evidence_observation``: ``collected_at``, when it was observed. An observation a
  report pinned (``report_id``) stays while that report does, since the report was
  decided on it and an auditor re-hashes it; the report is made after the observation,
  so the two go in the same run or the observation later.
- ``control_attestation``: when it was last in effect, the earlier of ``expires_at`` and
  ``withdrawn_at``. ``signed_at`` comes before both, so "the later of creation and last
  in effect" is always that one (a renewal is a new row, with its own times).
- ``access_log_checkpoint``: ``at``, and only once the entries it covers are gone: its
  ``seq`` at or below the retention point of the organisation's log (the head's
  ``pruned_seq``: entries removed by retention, never by hand). A checkpoint past that
  point can no longer be compared with anything (``verify`` skips it); one before it is
  what an auditor's comparison of the remaining log rests on. The organisation's latest
  checkpoint is never removed: the region's next checkpoint is checked against it
  (``checkpoints._since_previous``). An organisation without a head keeps its checkpoints.
- ``organisation_deletion_certificate``: ``removed_at``, and only once the entries its
  checkpoint covers are pruned (the retention point reaches the checkpoint's ``seq``):
  while any of the log it vouches for remains, it proves the removal and is what finds that
  log by slug. Without a checkpoint (the log did not verify at the removal) it stays while
  any entry dated up to the removal remains. A certificate that no longer reads as
  signed stays: it may be the evidence of a change.

The rules for checkpoints and certificates read the retention point as it is, so the
access log's purge runs first in a run (``policy.DATA_CLASSES``) and a chain it refused
to prune (not intact) keeps them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable

from piccolo.columns import Column
from piccolo.custom_types import Combinable
from piccolo.table import Table

from konsil.compliance.access_log import certificates
from konsil.compliance.access_log.tables import AccessLogCheckpoint, AccessLogEntry, AccessLogHead, DeletionCertificate
from konsil.compliance.attestations.tables import ControlAttestation
from konsil.compliance.evidence.tables import EvidenceObservation
from konsil.compliance.reports.tables import ReportFile, ReportJob

# In the order a run removes them: reports before the observations they pinned; the
# checkpoints and the certificate last (they depend on the access log only).
AUDIT_RECORD_TABLES: tuple[type[Table], ...] = (
    ReportJob,
    ReportFile,
    EvidenceObservation,
    ControlAttestation,
    AccessLogCheckpoint,
    DeletionCertificate,
)
# The tables a batch is taken from, in this order (report files go with their job's batch).
BATCHED: tuple[type[Table], ...] = tuple(t for t in AUDIT_RECORD_TABLES if t is not ReportFile)
# Each table's time, in words, for the evidence collector.
MEASURED_BY: dict[str, str] = {
    "report_job": "finished_at (created_at if it never finished)",
    "report_file": "its report's time",
    "evidence_observation": "collected_at (kept with the report that pinned it)",
    "control_attestation": "the earlier of expires_at and withdrawn_at",
    "access_log_checkpoint": "at, once the log entries it covers are removed",
    "organisation_deletion_certificate": "removed_at, once the log entries it covers are removed",
}


def _report_jobs(org_id: uuid.UUID, cutoff: dt.datetime) -> Combinable:
    finished = ReportJob.finished_at < cutoff
    never = ReportJob.finished_at.is_null() & (ReportJob.created_at < cutoff)
    return (ReportJob.org_id == org_id) & (finished | never)


def _observations(org_id: uuid.UUID, cutoff: dt.datetime) -> Combinable:
    # Pinned to a report that stays: stays too. A report that is gone or due frees it.
    kept_reports = ReportJob.select(ReportJob.id).where(
        (ReportJob.finished_at >= cutoff) | (ReportJob.finished_at.is_null() & (ReportJob.created_at >= cutoff))
    )
    unpinned = EvidenceObservation.report_id.is_null()
    report_gone = EvidenceObservation.report_id.not_in(kept_reports)
    old = (EvidenceObservation.org_id == org_id) & (EvidenceObservation.collected_at < cutoff)
    return old & (unpinned | report_gone)


def _attestations(org_id: uuid.UUID, cutoff: dt.datetime) -> Combinable:
    # min(expires_at, withdrawn_at) < cutoff, with a NULL withdrawal never matching.
    last_in_effect = (ControlAttestation.expires_at < cutoff) | (ControlAttestation.withdrawn_at < cutoff)
    return (ControlAttestation.org_id == org_id) & last_in_effect


async def _retention_point(org_id: uuid.UUID) -> int | None:
    """The last entry retention removed from the organisation's log (0: none), or None
    when it has no head (its log is not here, or was deleted beside the service)."""
    row = await AccessLogHead.select(AccessLogHead.pruned_seq).where(AccessLogHead.org_id == org_id).first()
    return None if row is None else int(row["pruned_seq"])


async def _checkpoints(org_id: uuid.UUID, cutoff: dt.datetime) -> Combinable | None:
    pruned = await _retention_point(org_id)
    if not pruned:
        return None
    latest = (
        await AccessLogCheckpoint.select(AccessLogCheckpoint.id)
        .where(AccessLogCheckpoint.org_id == org_id)
        .order_by(AccessLogCheckpoint.seq, AccessLogCheckpoint.at, ascending=False)
        .first()
    )
    if latest is None:
        return None
    latest_id: uuid.UUID = latest["id"]
    return (
        (AccessLogCheckpoint.org_id == org_id)
        & (AccessLogCheckpoint.at < cutoff)
        & (AccessLogCheckpoint.seq <= pruned)
        & (AccessLogCheckpoint.id != latest_id)
    )


async def _certificate(org_id: uuid.UUID, cutoff: dt.datetime) -> Combinable | None:
    where = (DeletionCertificate.org_id == org_id) & (DeletionCertificate.removed_at < cutoff)
    if not await DeletionCertificate.exists().where(where):
        return None
    try:
        signed = await certificates.stored_certificate(org_id)
    except certificates.CertificateDamaged:
        return None
    if signed is None:
        return None
    inner = signed.certificate.checkpoint
    if inner is not None:
        pruned = await _retention_point(org_id)
        return where if pruned is not None and pruned >= inner.checkpoint.seq else None
    removed_at = dt.datetime.fromisoformat(signed.certificate.removed_at)
    left = (AccessLogEntry.org_id == org_id) & (AccessLogEntry.at <= removed_at)
    return None if await AccessLogEntry.exists().where(left) else where


_Rule = Callable[[uuid.UUID, dt.datetime], Awaitable[Combinable | None]]


def _rule(table: type[Table]) -> _Rule:
    plain: dict[type[Table], Callable[[uuid.UUID, dt.datetime], Combinable]] = {
        ReportJob: _report_jobs,
        EvidenceObservation: _observations,
        ControlAttestation: _attestations,
    }
    if table in plain:
        where = plain[table]

        async def timed(org_id: uuid.UUID, cutoff: dt.datetime) -> Combinable | None:
            return where(org_id, cutoff)

        return timed
    return _checkpoints if table is AccessLogCheckpoint else _certificate


async def due(table: type[Table], org_id: uuid.UUID, cutoff: dt.datetime) -> Combinable | None:
    """The rows of ``table`` of the organisation that are past their retention as the
    log stands now (None: none can be), report files excepted (they go with their job)."""
    return await _rule(table)(org_id, cutoff)


async def due_counts(org_id: uuid.UUID, cutoff: dt.datetime) -> dict[str, int]:
    """What a purge would remove of the organisation now (a dry run; the evidence)."""
    counts: dict[str, int] = {}
    for table in BATCHED:
        where = await due(table, org_id, cutoff)
        counts[table._meta.tablename] = int(await table.count().where(where)) if where is not None else 0
        if table is ReportJob:
            files = 0
            if counts["report_job"]:
                jobs = ReportJob.select(ReportJob.id).where(_report_jobs(org_id, cutoff))
                files = int(await ReportFile.count().where(ReportFile.report_id.is_in(jobs)))
            counts["report_file"] = files
    return {name: counts[name] for name in (t._meta.tablename for t in AUDIT_RECORD_TABLES)}


async def remove_batch(table: type[Table], org_id: uuid.UUID, cutoff: dt.datetime, size: int) -> dict[str, int]:
    """Remove up to ``size`` of the organisation's rows of ``table`` that are past their
    retention (a job's files with it) and return the rows removed per table; empty when
    none is left. Joins the caller's transaction."""
    where = await due(table, org_id, cutoff)
    if where is None:
        return {}
    key: Column = table._meta.primary_key
    ids = [row[key._meta.name] for row in await table.select(key).where(where).order_by(key).limit(size)]
    if not ids:
        return {}
    gone = await table.delete().where(where & key.is_in(ids)).returning(key)
    removed = [row[key._meta.name] for row in gone]
    counts = {table._meta.tablename: len(removed)}
    if table is ReportJob and removed:
        files = await ReportFile.delete().where(ReportFile.report_id.is_in(removed)).returning(ReportFile.id)
        counts["report_file"] = len(files)
    return counts


async def organisations_due(cutoff: dt.datetime) -> list[uuid.UUID]:
    """The organisations (removed ones included) that may have audit records past
    ``cutoff``: a superset, each table's own rule decides per organisation. Checkpoints
    can be due only where retention has removed log entries (an index-free table scan of
    every checkpoint is avoided that way)."""
    found: set[uuid.UUID] = set()
    candidates: list[tuple[type[Table], Combinable]] = [
        (ReportJob, (ReportJob.finished_at < cutoff) | (ReportJob.created_at < cutoff)),
        (EvidenceObservation, EvidenceObservation.collected_at < cutoff),
        (ControlAttestation, (ControlAttestation.expires_at < cutoff) | (ControlAttestation.withdrawn_at < cutoff)),
        (DeletionCertificate, DeletionCertificate.removed_at < cutoff),
        (AccessLogHead, AccessLogHead.pruned_seq > 0),
    ]
    for table, where in candidates:
        org: Column = table.org_id  # type: ignore[attr-defined]
        for row in await table.select(org).where(where).distinct():
            found.add(uuid.UUID(str(row["org_id"])))
    return sorted(found)
