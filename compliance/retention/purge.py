"""Retention purges: delete what is past its retention, in small batches (one short
transaction each, so no long locks), and record evidence of every run.

Idempotent: a run has an id and a clock (``as_of``) from which every cutoff is
computed. Each batch deletes rows and advances the run's evidence in one
transaction, so a run interrupted anywhere and re-run with the same id ends in the
same rows and the same evidence as a run that was never interrupted.

Data classes (docs/promises.md, retention table):
- ``visits``: visits past the organisation's *current* retention (by arrival), with
  their calls, call telemetry and relay receipts;
- ``member_contact``: organisations 90 days past their contract end, removed as every
  removal of an organisation is (``tenants/removal.py``): the tenant key is shredded
  first, then the rows are removed; payment records stay (legal hold);
- ``support_metadata``: network-test results older than 9 calendar months;
- ``payment_records``: past their ``keep_until`` (5 years);
- ``payment_events``: the payment provider's webhook events (no personal data) received
  more than 90 days ago, region-wide (they belong to no organisation);
- ``messaging_records``: SMS alert and client-invitation send records past their
  ``expires_at`` (the organisation's visitor retention when written; no address in them);
- ``dsr_records``: data-subject requests closed more than ``dsr_keep_days`` ago (3 years);
- ``consent_records``: consent decisions and the e-mails sent on them past their
  ``keep_until`` (3 years after a decision stops holding; decisions of members who are
  gone start that clock at the run that finds them gone);
- ``access_log``: access-log entries older than 6 calendar years, a leading run of each
  organisation's chain at a time, only while it is intact (``access_log.service.prune``);
- ``audit_records``: evidence observations, compliance reports with their files, control
  attestations, access-log checkpoints and deletion certificates older than 6 calendar
  years, each by its own time, and checkpoints and certificates only once the log entries
  they vouch for are gone (``audit_records.py``).

Deletions of personal data are access-logged with the system actor; the entries
hold pseudonymous ids only. Visits and organisations go through ``tenants/removal.py``,
the same code as a data-subject erasure and ``konsil org delete``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from piccolo.columns import Column
from piccolo.custom_types import Combinable
from piccolo.table import Table

from konsil.compliance.access_log.service import (
    RETENTION_ACTOR,
    AccessEvent,
    PruneRefused,
    append_many,
    organisations_due,
    prune,
)
from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.compliance.dsr.tables import DataSubjectRequest
from konsil.compliance.retention import audit_records
from konsil.compliance.retention.policy import DataClass, RetentionPolicy
from konsil.compliance.retention.tables import PurgeRun
from konsil.media_nodes.network_test.tables import NETWORK_TEST_TABLES
from konsil.platform.core import database
from konsil.platform.core.keys.provider import KeyUnavailable
from konsil.platform.core.region import RegionContext
from konsil.platform.core.telemetry import metrics
from konsil.tenants import consent, removal
from konsil.tenants.actors import Actor, _event
from konsil.tenants.identity.tables import VisitIdentity
from konsil.tenants.messaging.tables import MESSAGING_TABLES
from konsil.tenants.payments.tables import PaymentAttempt, PaymentEvent
from konsil.tenants.tables import (
    Call,
    CallRelayReceipt,
    CallTelemetry,
    Organisation,
    PaymentRecord,
    Visit,
)

log = logging.getLogger("konsil.retention")

PURPOSE = "retention purge"
RETENTION = Actor(RETENTION_ACTOR, "system", "system", "local", PURPOSE)
ORG_CONCURRENCY = 2  # organisations purged at once on PostgreSQL
SUPPORT_METADATA_TABLE = "network_test_result"

OnBatch = Callable[[DataClass, int], None]


class UnknownOrganisation(Exception):
    """``--org`` named an organisation this region does not hold."""


@dataclass(frozen=True)
class PurgeRequest:
    run_id: uuid.UUID
    as_of: dt.datetime
    trigger: str = "schedule"  # schedule | cli
    org_slug: str | None = None  # only this organisation's data (support metadata is then not touched)
    dry_run: bool = False
    batch_size: int = 5000


class ClassResult(msgspec.Struct, kw_only=True):
    """What one data class (of one organisation) came to in a run."""

    data_class: str
    org_id: uuid.UUID | None
    cutoff: dt.datetime | None
    rows: dict[str, int]
    outcome: str  # success | failure | skipped (dry runs: success, nothing removed)
    message: str = ""

    @property
    def removed(self) -> int:
        return sum(self.rows.values())


@dataclass
class _Evidence:
    """A run's evidence row for one data class (and organisation), advanced per batch."""

    id: uuid.UUID | None  # None in a dry run: nothing is written
    rows: dict[str, int] = field(default_factory=dict)
    done: bool = False

    async def add(self, counts: dict[str, int]) -> None:
        for table, n in counts.items():
            self.rows[table] = self.rows.get(table, 0) + n
            if self.id is not None and n:
                metrics.purge_rows_deleted.add(n, {"table": table})
        if self.id is not None:
            await PurgeRun.update(
                {
                    PurgeRun.rows_removed: sum(self.rows.values()),
                    PurgeRun.detail: msgspec.json.encode(self.rows).decode(),
                }
            ).where(PurgeRun.id == self.id)

    def advancing(self, data_class: DataClass, on_batch: OnBatch) -> removal.OnRemoved:
        """Advances this evidence with each batch (in the batch's transaction), then the progress."""

        async def advance(counts: dict[str, int]) -> None:
            await self.add(counts)
            on_batch(data_class, sum(counts.values()))

        return advance

    async def failed(
        self, data_class: DataClass, org_id: uuid.UUID | None, cutoff: dt.datetime | None, message: str
    ) -> ClassResult:
        """Finish as a failure, saying why; the class's result says the same."""
        await self.finish("failure", message)
        return ClassResult(
            data_class=data_class, org_id=org_id, cutoff=cutoff, rows=self.rows, outcome="failure", message=message
        )

    async def finish(self, outcome: str, message: str = "") -> None:
        if self.id is not None:
            await PurgeRun.update(
                {
                    PurgeRun.outcome: outcome,
                    PurgeRun.message: message[:200],
                    PurgeRun.finished_at: dt.datetime.now(dt.UTC),
                }
            ).where(PurgeRun.id == self.id)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def _evidence(
    ctx: RegionContext, req: PurgeRequest, data_class: DataClass, org_id: uuid.UUID | None, cutoff: dt.datetime | None
) -> _Evidence:
    """The run's evidence row for this class, made on first sight and found again on a re-run."""
    if req.dry_run:
        return _Evidence(None)
    where = (PurgeRun.run_id == req.run_id) & (PurgeRun.data_class == data_class)
    where &= PurgeRun.org_id.is_null() if org_id is None else PurgeRun.org_id == org_id
    found = await PurgeRun.select(PurgeRun.id, PurgeRun.detail, PurgeRun.outcome).where(where).first()
    if found is not None:
        rows = msgspec.json.decode(found["detail"] or "{}", type=dict[str, int])
        return _Evidence(found["id"], rows, done=found["outcome"] == "success")
    row_id = uuid.uuid4()
    await PurgeRun.insert(
        PurgeRun(
            id=row_id,
            run_id=req.run_id,
            region=ctx.region.id,
            data_class=data_class,
            org_id=org_id,
            trigger=req.trigger,
            as_of=req.as_of,
            cutoff=cutoff,
            started_at=dt.datetime.now(dt.UTC),
            outcome="running",
        )
    )
    return _Evidence(row_id)


