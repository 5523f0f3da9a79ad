"""Retention evidence (GDPR 5(1)(e), Normen FA 25, HIPAA 164.316(b)(2)(i); P7, P10, P18).

Reads this region's database only:
- the organisation's retention setting and contract end (``organisation``);
- per data class, the oldest remaining row and the rows past its limit plus 24 hours'
  grace (the purge runs daily): visits, calls, call telemetry and relay receipts by the
  organisation's 1 to 90 days; support metadata 9 months; member contact data contract
  end plus 90 days; payment records their 5-year hold; closed data-subject requests
  their keep period; the access log and the other audit records 6 years (evidence
  observations, compliance reports, attestations, checkpoints, deletion certificates,
  each by the time ``retention/audit_records.py`` measures it by). Of a removed
  organisation nothing but payment records (legal hold), the access log and the audit
  records may remain;
- the purge runs of the period (``purge_run``): how many ran, succeeded and failed;
- that the audit records are kept 6 years apart from the data retention (HIPAA
  164.316(b)(2)(i)): none of their tables is removed with the organisation, and every
  removal from the access log or another audit table was made by a recorded purge run
  whose cutoff lay 6 years back.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec
from piccolo.columns import Column
from piccolo.custom_types import Combinable
from piccolo.table import Table

from konsil.compliance.access_log.service import RETENTION_ACTOR
from konsil.compliance.access_log.tables import AccessLogCheckpoint, AccessLogEntry, AccessLogHead, DeletionCertificate
from konsil.compliance.attestations.tables import ControlAttestation
from konsil.compliance.dsr.tables import DataSubjectRequest
from konsil.compliance.evidence.common import (
    GRACE,
    NAMED,
    aware,
    day,
    failed,
    iso,
    listing,
    observation,
    passed,
    plural,
)
from konsil.compliance.evidence.model import Check, Observation, Scope
from konsil.compliance.evidence.tables import EvidenceObservation
from konsil.compliance.reports.tables import ReportFile, ReportJob
from konsil.compliance.retention import audit_records
from konsil.compliance.retention.audit_records import AUDIT_RECORD_TABLES
from konsil.compliance.retention.policy import (
    ACCESS_LOG_YEARS,
    AUDIT_RECORD_YEARS,
    CONTACT_DAYS_AFTER_CONTRACT,
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    RetentionPolicy,
)
from konsil.compliance.retention.tables import PurgeRun
from konsil.media_nodes.network_test.tables import NetworkTestResult
from konsil.platform.core.region import RegionContext
from konsil.tenants.messaging.tables import MESSAGING_TABLES
from konsil.tenants.tables import Call, CallRelayReceipt, CallTelemetry, Member, Organisation, PaymentRecord, Visit

COLLECTOR = "retention"
DESCRIPTION = (
    "Read the organisation's retention setting, the oldest remaining row of each data class "
    "against its limit plus 24 hours, the purge runs of the period, and how the access log "
    "is kept, from the region's own database."
)
# Classes every purge run covers; an organisation's own class comes on top.
REGION_WIDE_CLASSES = (
    "support_metadata",
    "payment_records",
    "messaging_records",
    "payment_events",
    "dsr_records",
    "consent_records",
    "access_log",
    "audit_records",
)
# A purge run's clock and the time its retention note was written may differ a little.
CLOCK_TOLERANCE = timedelta(hours=1)


class TableAge(msgspec.Struct, kw_only=True):
    """One table of one data class: its rows and those past the limit."""

    data_class: str
    table: str
    column: str  # the time the limit is measured by
    limit: str  # in words
    cutoff: str | None  # rows whose ``column`` is before this are past the limit plus grace
    rows: int
    earliest: str | None  # the earliest ``column`` value among the rows
    past: int
    past_ids: list[str]  # the first NAMED of them, by id


class ClassRuns(msgspec.Struct, kw_only=True):
    data_class: str
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    running: int = 0
    rows_removed: int = 0
    last_finished_outcome: str | None = None
    last_finished_at: str | None = None
    last_failure: str | None = None  # the purge's own message (never personal data)


class AuditRemoval(msgspec.Struct, kw_only=True):
    """An access-log entry saying retention removed ``removed`` rows of an audit table."""

    seq: int
    at: str
    table: str
    removed: int | None
    purge_run: str | None
    run_recorded: bool
    run_cutoff: str | None
    problem: str | None


class RetentionNote(msgspec.Struct, kw_only=True):
    """An access-log entry saying retention removed entries up to ``upto``."""

    seq: int
    at: str
    upto: int | None
    removed: int | None
    purge_run: str | None
    run_recorded: bool
    run_cutoff: str | None
    problem: str | None


async def collect(region: RegionContext, scope: Scope) -> Observation:
    org = (
        await Organisation.select(
            Organisation.id, Organisation.retention_days, Organisation.contract_end, Organisation.created_at
        )
        .where(Organisation.id == scope.org_id)
        .first()
    )
    ages = await _ages(region, scope, org)
    required = _required_classes(scope, org)
    runs = await _purge_runs(scope)
    notes, head = await _retention_notes(scope.org_id)
    removals = await _audit_removals(scope.org_id)
    kept = await _audit_records_held(scope.org_id)
    apart = _kept_apart(region)
    checks = [
        _data_within_retention(ages, org),
        _purges_ran(required, runs),
        _audit_records_kept(notes, removals, apart, head, org),
    ]
    evidence: dict[str, Any] = {
        "organisation": {
            "exists": org is not None,
            "retention_days": org["retention_days"] if org else None,
            "contract_end": org["contract_end"].isoformat() if org and org["contract_end"] else None,
            "created_at": iso(org["created_at"]) if org else None,
        },
        "grace_hours": int(GRACE.total_seconds() // 3600),
        "data_classes": msgspec.to_builtins(ages),
        "purge_runs": {"required": required, "per_class": msgspec.to_builtins(list(runs.values()))},
        "audit_records": {
            "access_log_years": ACCESS_LOG_YEARS,
            "pruned_seq": head[0],
            "head_seq": head[1],
            "retention_notes": msgspec.to_builtins(notes),
            "audit_record_years": AUDIT_RECORD_YEARS,
            "audit_record_removals": msgspec.to_builtins(removals),
            "audit_records_held": kept,
            "stores_removed_with_organisation": apart,
            "evidence_observations_kept": kept["evidence_observation"],
        },
    }
    return observation(scope, COLLECTOR, "EXAMINE", DESCRIPTION, checks, evidence)


# --- data within retention ------------------------------------------------------------------


async def _age(
    data_class: str,
    table: type[Table],
    column: Column | None,
    org_id: uuid.UUID,
    cutoff: datetime | None,
    limit: str,
) -> TableAge:
    """Rows of the organisation in ``table``, and those whose ``column`` lies before
    ``cutoff``; ``column`` None: every row is past (the organisation is gone)."""
    org_column: Column = table.org_id  # type: ignore[attr-defined]
    key: Column = table._meta.primary_key
    where: Combinable = org_column == org_id
    rows = int(await table.count().where(where).run())
    earliest: datetime | None = None
    past, past_where = rows, where
    if column is not None and rows:
        first = await table.select(column).where(where & column.is_not_null()).order_by(column).first().run()
        earliest = first[column._meta.name] if first else None
        past_where = where & (column < cutoff)
        past = int(await table.count().where(past_where).run())
    ids = await table.select(key).where(past_where).order_by(key).limit(NAMED).run() if past else []
    return TableAge(
        data_class=data_class,
        table=table._meta.tablename,
        column=column._meta.name if column is not None else "",
        limit=limit,
        cutoff=iso(cutoff),
        rows=rows,
        earliest=iso(earliest),
        past=past,
        past_ids=[str(row[key._meta.name]) for row in ids],
    )


async def _ages(region: RegionContext, scope: Scope, org: dict[str, Any] | None) -> list[TableAge]:
    now, org_id = scope.now, scope.org_id
    ages: list[TableAge] = []
    if org is None:  # removed: nothing of it may remain but payment records and the access log
        for table in region.organisation_tables:
            if hasattr(table, "org_id"):
                ages.append(await _age("organisation removed", table, None, org_id, None, "none: organisation removed"))
    else:
        days = int(org["retention_days"])
        if MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
            visit_cutoff: datetime | None = RetentionPolicy.visits(now, days) - GRACE
            visit_limit = f"{days} days"
        else:  # measured against the longest allowed retention; the setting itself fails
            visit_cutoff = now - timedelta(days=MAX_RETENTION_DAYS) - GRACE
            visit_limit = f"{days} days (outside {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS})"
        for table, column in (
            (Visit, Visit.arrived_at),
            (Call, Call.started_at),
            (CallTelemetry, CallTelemetry.at),
            (CallRelayReceipt, CallRelayReceipt.issued_at),
        ):
            ages.append(await _age("visits", table, column, org_id, visit_cutoff, visit_limit))
        support = RetentionPolicy.support_metadata(now) - GRACE
        ages.append(
            await _age("support_metadata", NetworkTestResult, NetworkTestResult.created_at, org_id, support, "9 months")
        )
        ages.append(await _member_contact(org, now))
        keep = region.region.lifecycle.dsr_keep_days
        dsr_cutoff = RetentionPolicy.dsr_records(now, keep) - GRACE
        ages.append(
            await _age(
                "dsr_records",
                DataSubjectRequest,
                DataSubjectRequest.completed_at,
                org_id,
                dsr_cutoff,
                f"{keep} days after closing",
            )
        )
    ages.append(
        await _age(
            "payment_records",
            PaymentRecord,
            PaymentRecord.keep_until,
            org_id,
            now - GRACE,
            "until its keep_until (5 years)",
        )
    )
    for table in MESSAGING_TABLES:
        ages.append(
            await _age(
                "messaging_records",
                table,
                table.expires_at,  # type: ignore[attr-defined]
                org_id,
                now - GRACE,
                "until its expires_at (the visitor retention)",
            )
        )
    log_cutoff = RetentionPolicy.access_log(now) - GRACE
    ages.append(
        await _age("access_log", AccessLogEntry, AccessLogEntry.at, org_id, log_cutoff, f"{ACCESS_LOG_YEARS} years")
    )
    audit_cutoff = RetentionPolicy.audit_records(now) - GRACE
    for table in audit_records.BATCHED:
        ages.append(await _audit_age(table, org_id, audit_cutoff))
    return ages


# The time each audit table's earliest row is shown by (its rule: ``audit_records.py``).
_AUDIT_TIMES: dict[type[Table], Column] = {
    ReportJob: ReportJob.created_at,
    EvidenceObservation: EvidenceObservation.collected_at,
    ControlAttestation: ControlAttestation.expires_at,
    AccessLogCheckpoint: AccessLogCheckpoint.at,
    DeletionCertificate: DeletionCertificate.removed_at,
}


async def _audit_age(table: type[Table], org_id: uuid.UUID, cutoff: datetime) -> TableAge:
    """The organisation's rows of one audit table and those the purge would remove at
    ``cutoff`` (6 years plus grace), by the same rule the purge uses."""
    org_column: Column = table.org_id  # type: ignore[attr-defined]
    key: Column = table._meta.primary_key
    column = _AUDIT_TIMES[table]
    rows = int(await table.count().where(org_column == org_id).run())
    first = await table.select(column).where(org_column == org_id).order_by(column).first().run() if rows else None
    past_where = await audit_records.due(table, org_id, cutoff) if rows else None
    past, ids = 0, []
    if past_where is not None:
        past = int(await table.count().where(past_where).run())
        ids = await table.select(key).where(past_where).order_by(key).limit(NAMED).run() if past else []
    name = table._meta.tablename
    return TableAge(
        data_class="audit_records",
        table=name,
        column=audit_records.MEASURED_BY[name],
        limit=f"{AUDIT_RECORD_YEARS} years",
        cutoff=iso(cutoff),
        rows=rows,
        earliest=iso(first[column._meta.name]) if first else None,
        past=past,
        past_ids=[str(row[key._meta.name]) for row in ids],
    )


async def _member_contact(org: dict[str, Any], now: datetime) -> TableAge:
    """Members' contact data is kept while the contract runs and 90 days after."""
    contract_end = org["contract_end"]
    due = (
        datetime.combine(contract_end + timedelta(days=CONTACT_DAYS_AFTER_CONTRACT), datetime.min.time(), now.tzinfo)
        if contract_end is not None
        else None
    )
    rows = int(await Member.count().where(Member.org_id == org["id"]).run())
    overdue = due is not None and now - GRACE > due
    ids = (
        [
            str(r["id"])
            for r in await Member.select(Member.id)
            .where(Member.org_id == org["id"])
            .order_by(Member.id)
            .limit(NAMED)
            .run()
        ]
        if overdue and rows
        else []
    )
    return TableAge(
        data_class="member_contact",
        table="member",
        column="contract_end",
        limit=f"contract end plus {CONTACT_DAYS_AFTER_CONTRACT} days",
        cutoff=iso(due),
        rows=rows,
        earliest=contract_end.isoformat() if contract_end is not None else None,
        past=rows if overdue else 0,
        past_ids=ids,
    )


