"""Data-subject request evidence (P17; GDPR 12(3), 15, 16, 17 with 17(3)(b), 20):
requests answered within 28 days, rectifications logged, erasures complete,
exports valid against the published export format.

Reads this region's ``data_subject_request`` rows and access log. The erasure and
export checks search the subject's records by the request's blind index (the DSR
search of ``compliance/dsr/service.py``), decrypt nothing, and log each search in the
organisation's access log like any other search of personal data. The evidence holds
request ids, kinds, counts and ages, never an identifier.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

import msgspec

from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.compliance.dsr import service
from konsil.compliance.dsr.schemas import EXPORT_FORMAT, EXPORT_VERSION, SubjectExport
from konsil.compliance.dsr.tables import DataSubjectRequest
from konsil.compliance.evidence.common import listed, named, observation, plural
from konsil.compliance.evidence.model import Check, Observation, Scope
from konsil.platform.core.access import AccessEvent
from konsil.platform.core.region import RegionContext
from konsil.tenants.tables import Organisation

COLLECTOR = "dsr"
DEADLINE = service.DUE_AFTER  # 28 days (P17: "within 4 weeks"; GDPR 12(3): one month)
PAYMENT_YEARS = 5  # P9: payment records are kept 5 years, and no longer
ACTOR = "system:evidence"

Row = dict[str, Any]


def _days(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() / 86400, 1)


def _years_back(moment: dt.datetime, years: int) -> dt.datetime:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)


async def _requests(scope: Scope) -> list[Row]:
    """The organisation's requests open at some time in the period: received before
    its end and not closed before its start."""
    rows = (
        await DataSubjectRequest.select(
            DataSubjectRequest.id,
            DataSubjectRequest.kind,
            DataSubjectRequest.identifier_kind,
            DataSubjectRequest.identifier_index,
            DataSubjectRequest.received_at,
            DataSubjectRequest.due_at,
            DataSubjectRequest.status,
            DataSubjectRequest.completed_at,
            DataSubjectRequest.fulfilled_by,
            DataSubjectRequest.outcome,
        )
        .where(
            (DataSubjectRequest.org_id == scope.org_id)
            & (DataSubjectRequest.received_at < scope.period_end)
            & (DataSubjectRequest.completed_at.is_null() | (DataSubjectRequest.completed_at >= scope.period_start))
        )
        .order_by(DataSubjectRequest.received_at)
        .run()
    )
    return list(rows)


def _closed_in_period(row: Row, scope: Scope, kind: str) -> bool:
    closed = row["completed_at"]
    return (
        row["kind"] == kind
        and row["status"] == "completed"
        and closed is not None
        and scope.period_start <= closed < scope.period_end
    )


async def _log_search(region: RegionContext, scope: Scope, row: Row, records: service.Records, why: str) -> None:
    """One "search" entry for the request and one per record of the subject found, as
    the DSR search itself logs them."""
    targets = [
        ("data_subject_request", row["id"], service.dsr_subject(row["id"])),
        *records.subjects(),
    ]
    await region.access_log.append_many(
        [
            AccessEvent(
                org_id=scope.org_id,
                actor=ACTOR,
                actor_role="system",
                on_behalf_of=ACTOR,
                subject_ref=subject,
                action="search",
                object_type=object_type,
                object_id=str(object_id),
                source_address="local",
                outcome="success",
                purpose=f"compliance evidence: {why}",
                source=region.source,
            )
            for object_type, object_id, subject in targets
        ]
    )


# --- access_within_deadline --------------------------------------------------------------------


def access_within_deadline(rows: list[Row], scope: Scope) -> tuple[Check, dict[str, Any]]:
    late: list[dict[str, Any]] = []
    overdue: list[dict[str, Any]] = []
    on_time = pending = 0
    by_kind: dict[str, int] = {}
    for row in rows:
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + 1
        deadline = row["received_at"] + DEADLINE
        closed = row["completed_at"]
        if closed is not None:
            if closed <= deadline:
                on_time += 1
            else:
                late.append({"id": str(row["id"]), "kind": row["kind"], "days": _days(closed - row["received_at"])})
        elif scope.now > deadline:
            overdue.append(
                {"id": str(row["id"]), "kind": row["kind"], "age_days": _days(scope.now - row["received_at"])}
            )
        else:
            pending += 1
    evidence = {
        "deadline_days": DEADLINE.days,
        "requests": len(rows),
        "by_kind": dict(sorted(by_kind.items())),
        "closed_on_time": on_time,
        "open_within_deadline": pending,
        "closed_late": listed(late),
        "open_overdue": listed(overdue),
    }
    figures: dict[str, int | float | str | bool | None] = {
        "requests": len(rows),
        "closed_on_time": on_time,
        "open_within_deadline": pending,
        "closed_late": len(late),
        "overdue": len(overdue),
    }
    if not rows:
        reason = "No data-subject request was open in the period."
        return Check(name="access_within_deadline", result="not_applicable", reason=reason, figures=figures), evidence
    scope_words = (
        f"Of {plural(len(rows), 'data-subject request')} open in the period (every kind: GDPR 12(3) gives "
        f"one month for each), {on_time} closed within {DEADLINE.days} days and {pending} are open and not yet due."
    )
    if not late and not overdue:
        return Check(name="access_within_deadline", result="pass", reason=scope_words, figures=figures), evidence
    problems = []
    if overdue:
        problems.append(
            f"{plural(len(overdue), 'request')} still open past {DEADLINE.days} days ("
            + named([f"{o['id']}, {o['kind']}, {o['age_days']:g} days old" for o in overdue])
            + ")"
        )
    if late:
        problems.append(
            f"{plural(len(late), 'request')} closed late ("
            + named([f"{o['id']}, {o['kind']}, after {o['days']:g} days" for o in late])
            + ")"
        )
    reason = f"{scope_words} Fails: {'; '.join(problems)}. No extension is recorded: Konsil has no extension record."
    return Check(name="access_within_deadline", result="fail", reason=reason, figures=figures), evidence


# --- rectification_logged ----------------------------------------------------------------------


def _changed(row: Row) -> int:
    """How many member and visit records the rectification says it changed."""
    try:
        outcome = json.loads(row["outcome"]) if row["outcome"] else {}
    except ValueError:
        return 0
    return sum(int(outcome.get(key, 0)) for key in ("members", "visits") if isinstance(outcome.get(key, 0), int))


async def _logged(scope: Scope, row: Row) -> bool:
    """A successful "update" entry about the request, by the member who fulfilled it,
    right after one "update" entry per changed record (same actor, one transaction:
    the organisation's log is locked meanwhile, so they are consecutive)."""
    marks = (
        await AccessLogEntry.select(AccessLogEntry.seq, AccessLogEntry.actor)
        .where(
            (AccessLogEntry.org_id == scope.org_id)
            & (AccessLogEntry.object_type == "data_subject_request")
            & (AccessLogEntry.object_id == str(row["id"]))
            & (AccessLogEntry.action == "update")
            & (AccessLogEntry.outcome == "success")
        )
        .run()
    )
    changed = _changed(row)
    for mark in marks:
        if mark["actor"] != row["fulfilled_by"]:
            continue
        if changed == 0:
            return True
        before = (
            await AccessLogEntry.count()
            .where(
                (AccessLogEntry.org_id == scope.org_id)
                & (AccessLogEntry.seq >= mark["seq"] - changed)
                & (AccessLogEntry.seq < mark["seq"])
                & (AccessLogEntry.action == "update")
                & AccessLogEntry.object_type.is_in(["member", "visit"])
                & (AccessLogEntry.actor == mark["actor"])
                & (AccessLogEntry.outcome == "success")
            )
            .run()
        )
        if before == changed:
            return True
    return False


async def rectification_logged(rows: list[Row], scope: Scope) -> tuple[Check, dict[str, Any]]:
    closed = [r for r in rows if _closed_in_period(r, scope, "rectification")]
    missing = [str(r["id"]) for r in closed if not await _logged(scope, r)]
    evidence = {"closed_rectifications": len(closed), "without_change_entries": listed(missing)}
    figures: dict[str, int | float | str | bool | None] = {"closed": len(closed), "unlogged": len(missing)}
    if not closed:
        reason = "No rectification request was completed in the period."
        return Check(name="rectification_logged", result="not_applicable", reason=reason, figures=figures), evidence
    if missing:
        reason = (
            f"{len(missing)} of {plural(len(closed), 'rectification')} completed in the period have no matching "
            f"change entries in the access log (a change entry per corrected record and one for the request, by "
            f"the member who completed it): {named(missing)}."
        )
        return Check(name="rectification_logged", result="fail", reason=reason, figures=figures), evidence
    reason = (
        f"Every rectification completed in the period ({len(closed)}) has its change entries in the access log: "
        "one per corrected record and one for the request, by the member who completed it."
    )
    return Check(name="rectification_logged", result="pass", reason=reason, figures=figures), evidence


# --- erasure_complete --------------------------------------------------------------------------


async def _left_after_erasure(region: RegionContext, scope: Scope, row: Row) -> dict[str, int]:
    """What the DSR search still finds of the subject that existed when the erasure
    was completed (a later visit is new data, not a failed erasure)."""
    records = await service.find(scope.org_id, row["identifier_kind"], row["identifier_index"])
    await _log_search(region, scope, row, records, "erasure check")
    erased_at = row["completed_at"]
    visits = {v["id"] for v in records.visits if v["arrived_at"] <= erased_at}
    calls = {c["id"] for c in records.calls if c["visit_id"] in visits}
    hold_from = _years_back(scope.now, PAYMENT_YEARS)
    paid = [p for p in records.payments if p["created_at"] <= erased_at]
    return {
        "members": sum(1 for m in records.members if m["created_at"] <= erased_at),
        "visits": len(visits),
        "calls": len(calls),
        "telemetry": sum(1 for t in records.telemetry if t["visit_id"] in visits),
        "relay_receipts": sum(1 for r in records.receipts if r["call_id"] in calls),
        "payments_past_5_years": sum(1 for p in paid if p["created_at"] < hold_from),
        "payments_kept_by_law": sum(1 for p in paid if p["created_at"] >= hold_from),
    }


# What an erasure must leave nothing of, in words.
LEFT = {
    "members": ("member account", "member accounts"),
    "visits": ("visit", "visits"),
    "calls": ("call", "calls"),
    "telemetry": ("call troubleshooting record", "call troubleshooting records"),
    "relay_receipts": ("relay receipt", "relay receipts"),
    "payments_past_5_years": ("payment record older than 5 years", "payment records older than 5 years"),
}


async def erasure_complete(region: RegionContext, rows: list[Row], scope: Scope) -> tuple[Check, dict[str, Any]]:
    closed = [r for r in rows if _closed_in_period(r, scope, "erasure")]
    results: list[dict[str, Any]] = []
    for row in closed:
        left = await _left_after_erasure(region, scope, row)
        results.append({"id": str(row["id"]), **left})
    failed = [r for r in results if any(r[k] for k in LEFT)]
    kept = sum(r["payments_kept_by_law"] for r in results)
    evidence = {"erasures": listed(results), "completed_erasures": len(closed)}
    figures: dict[str, int | float | str | bool | None] = {
        "erasures": len(closed),
        "incomplete": len(failed),
        "payments_kept_by_law": kept,
    }
    if not closed:
        reason = "No erasure request was completed in the period."
        return Check(name="erasure_complete", result="not_applicable", reason=reason, figures=figures), evidence
    searched = (
        f"For {plural(len(closed), 'erasure')} completed in the period, the subject was searched for again in "
        "every store (member accounts, visits, calls, call troubleshooting data, relay receipts, payment records)"
    )
    if failed:

        def what(r: dict[str, Any]) -> str:
            return f"{r['id']}: " + ", ".join(plural(r[k], *label) for k, label in LEFT.items() if r[k])

        still = named([what(r) for r in failed])
        reason = f"{searched}. Fails: data is still there for {plural(len(failed), 'request')} ({still})."
        return Check(name="erasure_complete", result="fail", reason=reason, figures=figures), evidence
    reason = (
        f"{searched}: nothing is left except {plural(kept, 'payment record')} younger than "
        f"{PAYMENT_YEARS} years, which the law requires us to keep (GDPR 17(3)(b))."
    )
    return Check(name="erasure_complete", result="pass", reason=reason, figures=figures), evidence


# --- export_valid ------------------------------------------------------------------------------


def published_schema_sha256() -> str:
    """The SHA-256 of the export's JSON Schema as published (msgspec's schema of
    ``SubjectExport``, canonical JSON): which format the exports were checked against."""
    schema = msgspec.json.schema(SubjectExport)
    return hashlib.sha256(msgspec.json.Encoder(order="sorted").encode(schema)).hexdigest()


def validate(export: SubjectExport) -> str | None:
    """Why the export's JSON does not validate against the published format, else None."""
    try:
        decoded = msgspec.json.decode(msgspec.json.encode(export), type=SubjectExport)
    except msgspec.MsgspecError as exc:
        return str(exc)  # msgspec names the path and the expected type, never a value
    if decoded.format != EXPORT_FORMAT or decoded.version != EXPORT_VERSION:
        return f"format {decoded.format!r} version {decoded.version} is not {EXPORT_FORMAT!r} version {EXPORT_VERSION}"
    return None


async def _exported(scope: Scope) -> set[uuid.UUID]:
    """Requests exported in the period, from the access log."""
    rows = (
        await AccessLogEntry.select(AccessLogEntry.object_id)
        .where(
            (AccessLogEntry.org_id == scope.org_id)
            & (AccessLogEntry.action == "export")
            & (AccessLogEntry.object_type == "data_subject_request")
            & (AccessLogEntry.outcome == "success")
            & (AccessLogEntry.at >= scope.period_start)
            & (AccessLogEntry.at < scope.period_end)
        )
        .run()
    )
    found = set()
    for row in rows:
        try:
            found.add(uuid.UUID(row["object_id"]))
        except ValueError:
            continue
    return found


async def export_valid(region: RegionContext, rows: list[Row], scope: Scope) -> tuple[Check, dict[str, Any]]:
    exported = await _exported(scope)
    answered = {
        r["id"] for r in rows if r["kind"] in ("access", "portability") and _closed_in_period(r, scope, r["kind"])
    }
    wanted = exported | answered
    by_id = {r["id"]: r for r in rows}
    missing_ids = [i for i in wanted if i not in by_id]
    if missing_ids:
        extra = (
            await DataSubjectRequest.select()
            .where((DataSubjectRequest.org_id == scope.org_id) & DataSubjectRequest.id.is_in(missing_ids))
            .run()
        )
        by_id.update({r["id"]: r for r in extra})
    org = await Organisation.select().where(Organisation.id == scope.org_id).first().run()
    results: list[dict[str, Any]] = []
    for request_id in sorted(wanted, key=str):
        row = by_id.get(request_id)
        if row is None or org is None:
            results.append({"id": str(request_id), "valid": None, "problem": "the request record is gone"})
            continue
        try:
            export, records = await service.masked_export(region, org, row)
        except (msgspec.MsgspecError, ValueError) as exc:
            results.append({"id": str(request_id), "valid": False, "problem": f"no export can be built: {exc}"})
            continue
        await _log_search(region, scope, row, records, "export check")
        problem = validate(export)
        results.append({"id": str(request_id), "valid": problem is None, "problem": problem})
    invalid = [r for r in results if r["valid"] is False]
    gone = [r for r in results if r["valid"] is None]
    evidence = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "schema_sha256": published_schema_sha256(),
        "exports": listed(results),
    }
    figures: dict[str, int | float | str | bool | None] = {
        "exported_requests": len(results),
        "invalid": len(invalid),
        "no_longer_held": len(gone),
    }
    if not results:
        reason = "No data-subject export was made in the period and no access or portability request was completed."
        return Check(name="export_valid", result="not_applicable", reason=reason, figures=figures), evidence
    how = (
        f"For {plural(len(results), 'request')} exported or answered in the period, the export was built again "
        f"by the export code (sealed fields masked, nothing decrypted) and its JSON validated against the "
        f"published format {EXPORT_FORMAT} version {EXPORT_VERSION}"
    )
    if gone:
        how += f"; {plural(len(gone), 'request record')} no longer held could not be checked"
    if invalid:
        reason = f"{how}. Fails: " + named([f"{r['id']}: {r['problem']}" for r in invalid]) + "."
        return Check(name="export_valid", result="fail", reason=reason, figures=figures), evidence
    if len(gone) == len(results):
        return Check(name="export_valid", result="not_applicable", reason=how + ".", figures=figures), evidence
    return Check(name="export_valid", result="pass", reason=how + ": all valid.", figures=figures), evidence


async def collect(region: RegionContext, scope: Scope) -> Observation:
    rows = await _requests(scope)
    checks_and_evidence = [
        access_within_deadline(rows, scope),
        await rectification_logged(rows, scope),
        await erasure_complete(region, rows, scope),
        await export_valid(region, rows, scope),
    ]
    return observation(
        scope,
        COLLECTOR,
        "TEST",
        "Read the organisation's data-subject requests open in the period and measured each against the 28-day "
        "deadline; matched completed rectifications with their change entries in the access log; searched again "
        "for the subject of each completed erasure; rebuilt each export of the period (sealed fields masked) and "
        "validated it against the published export format.",
        [c for c, _ in checks_and_evidence],
        {c.name: e for c, e in checks_and_evidence},
    )