async def _log(events: list[AccessEvent]) -> None:
    """Entries of any organisations, appended to each one's own chain."""
    by_org: dict[uuid.UUID, list[AccessEvent]] = {}
    for event in events:
        by_org.setdefault(event.org_id, []).append(event)
    for org_events in by_org.values():
        await append_many(org_events)


# --- visits, calls, telemetry, relay receipts ----------------------------------------------


def _reference(req: PurgeRequest) -> str:
    """The subject of a batch's access-log entry: the run, whose evidence has the counts."""
    return f"purge-run:{req.run_id}"


async def _visit_batch(
    org_id: uuid.UUID, cutoff: dt.datetime | None, after: uuid.UUID | None, size: int
) -> list[uuid.UUID]:
    where: Combinable = Visit.org_id == org_id
    if cutoff is not None:
        where &= Visit.arrived_at < cutoff
    if after is not None:
        where &= Visit.id > after
    rows = await Visit.select(Visit.id).where(where).order_by(Visit.id).limit(size)
    return [row["id"] for row in rows]


async def _count_visits(org_id: uuid.UUID, cutoff: dt.datetime | None, size: int) -> dict[str, int]:
    """What a purge of these visits would remove (dry run), walked in batches by id."""
    counts = dict.fromkeys(removal.VISIT_TABLE_NAMES, 0)
    after = None
    while ids := await _visit_batch(org_id, cutoff, after, size):
        after = ids[-1]
        calls = [r["id"] for r in await Call.select(Call.id).where((Call.org_id == org_id) & Call.visit_id.is_in(ids))]
        counts["visit"] += len(ids)
        counts["call"] += len(calls)
        counts["call_telemetry"] += await CallTelemetry.count().where(
            (CallTelemetry.org_id == org_id) & CallTelemetry.visit_id.is_in(ids)
        )
        counts["visit_identity"] += await VisitIdentity.count().where(
            (VisitIdentity.org_id == org_id) & VisitIdentity.visit_id.is_in(ids)
        )
        if calls:
            counts["call_relay_receipt"] += await CallRelayReceipt.count().where(
                (CallRelayReceipt.org_id == org_id) & CallRelayReceipt.call_id.is_in(calls)
            )
        attempts = await PaymentAttempt.count().where(
            (PaymentAttempt.org_id == org_id) & PaymentAttempt.visit_id.is_in(ids)
        )
        if attempts:  # as the cascade counts them: only where there are any
            counts[removal.ATTEMPTS] = counts.get(removal.ATTEMPTS, 0) + attempts
    return counts