def _data_within_retention(ages: list[TableAge], org: dict[str, Any] | None) -> Check:
    past = [age for age in ages if age.past]
    total = sum(age.past for age in past)
    rows = sum(age.rows for age in ages)
    setting = int(org["retention_days"]) if org is not None else None
    figures: dict[str, Any] = {"rows_checked": rows, "rows_past_retention": total, "retention_days": setting}
    problems = [
        f"{plural(age.past, 'row')} of {age.table} past {age.limit}"
        + (f" (earliest {age.earliest[:10]})" if age.earliest and age.column != "contract_end" else "")
        + (f", e.g. id {age.past_ids[0]}" if age.past_ids else "")
        for age in past
    ]
    if setting is not None and not MIN_RETENTION_DAYS <= setting <= MAX_RETENTION_DAYS:
        bounds = f"{MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}"
        problems.insert(0, f"the retention setting of {setting} days is outside {bounds}")
    if problems:
        return failed(
            "data_within_retention",
            f"Kept longer than allowed (24 hours' grace included): {listing(problems)}.",
            **figures,
        )
    if org is None:
        return passed(
            "data_within_retention",
            "The organisation was removed and none of its rows remain, apart from payment records within "
            "their 5-year hold and the access log and other audit records within their 6 years.",
            **figures,
        )
    return passed(
        "data_within_retention",
        f"No row is past its retention plus 24 hours: visits, calls, telemetry and relay receipts within "
        f"{org['retention_days']} days, support metadata within 9 months, member contact data within contract "
        f"end plus 90 days, payment records within their 5-year hold, closed requests, the access log and "
        f"the other audit records within their keep periods ({plural(rows, 'row')} checked).",
        **figures,
    )


