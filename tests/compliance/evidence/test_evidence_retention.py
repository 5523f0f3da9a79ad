"""The retention collector: rows within their retention and real purge runs pass; a row
left past its retention (24 hours' grace), a period without purges or with a failed last
run, an access log or other audit records pruned younger than 6 years, and an audit table
removed with its organisation fail, each saying why."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import msgspec

from konsil.compliance.access_log import chain
from konsil.compliance.access_log.service import RETENTION_ACTOR, AccessEvent, append, iter_entries
from konsil.compliance.access_log.tables import AccessLogEntry, AccessLogHead
from konsil.compliance.attestations.tables import ControlAttestation
from konsil.compliance.evidence import retention
from konsil.compliance.evidence.model import Observation
from konsil.compliance.evidence.tables import EvidenceObservation
from konsil.compliance.reports.tables import ReportJob
from konsil.compliance.retention.purge import PurgeRequest, purge
from konsil.compliance.retention.tables import PurgeRun
from konsil.platform.core.region import RegionContext
from konsil.tenants import removal
from konsil.tenants.actors import Actor
from konsil.tenants.tables import Call, Organisation, Visit
from tests.compliance.evidence.conftest import Org, assert_no_personal_data, new_org, new_visit, scope_of

DAY = dt.timedelta(days=1)


async def collected(ctx: RegionContext, org: Org) -> Observation:
    observation = await retention.collect(ctx, scope_of(org.id))
    assert_no_personal_data(observation, org.owner_email)
    return observation


async def purged(ctx: RegionContext, org: Org, as_of: dt.datetime | None = None) -> uuid.UUID:
    """A purge run of this organisation (``konsil retention purge --org``); its run id."""
    run_id = uuid.uuid4()
    request = PurgeRequest(
        run_id=run_id, as_of=as_of or dt.datetime.now(dt.UTC), trigger="cli", org_slug=org.record.slug
    )
    await purge(ctx, request)
    return run_id


async def backdate_visit(visit_id: uuid.UUID, call_id: uuid.UUID | None, by: dt.timedelta) -> None:
    """The visit (and its call) happened ``by`` ago; the purge has not removed it."""
    await Visit.raw("UPDATE visit SET arrived_at = arrived_at - {}::interval WHERE id = {}", by, visit_id)
    if call_id is not None:
        await Call.raw('UPDATE "call" SET started_at = started_at - {}::interval WHERE id = {}', by, call_id)


async def test_data_within_retention_and_purges_that_ran_pass(ctx: RegionContext) -> None:
    org = await new_org(ctx, retention_days=30)
    visit_id, call_id = await new_visit(ctx, org)
    await purged(ctx, org)
    # Since the purge, the visit aged to 30 days and 23 hours: within retention plus grace.
    await backdate_visit(visit_id, call_id, 30 * DAY + dt.timedelta(hours=23))

    observation = await collected(ctx, org)

    assert [c.result for c in observation.checks] == ["pass", "pass", "pass"], observation.checks
    assert observation.method == "EXAMINE"
    within = observation.check("data_within_retention")
    assert within.figures["retention_days"] == 30 and within.figures["rows_past_retention"] == 0
    assert "within 30 days" in within.reason
    runs = {r["data_class"]: r for r in observation.evidence["purge_runs"]["per_class"]}
    assert set(runs) == {
        "visits",
        "support_metadata",
        "payment_records",
        "messaging_records",
        "payment_events",
        "dsr_records",
        "consent_records",
        "access_log",
        "audit_records",
    }
    assert all(r["succeeded"] == 1 and r["failed"] == 0 for r in runs.values())
    visit_age = next(a for a in observation.evidence["data_classes"] if a["table"] == "visit")
    assert visit_age["rows"] == 1 and visit_age["past"] == 0


async def test_a_visit_left_past_retention_is_named(ctx: RegionContext) -> None:
    org = await new_org(ctx, retention_days=30)
    visit_id, call_id = await new_visit(ctx, org)
    await purged(ctx, org)
    # 31 days and 1 hour: past 30 days plus 24 hours' grace, and still there.
    await backdate_visit(visit_id, call_id, 31 * DAY + dt.timedelta(hours=1))

    check = (await collected(ctx, org)).check("data_within_retention")

    assert check.result == "fail"
    assert check.figures["rows_past_retention"] == 2
    assert "1 row of visit past 30 days" in check.reason and f"e.g. id {visit_id}" in check.reason
    assert "1 row of call past 30 days" in check.reason and f"e.g. id {call_id}" in check.reason


async def test_a_retention_setting_outside_the_limits_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await Organisation.update({Organisation.retention_days: 400}).where(Organisation.id == org.id)
    check = (await collected(ctx, org)).check("data_within_retention")
    assert check.result == "fail" and "retention setting of 400 days is outside 1 to 90" in check.reason


async def test_a_removed_organisation_leaves_only_what_the_law_keeps(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    operator = Actor("operator:cli", "operator", "operator:cli", "local", "delete the customer account")
    removed = await removal.remove_organisation(ctx, operator, org.id, tell=False)
    assert removed.found

    gone = (await collected(ctx, org)).check("data_within_retention")
    assert gone.result == "pass" and "was removed and none of its rows remain" in gone.reason

    left_behind = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    await Visit.insert(
        Visit(
            id=left_behind,
            org_id=org.id,
            room_id=org.room.id,
            name="kf1:orphan",
            token_hash=uuid.uuid4().hex,
            consented_at=now,
            expires_at=now + 30 * DAY,
        )
    )
    check = (await collected(ctx, org)).check("data_within_retention")
    assert check.result == "fail"
    assert "1 row of visit past none: organisation removed" in check.reason and str(left_behind) in check.reason


async def test_a_period_without_purges_fails_naming_the_classes(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    check = (await collected(ctx, org)).check("purges_ran")
    assert check.result == "fail" and check.figures["runs"] == 0
    assert "no successful purge of visits and calls" in check.reason
    assert "no successful purge of the access log" in check.reason


async def test_a_failed_last_purge_fails_until_a_later_run_succeeds(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await purged(ctx, org)
    now = dt.datetime.now(dt.UTC)
    await PurgeRun.insert(
        PurgeRun(
            id=uuid.uuid4(),
            run_id=uuid.uuid4(),
            region="eu",
            data_class="visits",
            org_id=org.id,
            trigger="schedule",
            as_of=now,
            started_at=now,
            finished_at=now,
            outcome="failure",
            message="the region's key service does not answer; nothing was deleted, retried next run",
        )
    )
    check = (await collected(ctx, org)).check("purges_ran")
    assert check.result == "fail" and check.figures["failed_runs"] == 1
    assert "the last purge of visits and calls failed (the region's key service does not answer" in check.reason

    await purged(ctx, org)
    later = (await collected(ctx, org)).check("purges_ran")
    assert later.result == "pass" and "1 run failed and a later run succeeded" in later.reason


async def rehash(org_id: uuid.UUID, first: int, at: dt.datetime) -> None:
    """Entries #1..#first written at ``at`` (years ago), the chain made consistent again:
    what a log that old looks like."""
    prev = chain.GENESIS_HASH
    async for record in iter_entries(org_id):
        when = at + dt.timedelta(seconds=record.seq) if record.seq <= first else record.at
        fixed = msgspec.structs.replace(record, at=when, prev_hash=prev)
        fixed = msgspec.structs.replace(fixed, entry_hash=chain.entry_hash(fixed))
        await AccessLogEntry.update(
            {AccessLogEntry.at: when, AccessLogEntry.prev_hash: prev, AccessLogEntry.entry_hash: fixed.entry_hash}
        ).where(AccessLogEntry.id == record.id)
        prev = fixed.entry_hash
    await AccessLogHead.update({AccessLogHead.entry_hash: prev}).where(AccessLogHead.org_id == org_id)


async def test_access_log_entries_pruned_after_six_years_pass(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    seven_years = dt.datetime.now(dt.UTC) - 7 * 365 * DAY
    await Organisation.update({Organisation.created_at: seven_years}).where(Organisation.id == org.id)
    await rehash(org.id, 2, seven_years)  # signup's and the room's entries are 7 years old
    run_id = await purged(ctx, org)

    observation = await collected(ctx, org)

    check = observation.check("audit_records_kept")
    assert check.result == "pass", check
    assert check.figures == {
        "entries_removed_by_retention": 2,
        "retention_removals": 1,
        "audit_records_removed_by_retention": 0,
        "audit_record_removals": 0,
    }
    [note] = observation.evidence["audit_records"]["retention_notes"]
    assert note["purge_run"] == str(run_id) and note["upto"] == 2 and note["problem"] is None
    assert observation.evidence["audit_records"]["stores_removed_with_organisation"] == []


async def test_a_purge_with_its_clock_set_ahead_prunes_too_young_entries(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    # `konsil retention purge --as-of` six years ahead removes minutes-old entries.
    await purged(ctx, org, dt.datetime.now(dt.UTC) + 6 * 366 * DAY)

    check = (await collected(ctx, org)).check("audit_records_kept")

    assert check.result == "fail"
    assert "lies less than 6 years before it ran" in check.reason
    assert "came less than 6 years after the organisation was created" not in check.reason  # one reason per removal


async def test_a_forged_retention_note_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    # Entries #1 to #2 deleted, the pruned point moved and a note appended that names no run.
    await AccessLogEntry.delete().where((AccessLogEntry.org_id == org.id) & (AccessLogEntry.seq <= 2))
    [head] = await AccessLogHead.select().where(AccessLogHead.org_id == org.id)
    await AccessLogHead.update({AccessLogHead.pruned_seq: 2}).where(AccessLogHead.org_id == org.id)
    await append(
        AccessEvent(
            org_id=org.id,
            actor=RETENTION_ACTOR,
            actor_role="system",
            on_behalf_of="system",
            subject_ref=f"purge-run:{uuid.uuid4()}",
            action="delete",
            object_type="access_log_entry",
            object_id=f"count:2;upto:2:{head['entry_hash'][:32]}",
            source_address="local",
            outcome="success",
            purpose="retention purge",
            source="region:eu/test",
        )
    )
    check = (await collected(ctx, org)).check("audit_records_kept")
    assert check.result == "fail"
    assert "no purge run of the access log is recorded for it" in check.reason


# --- the other audit records (evidence, reports, attestations, checkpoints, certificates) -------


async def old_observation(org: Org, collected_at: dt.datetime) -> uuid.UUID:
    """An evidence observation as the store writes one, collected at ``collected_at``."""
    row_id = uuid.uuid4()
    await EvidenceObservation.insert(
        EvidenceObservation(
            id=row_id,
            org_id=org.id,
            collector="keys",
            method="TEST",
            description="Read the key versions.",
            period_start=collected_at - 30 * DAY,
            period_end=collected_at,
            collected_at=collected_at,
            result="pass",
            checks="[]",
            evidence="{}",
            evidence_sha256="0" * 64,
        )
    )
    return row_id


async def test_audit_records_removed_after_six_years_pass(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    seven_years = dt.datetime.now(dt.UTC) - 7 * 365 * DAY
    await Organisation.update({Organisation.created_at: seven_years}).where(Organisation.id == org.id)
    old = await old_observation(org, seven_years + DAY)
    run_id = await purged(ctx, org)

    observation = await collected(ctx, org)

    assert not await EvidenceObservation.exists().where(EvidenceObservation.id == old)
    check = observation.check("audit_records_kept")
    assert check.result == "pass", check
    assert check.figures["audit_records_removed_by_retention"] == 1 and check.figures["audit_record_removals"] == 1
    assert "1 removal of other audit records by retention" in check.reason
    [removal_seen] = observation.evidence["audit_records"]["audit_record_removals"]
    assert removal_seen["table"] == "evidence_observation" and removal_seen["purge_run"] == str(run_id)
    assert removal_seen["problem"] is None
    assert observation.check("data_within_retention").result == "pass"
    runs = {r["data_class"]: r for r in observation.evidence["purge_runs"]["per_class"]}
    assert runs["audit_records"]["succeeded"] == 1 and runs["audit_records"]["rows_removed"] == 1


async def test_an_audit_record_left_past_six_years_is_named(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await purged(ctx, org)
    # Six years and two days old, and still there: past 6 years plus 24 hours' grace.
    now = dt.datetime.now(dt.UTC)
    left = await old_observation(org, now.replace(year=now.year - 6) - 2 * DAY)
    kept = await old_observation(org, now.replace(year=now.year - 6) + DAY)

    observation = await collected(ctx, org)

    check = observation.check("data_within_retention")
    assert check.result == "fail"
    assert "1 row of evidence_observation past 6 years" in check.reason and f"e.g. id {left}" in check.reason
    assert str(kept) not in check.reason
    held = observation.evidence["audit_records"]["audit_records_held"]
    assert held["evidence_observation"] == 2 and held["report_job"] == 0


async def test_audit_records_pruned_by_a_clock_set_ahead_fail(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await old_observation(org, dt.datetime.now(dt.UTC) - DAY)
    # `konsil purge` with its clock six years ahead removes a day-old observation.
    await purged(ctx, org, dt.datetime.now(dt.UTC) + 6 * 366 * DAY)

    check = (await collected(ctx, org)).check("audit_records_kept")

    assert check.result == "fail"
    assert "the removal of evidence observations (entry #" in check.reason
    assert "lies less than 6 years before it ran" in check.reason


async def test_an_audit_table_removed_with_the_organisation_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    careless = dataclasses.replace(ctx, organisation_tables=(*ctx.organisation_tables, ReportJob, ControlAttestation))

    observation = await retention.collect(careless, scope_of(org.id))

    check = observation.check("audit_records_kept")
    assert check.result == "fail"
    assert "control_attestation and report_job are removed with the organisation" in check.reason
    assert observation.evidence["audit_records"]["stores_removed_with_organisation"] == [
        "control_attestation",
        "report_job",
    ]