async def _purge_visits(ctx: RegionContext, req: PurgeRequest, org: dict[str, Any], on_batch: OnBatch) -> ClassResult:
    try:
        cutoff = RetentionPolicy.visits(req.as_of, int(org["retention_days"]))
    except ValueError as exc:  # a bad setting in the database: purge nothing of it, say so
        evidence = await _evidence(ctx, req, "visits", org["id"], None)
        return await evidence.failed("visits", org["id"], None, str(exc))
    if req.dry_run:
        counts = await _count_visits(org["id"], cutoff, req.batch_size)
        return ClassResult(data_class="visits", org_id=org["id"], cutoff=cutoff, rows=counts, outcome="success")
    evidence = await _evidence(ctx, req, "visits", org["id"], cutoff)
    if not evidence.done:
        note = await removal.remove_visits(
            ctx,
            RETENTION,
            org["id"],
            arrived_before=cutoff,
            batch_size=req.batch_size,
            reference=_reference(req),
            on_removed=evidence.advancing("visits", on_batch),
        )
        await evidence.finish("success", note)
    return ClassResult(data_class="visits", org_id=org["id"], cutoff=cutoff, rows=evidence.rows, outcome="success")


# --- member contact data: organisations past contract end + 90 days --------------------------

KEY_SERVICE_DOWN = "the region's key service does not answer; nothing was deleted, retried next run"