# --- purge runs -----------------------------------------------------------------------------


def _required_classes(scope: Scope, org: dict[str, Any] | None) -> list[str]:
    """The data classes a purge must have run for in the period."""
    if org is None:
        return list(REGION_WIDE_CLASSES)
    contract_end = org["contract_end"]
    ended = contract_end is not None and contract_end < RetentionPolicy.member_contact(scope.now)
    return ["member_contact" if ended else "visits", *REGION_WIDE_CLASSES]


async def _purge_runs(scope: Scope) -> dict[str, ClassRuns]:
    """The purge runs of the period that covered the organisation: its own classes, and
    the classes run for the whole region (no organisation)."""
    where: Combinable = (
        (PurgeRun.started_at >= scope.period_start)
        & (PurgeRun.started_at < scope.period_end)
        & ((PurgeRun.org_id == scope.org_id) | PurgeRun.org_id.is_null())
    )
    rows = await (
        PurgeRun.select(
            PurgeRun.data_class,
            PurgeRun.outcome,
            PurgeRun.started_at,
            PurgeRun.finished_at,
            PurgeRun.rows_removed,
            PurgeRun.message,
        )
        .where(where)
        .order_by(PurgeRun.started_at)
        .run()
    )
    runs: dict[str, ClassRuns] = {}
    for row in rows:
        item = runs.setdefault(row["data_class"], ClassRuns(data_class=row["data_class"]))
        item.runs += 1
        item.rows_removed += int(row["rows_removed"] or 0)
        outcome = row["outcome"]
        if outcome == "running":
            item.running += 1
            continue
        if outcome == "success":
            item.succeeded += 1
        elif outcome == "skipped":
            item.skipped += 1
        else:
            item.failed += 1
            item.last_failure = row["message"] or outcome
        item.last_finished_outcome = outcome
        item.last_finished_at = iso(row["finished_at"] or row["started_at"])
    return runs


