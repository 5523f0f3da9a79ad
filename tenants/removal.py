"""Removing an organisation's data, in one place for every caller.

- ``delete_visits``: visits with their calls, the calls' telemetry and relay receipts
  (the visit cascade), for a data-subject erasure, a retention purge and an
  organisation's removal alike.
- ``remove_visits``: the cascade in batches, one access-log entry per batch (the
  retention purge of visits, and an organisation's removal).
- ``remove_organisation``: the organisation itself, for the API, ``konsil org delete``,
  the control plane's undo of a failed signup and the retention purge at contract end.
  Its key goes first (crypto-shredding: every copy of its personal data, backups
  included, is unreadable from then on), then its visits, then its other rows; payment
  records stay for their legal hold without their payer fields. The access log keeps
  the record of it (its entries hold pseudonymous references only), and the region
  signs a deletion certificate of what went.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from piccolo.columns import Column
from piccolo.custom_types import Combinable
from piccolo.table import Table

from konsil.platform.core import database, errors
from konsil.platform.core.access import OrganisationRemoved
from konsil.platform.core.keys.provider import KeyDestroyed, KeyUnavailable
from konsil.platform.core.region import RegionContext
from konsil.tenants import members
from konsil.tenants.actors import Actor, _event, record
from konsil.tenants.identity.tables import IdentityAttempt, VisitIdentity
from konsil.tenants.payments.tables import PaymentAttempt
from konsil.tenants.tables import Call, CallRelayReceipt, CallTelemetry, Member, Organisation, PaymentRecord, Visit

# The visit cascade, in the order of ``Cascade.rows``. A visit's verified identity (national
# eID) goes with it; its eID attempts too (they hold no personal data and are not counted).
# A visit's attempts to pay its fee (tenants/payments; failed, abandoned or paid) go with it
# too, counted in ``Cascade.rows`` only when there were any; they also stay among an
# organisation's other tables (``other_tables``), so that none outlives its organisation.
# Payment records stay (P9).
VISIT_TABLES: tuple[type[Table], ...] = (Visit, Call, CallTelemetry, CallRelayReceipt, VisitIdentity)
VISIT_TABLE_NAMES: tuple[str, ...] = tuple(t._meta.tablename for t in VISIT_TABLES)
ATTEMPTS = PaymentAttempt._meta.tablename
# Visits per statement when the caller sets no batch size (bounds SQLite's parameters).
CHUNK = 5000
# Batches in a row that picked visits but deleted none (each changed meanwhile) before
# the removal stops; in batches, the next run picks them up again.
FRUITLESS_BATCHES = 3
STOPPED_EARLY = "some visits kept changing while being purged; the next run removes them"

# Told the counts per table of each batch, inside that batch's transaction, so what it
# writes (a purge's evidence) commits or rolls back with the batch.
OnRemoved = Callable[[dict[str, int]], Awaitable[None]]


class Cascade(msgspec.Struct, frozen=True):
    """What one ``delete_visits`` did: how many visits it picked, and what went per
    table (fewer visits than picked when some changed or went meanwhile)."""

    picked: int
    rows: dict[str, int]


@dataclass(frozen=True)
class Removal:
    """What an organisation's removal came to."""

    rows: dict[str, int]  # per table; "organisation": 1 once its row is gone
    stopped: str = ""  # why visits are left and the organisation stays (batches only)
    directory_updated: bool | None = None  # the control plane was told (None: not asked)

    @property
    def found(self) -> bool:
        return self.rows.get("organisation", 0) > 0


def _none_removed() -> dict[str, int]:
    return dict.fromkeys(VISIT_TABLE_NAMES, 0)


async def _count(query: Any) -> int:
    """Rows a piccolo delete with ``returning`` removed."""
    return len(await query)


# --- the visit cascade ------------------------------------------------------------------------