async def _purge_contract_ended(
    ctx: RegionContext, req: PurgeRequest, org: dict[str, Any], cutoff: dt.date, on_batch: OnBatch
) -> ClassResult:
    """The organisation is removed as ``konsil org delete`` removes one
    (``tenants.removal``), in batches, its evidence advanced with each."""
    org_id = org["id"]
    at = dt.datetime.combine(cutoff, dt.time(), dt.UTC)
    if req.dry_run:
        counts = await _count_visits(org_id, None, req.batch_size)
        for table in removal.other_tables(ctx):
            counts[table._meta.tablename] = await table.count().where(table.org_id == org_id)  # type: ignore[attr-defined]
        counts["organisation"] = 1
        return ClassResult(data_class="member_contact", org_id=org_id, cutoff=at, rows=counts, outcome="success")
    evidence = await _evidence(ctx, req, "member_contact", org_id, at)
    try:
        removed = await removal.remove_organisation(
            ctx,
            RETENTION,
            org_id,
            batch_size=req.batch_size,
            reference=_reference(req),
            on_removed=evidence.advancing("member_contact", on_batch),
        )
    except KeyUnavailable:
        return await evidence.failed("member_contact", org_id, at, KEY_SERVICE_DOWN)
    if removed.stopped:  # the organisation stays until its visits are gone, so the next run finds them
        return await evidence.failed("member_contact", org_id, at, removed.stopped)
    await evidence.finish("success")
    if not removed.directory_updated:
        log.warning("the control plane was not told of a removed organisation; its directory entry stays until retried")
    return ClassResult(data_class="member_contact", org_id=org_id, cutoff=at, rows=evidence.rows, outcome="success")


# --- support metadata and payment records -------------------------------------------------------


def support_metadata_table() -> type[Table] | None:
    """The network-test results table, once its area declares it."""

    return next((t for t in NETWORK_TEST_TABLES if t._meta.tablename == SUPPORT_METADATA_TABLE), None)


async def _purge_by_time(
    ctx: RegionContext,
    req: PurgeRequest,
    data_class: DataClass,
    table: type[Table],
    time_column: Column,
    cutoff: dt.datetime,
    org_id: uuid.UUID | None,
    on_batch: OnBatch,
    logged_as: str | None = None,
) -> ClassResult:
    key: Column = table._meta.primary_key
    name = table._meta.tablename
    where: Combinable = time_column < cutoff
    if org_id is not None and hasattr(table, "org_id"):  # a table of no organisation is purged whole
        where &= table.org_id == org_id
    if req.dry_run:
        count = await table.count().where(where)
        return ClassResult(data_class=data_class, org_id=org_id, cutoff=cutoff, rows={name: count}, outcome="success")
    evidence = await _evidence(ctx, req, data_class, org_id, cutoff)
    while not evidence.done:
        columns = [key, table.org_id] if logged_as else [key]  # type: ignore[attr-defined]
        rows = await table.select(*columns).where(where).order_by(key).limit(req.batch_size)
        if not rows:
            break
        ids = [row[key._meta.name] for row in rows]
        async with database.transaction(ctx.engine):
            await table.delete().where(where & key.is_in(ids))
            await evidence.add({name: len(ids)})
            if logged_as:  # one entry per record: each names its own data subject
                events = [
                    _event(
                        ctx, RETENTION, r["org_id"], "delete", logged_as, r["id"], f"{logged_as}:{r['id']}", "success"
                    )
                    for r in rows
                ]
                await _log(events)
        on_batch(data_class, len(ids))
    if not evidence.done:
        await evidence.finish("success")
    return ClassResult(data_class=data_class, org_id=org_id, cutoff=cutoff, rows=evidence.rows, outcome="success")