def _purges_ran(required: list[str], runs: dict[str, ClassRuns]) -> Check:
    missing = [name for name in required if name not in runs or not runs[name].succeeded]
    failing = [
        name
        for name in required
        if name in runs and runs[name].last_finished_outcome not in (None, "success") and name not in missing
    ]
    figures: dict[str, Any] = {
        "runs": sum(r.runs for r in runs.values()),
        "failed_runs": sum(r.failed for r in runs.values()),
        "rows_removed": sum(r.rows_removed for r in runs.values()),
    }
    problems = [f"no successful purge of {_words(name)}" for name in missing]
    problems += [
        f"the last purge of {_words(name)} failed ({runs[name].last_failure or runs[name].last_finished_outcome})"
        for name in failing
    ]
    if problems:
        return failed("purges_ran", f"In the period: {listing(problems)}.", **figures)
    failed_runs = figures["failed_runs"]
    note = f"; {plural(failed_runs, 'run')} failed and a later run succeeded" if failed_runs else ""
    return passed(
        "purges_ran",
        f"Every data class was purged successfully in the period ({plural(figures['runs'], 'run')}, "
        f"{plural(figures['rows_removed'], 'row')} removed{note}).",
        **figures,
    )


_CLASS_WORDS = {
    "visits": "visits and calls",
    "member_contact": "member contact data",
    "support_metadata": "support metadata",
    "payment_records": "payment records",
    "messaging_records": "SMS alert and client invitation send records",
    "payment_events": "the payment provider's webhook events",
    "dsr_records": "closed data-subject requests",
    "consent_records": "consent records kept as proof",
    "access_log": "the access log",
    "audit_records": "the audit records (evidence, reports, attestations, checkpoints, certificates)",
}


