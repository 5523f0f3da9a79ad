"""Access-log evidence (HIPAA 164.312(a)(2)(i), (b), (c); NEN 7510 A.12.4.1 to A.12.4.3 and
NEN 7513 ch. 5; Normen FA 15; P6).

All from this region's database, fast on a million entries: the chain is verified in
batches as it is read (``access_log.service.verify``), and everything else is one
aggregate SQL pass over the period's entries plus indexed look-ups:

- ``chain_verifies``: the organisation's chain verifies from its start (or the point
  retention removed up to) to its head, and holds no entry in which the region
  recorded that it found the head tampered with (``access_log/alarm.py``: this
  collection's own read is appended first, so a head set beside the log service is
  found and recorded by that append, even if no one appended since);
- ``entries_in_period``: every record the organisation created in the period (visits,
  calls, relay receipts, members, rooms, API tokens, data-subject requests) has its
  creation entry: access calls against audit events;
- ``individual_actors``: entries of members and integrations name one member or one
  token, visitors' entries one visit; no successful access by an anonymous actor;
- ``nen7513_fields``: the share of the period's entries with every NEN 7513 field:
  event (id, action, time, outcome, object type and detail), acting user and role,
  responsible user, data subject, purpose, access point and source system;
- ``log_reads_logged``: this collection's own read of the log has its entry in the
  chain, and every read of the log in the period names its reader and purpose. Reads
  that bypass the service (direct database access) cannot be seen from here;
- ``admin_access_with_reason``: every access by Konsil's operators or support staff
  (not the organisation's own members) states a specific purpose;
- ``subject_extract``: the "who accessed my data" extract of one data subject of the
  period (by pseudonymous reference) returns exactly that subject's entries.

The collection's reads of the log are themselves access-logged (actor
``system:evidence``), before they happen.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from konsil.compliance.access_log import service
from konsil.compliance.access_log.service import AccessEvent
from konsil.compliance.access_log.tables import AccessLogEntry, AccessLogHead
from konsil.compliance.evidence.common import NAMED, failed, listing, not_applicable, observation, passed, plural
from konsil.compliance.evidence.model import Check, Observation, Scope
from konsil.platform.core.access import ACTIONS, OUTCOMES
from konsil.platform.core.region import RegionContext

COLLECTOR = "access_log"
DESCRIPTION = (
    "Verified the organisation's access-log chain, counted the period's entries and their NEN 7513 "
    "fields and actors in the region's database, matched the records created in the period with "
    "their entries, and produced one data subject's extract."
)
EVIDENCE_ACTOR = "system:evidence"
PURPOSE = "compliance evidence"
VERIFY_BATCH = 5000
EXTRACT_PAGE = 500
GENERIC_PURPOSE = "provide the service"  # tenants.actors.Actor's default: says nothing about why
MEMBER_ROLES = ("owner", "admin", "expert", "auditor", "integration")
STAFF_ROLES = ("operator", "ops", "support", "staff")

_ACTIONS = ", ".join(f"'{a}'" for a in sorted(ACTIONS))
_OUTCOMES = ", ".join(f"'{o}'" for o in sorted(OUTCOMES))
_MEMBER_ROLES = ", ".join(f"'{r}'" for r in MEMBER_ROLES)
_STAFF_ROLES = ", ".join(f"'{r}'" for r in STAFF_ROLES)

# Predicates over one entry (no literal braces: piccolo's placeholders).
COMPLETE = (
    f"action IN ({_ACTIONS}) AND outcome IN ({_OUTCOMES}) AND at IS NOT NULL AND object_type <> '' "
    "AND object_id <> '' AND actor <> '' AND actor_role <> '' AND on_behalf_of <> '' AND subject_ref <> '' "
    "AND purpose <> '' AND source_address <> '' AND source <> ''"
)
_MEMBER = "(actor LIKE 'member:%' AND length(actor) = 43)"
_TOKEN = "(actor LIKE 'token:%' AND length(actor) = 42)"  # noqa: S105 - an API token's actor, not a secret
_VISITOR = "(actor LIKE 'visitor:%' AND length(actor) = 44)"
NOT_INDIVIDUAL = (
    f"((actor_role IN ({_MEMBER_ROLES}) AND NOT ({_MEMBER} OR {_TOKEN})) "
    f"OR (actor_role = 'visitor' AND NOT {_VISITOR}) "
    "OR (actor_role IN (" + _MEMBER_ROLES + ", 'visitor') AND on_behalf_of IN ('', 'anonymous')) "
    "OR (outcome = 'success' AND (actor IN ('', 'anonymous') OR actor_role = 'anonymous')))"
)
LOG_READ = "(object_type = 'access_log' AND action = 'read')"
UNATTRIBUTED = "(actor IN ('', 'anonymous') OR purpose = '')"
STAFF = (
    f"(actor_role IN ({_STAFF_ROLES}) OR actor LIKE 'operator:%' OR actor LIKE 'staff:%' "
    "OR actor LIKE 'support:%' OR actor LIKE 'ops:%')"
)
NO_REASON = f"(purpose = '' OR purpose = '{GENERIC_PURPOSE}')"

_PERIOD = "org_id = {} AND at >= {} AND at < {}"
_AGGREGATE = (
    "SELECT count(*) AS total, "  # noqa: S608 - fixed predicates, values are parameters
    f"sum(CASE WHEN {COMPLETE} THEN 1 ELSE 0 END) AS complete, "
    f"sum(CASE WHEN {NOT_INDIVIDUAL} THEN 1 ELSE 0 END) AS not_individual, "
    f"sum(CASE WHEN {_MEMBER} THEN 1 ELSE 0 END) AS by_member, "
    f"sum(CASE WHEN {_TOKEN} THEN 1 ELSE 0 END) AS by_token, "
    f"sum(CASE WHEN {_VISITOR} THEN 1 ELSE 0 END) AS by_visitor, "
    "sum(CASE WHEN actor_role = 'system' THEN 1 ELSE 0 END) AS by_system, "
    f"sum(CASE WHEN {STAFF} THEN 1 ELSE 0 END) AS by_staff, "
    "sum(CASE WHEN actor = 'anonymous' THEN 1 ELSE 0 END) AS by_anonymous, "
    f"sum(CASE WHEN {STAFF} AND {NO_REASON} THEN 1 ELSE 0 END) AS staff_without_reason, "
    f"sum(CASE WHEN {LOG_READ} THEN 1 ELSE 0 END) AS log_reads, "
    f"sum(CASE WHEN {LOG_READ} AND {UNATTRIBUTED} THEN 1 ELSE 0 END) AS log_reads_unattributed, "
    "sum(CASE WHEN outcome = 'denied' THEN 1 ELSE 0 END) AS denied, "
    "min(seq) AS first_seq, max(seq) AS last_seq "
    f"FROM access_log_entry WHERE {_PERIOD}"
)


def _examples(predicate: str) -> str:
    return f"SELECT seq FROM access_log_entry WHERE {_PERIOD} AND {predicate} ORDER BY seq LIMIT {NAMED}"  # noqa: S608


# What the organisation created in the period, against the entries that logged it.
# (kind = the entry's object_type; table; the time it was created.)
CREATED: tuple[tuple[str, str, str], ...] = (
    ("visit", "visit", "arrived_at"),
    ("call", '"call"', "started_at"),
    ("residency_receipt", "call_relay_receipt", "issued_at"),
    ("member", "member", "created_at"),
    ("room", "room", "created_at"),
    ("api_token", "api_token", "created_at"),
    ("data_subject_request", "data_subject_request", "received_at"),
)
_COVERAGE = (
    "WITH created(kind, id) AS ("  # noqa: S608 - fixed names, values are parameters
    + " UNION ALL ".join(
        f"SELECT '{kind}', CAST(id AS TEXT) FROM {table} "  # noqa: S608
        f"WHERE org_id = {{}} AND {column} >= {{}} AND {column} < {{}}"
        for kind, table, column in CREATED
    )
    + "), logged AS (SELECT DISTINCT object_type, object_id FROM access_log_entry "
    "WHERE org_id = {} AND action = 'create' AND object_type IN ("
    + ", ".join(f"'{kind}'" for kind, _, _ in CREATED)
    + ")) SELECT c.kind AS kind, count(*) AS created, "
    "sum(CASE WHEN l.object_id IS NULL THEN 1 ELSE 0 END) AS unlogged, "
    "min(CASE WHEN l.object_id IS NULL THEN c.id END) AS example "
    "FROM created c LEFT JOIN logged l ON l.object_type = c.kind AND l.object_id = c.id GROUP BY c.kind"
)
# A data subject of the period to extract: the latest visit's (visitors are who ask
# "who accessed my data"), else the latest member's or request's.
_SAMPLE = (
    f"SELECT subject_ref FROM access_log_entry WHERE {_PERIOD} "  # noqa: S608
    "AND subject_ref LIKE {} ORDER BY seq DESC LIMIT 1"
)
SAMPLE_KINDS = ("visit:%", "member:%", "dsr:%")


async def collect(region: RegionContext, scope: Scope) -> Observation:
    org_id = scope.org_id
    observation_id = uuid.uuid4()
    [own_read] = await region.access_log.append_many([_read_event(region, scope, "access_log", observation_id)])
    started = time.monotonic()
    report = await service.verify(org_id, batch_size=VERIFY_BATCH, walked=scope.chain_walked)
    verify_seconds = round(time.monotonic() - started, 3)
    head = (
        await AccessLogHead.select(AccessLogHead.seq, AccessLogHead.entry_hash)
        .where(AccessLogHead.org_id == org_id)
        .first()
        .run()
    )
    period = (org_id, scope.period_start, scope.period_end)
    [counts] = await AccessLogEntry.raw(_AGGREGATE, *period).run()
    figures = {name: int(value or 0) for name, value in counts.items()}
    figures["incomplete"] = figures["total"] - figures["complete"]
    examples = {  # the first entries (by seq) behind each count that fails a check
        name: await _seqs(predicate, period) if figures[name] else []
        for name, predicate in (
            ("incomplete", f"NOT ({COMPLETE})"),
            ("not_individual", NOT_INDIVIDUAL),
            ("staff_without_reason", f"{STAFF} AND {NO_REASON}"),
            ("log_reads_unattributed", f"{LOG_READ} AND {UNATTRIBUTED}"),
        )
    }
    coverage = await _coverage(scope)
    own = (
        await AccessLogEntry.select(AccessLogEntry.seq, AccessLogEntry.object_type, AccessLogEntry.action)
        .where((AccessLogEntry.org_id == org_id) & (AccessLogEntry.id == own_read))
        .first()
        .run()
    )
    extract = await _extract(region, scope, observation_id)
    checks = [
        _chain_verifies(report),
        _entries_in_period(figures, coverage),
        _individual_actors(figures, examples["not_individual"]),
        _nen7513_fields(figures, examples["incomplete"]),
        _log_reads_logged(figures, examples["log_reads_unattributed"], own),
        _admin_access_with_reason(figures, examples["staff_without_reason"]),
        _subject_extract(extract),
    ]
    evidence: dict[str, Any] = {
        "chain": {
            "ok": report.ok,
            "checked": report.checked,
            "pruned": report.pruned,
            "problem": _problem_evidence(report.problem) if report.problem else None,
            "tampering_found": [_problem_evidence(found) for found in report.alarms],
            "head_seq": int(head["seq"]) if head else 0,
            "head_hash": str(head["entry_hash"]) if head else None,
            # Entries the report's own checkpoint had walked from the chain's start moments
            # before (up to the head it signed): this collection walked only those after.
            "verified_by_report_checkpoint": report.taken_from_walk,
            "verify_seconds": verify_seconds,
        },
        "period_entries": figures,
        "examples_by_seq": examples,
        "created_in_period": coverage,
        "own_read": {"entry_id": str(own_read), "seq": int(own["seq"]) if own else None},
        "subject_extract": extract,
    }
    return observation(scope, COLLECTOR, "TEST", DESCRIPTION, checks, evidence, observation_id)


def _problem_evidence(problem: service.Problem) -> dict[str, Any]:
    return {
        "seq": problem.seq,
        "entry_id": str(problem.entry_id) if problem.entry_id else None,
        "kind": problem.kind,
        "detail": problem.detail,
    }


def _read_event(region: RegionContext, scope: Scope, subject_ref: str, observation_id: uuid.UUID) -> AccessEvent:
    return AccessEvent(
        org_id=scope.org_id,
        actor=EVIDENCE_ACTOR,
        actor_role="system",
        on_behalf_of=EVIDENCE_ACTOR,
        subject_ref=subject_ref,
        action="read",
        object_type="access_log",
        object_id=f"evidence:{observation_id}",
        source_address="local",
        outcome="success",
        purpose=PURPOSE,
        source=region.source,
    )


async def _seqs(predicate: str, period: tuple[Any, ...]) -> list[int]:
    return [int(row["seq"]) for row in await AccessLogEntry.raw(_examples(predicate), *period).run()]


async def _coverage(scope: Scope) -> dict[str, dict[str, Any]]:
    args: list[Any] = []
    for _ in CREATED:
        args += [scope.org_id, scope.period_start, scope.period_end]
    rows = await AccessLogEntry.raw(_COVERAGE, *args, scope.org_id).run()
    found = {row["kind"]: row for row in rows}
    return {
        kind: {
            "created": int(found[kind]["created"]) if kind in found else 0,
            "unlogged": int(found[kind]["unlogged"] or 0) if kind in found else 0,
            "example": found[kind]["example"] if kind in found else None,
        }
        for kind, _, _ in CREATED
    }


async def _extract(region: RegionContext, scope: Scope, observation_id: uuid.UUID) -> dict[str, Any]:
    """One data subject's extract, produced as the "who accessed my data" view does
    (``service.entries`` by subject reference), against a count of the same entries."""
    subject = None
    for kind in SAMPLE_KINDS:
        sample = await AccessLogEntry.raw(_SAMPLE, scope.org_id, scope.period_start, scope.period_end, kind).run()
        if sample:
            subject = str(sample[0]["subject_ref"])
            break
    if subject is None:
        return {"subject_ref": None}
    await region.access_log.append_many([_read_event(region, scope, subject, observation_id)])
    expected = int(
        await AccessLogEntry.count()
        .where((AccessLogEntry.org_id == scope.org_id) & (AccessLogEntry.subject_ref == subject))
        .run()
    )
    started = time.monotonic()
    got: list[int] = []
    others = 0
    after = 0
    while True:
        page = await service.entries(scope.org_id, EXTRACT_PAGE, after_seq=after, subject_ref=subject)
        got += [entry.seq for entry in page]
        others += sum(1 for entry in page if entry.subject_ref != subject)
        if len(page) < EXTRACT_PAGE:
            break
        after = page[-1].seq
    return {
        "subject_ref": subject,
        "expected": expected,
        "returned": len(got),
        "other_subjects": others,
        "in_chain_order": got == sorted(got),
        "seconds": round(time.monotonic() - started, 3),
    }


# --- the checks -------------------------------------------------------------------------------


def _chain_verifies(report: service.VerifyReport) -> Check:
    figures: dict[str, Any] = {"entries_verified": report.checked, "removed_by_retention": report.pruned}
    if report.ok:
        start = f"after entry #{report.pruned}, which retention removed up to," if report.pruned else "from its start"
        return passed(
            "chain_verifies",
            f"The access-log chain verifies {start} to its head: {plural(report.checked, 'entry', 'entries')}.",
            **figures,
        )
    problem = report.problem
    assert problem is not None
    figures["problem_seq"] = problem.seq
    figures["tampering_found"] = len(report.alarms)
    if problem.kind == "tampered":
        more = len(report.alarms) - 1
        return failed(
            "chain_verifies",
            f"The access log does not verify: {problem.detail}"
            + (f" (and {plural(more, 'later finding')})" if more else "")
            + f". Apart from this, the chain verifies: {plural(report.checked, 'entry', 'entries')}.",
            **figures,
        )
    entry = f"entry #{problem.seq}" + (f" (id {problem.entry_id})" if problem.entry_id else "")
    return failed(
        "chain_verifies",
        f"The access-log chain does not verify: {entry} was {problem.kind}: {problem.detail} "
        f"({plural(report.checked, 'entry', 'entries')} before it verified).",
        **figures,
    )


def _entries_in_period(figures: dict[str, int], coverage: dict[str, dict[str, Any]]) -> Check:
    created = sum(c["created"] for c in coverage.values())
    unlogged = {kind: c for kind, c in coverage.items() if c["unlogged"]}
    out: dict[str, Any] = {
        "entries": figures["total"],
        "records_created": created,
        "records_without_entry": sum(c["unlogged"] for c in unlogged.values()),
    }
    if unlogged:
        named = [
            f"{plural(c['unlogged'], kind.replace('_', ' '))} (e.g. id {c['example']})" for kind, c in unlogged.items()
        ]
        return failed(
            "entries_in_period",
            f"Not every access of the period has an entry: no creation entry for {listing(named)}.",
            **out,
        )
    return passed(
        "entries_in_period",
        f"{plural(figures['total'], 'entry', 'entries')} in the period; each of the "
        f"{plural(created, 'record')} created in it (visits, calls, relay receipts, members, rooms, API tokens, "
        "data-subject requests) has its creation entry.",
        **out,
    )


def _seq_list(seqs: list[int], total: int) -> str:
    more = " …" if total > len(seqs) else ""
    return ", ".join(f"#{s}" for s in seqs) + more


def _individual_actors(figures: dict[str, int], examples: list[int]) -> Check:
    out: dict[str, Any] = {
        k: figures[k]
        for k in (
            "total",
            "not_individual",
            "by_member",
            "by_token",
            "by_visitor",
            "by_system",
            "by_staff",
            "by_anonymous",
        )
    }
    bad = figures["not_individual"]
    if bad:
        return failed(
            "individual_actors",
            f"{plural(bad, 'entry', 'entries')} of the period {'does' if bad == 1 else 'do'} not name one "
            f"member, token or visit as the actor and responsible user, or record a successful access by "
            f"an anonymous caller: {_seq_list(examples, bad)}.",
            **out,
        )
    return passed(
        "individual_actors",
        f"Every entry of the period names an individual actor: {figures['by_member']} by members, "
        f"{figures['by_token']} by integration tokens, {figures['by_visitor']} by visitors for their own visit, "
        f"{figures['by_system']} by named system processes; anonymous callers appear only on refused or "
        "failed attempts.",
        **out,
    )


def _nen7513_fields(figures: dict[str, int], examples: list[int]) -> Check:
    total, complete = figures["total"], figures["complete"]
    share = round(complete / total, 6) if total else 1.0
    out: dict[str, Any] = {"entries": total, "complete": complete, "share_complete": share}
    if complete < total:
        missing = total - complete
        return failed(
            "nen7513_fields",
            f"{plural(missing, 'entry', 'entries')} of the period lack a NEN 7513 field "
            f"({share:.2%} complete): {_seq_list(examples, missing)}.",
            **out,
        )
    return passed(
        "nen7513_fields",
        f"All {plural(total, 'entry', 'entries')} of the period have every NEN 7513 field: event id, action, "
        "time, outcome, object and detail, acting user and role, responsible user, data subject, purpose, "
        "access point and source system.",
        **out,
    )


def _log_reads_logged(figures: dict[str, int], examples: list[int], own: dict[str, Any] | None) -> Check:
    reads, bad = figures["log_reads"], figures["log_reads_unattributed"]
    out: dict[str, Any] = {"log_reads": reads, "unattributed": bad, "own_read_logged": own is not None}
    if own is None or own["object_type"] != "access_log" or own["action"] != "read":
        return failed("log_reads_logged", "This collection read the log but its own read is not in the chain.", **out)
    if bad:
        return failed(
            "log_reads_logged",
            f"{plural(bad, 'read')} of the log in the period {'does' if bad == 1 else 'do'} not name the reader "
            f"and purpose: {_seq_list(examples, bad)}.",
            **out,
        )
    return passed(
        "log_reads_logged",
        f"This collection's read of the log is entry #{own['seq']}; {plural(reads, 'read')} of the log in the "
        "period, each naming its reader and purpose. (Reads made beside the service, directly in the "
        "database, cannot be seen from here.)",
        **out,
    )


def _admin_access_with_reason(figures: dict[str, int], examples: list[int]) -> Check:
    staff, bad = figures["by_staff"], figures["staff_without_reason"]
    out: dict[str, Any] = {"staff_accesses": staff, "without_reason": bad}
    if bad:
        return failed(
            "admin_access_with_reason",
            f"{plural(bad, 'access', 'accesses')} by operators or support staff in the period "
            f"{'gives' if bad == 1 else 'give'} no specific reason: {_seq_list(examples, bad)}.",
            **out,
        )
    if not staff:
        return passed(
            "admin_access_with_reason",
            "No operator or support staff accessed the organisation's data in the period.",
            **out,
        )
    return passed(
        "admin_access_with_reason",
        f"All {plural(staff, 'access', 'accesses')} by operators or support staff in the period state "
        "a specific reason.",
        **out,
    )


def _subject_extract(extract: dict[str, Any]) -> Check:
    subject = extract.get("subject_ref")
    if subject is None:
        return not_applicable(
            "subject_extract", "No entry of the period concerns a data subject, so there was nothing to extract."
        )
    out: dict[str, Any] = {k: extract[k] for k in ("expected", "returned", "other_subjects", "seconds")}
    ok = extract["returned"] == extract["expected"] > 0 and not extract["other_subjects"] and extract["in_chain_order"]
    if not ok:
        return failed(
            "subject_extract",
            f"The extract for {subject} returned {extract['returned']} of its {extract['expected']} entries"
            f"{', with entries of other subjects' if extract['other_subjects'] else ''}"
            f"{', out of order' if not extract['in_chain_order'] else ''}.",
            **out,
        )
    return passed(
        "subject_extract",
        f"The extract for {subject} (a sample of the period) returned all its "
        f"{plural(extract['expected'], 'entry', 'entries')}, in order, in {extract['seconds']:g} s.",
        **out,
    )
