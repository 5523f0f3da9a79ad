"""Retention purges on the real region databases (PostgreSQL, and a migrated SQLite
file for the embedded default): exact boundaries, a retention change applied at the
next run, one organisation only, contract end (crypto-shredding), support metadata,
payment records, evidence, re-runs, dry runs and the in-process schedule."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from konsil.compliance.access_log.service import AccessEvent, append, verify
from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.compliance.dsr.tables import DataSubjectRequest
from konsil.compliance.retention.policy import RetentionPolicy
from konsil.compliance.retention.purge import (
    KEY_SERVICE_DOWN,
    ClassResult,
    PurgeRequest,
    UnknownOrganisation,
    purge,
)
from konsil.compliance.retention.tables import PurgeRun
from konsil.media_nodes.network_test.tables import NetworkTestResult
from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core import database
from konsil.platform.core.errors import AppError
from konsil.platform.core.keys.provider import KeyDestroyed, KeyUnavailable
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import LifecycleSettings, RegionSettings, Settings, VaultSettings
from konsil.regions import tasks
from konsil.regions.app import create_region_app
from konsil.regions.container import build_region
from konsil.regions.tables import ORGANISATION_OWNED, REGION_TABLES
from konsil.regions.tasks import InProcessRunner, InProcessScheduler
from konsil.tenants import removal
from konsil.tenants.actors import Actor
from konsil.tenants.identity.tables import VisitIdentity
from konsil.tenants.tables import (
    Call,
    CallRelayReceipt,
    CallTelemetry,
    Member,
    Organisation,
    PaymentRecord,
    Room,
    Visit,
)
from tests.conftest import wait_until_async

AS_OF = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)


@pytest.fixture(scope="session")
async def retention_dsns(
    pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    sqlite = tmp_path_factory.mktemp("retention") / "region.sqlite"
    migrate_target(Target("sqlite region", "region", f"sqlite://{sqlite}"))
    return {
        "postgres": await asyncio.to_thread(pg_database, "retention_region", "region"),
        "sqlite": f"sqlite://{sqlite}",
    }


def region_settings(dsn: str, keyring: Path, **lifecycle: Any) -> Settings:
    region = RegionSettings(
        id="eu",
        jurisdiction="EU/EEA",
        public_url="http://127.0.0.1:9",
        listen="127.0.0.1:9",
        database=dsn,
        internal_secret="eu-secret-for-tests-only",
        vault=VaultSettings(backend="local", keyring_path=str(keyring)),
        lifecycle=LifecycleSettings(**lifecycle),
    )
    return Settings(mode="embedded", discovery_key="discovery-key-for-tests", regions=[region])


@pytest.fixture(params=["postgres", "sqlite"])
async def ctx(
    request: pytest.FixtureRequest, retention_dsns: dict[str, str], tmp_path: Path
) -> AsyncIterator[RegionContext]:
    """A region context on PostgreSQL or SQLite with a real local keyring. Table
    binding is process-wide, so the previous one is put back afterwards."""
    settings = region_settings(retention_dsns[request.param], tmp_path / "keyring", purge_batch_size=7)
    region = settings.regions[0]
    previous = [table._meta._db for table in REGION_TABLES]
    context = build_region(settings, region, service_name="test")
    engine = context.engine
    database.bind(REGION_TABLES, engine)
    await database.start(engine)
    try:
        yield context
    finally:
        await context.keys.provider.close()
        await database.stop(engine)
        for table, db in zip(REGION_TABLES, previous, strict=True):
            table._meta._db = db


async def new_org(ctx: RegionContext, retention_days: int = 30, contract_end: dt.date | None = None) -> uuid.UUID:
    org_id = uuid.uuid4()
    await Organisation.insert(
        Organisation(
            id=org_id,
            slug=f"org-{org_id.hex[:10]}",
            name="Praxis",
            retention_days=retention_days,
            contract_end=contract_end,
        )
    )
    await ctx.keys.provision(org_id)
    return org_id


async def new_member(org_id: uuid.UUID) -> uuid.UUID:
    member_id = uuid.uuid4()
    await Member.insert(
        Member(
            id=member_id,
            org_id=org_id,
            name="kf1:x",
            email="kf1:y",
            email_lookup="l",
            role="owner",
            password_hash="h",
        )
    )
    return member_id


async def new_payment(org_id: uuid.UUID) -> None:
    """A payment record under its legal hold, with the payer's (sealed) fields."""
    await PaymentRecord.insert(
        PaymentRecord(
            id=uuid.uuid4(),
            org_id=org_id,
            provider_reference="pi_kept",
            amount_minor=1,
            currency="EUR",
            payer_name="kf1:payer",
            payer_email_index="e" * 64,
            payer_phone_index="p" * 64,
            keep_until=AS_OF + dt.timedelta(days=1000),
        )
    )


async def new_network_test(org_id: uuid.UUID) -> None:
    await NetworkTestResult.insert(
        NetworkTestResult(id=uuid.uuid4(), org_id=org_id, runner="visitor", transport="udp", verdict="good")
    )


async def new_request(org_id: uuid.UUID, received_at: dt.datetime, **fields: Any) -> uuid.UUID:
    """A data-subject request (open unless ``status``/``completed_at`` say otherwise)."""
    request_id = uuid.uuid4()
    await DataSubjectRequest.insert(
        DataSubjectRequest(
            id=request_id,
            org_id=org_id,
            kind="access",
            identifier_kind="email",
            identifier="kf1:sealed",
            identifier_index="i" * 64,
            received_at=received_at,
            due_at=received_at + dt.timedelta(days=28),
            filed_by="member:x",
            **fields,
        )
    )
    return request_id