def _words(data_class: str) -> str:
    return _CLASS_WORDS.get(data_class, data_class)


# --- audit records kept 6 years -------------------------------------------------------------


# Every store of audit records: kept 6 years, also after their organisation is removed.
AUDIT_STORES: tuple[type[Table], ...] = (AccessLogEntry, AccessLogHead, PurgeRun, *AUDIT_RECORD_TABLES)


def _kept_apart(region: RegionContext) -> list[str]:
    """Audit stores among the tables removed with an organisation (should be none)."""
    return sorted(t._meta.tablename for t in region.organisation_tables if t in AUDIT_STORES)


async def _audit_records_held(org_id: uuid.UUID) -> dict[str, int]:
    """The organisation's rows in each audit table other than the log (files: of its reports)."""
    held: dict[str, int] = {}
    for table in AUDIT_RECORD_TABLES:
        if table is ReportFile:
            jobs = ReportJob.select(ReportJob.id).where(ReportJob.org_id == org_id)
            held["report_file"] = int(await ReportFile.count().where(ReportFile.report_id.is_in(jobs)).run())
            continue
        org_column: Column = table.org_id  # type: ignore[attr-defined]
        held[table._meta.tablename] = int(await table.count().where(org_column == org_id).run())
    return held


def _parse_note(object_id: str) -> tuple[int | None, int | None]:
    """``count:<n>;upto:<seq>:<hash prefix>`` → (n, seq)."""
    try:
        count_part, upto_part = object_id.split(";", 1)
        count = int(count_part.removeprefix("count:"))
        upto = int(upto_part.removeprefix("upto:").split(":", 1)[0])
    except ValueError:
        return None, None
    return count, upto