# PostgreSQL: one statement deletes the visits, their calls, telemetry and relay receipts,
# and returns only the counts (no ids travel back and forth). Visits picked by time go by
# their row addresses (a TID scan: no index walk for rows just found). A visit another
# transaction updated meanwhile has a new address: depending on the server's version the
# statement skips it (``picked`` counts it, the next batch finds it again) or deletes its
# newest version, and the org and cutoff checked again decide, so a visit goes only if it
# still qualifies. Visits named by id go by id (their newest version, whatever changed).
# The children go by one sorted array of the ids actually deleted: an index scan that
# walks the array in order, much cheaper than one nested-loop probe per visit
# (bench/purge.py: ratio to a plain DELETE about 0.4 with the probes, about 0.8 with this).
_PG_PICK_BY_TIME = """
WITH picked AS MATERIALIZED (
    SELECT ctid AS tid FROM visit WHERE org_id = {} AND arrived_at < {} LIMIT {}
), v AS (
    DELETE FROM visit WHERE ctid = ANY(ARRAY(SELECT tid FROM picked)) AND org_id = {} AND arrived_at < {}
    RETURNING id
)"""
_PG_PICK_BY_ID = """
WITH picked AS MATERIALIZED (
    SELECT DISTINCT unnest({}::uuid[]) AS id
), v AS (
    DELETE FROM visit WHERE org_id = {} AND id IN (SELECT id FROM picked) RETURNING id
)"""
_PG_CHILDREN = """, doomed AS MATERIALIZED (
    SELECT coalesce(array_agg(id ORDER BY id), ARRAY[]::uuid[]) AS ids FROM v
), t AS (
    DELETE FROM call_telemetry WHERE visit_id = ANY((SELECT ids FROM doomed)::uuid[]) RETURNING 1
), c AS (
    DELETE FROM call WHERE visit_id = ANY((SELECT ids FROM doomed)::uuid[]) RETURNING id
), r AS (
    DELETE FROM call_relay_receipt WHERE call_id IN (SELECT id FROM c) RETURNING 1
), i AS (
    DELETE FROM visit_identity WHERE visit_id = ANY((SELECT ids FROM doomed)::uuid[]) RETURNING 1
), a AS (
    DELETE FROM identity_attempt WHERE visit_id = ANY((SELECT ids FROM doomed)::uuid[]) RETURNING 1
), p AS (
    DELETE FROM payment_attempt WHERE visit_id = ANY((SELECT ids FROM doomed)::uuid[]) RETURNING 1
)
SELECT (SELECT count(*) FROM picked) AS picked,
       (SELECT count(*) FROM v) AS visit, (SELECT count(*) FROM c) AS call,
       (SELECT count(*) FROM t) AS call_telemetry, (SELECT count(*) FROM r) AS call_relay_receipt,
       (SELECT count(*) FROM i) AS visit_identity, (SELECT count(*) FROM a) AS identity_attempt,
       (SELECT count(*) FROM p) AS payment_attempt
"""
_ALL_OF_THEM = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


async def delete_visits(
    ctx: RegionContext,
    org_id: uuid.UUID,
    visit_ids: Sequence[uuid.UUID] | None = None,
    *,
    arrived_before: dt.datetime | None = None,
    limit: int = CHUNK,
) -> Cascade:
    """Delete the organisation's visits named by ``visit_ids`` (none when it is empty),
    or, without ``visit_ids``, up to ``limit`` of those that arrived before
    ``arrived_before`` (of all of them, when None), with their calls, the calls'
    telemetry and relay receipts, and its attempts to pay. Runs in the caller's transaction and writes no
    access-log entry: each caller logs in its own terms (an erasure per record, a
    purge per batch)."""
    if visit_ids is not None and not visit_ids:
        return Cascade(0, _none_removed())
    if database.is_postgres(ctx.engine):
        if visit_ids is not None:
            [row] = await Visit.raw(_PG_PICK_BY_ID + _PG_CHILDREN, list(visit_ids), org_id)
        else:
            until = arrived_before or _ALL_OF_THEM
            [row] = await Visit.raw(_PG_PICK_BY_TIME + _PG_CHILDREN, org_id, until, limit, org_id, until)
        rows = {name: int(row[name]) for name in VISIT_TABLE_NAMES}
        if row[ATTEMPTS]:
            rows[ATTEMPTS] = int(row[ATTEMPTS])
        return Cascade(int(row["picked"]), rows)
    # SQLite: one writer at a time (immediate transactions), so nothing changes in between.
    if visit_ids is None:
        where: Combinable = Visit.org_id == org_id
        if arrived_before is not None:
            where &= Visit.arrived_at < arrived_before
        visit_ids = [row["id"] for row in await Visit.select(Visit.id).where(where).order_by(Visit.id).limit(limit)]
        if not visit_ids:
            return Cascade(0, _none_removed())
    ids = list(dict.fromkeys(visit_ids))
    calls = [r["id"] for r in await Call.select(Call.id).where((Call.org_id == org_id) & Call.visit_id.is_in(ids))]
    rows = _none_removed()
    rows["call_telemetry"] = await _count(
        CallTelemetry.delete()
        .where((CallTelemetry.org_id == org_id) & CallTelemetry.visit_id.is_in(ids))
        .returning(CallTelemetry.id)
    )
    if calls:
        rows["call_relay_receipt"] = await _count(
            CallRelayReceipt.delete()
            .where((CallRelayReceipt.org_id == org_id) & CallRelayReceipt.call_id.is_in(calls))
            .returning(CallRelayReceipt.id)
        )
        rows["call"] = await _count(
            Call.delete().where((Call.org_id == org_id) & Call.id.is_in(calls)).returning(Call.id)
        )
    rows["visit_identity"] = await _count(
        VisitIdentity.delete()
        .where((VisitIdentity.org_id == org_id) & VisitIdentity.visit_id.is_in(ids))
        .returning(VisitIdentity.visit_id)
    )
    await IdentityAttempt.delete().where((IdentityAttempt.org_id == org_id) & IdentityAttempt.visit_id.is_in(ids))
    attempts = await _count(
        PaymentAttempt.delete()
        .where((PaymentAttempt.org_id == org_id) & PaymentAttempt.visit_id.is_in(ids))
        .returning(PaymentAttempt.id)
    )
    if attempts:
        rows[ATTEMPTS] = attempts
    rows["visit"] = await _count(
        Visit.delete().where((Visit.org_id == org_id) & Visit.id.is_in(ids)).returning(Visit.id)
    )
    return Cascade(len(ids), rows)