async def slug_of(org_id: uuid.UUID) -> str:
    row = await Organisation.select(Organisation.slug).where(Organisation.id == org_id).first()
    assert row is not None
    return str(row["slug"])


async def new_visit(org_id: uuid.UUID, arrived_at: dt.datetime, telemetry: int = 2) -> uuid.UUID:
    """A visit with a call, its telemetry and its relay receipt, and the identity it was
    verified as (national eID)."""
    visit_id, call_id, room_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    far = arrived_at + dt.timedelta(days=3650)  # expires_at is not what the purge goes by
    await VisitIdentity.insert(
        VisitIdentity(
            visit_id=visit_id,
            org_id=org_id,
            eid="no_bankid",
            national_id="kf1:sealed",
            verified_name="kf1:sealed",
            expires_at=far,
        )
    )
    await Visit.insert(
        Visit(
            id=visit_id,
            org_id=org_id,
            room_id=room_id,
            name="kf1:sealed",
            token_hash=uuid.uuid4().hex,
            consented_at=arrived_at,
            arrived_at=arrived_at,
            expires_at=far,
        )
    )
    await Call.insert(
        Call(
            id=call_id,
            org_id=org_id,
            room_id=room_id,
            visit_id=visit_id,
            expert_id=uuid.uuid4(),
            started_at=arrived_at,
            expires_at=far,
        )
    )
    for n in range(telemetry):
        await CallTelemetry.insert(
            CallTelemetry(
                id=uuid.uuid4(),
                org_id=org_id,
                call_id=call_id,
                visit_id=visit_id,
                participant="visitor",
                kind="quality",
                data=f'{{"n": {n}}}',
                expires_at=far,
            )
        )
    await CallRelayReceipt.insert(
        CallRelayReceipt(id=uuid.uuid4(), org_id=org_id, call_id=call_id, body="{}", signature="s", expires_at=far)
    )
    return visit_id


async def visits_of(org_id: uuid.UUID) -> set[uuid.UUID]:
    return {row["id"] for row in await Visit.select(Visit.id).where(Visit.org_id == org_id)}


async def rows_of(org_id: uuid.UUID) -> dict[str, int]:
    tables = (Visit, Call, CallTelemetry, CallRelayReceipt, VisitIdentity)
    return {t._meta.tablename: await t.count().where(t.org_id == org_id) for t in tables}


def run(org_slug: str | None = None, **changes: Any) -> PurgeRequest:
    fields: dict[str, Any] = {"as_of": AS_OF, "batch_size": 7, **changes}
    return PurgeRequest(run_id=uuid.uuid4(), trigger="cli", org_slug=org_slug, **fields)


def only(results: list[ClassResult], data_class: str, org_id: uuid.UUID | None = None) -> ClassResult:
    found = [r for r in results if r.data_class == data_class and (org_id is None or r.org_id == org_id)]
    assert len(found) == 1, found
    return found[0]


async def evidence(run_id: uuid.UUID, data_class: str) -> list[dict[str, Any]]:
    query = PurgeRun.select().where((PurgeRun.run_id == run_id) & (PurgeRun.data_class == data_class))
    return list(await query)


# --- visits, calls, telemetry -----------------------------------------------------------------


async def test_a_visit_one_second_inside_retention_stays_and_one_second_past_goes(ctx: RegionContext) -> None:
    org_id = await new_org(ctx, retention_days=30)
    cutoff = AS_OF - dt.timedelta(days=30)
    inside = await new_visit(org_id, cutoff + SECOND)
    at_the_line = await new_visit(org_id, cutoff)
    past = await new_visit(org_id, cutoff - SECOND)
    request = run(await slug_of(org_id))

    results = await purge(ctx, request)

    assert await visits_of(org_id) == {inside, at_the_line} and past not in await visits_of(org_id)
    assert await rows_of(org_id) == {
        "visit": 2,
        "call": 2,
        "call_telemetry": 4,
        "call_relay_receipt": 2,
        "visit_identity": 2,
    }
    result = only(results, "visits", org_id)
    assert result.outcome == "success" and result.cutoff == cutoff
    assert result.rows == {"visit": 1, "call": 1, "call_telemetry": 2, "call_relay_receipt": 1, "visit_identity": 1}
    [row] = await evidence(request.run_id, "visits")
    assert row["org_id"] == org_id and row["outcome"] == "success" and row["rows_removed"] == 6
    assert row["cutoff"] == cutoff and row["as_of"] == AS_OF and row["trigger"] == "cli"
    assert row["started_at"] <= row["finished_at"]
    # The deletion is access-logged by the system, with a pseudonym and no personal data.
    logged = await AccessLogEntry.select().where(
        (AccessLogEntry.org_id == org_id) & (AccessLogEntry.action == "delete")
    )
    # One entry per batch: the run is the reference, the number of visits the object.
    assert [(e["actor"], e["subject_ref"], e["object_type"], e["object_id"]) for e in logged] == [
        ("system:retention", f"purge-run:{request.run_id}", "visit", "count:1")
    ]
    assert "kf1" not in str(logged)


async def test_a_shorter_retention_applies_to_existing_visits_at_the_next_run(ctx: RegionContext) -> None:
    org_id = await new_org(ctx, retention_days=90)
    two_days_old = await new_visit(org_id, AS_OF - dt.timedelta(days=2))
    slug = await slug_of(org_id)
    await purge(ctx, run(slug))
    assert await visits_of(org_id) == {two_days_old}, "kept under 90 days"

    await Organisation.update({Organisation.retention_days: 1}).where(Organisation.id == org_id)
    results = await purge(ctx, run(slug))

    assert await visits_of(org_id) == set()
    assert only(results, "visits", org_id).cutoff == AS_OF - dt.timedelta(days=1)