async def _retention_notes(org_id: uuid.UUID) -> tuple[list[RetentionNote], tuple[int, int]]:
    """Every removal retention made from the organisation's log, each checked against
    the purge run it names; and the head's (pruned seq, seq)."""
    head = (
        await AccessLogHead.select(AccessLogHead.pruned_seq, AccessLogHead.seq)
        .where(AccessLogHead.org_id == org_id)
        .first()
        .run()
    )
    pruned, head_seq = (int(head["pruned_seq"]), int(head["seq"])) if head else (0, 0)
    if not pruned:  # nothing was ever removed (a removal moves the pruned point)
        return [], (pruned, head_seq)
    rows = await (
        AccessLogEntry.select(
            AccessLogEntry.seq, AccessLogEntry.at, AccessLogEntry.subject_ref, AccessLogEntry.object_id
        )
        .where(
            (AccessLogEntry.org_id == org_id)
            & (AccessLogEntry.actor == RETENTION_ACTOR)
            & (AccessLogEntry.action == "delete")
            & (AccessLogEntry.object_type == "access_log_entry")
        )
        .order_by(AccessLogEntry.seq)
        .run()
    )
    run_ids = _run_ids(list(rows))
    cutoffs = await _run_cutoffs(run_ids, "access_log")
    notes = [_note(row, run_ids, cutoffs) for row in rows]
    return notes, (pruned, head_seq)


def _run_ids(rows: list[dict[str, Any]]) -> dict[str, uuid.UUID]:
    """``purge-run:<uuid>`` subjects → the run ids they name."""
    run_ids: dict[str, uuid.UUID] = {}
    for row in rows:
        ref = str(row["subject_ref"])
        if ref.startswith("purge-run:"):
            try:
                run_ids[ref] = uuid.UUID(ref.removeprefix("purge-run:"))
            except ValueError:
                pass
    return run_ids


async def _run_cutoffs(run_ids: dict[str, uuid.UUID], data_class: str) -> dict[uuid.UUID, datetime | None]:
    """The cutoff of each named run's purge of ``data_class``, for the runs recorded."""
    cutoffs: dict[uuid.UUID, datetime | None] = {}
    if run_ids:
        for run in await (
            PurgeRun.select(PurgeRun.run_id, PurgeRun.cutoff)
            .where(PurgeRun.run_id.is_in(list(set(run_ids.values()))) & (PurgeRun.data_class == data_class))
            .run()
        ):
            cutoffs[uuid.UUID(str(run["run_id"]))] = run["cutoff"]
    return cutoffs


def _run_problem(
    at: datetime, run_id: uuid.UUID | None, cutoffs: dict[uuid.UUID, datetime | None], what: str
) -> str | None:
    """Why a removal dated ``at`` was not made by a recorded purge run whose cutoff lay
    6 years before it, or None."""
    if run_id is None or run_id not in cutoffs:
        return f"no purge run of {what} is recorded for it"
    cutoff = cutoffs[run_id]
    if cutoff is None or aware(cutoff) > RetentionPolicy.access_log(at) + CLOCK_TOLERANCE:
        return f"its purge run's cutoff ({day(cutoff)}) lies less than {ACCESS_LOG_YEARS} years before it ran"
    return None


async def _audit_removals(org_id: uuid.UUID) -> list[AuditRemoval]:
    """Every removal retention made from the organisation's other audit tables (one
    access-log entry per table and batch), each checked against the purge run it names."""
    names = [t._meta.tablename for t in AUDIT_RECORD_TABLES]
    rows = await (
        AccessLogEntry.select(
            AccessLogEntry.seq,
            AccessLogEntry.at,
            AccessLogEntry.subject_ref,
            AccessLogEntry.object_type,
            AccessLogEntry.object_id,
        )
        .where(
            (AccessLogEntry.org_id == org_id)
            & (AccessLogEntry.actor == RETENTION_ACTOR)
            & (AccessLogEntry.action == "delete")
            & AccessLogEntry.object_type.is_in(names)
        )
        .order_by(AccessLogEntry.seq)
        .run()
    )
    run_ids = _run_ids(list(rows))
    cutoffs = await _run_cutoffs(run_ids, "audit_records")
    removals = []
    for row in rows:
        at = aware(row["at"])
        run_id = run_ids.get(str(row["subject_ref"]))
        try:
            removed: int | None = int(str(row["object_id"]).removeprefix("count:"))
        except ValueError:
            removed = None
        removals.append(
            AuditRemoval(
                seq=int(row["seq"]),
                at=iso(at) or "",
                table=str(row["object_type"]),
                removed=removed,
                purge_run=str(run_id) if run_id else None,
                run_recorded=run_id is not None and run_id in cutoffs,
                run_cutoff=iso(cutoffs.get(run_id)) if run_id is not None else None,
                problem=_run_problem(at, run_id, cutoffs, "the audit records"),
            )
        )
    return removals


