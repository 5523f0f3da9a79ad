"""The sessions collector on the real PostgreSQL region database: the idle timeout
passes within its documented limit and fails beyond it; staff sign-ins are counted
from the access log and fail, because Konsil offers no second factor; role holders
are listed by member id and role, and the role review fails until one is recorded.

strong_sign_in and role_review have no passing fixture: Konsil has no second factor,
strong identity provider or role-review record that could make them pass today."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from piccolo.engine.base import Engine

from konsil.compliance.evidence import sessions
from konsil.platform.core import clock
from konsil.platform.core.access import AccessEvent
from konsil.platform.core.errors import AppError
from konsil.platform.core.region import RegionContext
from konsil.tenants import auth, members
from konsil.tenants.schemas import MemberIn
from konsil.tenants.tables import Member
from tests.compliance.evidence_b.support import (
    PASSWORD,
    assert_no_personal_data,
    assert_well_formed,
    dsn_of,
    new_org,
    period,
    region_context,
)

CHECKS = ("idle_timeout", "strong_sign_in", "role_review", "auditor_grants")


@pytest.fixture
async def ctx(region_engine: Engine[Any], tmp_path: Path) -> AsyncIterator[RegionContext]:
    async with region_context(dsn_of(region_engine), tmp_path / "keyring") as context:
        yield context


async def test_the_default_idle_timeout_is_within_the_documented_limit(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    scope = period(org)

    observation = await sessions.collect(ctx, scope)

    assert_well_formed(observation, "sessions", scope, CHECKS)
    result = observation.check("idle_timeout")
    assert result.result == "pass", result.reason
    assert result.figures == {"configured": 30, "limit": 30}
    assert "within the documented limit of 30 minutes" in result.reason


async def test_an_idle_timeout_longer_than_the_limit_fails(region_engine: Engine[Any], tmp_path: Path) -> None:
    async with region_context(dsn_of(region_engine), tmp_path / "keyring", session_idle_minutes=120) as ctx:
        org = await new_org(ctx)
        result = (await sessions.collect(ctx, period(org))).check("idle_timeout")

    assert result.result == "fail"
    assert result.figures == {"configured": 120, "limit": 30}
    assert "only after 120 idle minutes" in result.reason
    assert "set session_idle_minutes to 30 or less" in result.reason


async def test_password_sign_ins_fail_strong_sign_in_with_the_reason(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await auth.log_in(ctx, org.owner_email, PASSWORD, org.record.slug, "127.0.0.1")
    await auth.log_in(ctx, org.owner_email, PASSWORD, org.record.slug, "127.0.0.1")
    with pytest.raises(AppError, match="wrong"):
        await auth.log_in(ctx, org.owner_email, "not the password", org.record.slug, "127.0.0.1")

    observation = await sessions.collect(ctx, period(org))

    result = observation.check("strong_sign_in")
    assert result.result == "fail"
    assert result.figures == {"sign_ins": 2, "members": 1, "with_second_factor": 0}
    assert result.reason.startswith("2 staff sign-ins by 1 member in the period, none with a second factor")
    assert "sign-in by e-mail and password only" in result.reason
    assert observation.evidence["strong_sign_in"]["sign_ins_per_member"] == [
        {"actor": f"member:{org.owner.id}", "sign_ins": 2}
    ]
    assert_no_personal_data(observation, org.personal)


async def test_no_sign_in_in_the_period_still_fails_for_want_of_a_second_factor(ctx: RegionContext) -> None:
    org = await new_org(ctx)

    result = (await sessions.collect(ctx, period(org))).check("strong_sign_in")

    assert result.result == "fail"
    assert result.reason.startswith("No staff member signed in during the period. Konsil offers sign-in by e-mail")


async def test_role_holders_are_listed_and_the_review_fails_until_recorded(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    added = {}
    for role, name in (("admin", "Ada Admin"), ("expert", "Erik Expert"), ("expert", "Eva Expert")):
        email = f"{name.split()[0].lower()}.{org.record.slug}@praxis.example"
        member = await members.insert(ctx, org.actor, org.id, MemberIn(name=name, email=email, role=role))  # type: ignore[arg-type]
        added[member.id] = role
        org.personal += [name, email]

    observation = await sessions.collect(ctx, period(org))

    result = observation.check("role_review")
    assert result.result == "fail"
    assert result.figures == {"members": 4, "admin": 1, "expert": 2, "owner": 1}
    assert "No role review is recorded for the period" in result.reason
    assert "(1 admin, 2 experts, 1 owner)" in result.reason
    assert "an owner reviews that list" in result.reason
    holders = observation.evidence["role_review"]["role_holders"]
    assert sorted((h["member_id"], h["role"]) for h in holders) == sorted(
        [(str(org.owner.id), "owner"), *((str(k), v) for k, v in added.items())]
    )
    assert_no_personal_data(observation, org.personal)


async def _auditor(ctx: RegionContext, org: Any, days: int) -> uuid.UUID:
    email = f"auditor.{secrets.token_hex(3)}.{org.record.slug}@audit.example"
    until = clock.now() + dt.timedelta(days=days)
    member = await members.insert(
        ctx, org.actor, org.id, MemberIn(name="Aud Itor", email=email, role="auditor", access_expires_at=until)
    )
    org.personal += ["Aud Itor", email]
    return member.id


async def test_no_auditor_means_auditor_grants_do_not_apply(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    result = (await sessions.collect(ctx, period(org))).check("auditor_grants")
    assert result.result == "not_applicable" and result.reason == "No auditor was given access."


async def test_time_boxed_auditor_grants_pass(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    auditor = await _auditor(ctx, org, 30)

    observation = await sessions.collect(ctx, period(org))

    result = observation.check("auditor_grants")
    assert result.result == "pass", result.reason
    assert result.figures == {"auditor_grants": 1, "active": 1, "ended": 0}
    assert observation.evidence["auditor_grants"]["grants"][0]["member_id"] == str(auditor)
    assert_no_personal_data(observation, org.personal)


async def test_an_auditor_grant_without_an_end_or_used_after_its_end_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    unbounded, expired = await _auditor(ctx, org, 30), await _auditor(ctx, org, 30)
    await Member.update({Member.access_expires_at: None}).where(Member.id == unbounded).run()
    ended = clock.now() - dt.timedelta(hours=1)
    await Member.update({Member.access_expires_at: ended}).where(Member.id == expired).run()
    # A read by the expired auditor that succeeded anyway (what the guard must prevent).
    await ctx.access_log.append_many(
        [
            AccessEvent(
                org_id=org.id,
                actor=f"member:{expired}",
                actor_role="auditor",
                subject_ref=f"org:{org.id}",
                action="read",
                object_type="access log",
                object_id="",
                source_address="127.0.0.1",
                outcome="success",
                purpose="compliance audit",
                source=ctx.source,
            )
        ]
    )

    result = (await sessions.collect(ctx, period(org))).check("auditor_grants")

    assert result.result == "fail"
    assert f"1 auditor grant without an end ({unbounded})" in result.reason
    assert f"1 auditor whose access succeeded after it ended ({expired})" in result.reason
    assert result.figures["ended"] == 2  # an auditor without an end is refused, so counted as ended