async def test_a_purge_never_touches_an_organisation_it_was_not_asked_about(ctx: RegionContext) -> None:
    asked, other = await new_org(ctx, retention_days=1), await new_org(ctx, retention_days=1)
    old = AS_OF - dt.timedelta(days=5)
    await new_visit(asked, old)
    kept = await new_visit(other, old)
    for org_id in (asked, other):
        await PaymentRecord.insert(
            PaymentRecord(
                id=uuid.uuid4(),
                org_id=org_id,
                provider_reference="pi_1",
                amount_minor=100,
                currency="EUR",
                keep_until=AS_OF - SECOND,
            )
        )

    await purge(ctx, run(await slug_of(asked)))

    assert await visits_of(asked) == set()
    assert await visits_of(other) == {kept}
    assert await PaymentRecord.count().where(PaymentRecord.org_id == other) == 1
    assert await PaymentRecord.count().where(PaymentRecord.org_id == asked) == 0
    with pytest.raises(UnknownOrganisation):
        await purge(ctx, run("no-such-org"))


@pytest.mark.parametrize("ctx", ["postgres"], indirect=True)  # SQLite deletes by id, one writer at a time
async def test_a_visit_changed_while_its_batch_waits_is_deleted_only_if_it_still_qualifies(
    ctx: RegionContext,
) -> None:
    """PostgreSQL deletes a batch's visits by row address; a visit another transaction
    updates meanwhile is deleted only if it still belongs to the organisation and is
    still past the cutoff (in the same run), and its calls and telemetry follow its visit."""
    org_id = await new_org(ctx, retention_days=1)
    old = AS_OF - dt.timedelta(days=5)
    rescued, touched = await new_visit(org_id, old), await new_visit(org_id, old)
    other = await asyncpg.connect(ctx.region.database)
    try:
        held = other.transaction()
        await held.start()
        await other.execute("UPDATE visit SET arrived_at = $1 WHERE id = $2", AS_OF, rescued)
        await other.execute("UPDATE visit SET status = 'ended' WHERE id = $1", touched)
        purging = asyncio.create_task(purge(ctx, run(await slug_of(org_id))))
        await wait_until_async(
            lambda: other.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ),
            "the purge to wait for the updating transaction's row locks",
            within=10,
            every=0.05,
        )
        await held.commit()
        result = only(await purging, "visits", org_id)
    finally:
        await other.close()

    assert await visits_of(org_id) == {rescued}
    assert await rows_of(org_id) == {
        "visit": 1,
        "call": 1,
        "call_telemetry": 2,
        "call_relay_receipt": 1,
        "visit_identity": 1,
    }
    assert result.rows == {"visit": 1, "call": 1, "call_telemetry": 2, "call_relay_receipt": 1, "visit_identity": 1}


def visits_keep_changing(monkeypatch: pytest.MonkeyPatch, *, after: int = 0) -> list[int]:
    """Every batch of the visit cascade picks a visit that changed meanwhile and deletes
    none, after ``after`` batches that delete one visit each. Returns the batch sizes asked."""
    real = removal.delete_visits
    batches: list[int] = []

    async def changing(
        ctx: RegionContext,
        org_id: uuid.UUID,
        visit_ids: Sequence[uuid.UUID] | None = None,
        *,
        arrived_before: dt.datetime | None = None,
        limit: int = removal.CHUNK,
    ) -> removal.Cascade:
        batches.append(limit)
        if len(batches) <= after:
            return await real(ctx, org_id, arrived_before=arrived_before, limit=1)
        return removal.Cascade(1, dict.fromkeys(removal.VISIT_TABLE_NAMES, 0))

    monkeypatch.setattr(removal, "delete_visits", changing)
    return batches