def _note(
    row: dict[str, Any], run_ids: dict[str, uuid.UUID], cutoffs: dict[uuid.UUID, datetime | None]
) -> RetentionNote:
    at = aware(row["at"])
    removed, upto = _parse_note(str(row["object_id"]))
    run_id = run_ids.get(str(row["subject_ref"]))
    recorded = run_id is not None and run_id in cutoffs
    cutoff = cutoffs.get(run_id) if run_id is not None else None
    problem = None
    if upto is None:
        problem = "it does not say up to which entry it removed"
    else:
        problem = _run_problem(at, run_id, cutoffs, "the access log")
    return RetentionNote(
        seq=int(row["seq"]),
        at=iso(at) or "",
        upto=upto,
        removed=removed,
        purge_run=str(run_id) if run_id else None,
        run_recorded=recorded,
        run_cutoff=iso(cutoff),
        problem=problem,
    )


_AUDIT_WORDS = {
    "report_job": "compliance reports",
    "report_file": "report files",
    "evidence_observation": "evidence observations",
    "control_attestation": "control attestations",
    "access_log_checkpoint": "access-log checkpoints",
    "organisation_deletion_certificate": "the deletion certificate",
}


def _too_young(org: dict[str, Any] | None, at: str) -> bool:
    """A removal dated ``at`` less than 6 years after the organisation was created."""
    return org is not None and aware(org["created_at"]) > RetentionPolicy.access_log(_parsed(at))


def _audit_records_kept(
    notes: list[RetentionNote],
    removals: list[AuditRemoval],
    apart: list[str],
    head: tuple[int, int],
    org: dict[str, Any] | None,
) -> Check:
    pruned, head_seq = head
    figures: dict[str, Any] = {
        "entries_removed_by_retention": pruned,
        "retention_removals": len(notes),
        "audit_records_removed_by_retention": sum(r.removed or 0 for r in removals),
        "audit_record_removals": len(removals),
    }
    problems = [f"{listing(apart)} are removed with the organisation"] if apart else []
    created = day(org["created_at"]) if org is not None else ""
    for note in notes:
        if note.problem:
            problems.append(f"the removal of entries up to #{note.upto} (entry #{note.seq}): {note.problem}")
        elif _too_young(org, note.at):
            problems.append(
                f"the removal of entries up to #{note.upto} (entry #{note.seq}, {note.at[:10]}) came less than "
                f"{ACCESS_LOG_YEARS} years after the organisation was created ({created})"
            )
    if pruned and not notes:
        problems.append(f"entries #1 to #{pruned} are gone but no retention removal is recorded in the log")
    for removal in removals:
        what = f"the removal of {_AUDIT_WORDS.get(removal.table, removal.table)} (entry #{removal.seq}"
        if removal.problem:
            problems.append(f"{what}): {removal.problem}")
        elif _too_young(org, removal.at):
            problems.append(
                f"{what}, {removal.at[:10]}) came less than {AUDIT_RECORD_YEARS} years after the organisation "
                f"was created ({created})"
            )
    if problems:
        return failed(
            "audit_records_kept",
            f"The audit records were not kept {AUDIT_RECORD_YEARS} years: {listing(problems)}.",
            **figures,
        )
    done = [
        f"{plural(len(notes), 'removal')} from the access log" if notes else "",
        f"{plural(len(removals), 'removal')} of other audit records" if removals else "",
    ]
    removed = (
        f"{' and '.join(d for d in done if d)} by retention, each by a recorded purge run with a "
        f"{AUDIT_RECORD_YEARS}-year cutoff"
        if notes or removals
        else "nothing has been removed from them"
    )
    return passed(
        "audit_records_kept",
        f"The access log ({plural(head_seq, 'entry', 'entries')}) and the other audit records (evidence, reports, "
        f"attestations, checkpoints, deletion certificates) are kept in their own tables, not removed with the "
        f"organisation nor by the 1 to 90 day data retention; {removed}.",
        **figures,
    )


def _parsed(value: str) -> datetime:
    return datetime.fromisoformat(value)
