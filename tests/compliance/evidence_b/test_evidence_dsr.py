"""The data-subject request collector on the real PostgreSQL region database, with
requests filed and answered by the DSR service: answered in time, rectified with their
log entries, erased completely and exported in the published format pass; an overdue
request, a request closed late, a rectification without change entries, an erasure
that left data behind and an export that does not validate fail, named by request id."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from piccolo.engine.base import Engine

from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.compliance.dsr import service
from konsil.compliance.dsr.schemas import Rectification, RequestIn
from konsil.compliance.dsr.tables import DataSubjectRequest
from konsil.compliance.evidence import dsr
from konsil.platform.core import clock
from konsil.platform.core.region import RegionContext
from konsil.tenants import members
from konsil.tenants.actors import record
from konsil.tenants.tables import CallTelemetry, PaymentRecord
from tests.compliance.evidence_b.support import (
    Org,
    assert_no_personal_data,
    assert_well_formed,
    dsn_of,
    new_call,
    new_org,
    new_visit,
    period,
    region_context,
)

CHECKS = ("access_within_deadline", "rectification_logged", "erasure_complete", "export_valid")
DAY = dt.timedelta(days=1)


@pytest.fixture
async def ctx(region_engine: Engine[Any], tmp_path: Path) -> AsyncIterator[RegionContext]:
    async with region_context(dsn_of(region_engine), tmp_path / "keyring") as context:
        yield context


def a_phone() -> str:
    return "+4791" + "".join(secrets.choice("0123456789") for _ in range(6))


async def file(org: Org, kind: str, phone: str) -> uuid.UUID:
    out = await service.file(org.ctx, org.actor, org.as_row(), RequestIn(kind=kind, phone=phone))  # type: ignore[arg-type]
    return out.id


async def pay(org: Org, phone: str, created_at: dt.datetime) -> uuid.UUID:
    """A card payment of the subject (found by the payer's phone), kept 5 years by law."""
    cipher = await org.ctx.keys.cipher(org.id)
    payment_id = uuid.uuid4()
    await PaymentRecord.insert(
        PaymentRecord(
            id=payment_id,
            org_id=org.id,
            provider_reference=f"pi_{secrets.token_hex(6)}",
            amount_minor=5000,
            currency="NOK",
            payer_phone_index=members.phone_index(cipher, phone),
            created_at=created_at,
            keep_until=created_at + dt.timedelta(days=5 * 365 + 1),
        )
    ).run()
    return payment_id


async def stored_request(org: Org, kind: str, received_at: dt.datetime, **fields: Any) -> uuid.UUID:
    """A request row as a past version of Konsil (or a hand edit) left it."""
    request_id = uuid.uuid4()
    await DataSubjectRequest.insert(
        DataSubjectRequest(
            id=request_id,
            org_id=org.id,
            kind=kind,
            identifier_kind="phone",
            identifier="kf1:not-opened-here",
            identifier_index=secrets.token_hex(32),
            received_at=received_at,
            due_at=received_at + dt.timedelta(days=28),
            filed_by=f"member:{org.owner.id}",
            **fields,
        )
    ).run()
    return request_id


async def test_no_request_in_the_period_makes_every_check_not_applicable(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    scope = period(org)

    observation = await dsr.collect(ctx, scope)

    assert_well_formed(observation, "dsr", scope, CHECKS)
    assert [c.result for c in observation.checks] == ["not_applicable"] * 4
    assert observation.check("access_within_deadline").reason == "No data-subject request was open in the period."
    assert observation.check("erasure_complete").reason == "No erasure request was completed in the period."
    assert observation.result == "not_applicable"


async def test_an_access_request_answered_with_a_valid_export_passes(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    phone = a_phone()
    await new_call(org, phone=phone)
    await pay(org, phone, clock.now())
    request_id = await file(org, "access", phone)
    exported = await service.export(ctx, org.actor, org.as_row(), request_id)
    assert [v.phone for v in exported.visits] == [phone], "the export itself opens the sealed fields"
    scope = period(org)

    observation = await dsr.collect(ctx, scope)

    deadline = observation.check("access_within_deadline")
    assert deadline.result == "pass", deadline.reason
    assert deadline.figures["requests"] == 1 and deadline.figures["closed_on_time"] == 1
    export = observation.check("export_valid")
    assert export.result == "pass", export.reason
    assert "validated against the published format konsil.data-subject-export version 1: all valid" in export.reason
    assert observation.evidence["export_valid"]["exports"] == [{"id": str(request_id), "valid": True, "problem": None}]
    assert len(observation.evidence["export_valid"]["schema_sha256"]) == 64
    # The rebuild searched the subject's records: logged, as every search of personal data.
    searches = await AccessLogEntry.select().where(
        (AccessLogEntry.org_id == org.id) & (AccessLogEntry.actor == "system:evidence")
    )
    assert {(e["action"], e["object_type"], e["purpose"]) for e in searches} == {
        ("search", "data_subject_request", "compliance evidence: export check"),
        ("search", "visit", "compliance evidence: export check"),
        ("search", "payment_record", "compliance evidence: export check"),
    }
    assert_no_personal_data(observation, [*org.personal, phone])


async def test_an_overdue_request_and_one_closed_late_fail_named_by_id_and_age(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    now = clock.now()
    overdue = await stored_request(org, "access", now - 40 * DAY)
    late = await stored_request(
        org, "erasure", now - 35 * DAY, status="completed", completed_at=now - dt.timedelta(hours=1)
    )
    on_time = await stored_request(org, "access", now - 20 * DAY, status="completed", completed_at=now - DAY / 2)
    waiting = await stored_request(org, "portability", now - 3 * DAY)
    await stored_request(org, "access", now - 90 * DAY, status="completed", completed_at=now - 70 * DAY)  # before
    scope = period(org)

    result = (await dsr.collect(ctx, scope)).check("access_within_deadline")

    assert result.result == "fail"
    assert result.figures == {
        "requests": 4,
        "closed_on_time": 1,
        "open_within_deadline": 1,
        "closed_late": 1,
        "overdue": 1,
    }
    assert f"1 request still open past 28 days ({overdue}, access, 40 days old)" in result.reason
    assert f"1 request closed late ({late}, erasure, after 35 days)" in result.reason
    assert str(on_time) not in result.reason and str(waiting) not in result.reason


async def test_a_rectification_with_its_change_entries_passes(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    phone = a_phone()
    await new_visit(org, name="Kari Nordmann", phone=phone)
    await new_visit(org, name="Kari Nordman", phone=phone)
    request_id = await file(org, "rectification", phone)
    fixed = await service.rectify(ctx, org.actor, org.as_row(), request_id, Rectification(name="Kari Nordmann"))
    assert fixed.changed == {"members": 0, "visits": 2}

    observation = await dsr.collect(ctx, period(org))

    result = observation.check("rectification_logged")
    assert result.result == "pass", result.reason
    assert result.figures == {"closed": 1, "unlogged": 0}
    assert_no_personal_data(observation, [*org.personal, phone])


async def test_a_rectification_without_its_change_entries_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    now = clock.now()
    owner = f"member:{org.owner.id}"
    outcome = json.dumps({"members": 0, "visits": 1, "fields": "name"})
    # Completed with no entry at all.
    unlogged = await stored_request(
        org, "rectification", now - DAY, status="completed", completed_at=now, fulfilled_by=owner, outcome=outcome
    )
    # Completed with the request's entry, but not the entry of the record it changed.
    half = await stored_request(
        org, "rectification", now - DAY, status="completed", completed_at=now, fulfilled_by=owner, outcome=outcome
    )
    await record(ctx, org.actor, org.id, "read", "member", org.owner.id, members.subject(org.owner.id))
    await record(ctx, org.actor, org.id, "update", "data_subject_request", half, service.dsr_subject(half))
    # A rejected rectification changed nothing and needs no change entry.
    await stored_request(org, "rectification", now - DAY, status="rejected", completed_at=now)

    result = (await dsr.collect(ctx, period(org))).check("rectification_logged")

    assert result.result == "fail"
    assert result.figures == {"closed": 2, "unlogged": 2}
    assert "2 of 2 rectifications completed in the period have no matching change entries" in result.reason
    assert str(unlogged) in result.reason and str(half) in result.reason


async def test_an_erasure_that_left_nothing_but_recent_payments_passes(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    phone = a_phone()
    await new_call(org, name="Ola Nordmann", phone=phone)
    await new_visit(org, phone=phone)
    await pay(org, phone, clock.now() - 400 * DAY)
    request_id = await file(org, "erasure", phone)
    erased = await service.erase(ctx, org.actor, org.as_row(), request_id)
    assert erased.changed["visits"] == 2 and erased.changed["payments_kept"] == 1
    await new_visit(org, phone=phone)  # the person came back afterwards: new data, not a failed erasure

    observation = await dsr.collect(ctx, period(org))

    result = observation.check("erasure_complete")
    assert result.result == "pass", result.reason
    assert "nothing is left except 1 payment record younger than 5 years" in result.reason
    assert result.figures == {"erasures": 1, "incomplete": 0, "payments_kept_by_law": 1}
    searched = await AccessLogEntry.select().where(
        (AccessLogEntry.org_id == org.id)
        & (AccessLogEntry.actor == "system:evidence")
        & (AccessLogEntry.object_id == str(request_id))
    )
    assert [(e["action"], e["purpose"]) for e in searched] == [("search", "compliance evidence: erasure check")]
    assert_no_personal_data(observation, [*org.personal, phone])


async def test_an_erasure_that_left_data_behind_fails_named_by_request(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    # Marked done without erasing (a hand edit, or a bug): the visit and its call are still there.
    kept_phone = a_phone()
    await new_call(org, phone=kept_phone)
    not_done = await file(org, "erasure", kept_phone)
    await DataSubjectRequest.update(
        {DataSubjectRequest.status: "completed", DataSubjectRequest.completed_at: clock.now()}
    ).where(DataSubjectRequest.id == not_done)
    # Erased, but a payment record past its 5 years was never purged.
    old_phone = a_phone()
    await new_visit(org, phone=old_phone)
    await pay(org, old_phone, clock.now() - 6 * 365 * DAY)
    too_old = await file(org, "erasure", old_phone)
    await service.erase(ctx, org.actor, org.as_row(), too_old)

    observation = await dsr.collect(ctx, period(org))

    result = observation.check("erasure_complete")
    assert result.result == "fail"
    assert result.figures == {"erasures": 2, "incomplete": 2, "payments_kept_by_law": 0}
    assert f"{not_done}: 1 visit, 1 call" in result.reason
    assert f"{too_old}: 1 payment record older than 5 years" in result.reason
    assert_no_personal_data(observation, [*org.personal, kept_phone, old_phone])


async def test_an_export_that_does_not_validate_fails_named_by_request(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    phone = a_phone()
    call = await new_call(org, phone=phone)
    # A troubleshooting record whose stored JSON is broken: the export would splice it in as is.
    await CallTelemetry.insert(
        CallTelemetry(
            id=uuid.uuid4(),
            org_id=org.id,
            call_id=call.id,
            visit_id=call.visit_id,
            participant="visitor",
            kind="quality",
            data='{"rtt_ms": 12,',
            expires_at=call.expires_at,
        )
    ).run()
    broken = await file(org, "portability", phone)
    await service.export(ctx, org.actor, org.as_row(), broken)
    fine = await file(org, "access", a_phone())
    await service.export(ctx, org.actor, org.as_row(), fine)

    observation = await dsr.collect(ctx, period(org))

    result = observation.check("export_valid")
    assert result.result == "fail"
    assert result.figures == {"exported_requests": 2, "invalid": 1, "no_longer_held": 0}
    assert f"Fails: {broken}: JSON is malformed" in result.reason
    assert str(fine) not in result.reason.split("Fails:")[1]
    assert_no_personal_data(observation, [*org.personal, phone])