async def _purge_messaging(
    ctx: RegionContext, req: PurgeRequest, org_id: uuid.UUID | None, on_batch: OnBatch
) -> ClassResult:
    """The send records of SMS alerts and client invitations past their ``expires_at``,
    both tables under one evidence row (no personal data in them: nothing to log)."""
    cutoff = RetentionPolicy.messaging_records(req.as_of)

    def due(table: type[Table]) -> Combinable:
        where: Combinable = table.expires_at < cutoff  # type: ignore[attr-defined]
        return where if org_id is None else where & (table.org_id == org_id)  # type: ignore[attr-defined]

    if req.dry_run:
        counts = {t._meta.tablename: await t.count().where(due(t)) for t in MESSAGING_TABLES}
        return ClassResult(data_class="messaging_records", org_id=org_id, cutoff=cutoff, rows=counts, outcome="success")
    evidence = await _evidence(ctx, req, "messaging_records", org_id, cutoff)
    for table in MESSAGING_TABLES:
        key: Column = table._meta.primary_key
        while not evidence.done:
            rows = await table.select(key).where(due(table)).order_by(key).limit(req.batch_size)
            if not rows:
                break
            ids = [row[key._meta.name] for row in rows]
            async with database.transaction(ctx.engine):
                await table.delete().where(due(table) & key.is_in(ids))
                await evidence.add({table._meta.tablename: len(ids)})
            on_batch("messaging_records", len(ids))
    if not evidence.done:
        await evidence.finish("success")
    return ClassResult(
        data_class="messaging_records", org_id=org_id, cutoff=cutoff, rows=evidence.rows, outcome="success"
    )


async def _purge_consent_records(
    ctx: RegionContext, req: PurgeRequest, org_id: uuid.UUID | None, on_batch: OnBatch
) -> ClassResult:
    """Consent decisions and consent e-mails past their ``keep_until``, a batch (one
    transaction with its evidence and one access-log entry per record) at a time."""
    cutoff = RetentionPolicy.consent_records(req.as_of)
    tables = ((consent.ConsentMail, "consent_mail"), (consent.ConsentEvent, "consent"))
    if req.dry_run:
        rows: dict[str, int] = {}
        for table, _kind in tables:
            where: Combinable = table.keep_until < cutoff
            if org_id is not None:
                where &= table.org_id == org_id
            rows[table._meta.tablename] = await table.count().where(where)
        return ClassResult(data_class="consent_records", org_id=org_id, cutoff=cutoff, rows=rows, outcome="success")
    evidence = await _evidence(ctx, req, "consent_records", org_id, cutoff)
    if not evidence.done:
        await consent.start_proof_clock_of_removed_members(req.as_of)
        for table, kind in tables:
            where = table.keep_until < cutoff
            if org_id is not None:
                where &= table.org_id == org_id
            while True:
                found = await table.select(table.id, table.org_id).where(where).order_by(table.id).limit(req.batch_size)
                if not found:
                    break
                ids = [row["id"] for row in found]
                async with database.transaction(ctx.engine):
                    await table.delete().where(where & table.id.is_in(ids))
                    await evidence.add({table._meta.tablename: len(ids)})
                    await _log(
                        [
                            _event(ctx, RETENTION, r["org_id"], "delete", kind, r["id"], _reference(req), "success")
                            for r in found
                        ]
                    )
                on_batch("consent_records", len(ids))
        await evidence.finish("success")
    return ClassResult(
        data_class="consent_records", org_id=org_id, cutoff=cutoff, rows=evidence.rows, outcome="success"
    )