async def remove_visits(
    ctx: RegionContext,
    actor: Actor,
    org_id: uuid.UUID,
    *,
    arrived_before: dt.datetime | None = None,
    batch_size: int = CHUNK,
    reference: str,
    on_removed: OnRemoved | None = None,
) -> str:
    """Delete the organisation's visits that arrived before ``arrived_before`` (all,
    when None) with their cascade, one transaction per batch of visits. Returns
    ``STOPPED_EARLY`` when it stopped with visits left (they kept changing), else "".

    Each batch writes one access-log entry (``reference`` as its subject, the number of
    visits as its object): visits removed by the batch hold nothing that could name
    anyone any more, and one entry per visit cost more than the deletion itself (see
    bench/purge.py). ``on_removed`` gets the counts per table."""
    fruitless = 0
    while fruitless < FRUITLESS_BATCHES:
        async with database.transaction(ctx.engine):
            cascade = await delete_visits(ctx, org_id, arrived_before=arrived_before, limit=batch_size)
            if not cascade.picked:
                return ""
            gone = cascade.rows["visit"]
            if gone:
                await record(ctx, actor, org_id, "delete", "visit", f"count:{gone}", reference)
                if on_removed is not None:
                    await on_removed(cascade.rows)
        fruitless = 0 if gone else fruitless + 1
    return STOPPED_EARLY


# --- an organisation ----------------------------------------------------------------------------


def other_tables(ctx: RegionContext) -> list[type[Table]]:
    """The organisation's tables besides the visit cascade, emptied after its visits;
    payment records are not among them (legal hold, P9, P18)."""
    return [t for t in ctx.organisation_tables if t not in VISIT_TABLES]


async def _remove_rows(
    ctx: RegionContext,
    actor: Actor,
    org_id: uuid.UUID,
    table: type[Table],
    batch_size: int,
    on_removed: OnRemoved | None,
) -> None:
    key: Column = table._meta.primary_key
    org_column: Column = table.org_id  # type: ignore[attr-defined]
    while True:
        async with database.transaction(ctx.engine):
            ids = [row[key._meta.name] for row in await table.select(key).where(org_column == org_id).limit(batch_size)]
            if not ids:
                return
            gone = [
                row[key._meta.name]
                for row in await table.delete().where((org_column == org_id) & key.is_in(ids)).returning(key)
            ]
            if table is Member:  # personal data: one entry per member
                await ctx.access_log.append_many(
                    [_event(ctx, actor, org_id, "delete", "member", m, members.subject(m), "success") for m in gone]
                )
            if on_removed is not None:
                await on_removed({table._meta.tablename: len(gone)})