async def test_visits_that_keep_changing_stop_the_class_and_keep_their_organisation(
    ctx: RegionContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches that pick visits but delete none (each changed meanwhile) end the class
    after three tries with a note, instead of spinning; at contract end the organisation
    then stays, so the next run finds its visits."""
    batches = visits_keep_changing(monkeypatch)
    org_id = await new_org(ctx, retention_days=1)
    await new_visit(org_id, AS_OF - dt.timedelta(days=2))
    ended = await new_org(ctx, contract_end=(AS_OF - dt.timedelta(days=200)).date())

    visits = only(await purge(ctx, run(await slug_of(org_id))), "visits", org_id)
    assert visits.outcome == "success" and len(batches) == 3
    [row] = await evidence_of(org_id, "visits")
    assert row["message"] == removal.STOPPED_EARLY

    contact = only(await purge(ctx, run(await slug_of(ended))), "member_contact", ended)
    assert contact.outcome == "failure" and contact.message == removal.STOPPED_EARLY
    assert await Organisation.exists().where(Organisation.id == ended)


async def evidence_of(org_id: uuid.UUID, data_class: str) -> list[dict[str, Any]]:
    query = PurgeRun.select().where((PurgeRun.org_id == org_id) & (PurgeRun.data_class == data_class))
    return list(await query)


async def test_an_organisation_with_nothing_due_gets_its_evidence_once(ctx: RegionContext) -> None:
    quiet = await new_org(ctx, retention_days=30)
    kept = await new_visit(quiet, AS_OF - dt.timedelta(days=29))
    request = run()  # the whole region: on PostgreSQL such organisations are recorded in one go

    first = only(await purge(ctx, request), "visits", quiet)
    again = only(await purge(ctx, request), "visits", quiet)

    assert first.outcome == again.outcome == "success" and not first.removed and not again.removed
    assert first.cutoff == again.cutoff == AS_OF - dt.timedelta(days=30)
    [row] = await evidence_of(quiet, "visits")
    assert row["outcome"] == "success" and row["rows_removed"] == 0 and row["finished_at"] is not None
    assert await visits_of(quiet) == {kept}
    planned = only(await purge(ctx, run(dry_run=True)), "visits", quiet)
    assert planned.removed == 0


async def test_a_bad_retention_in_the_database_purges_nothing_and_says_so(ctx: RegionContext) -> None:
    org_id = await new_org(ctx, retention_days=30)
    await Organisation.update({Organisation.retention_days: 0}).where(Organisation.id == org_id)
    visit = await new_visit(org_id, AS_OF - dt.timedelta(days=400))
    request = run(await slug_of(org_id))

    result = only(await purge(ctx, request), "visits", org_id)

    assert result.outcome == "failure" and "outside 1..90" in result.message
    assert await visits_of(org_id) == {visit}
    [row] = await evidence(request.run_id, "visits")
    assert row["outcome"] == "failure" and row["rows_removed"] == 0


async def test_a_re_run_of_the_same_run_changes_nothing_more(ctx: RegionContext) -> None:
    org_id = await new_org(ctx, retention_days=3)
    for days in range(10):
        await new_visit(org_id, AS_OF - dt.timedelta(days=days, hours=1))
    request = run(await slug_of(org_id))
    first = only(await purge(ctx, request), "visits", org_id)
    again = only(await purge(ctx, request), "visits", org_id)

    assert (
        first.rows
        == again.rows
        == {"visit": 7, "call": 7, "call_telemetry": 14, "call_relay_receipt": 7, "visit_identity": 7}
    )
    [row] = await evidence(request.run_id, "visits")
    assert row["rows_removed"] == 42
    deletes = await AccessLogEntry.select(AccessLogEntry.object_id).where(
        (AccessLogEntry.org_id == org_id) & (AccessLogEntry.action == "delete")
    )
    assert sum(int(e["object_id"].removeprefix("count:")) for e in deletes) == 7, "logged once, not twice"


async def test_a_dry_run_counts_and_changes_nothing(ctx: RegionContext) -> None:
    org_id = await new_org(ctx, retention_days=1)
    await new_visit(org_id, AS_OF - dt.timedelta(days=2))
    request = run(await slug_of(org_id), dry_run=True)

    result = only(await purge(ctx, request), "visits", org_id)

    assert result.rows == {"visit": 1, "call": 1, "call_telemetry": 2, "call_relay_receipt": 1, "visit_identity": 1}
    assert await rows_of(org_id) == {
        "visit": 1,
        "call": 1,
        "call_telemetry": 2,
        "call_relay_receipt": 1,
        "visit_identity": 1,
    }
    assert await PurgeRun.count().where(PurgeRun.run_id == request.run_id) == 0


# --- support metadata, payment records, contract end ------------------------------------------


async def test_support_metadata_goes_after_nine_calendar_months(ctx: RegionContext) -> None:
    org_id = await new_org(ctx)
    cutoff = RetentionPolicy.support_metadata(AS_OF)
    assert cutoff == dt.datetime(2026, 2, 28, 12, 0, tzinfo=dt.UTC)
    ids = {}
    for label, at in (("inside", cutoff + SECOND), ("past", cutoff - SECOND)):
        ids[label] = uuid.uuid4()
        await NetworkTestResult.insert(
            NetworkTestResult(
                id=ids[label], org_id=org_id, created_at=at, runner="visitor", transport="udp", verdict="good"
            )
        )
    request = run()

    results = await purge(ctx, request)

    left = {
        r["id"] for r in await NetworkTestResult.select(NetworkTestResult.id).where(NetworkTestResult.org_id == org_id)
    }
    assert left == {ids["inside"]}
    assert only(results, "support_metadata").cutoff == cutoff
    [row] = await evidence(request.run_id, "support_metadata")
    assert row["outcome"] == "success" and row["rows_removed"] >= 1


async def test_payment_records_go_after_their_five_years(ctx: RegionContext) -> None:
    org_id = await new_org(ctx)
    made = {}
    for label, keep_until in (("due", AS_OF - SECOND), ("kept", AS_OF + SECOND)):
        made[label] = uuid.uuid4()
        await PaymentRecord.insert(
            PaymentRecord(
                id=made[label],
                org_id=org_id,
                provider_reference=f"pi_{label}",
                amount_minor=4500,
                currency="EUR",
                card_brand="visa",
                card_last4="4242",
                keep_until=keep_until,
            )
        )

    await purge(ctx, run(await slug_of(org_id)))

    left = {r["id"] for r in await PaymentRecord.select(PaymentRecord.id).where(PaymentRecord.org_id == org_id)}
    assert left == {made["kept"]}
    logged = await AccessLogEntry.select(AccessLogEntry.subject_ref).where(
        (AccessLogEntry.org_id == org_id) & (AccessLogEntry.object_type == "payment_record")
    )
    assert logged == [{"subject_ref": f"payment_record:{made['due']}"}]


async def test_closed_data_subject_requests_go_three_years_after_closing(ctx: RegionContext) -> None:
    org_id = await new_org(ctx)
    keep = dt.timedelta(days=ctx.region.lifecycle.dsr_keep_days)
    made: dict[str, uuid.UUID] = {}
    for label, status, completed_at in (
        ("due", "completed", AS_OF - keep - SECOND),
        ("rejected_due", "rejected", AS_OF - keep - SECOND),
        ("kept", "completed", AS_OF - keep + SECOND),
        ("open", "received", None),  # open, however old: never deleted
    ):
        made[label] = await new_request(
            org_id, AS_OF - keep - dt.timedelta(days=60), status=status, completed_at=completed_at
        )

    result = only(await purge(ctx, run(await slug_of(org_id))), "dsr_records", org_id)

    assert keep == dt.timedelta(days=1095) and result.rows == {"data_subject_request": 2}
    left = await DataSubjectRequest.select(DataSubjectRequest.id).where(DataSubjectRequest.org_id == org_id)
    assert {r["id"] for r in left} == {made["kept"], made["open"]}
    logged = await AccessLogEntry.select(AccessLogEntry.subject_ref).where(
        (AccessLogEntry.org_id == org_id) & (AccessLogEntry.object_type == "data_subject_request")
    )
    assert {e["subject_ref"] for e in logged} == {
        f"data_subject_request:{made['due']}",
        f"data_subject_request:{made['rejected_due']}",
    }


async def logged_times(org_id: uuid.UUID) -> list[tuple[int, dt.datetime]]:
    rows = await AccessLogEntry.select(AccessLogEntry.seq, AccessLogEntry.at).where(AccessLogEntry.org_id == org_id)
    return sorted((int(r["seq"]), r["at"] if r["at"].tzinfo else r["at"].replace(tzinfo=dt.UTC)) for r in rows)


async def test_access_log_entries_go_after_six_years_and_the_chain_says_so(ctx: RegionContext) -> None:
    org_id = await new_org(ctx)
    for n in range(3):
        await append(_read_event(ctx, org_id, n))
        await asyncio.sleep(0.002)
    entries = await logged_times(org_id)
    second_at = entries[1][1]
    slug = await slug_of(org_id)
    # Six years after the second entry was written, to the microsecond: it is exactly at
    # the cutoff and stays; the one before it goes.
    as_of = second_at.replace(year=second_at.year + 6)
    plan = only(await purge(ctx, run(slug, as_of=as_of, dry_run=True)), "access_log", org_id)
    request = run(slug, as_of=as_of)

    result = only(await purge(ctx, request), "access_log", org_id)

    assert plan.rows == result.rows == {"access_log_entry": 1}
    assert result.cutoff == second_at and result.outcome == "success"
    left = await logged_times(org_id)
    assert [seq for seq, _ in left][:2] == [2, 3]
    [logged] = await AccessLogEntry.select(AccessLogEntry.object_type, AccessLogEntry.object_id).where(
        (AccessLogEntry.org_id == org_id) & (AccessLogEntry.subject_ref == f"purge-run:{request.run_id}")
    )
    assert logged["object_type"] == "access_log_entry" and logged["object_id"].startswith("count:1;upto:1:")
    report = await verify(org_id)
    assert report.ok and report.pruned == 1
    [row] = await evidence(request.run_id, "access_log")
    assert row["outcome"] == "success" and row["rows_removed"] == 1


async def test_a_tampered_access_log_is_kept_whole_and_the_purge_says_so(ctx: RegionContext) -> None:
    org_id = await new_org(ctx)
    for n in range(3):
        await append(_read_event(ctx, org_id, n))
    await AccessLogEntry.update({AccessLogEntry.actor: "member:evil"}).where(
        (AccessLogEntry.org_id == org_id) & (AccessLogEntry.seq == 2)
    )
    later = dt.datetime.now(dt.UTC).replace(year=dt.datetime.now(dt.UTC).year + 7)

    result = only(await purge(ctx, run(await slug_of(org_id), as_of=later)), "access_log", org_id)

    assert result.outcome == "failure" and str(org_id) in result.message
    assert [seq for seq, _ in await logged_times(org_id)] == [1, 2, 3]


def _read_event(ctx: RegionContext, org_id: uuid.UUID, n: int) -> AccessEvent:
    return AccessEvent(
        org_id=org_id,
        actor="member:m",
        actor_role="expert",
        subject_ref=f"visit:{n}",
        action="read",
        object_type="visit",
        object_id=str(n),
        source_address="203.0.113.7",
        outcome="success",
        purpose="provide the consultation",
        source=ctx.source,
    )


async def test_contact_data_goes_90_days_after_contract_end_by_shredding_the_key_first(ctx: RegionContext) -> None:
    today = AS_OF.date()
    ended = await new_org(ctx, contract_end=today - dt.timedelta(days=91))
    recent = await new_org(ctx, contract_end=today - dt.timedelta(days=89))
    for org_id in (ended, recent):
        await new_member(org_id)
        await Room.insert(Room(id=uuid.uuid4(), org_id=org_id, slug="r", title="R", expert_id=uuid.uuid4()))
        await new_visit(org_id, AS_OF - dt.timedelta(hours=1))  # within retention, but the contract is over
    await new_payment(ended)
    for org_id in (ended, recent):  # an open request and a network-test result go with the organisation too
        await new_request(org_id, AS_OF - dt.timedelta(days=2))
        await new_network_test(org_id)
    request = run()

    results = await purge(ctx, request)

    result = only(results, "member_contact", ended)
    assert result.outcome == "success"
    assert result.rows["member"] == 1 and result.rows["room"] == 1 and result.rows["visit"] == 1
    with pytest.raises(KeyDestroyed):
        await ctx.keys.provider.key_info(ended)
    assert not await Organisation.exists().where(Organisation.id == ended)
    assert await Member.count().where(Member.org_id == ended) == 0
    assert await rows_of(ended) == {
        "visit": 0,
        "call": 0,
        "call_telemetry": 0,
        "call_relay_receipt": 0,
        "visit_identity": 0,
    }
    [payment] = await PaymentRecord.select().where(PaymentRecord.org_id == ended)
    assert payment["provider_reference"] == "pi_kept", "kept 5 years by law"
    assert payment["payer_email_index"] is None and payment["payer_phone_index"] is None, "unlinkable"
    assert result.rows["data_subject_request"] == 1 and result.rows["network_test_result"] == 1
    assert not await DataSubjectRequest.exists().where(DataSubjectRequest.org_id == ended)
    assert await DataSubjectRequest.exists().where(DataSubjectRequest.org_id == recent)
    # The organisation 89 days past its contract keeps everything.
    assert await Organisation.exists().where(Organisation.id == recent)
    assert await Member.count().where(Member.org_id == recent) == 1
    assert len(await visits_of(recent)) == 1
    await ctx.keys.provider.key_info(recent)
    [row] = await evidence(request.run_id, "member_contact")
    assert row["org_id"] == ended and row["outcome"] == "success"


# --- one removal for every caller (tenants/removal.py) ------------------------------------------

OPERATOR = Actor("operator:cli", "operator", "operator:cli", "local", "delete the customer account")


async def populated_org(ctx: RegionContext, **fields: Any) -> tuple[uuid.UUID, set[uuid.UUID]]:
    """An organisation with two members, a room, two visits (each with a call, its
    telemetry and receipt), a payment record, a request and a network-test result."""
    org_id = await new_org(ctx, **fields)
    member_ids = {await new_member(org_id), await new_member(org_id)}
    await Room.insert(Room(id=uuid.uuid4(), org_id=org_id, slug="r", title="R", expert_id=uuid.uuid4()))
    for hours in (1, 2):
        await new_visit(org_id, AS_OF - dt.timedelta(hours=hours))
    await new_payment(org_id)
    await new_request(org_id, AS_OF - dt.timedelta(days=2))
    await new_network_test(org_id)
    return org_id, member_ids


async def left_of(org_id: uuid.UUID) -> dict[str, int]:
    """The organisation's rows in every table that holds them, its own row included."""
    left = {t._meta.tablename: await t.count().where(t.org_id == org_id) for t in ORGANISATION_OWNED}  # type: ignore[attr-defined]
    left["organisation"] = await Organisation.count().where(Organisation.id == org_id)
    left["payment_record"] = await PaymentRecord.count().where(
        (PaymentRecord.org_id == org_id)
        & PaymentRecord.payer_name.is_null()
        & PaymentRecord.payer_email_index.is_null()
    )
    return left


async def deletions_of(org_id: uuid.UUID) -> list[tuple[str, str, str, str, str]]:
    """(actor, object type, object id, subject, outcome) of the organisation's delete entries."""
    rows = await AccessLogEntry.select(
        AccessLogEntry.actor,
        AccessLogEntry.object_type,
        AccessLogEntry.object_id,
        AccessLogEntry.subject_ref,
        AccessLogEntry.outcome,
    ).where((AccessLogEntry.org_id == org_id) & (AccessLogEntry.action == "delete"))
    return sorted((r["actor"], r["object_type"], r["object_id"], r["subject_ref"], r["outcome"]) for r in rows)


async def test_the_api_and_the_purge_remove_an_organisation_alike(ctx: RegionContext) -> None:
    """``konsil org delete`` and the API (one transaction) and the purge at contract end
    (in batches) leave the same rows and the same kinds of access-log entries."""
    by_hand, members_by_hand = await populated_org(ctx)
    ended, members_ended = await populated_org(ctx, contract_end=(AS_OF - dt.timedelta(days=91)).date())
    request = run()

    removed = await removal.remove_organisation(ctx, OPERATOR, by_hand)
    contact = only(await purge(ctx, request), "member_contact", ended)

    assert removed.found and removed.directory_updated is False  # no control plane in this test
    assert contact.outcome == "success"
    gone = {
        "visit": 2, "call": 2, "call_telemetry": 4, "call_relay_receipt": 2, "visit_identity": 2, "member": 2,
        "room": 1, "tenant_data_key": 2, "data_subject_request": 1, "network_test_result": 1, "organisation": 1,
    }  # fmt: skip
    assert removed.rows == contact.rows == gone
    everything_but_payments = {**dict.fromkeys(await left_of(uuid.uuid4()), 0), "payment_record": 1}
    assert await left_of(by_hand) == await left_of(ended) == everything_but_payments
    for org_id in (by_hand, ended):
        with pytest.raises(KeyDestroyed):
            await ctx.keys.provider.key_info(org_id)

    def expected(actor: str, org_id: uuid.UUID, members: set[uuid.UUID], batch: str) -> list[tuple[str, ...]]:
        return sorted(
            [
                (actor, "visit", "count:2", batch, "success"),
                *((actor, "member", str(m), f"member:{m}", "success") for m in members),
                (actor, "organisation", str(org_id), f"org:{org_id}", "success"),
            ]
        )

    assert await deletions_of(by_hand) == expected("operator:cli", by_hand, members_by_hand, f"org:{by_hand}")
    run_ref = f"purge-run:{request.run_id}"
    assert await deletions_of(ended) == expected("system:retention", ended, members_ended, run_ref)
    assert (await verify(by_hand)).ok and (await verify(ended)).ok


async def test_with_the_key_service_down_nothing_is_removed_and_the_failure_is_logged(ctx: RegionContext) -> None:
    by_hand, _ = await populated_org(ctx)
    ended, _ = await populated_org(ctx, contract_end=(AS_OF - dt.timedelta(days=91)).date())
    before = await left_of(by_hand)
    keyring = Path(ctx.region.vault.keyring_path) / "keyring.json"
    keyring.rename(keyring.with_suffix(".away"))
    try:
        with pytest.raises(KeyUnavailable):
            await removal.remove_organisation(ctx, OPERATOR, by_hand)
        contact = only(await purge(ctx, run()), "member_contact", ended)
    finally:
        keyring.with_suffix(".away").rename(keyring)

    assert contact.outcome == "failure" and contact.message == KEY_SERVICE_DOWN
    assert await left_of(by_hand) == await left_of(ended) == before
    for org_id, actor in ((by_hand, "operator:cli"), (ended, "system:retention")):
        assert await deletions_of(org_id) == [(actor, "organisation", str(org_id), f"org:{org_id}", "failure")]
        await ctx.keys.provider.key_info(org_id)  # still there: the next run shreds it


async def test_undoing_a_failed_signup_removes_the_rows_even_with_the_key_service_down(ctx: RegionContext) -> None:
    org_id, _ = await populated_org(ctx)
    keyring = Path(ctx.region.vault.keyring_path) / "keyring.json"
    keyring.rename(keyring.with_suffix(".away"))
    try:
        removed = await removal.remove_organisation(ctx, OPERATOR, org_id, require_shred=False, tell=False)
    finally:
        keyring.with_suffix(".away").rename(keyring)

    assert removed.found and removed.directory_updated is None
    assert (await left_of(org_id))["organisation"] == 0 and (await left_of(org_id))["member"] == 0
    outcomes = [(object_type, outcome) for _, object_type, _, _, outcome in await deletions_of(org_id)]
    assert ("organisation", "failure") in outcomes and ("organisation", "success") in outcomes


async def test_a_removal_in_one_transaction_is_all_or_nothing(
    ctx: RegionContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Visits that keep changing fail a removal without batches (the API, the CLI) with
    503, and everything it had deleted comes back; only the key is gone."""
    org_id, _ = await populated_org(ctx)
    before = await left_of(org_id)
    visits_keep_changing(monkeypatch, after=1)
    with pytest.raises(AppError) as failed:
        await removal.remove_organisation(ctx, OPERATOR, org_id)

    assert failed.value.status == 503
    assert await left_of(org_id) == before
    assert await deletions_of(org_id) == []


async def test_the_visit_cascade_deletes_the_named_visits_and_nothing_else(ctx: RegionContext) -> None:
    """What a data-subject erasure deletes: the named visits with their calls, telemetry
    and receipts, in the named organisation only; no visits named, nothing deleted."""
    org_id, other_org = await new_org(ctx), await new_org(ctx)
    named = [await new_visit(org_id, AS_OF), await new_visit(org_id, AS_OF)]
    kept = await new_visit(org_id, AS_OF)
    elsewhere = await new_visit(other_org, AS_OF)

    async with database.transaction(ctx.engine):
        nothing = await removal.delete_visits(ctx, org_id, [])
        cascade = await removal.delete_visits(ctx, org_id, [*named, elsewhere])

    assert nothing == removal.Cascade(
        0, {"visit": 0, "call": 0, "call_telemetry": 0, "call_relay_receipt": 0, "visit_identity": 0}
    )
    assert cascade.rows == {"visit": 2, "call": 2, "call_telemetry": 4, "call_relay_receipt": 2, "visit_identity": 2}
    assert await visits_of(org_id) == {kept} and await visits_of(other_org) == {elsewhere}
    assert await rows_of(org_id) == {
        "visit": 1,
        "call": 1,
        "call_telemetry": 2,
        "call_relay_receipt": 1,
        "visit_identity": 1,
    }
    assert await rows_of(other_org) == {
        "visit": 1,
        "call": 1,
        "call_telemetry": 2,
        "call_relay_receipt": 1,
        "visit_identity": 1,
    }


# --- the embedded default's schedule ----------------------------------------------------------


async def test_the_embedded_default_purges_on_its_own_schedule(ctx: RegionContext) -> None:
    org_id = await new_org(ctx, retention_days=1)
    await new_visit(org_id, dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    fresh = await new_visit(org_id, dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    scheduler = InProcessScheduler(InProcessRunner(ctx), every_seconds=0.3).start()

    async def finished() -> bool:
        # The run's own record says success once the whole run is over: stopping the
        # scheduler as soon as the rows were gone cut a run short on a busy machine.
        runs = await PurgeRun.select().where((PurgeRun.org_id == org_id) & (PurgeRun.trigger == "schedule"))
        return any(run["outcome"] == "success" for run in runs)

    async def purged() -> bool:
        return await visits_of(org_id) == {fresh} and await finished()

    try:
        await wait_until_async(purged, "a scheduled run to purge the expired visit and record success", within=10)
    finally:
        await scheduler.stop()
    assert await visits_of(org_id) == {fresh}
    runs = await PurgeRun.select().where(
        (PurgeRun.org_id == org_id) & (PurgeRun.trigger == "schedule") & (PurgeRun.outcome == "success")
    )
    assert runs and runs[0]["rows_removed"] == 6


async def test_stopping_the_schedule_lets_the_running_purge_finish(ctx: RegionContext) -> None:
    """The region service stopping (a deploy) drops the runs still waiting their turn and
    lets the running one finish: a purge cut mid-batch left its record 'running' (and,
    cancelled inside a database call, could hold a pooled connection the pool's close
    then waited for: a hang seen in CI)."""
    await PurgeRun.delete().where(PurgeRun.trigger == "schedule")  # a recent run would make this one skip
    org_id = await new_org(ctx, retention_days=1)
    for _ in range(30):
        await new_visit(org_id, dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    runner = InProcessRunner(ctx)
    runner.submit(tasks.PURGE)
    runner.submit(tasks.PURGE)  # waits its turn: dropped by stop

    async def started() -> bool:
        return bool(await PurgeRun.select(PurgeRun.id).where(PurgeRun.org_id == org_id))

    await wait_until_async(started, "the first run to start on this organisation", every=0.01)
    await runner.stop()
    outcomes = [r["outcome"] for r in await PurgeRun.select(PurgeRun.outcome).where(PurgeRun.org_id == org_id)]
    assert outcomes and "running" not in outcomes, outcomes
    assert await visits_of(org_id) == set()


@pytest.mark.parametrize("ctx", ["postgres"], indirect=True)  # SQLite: one process, the embedded default
async def test_one_scheduled_purge_at_a_time_per_region(ctx: RegionContext) -> None:
    """Two replicas without a broker each run the schedule: while one purges, the other's
    run does nothing, and a run within half an interval of another's start does nothing."""
    await PurgeRun.delete().where(PurgeRun.trigger == "schedule")  # no scheduled run yet (earlier tests')
    org_id = await new_org(ctx, retention_days=1)
    await new_visit(org_id, dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    other_replica = await asyncpg.connect(ctx.region.database)
    try:
        assert await other_replica.fetchval("SELECT pg_try_advisory_lock($1)", tasks._PURGE_LOCK)
        busy = await tasks.purge_task(ctx, "eu", uuid.uuid4())
        assert busy["skipped"] == "another purge of this region is running"
        assert await visits_of(org_id), "nothing purged meanwhile"
    finally:
        await other_replica.close()  # the other replica's run ends (or it dies): the lock goes

    first = await tasks.purge_task(ctx, "eu", uuid.uuid4())
    # At least this organisation's rows: a scheduled run of an earlier test that was stopped
    # mid-way (a busy machine) leaves other organisations' expired visits for this run.
    assert first["removed"]["visits"] >= 5 and await visits_of(org_id) == set()
    again = await tasks.purge_task(ctx, "eu", uuid.uuid4())
    assert "skipped" in again and "half an interval" in again["skipped"]
    assert not await PurgeRun.exists().where(PurgeRun.run_id == uuid.UUID(again["run_id"]))


async def test_the_embedded_region_service_runs_the_purge_schedule(tmp_path: Path) -> None:
    """The region service of the embedded default (SQLite, local keyring, no broker)
    runs the purge in-process on its schedule."""
    dsn = f"sqlite://{tmp_path / 'region.sqlite'}"
    migrate_target(Target("sqlite region", "region", dsn))
    settings = region_settings(dsn, tmp_path / "keyring", purge_every_seconds=1)
    previous = [table._meta._db for table in REGION_TABLES]
    try:
        async with AsyncTestClient(create_region_app(settings)) as client:
            assert (await client.get("/healthz")).status_code == 200
            org_id = uuid.uuid4()
            await Organisation.insert(Organisation(id=org_id, slug="embedded", name="Praxis", retention_days=1))
            await new_visit(org_id, dt.datetime.now(dt.UTC) - dt.timedelta(days=1, seconds=5))

            async def purged() -> bool:
                return not await visits_of(org_id)

            await wait_until_async(purged, "the schedule to purge the expired visit", within=6)
            [row] = await PurgeRun.select().where((PurgeRun.org_id == org_id) & (PurgeRun.rows_removed > 0))
            assert row["trigger"] == "schedule" and row["outcome"] == "success" and row["rows_removed"] == 6
    finally:
        for table, db in zip(REGION_TABLES, previous, strict=True):
            table._meta._db = db


# --- consent records: proof kept 3 years after a decision stops holding ---------------------


async def consent_event(org_id: uuid.UUID, subject_id: uuid.UUID, keep_until: dt.datetime | None) -> uuid.UUID:
    from konsil.tenants.consent import ConsentEvent

    event_id = uuid.uuid4()
    await ConsentEvent.insert(
        ConsentEvent(
            id=event_id,
            org_id=org_id,
            subject_kind="member",
            subject_id=subject_id,
            purpose="feature_emails",
            action="granted",
            wording_version="0123456789abcdef",
            language="en",
            source="email_preferences",
            at=AS_OF - dt.timedelta(days=2000),
            keep_until=keep_until,
        )
    )
    return event_id


async def test_consent_records_go_after_their_proof_period_and_members_gone_start_it(ctx: RegionContext) -> None:
    from konsil.tenants.consent import PROOF, ConsentEvent

    org_id = await new_org(ctx)
    member_id = uuid.uuid4()
    await Member.insert(
        Member(id=member_id, org_id=org_id, name="x", email="x", email_lookup="x", role="owner", password_hash="x")
    )
    past = await consent_event(org_id, uuid.uuid4(), AS_OF - SECOND)
    kept = await consent_event(org_id, uuid.uuid4(), AS_OF + SECOND)
    holding = await consent_event(org_id, member_id, None)  # the member is still there: holds
    gone = await consent_event(org_id, uuid.uuid4(), None)  # a member who was removed

    result = only(await purge(ctx, run(await slug_of(org_id))), "consent_records", org_id)

    assert result.outcome == "success" and result.rows == {"consent_event": 1}
    left = {r["id"]: r["keep_until"] for r in await ConsentEvent.select().where(ConsentEvent.org_id == org_id)}
    assert set(left) == {kept, holding, gone} and past not in left
    assert left[holding] is None
    started = left[gone] if left[gone].tzinfo else left[gone].replace(tzinfo=dt.UTC)
    assert started == AS_OF + PROOF
    entries = await AccessLogEntry.select().where(
        (AccessLogEntry.org_id == org_id) & (AccessLogEntry.object_type == "consent")
    )
    assert [(e["action"], e["object_id"]) for e in entries] == [("delete", str(past))]