async def _purge_access_log(
    ctx: RegionContext, req: PurgeRequest, org_id: uuid.UUID | None, on_batch: OnBatch
) -> ClassResult:
    """Access-log entries past 6 years, organisation by organisation (also of
    organisations already removed: their log outlives them). Each batch logs one entry
    in the same chain (``prune`` writes it), so the chain itself says what retention
    removed from it. A chain
    that is not intact keeps the first bad entry and all after it, and the class fails,
    naming the organisation."""
    cutoff = RetentionPolicy.access_log(req.as_of)
    name = AccessLogEntry._meta.tablename
    where: Combinable = AccessLogEntry.at < cutoff
    if org_id is not None:
        where &= AccessLogEntry.org_id == org_id
    if req.dry_run:
        count = await AccessLogEntry.count().where(where)
        return ClassResult(data_class="access_log", org_id=org_id, cutoff=cutoff, rows={name: count}, outcome="success")
    evidence = await _evidence(ctx, req, "access_log", org_id, cutoff)
    refused: list[str] = []
    # The entries each batch writes about itself are newer than this, so never removed by
    # the same run (a clock set in the future, as tests do, cannot make it chase them).
    until = min(cutoff, dt.datetime.now(dt.UTC))
    reference = f"purge-run:{req.run_id}"
    if not evidence.done:
        org_ids = [org_id] if org_id is not None else await organisations_due(until)
        for chain_org in org_ids:
            try:
                while True:
                    async with database.transaction(ctx.engine):
                        removed = await prune(
                            chain_org, until, limit=req.batch_size, reference=reference, source=ctx.source
                        )
                        if not removed:
                            break
                        await evidence.add({name: removed})
                    on_batch("access_log", removed)
            except PruneRefused:
                refused.append(str(chain_org))
        if refused:
            message = f"the access log of org {refused[0]} is not intact; removal stopped before the first bad entry"
            if len(refused) > 1:
                message += f" (and {len(refused) - 1} more)"
            return await evidence.failed("access_log", org_id, cutoff, message)
        await evidence.finish("success")
    return ClassResult(data_class="access_log", org_id=org_id, cutoff=cutoff, rows=evidence.rows, outcome="success")


async def _purge_audit_records(
    ctx: RegionContext, req: PurgeRequest, org_id: uuid.UUID | None, on_batch: OnBatch
) -> ClassResult:
    """Audit records past 6 years, organisation by organisation (removed ones too: the
    records outlive them), table by table in ``audit_records.BATCHED`` order.
    Each batch removes rows of one table of one organisation and, in the same
    transaction, advances the evidence and appends one entry per table to that
    organisation's own access log (subject: the purge run; object: the table and count).
    Runs after the access log's class, whose retention point the checkpoint and
    certificate rules read."""
    cutoff = RetentionPolicy.audit_records(req.as_of)
    org_ids = [org_id] if org_id is not None else await audit_records.organisations_due(cutoff)
    if req.dry_run:
        rows: dict[str, int] = {}
        for org in org_ids:
            for name, n in (await audit_records.due_counts(org, cutoff)).items():
                rows[name] = rows.get(name, 0) + n
        return ClassResult(data_class="audit_records", org_id=org_id, cutoff=cutoff, rows=rows, outcome="success")
    evidence = await _evidence(ctx, req, "audit_records", org_id, cutoff)
    if not evidence.done:
        for org in org_ids:
            for table in audit_records.BATCHED:
                await _remove_audit_records(ctx, req, table, org, cutoff, evidence, on_batch)
        await evidence.finish("success")
    return ClassResult(data_class="audit_records", org_id=org_id, cutoff=cutoff, rows=evidence.rows, outcome="success")


async def _remove_audit_records(
    ctx: RegionContext,
    req: PurgeRequest,
    table: type[Table],
    org_id: uuid.UUID,
    cutoff: dt.datetime,
    evidence: _Evidence,
    on_batch: OnBatch,
) -> None:
    """One table's due rows of one organisation, a batch (one transaction) at a time."""
    while True:
        async with database.transaction(ctx.engine):
            counts = await audit_records.remove_batch(table, org_id, cutoff, req.batch_size)
            if not any(counts.values()):
                break
            await evidence.add(counts)
            await append_many(
                [
                    _event(ctx, RETENTION, org_id, "delete", name, f"count:{n}", _reference(req), "success")
                    for name, n in counts.items()
                    if n
                ]
            )
        on_batch("audit_records", sum(counts.values()))


async def _skipped(ctx: RegionContext, req: PurgeRequest, data_class: DataClass, message: str) -> ClassResult:
    evidence = await _evidence(ctx, req, data_class, None, None)
    await evidence.finish("skipped", message)
    return ClassResult(data_class=data_class, org_id=None, cutoff=None, rows={}, outcome="skipped", message=message)


# --- a run ------------------------------------------------------------------------------------