async def clear_payers(org_id: uuid.UUID) -> None:
    """Payment records stay for their 5-year legal hold (P9, P18); their payer fields
    were sealed with the shredded key and are cleared, the transaction facts remain."""
    await PaymentRecord.update(
        {
            PaymentRecord.payer_name: None,
            PaymentRecord.payer_email: None,
            PaymentRecord.payer_email_index: None,
            PaymentRecord.payer_phone_index: None,
        }
    ).where(PaymentRecord.org_id == org_id)


async def tell_control_plane(ctx: RegionContext, org_id: uuid.UUID) -> bool:
    """Ask the control plane to drop the directory and login-discovery entries."""
    try:
        response = await ctx.control.post("/internal/v1/org-removed", msgspec.json.encode({"org_id": str(org_id)}))
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def remove_organisation(
    ctx: RegionContext,
    actor: Actor,
    org_id: uuid.UUID,
    *,
    batch_size: int | None = None,
    reference: str | None = None,
    on_removed: OnRemoved | None = None,
    require_shred: bool = True,
    tell: bool = True,
) -> Removal:
    """Remove the organisation: its key, then its visits with their cascade, its other
    rows, the payer fields of its payment records, and its own row; then, after the
    commit, tell the control plane (``tell``), which drops its directory and
    login-discovery entries.

    Access log: a visit-batch entry (subject ``reference``, by default ``org:<id>``),
    one entry per member, and one for the organisation; a key service that does not
    answer writes a failure entry and raises ``KeyUnavailable`` with nothing deleted,
    unless ``require_shred=False`` (undoing a failed signup: the rows go anyway, the
    orphaned key holds nothing and is retried later).

    Without ``batch_size`` all of it is one transaction (all or nothing; visits that
    keep changing fail it with 503). With it, one transaction per batch of rows, so no
    long locks: what went stays gone, and visits that keep changing stop it with
    ``Removal.stopped`` and the organisation kept, for the next run. ``on_removed``
    gets the counts per table of each batch inside its transaction.

    The transaction that removes the organisation's row also writes its deletion
    certificate (``ctx.access_log.certify_removal``): the key versions destroyed, the
    rows removed per table and a checkpoint of its access log, signed by the region."""
    subject = f"org:{org_id}"
    versions = await _key_versions(ctx, org_id)
    try:
        await ctx.keys.shred(org_id)
        shredded = True
    except KeyUnavailable:
        await record(ctx, actor, org_id, "delete", "organisation", org_id, subject, "failure")
        if require_shred:
            raise
        shredded = False
    rows: dict[str, int] = {}

    async def counted(batch: dict[str, int]) -> None:
        for table, n in batch.items():
            rows[table] = rows.get(table, 0) + n
        if on_removed is not None:
            await on_removed(batch)

    size = batch_size or CHUNK
    whole = database.transaction(ctx.engine) if batch_size is None else contextlib.nullcontext()
    async with whole:  # the batches' own transactions join it
        stopped = await remove_visits(
            ctx, actor, org_id, batch_size=size, reference=reference or subject, on_removed=counted
        )
        if stopped:
            if batch_size is None:
                raise errors.unavailable("some visits kept changing while the organisation was removed; try again")
            return Removal(rows, stopped)
        for table in other_tables(ctx):
            await _remove_rows(ctx, actor, org_id, table, size, counted)
        async with database.transaction(ctx.engine):
            await clear_payers(org_id)
            slugs = await Organisation.delete().where(Organisation.id == org_id).returning(Organisation.slug)
            await record(ctx, actor, org_id, "delete", "organisation", org_id, subject)
            await counted({"organisation": len(slugs)})
            if slugs:  # the signed record of it, committed with it (compliance/access_log/certificates.py)
                await ctx.access_log.certify_removal(
                    OrganisationRemoved(
                        org_id=org_id,
                        slug=str(slugs[0]["slug"]),
                        removed_by=actor.actor,
                        key_destroyed=shredded,
                        key_versions=versions,
                        rows_removed=rows,
                    )
                )
    return Removal(rows, directory_updated=await tell_control_plane(ctx, org_id) if tell else None)


async def _key_versions(ctx: RegionContext, org_id: uuid.UUID) -> list[int]:
    """The versions the organisation's key has before it is destroyed, for the deletion
    certificate; none when it is already gone or the key service does not answer."""
    try:
        info = await ctx.keys.provider.key_info(org_id)
    except (KeyDestroyed, KeyUnavailable):
        return []
    return list(range(1, info.latest_version + 1))