async def run_as_of(run_id: uuid.UUID) -> dt.datetime | None:
    """The clock of a run already begun (a redelivered task continues with it)."""
    row = await PurgeRun.select(PurgeRun.as_of).where(PurgeRun.run_id == run_id).first()
    return _aware(row["as_of"]) if row else None


async def organisations(org_slug: str | None) -> list[dict[str, Any]]:
    query = Organisation.select(
        Organisation.id, Organisation.slug, Organisation.retention_days, Organisation.contract_end
    ).order_by(Organisation.slug)
    if org_slug is not None:
        query = query.where(Organisation.slug == org_slug)
    orgs = await query
    if org_slug is not None and not orgs:
        raise UnknownOrganisation(org_slug)
    return list(orgs)


def _contract_ended(org: dict[str, Any], contract_cutoff: dt.date) -> bool:
    return org["contract_end"] is not None and org["contract_end"] < contract_cutoff


# PostgreSQL: which of these organisations have a visit before their own cutoff, in one
# statement (an index probe each).
_PG_DUE_VISITS = """
SELECT u.org_id FROM unnest({}::uuid[], {}::timestamptz[]) AS u(org_id, cutoff)
WHERE EXISTS (SELECT 1 FROM visit v WHERE v.org_id = u.org_id AND v.arrived_at < u.cutoff)
"""


async def _nothing_due(ctx: RegionContext, req: PurgeRequest, orgs: list[dict[str, Any]]) -> list[ClassResult]:
    """The ``visits`` results of the organisations with no visit past retention, their
    evidence (cutoff, nothing removed, success) written in one insert instead of a
    transaction each. PostgreSQL only; organisations with a bad retention setting, or
    with evidence from an earlier attempt of this run, take the ordinary path."""
    if not database.is_postgres(ctx.engine) or not orgs:
        return []
    cutoffs: dict[uuid.UUID, dt.datetime] = {}
    for org in orgs:
        with contextlib.suppress(ValueError):  # a bad setting: the ordinary path records it
            cutoffs[org["id"]] = RetentionPolicy.visits(req.as_of, int(org["retention_days"]))
    if not cutoffs:
        return []
    due = await Visit.raw(_PG_DUE_VISITS, list(cutoffs), list(cutoffs.values()))
    begun = await PurgeRun.select(PurgeRun.org_id).where(
        (PurgeRun.run_id == req.run_id) & (PurgeRun.data_class == "visits")
    )
    skip = {row["org_id"] for row in due} | {row["org_id"] for row in begun}
    quiet = {org_id: cutoff for org_id, cutoff in cutoffs.items() if org_id not in skip}
    if quiet and not req.dry_run:
        now = dt.datetime.now(dt.UTC)
        await PurgeRun.insert(
            *(
                PurgeRun(
                    id=uuid.uuid4(),
                    run_id=req.run_id,
                    region=ctx.region.id,
                    data_class="visits",
                    org_id=org_id,
                    trigger=req.trigger,
                    as_of=req.as_of,
                    cutoff=cutoff,
                    started_at=now,
                    finished_at=now,
                    outcome="success",
                )
                for org_id, cutoff in quiet.items()
            )
        )
    empty = dict.fromkeys(removal.VISIT_TABLE_NAMES, 0) if req.dry_run else {}
    return [
        ClassResult(data_class="visits", org_id=org_id, cutoff=cutoff, rows=dict(empty), outcome="success")
        for org_id, cutoff in quiet.items()
    ]


async def purge(ctx: RegionContext, req: PurgeRequest, on_batch: OnBatch | None = None) -> list[ClassResult]:
    """One purge run of this region (or of one organisation of it). A class that
    fails is recorded as failed and the others go on; the next run retries it."""
    report = on_batch or (lambda _class, _rows: None)
    req = PurgeRequest(**{**req.__dict__, "as_of": _aware(req.as_of)})
    orgs = await organisations(req.org_slug)
    results: list[ClassResult] = []
    contract_cutoff = RetentionPolicy.member_contact(req.as_of)

    async def guarded(data_class: DataClass, org_id: uuid.UUID | None, step: Any) -> None:
        try:
            results.append(await step)
        except Exception as exc:  # recorded, then the next class; the next run retries
            log.exception("purge of %s failed", data_class)
            message = f"{type(exc).__name__} (see the worker's log)"
            if not req.dry_run:
                evidence = await _evidence(ctx, req, data_class, org_id, None)
                await evidence.finish("failure", message)
            results.append(
                ClassResult(
                    data_class=data_class, org_id=org_id, cutoff=None, rows={}, outcome="failure", message=message
                )
            )

    async def purge_org(org: dict[str, Any]) -> None:
        async with parallel:
            if _contract_ended(org, contract_cutoff):
                await guarded(
                    "member_contact", org["id"], _purge_contract_ended(ctx, req, org, contract_cutoff, report)
                )
            else:
                await guarded("visits", org["id"], _purge_visits(ctx, req, org, report))

    # Organisations with nothing due get their evidence in one go (PostgreSQL).
    quiet = await _nothing_due(ctx, req, [o for o in orgs if not _contract_ended(o, contract_cutoff)])
    results.extend(quiet)
    done = {r.org_id for r in quiet}
    # Organisations are independent (own rows, own access-log chain, own evidence): on
    # PostgreSQL two are purged at once, so the database uses a second core.
    parallel = asyncio.Semaphore(ORG_CONCURRENCY if database.is_postgres(ctx.engine) else 1)
    await asyncio.gather(*(purge_org(org) for org in orgs if org["id"] not in done))
    org_id = orgs[0]["id"] if req.org_slug is not None else None
    table = support_metadata_table()
    if table is None:
        results.append(await _skipped(ctx, req, "support_metadata", "no support-metadata table in this region yet"))
    elif org_id is None or hasattr(table, "org_id"):
        cutoff = RetentionPolicy.support_metadata(req.as_of)
        step = _purge_by_time(ctx, req, "support_metadata", table, table.created_at, cutoff, org_id, report)  # type: ignore[attr-defined]
        await guarded("support_metadata", org_id, step)
    step = _purge_by_time(
        ctx,
        req,
        "payment_records",
        PaymentRecord,
        PaymentRecord.keep_until,
        RetentionPolicy.payment_records(req.as_of),
        org_id,
        report,
        logged_as="payment_record",
    )
    await guarded("payment_records", org_id, step)
    await guarded("messaging_records", org_id, _purge_messaging(ctx, req, org_id, report))
    # Webhook events name no organisation: purged whole, whichever run this is (a run of
    # one organisation records it under that organisation, as its other classes).
    step = _purge_by_time(
        ctx,
        req,
        "payment_events",
        PaymentEvent,
        PaymentEvent.received_at,
        RetentionPolicy.payment_events(req.as_of),
        org_id,
        report,
    )
    await guarded("payment_events", org_id, step)
    step = _purge_by_time(
        ctx,
        req,
        "dsr_records",
        DataSubjectRequest,
        DataSubjectRequest.completed_at,
        RetentionPolicy.dsr_records(req.as_of, ctx.region.lifecycle.dsr_keep_days),
        org_id,
        report,
        logged_as="data_subject_request",
    )
    await guarded("dsr_records", org_id, step)
    await guarded("consent_records", org_id, _purge_consent_records(ctx, req, org_id, report))
    await guarded("access_log", org_id, _purge_access_log(ctx, req, org_id, report))
    # After the access log: checkpoints and certificates go only once its entries they cover are gone.
    await guarded("audit_records", org_id, _purge_audit_records(ctx, req, org_id, report))
    return results


def summary(results: Sequence[ClassResult]) -> dict[str, int]:
    """Rows removed (or, in a dry run, to remove) per data class."""
    totals: dict[str, int] = {}
    for result in results:
        totals[result.data_class] = totals.get(result.data_class, 0) + result.removed
    return totals
