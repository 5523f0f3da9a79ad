"""The consent collector (P13, P15; GDPR 7) on the real PostgreSQL region database:
decisions made through the product's own service pass, counted by purpose; a decision
written behind the service's back (no access-log entry) and an e-mail sent after a
withdrawal are named."""

from __future__ import annotations

import datetime as dt
import uuid

from konsil.compliance.evidence import consent as collector
from konsil.compliance.evidence.model import Scope
from konsil.platform.core.region import RegionContext
from konsil.tenants import consent
from konsil.tenants.actors import Actor
from konsil.tenants.consent import ConsentEvent, ConsentMail
from tests.compliance.evidence.conftest import new_org


def period(org_id: uuid.UUID) -> Scope:
    now = dt.datetime.now(dt.UTC)
    return Scope(
        org_id=org_id, period_start=now - dt.timedelta(days=1), period_end=now + dt.timedelta(minutes=5), now=now
    )


async def decide(ctx: RegionContext, org_id: uuid.UUID, member_id: uuid.UUID, granted: bool) -> consent.Decision:
    actor = Actor(f"member:{member_id}", "owner", f"member:{member_id}", "198.51.100.20")
    return await consent.decide(
        ctx,
        actor,
        org_id,
        "member",
        member_id,
        "feature_emails",
        granted,
        version=consent.VERSIONS["feature_emails"],
        language="nb",
        source="email_preferences",
    )


async def mailed(org_id: uuid.UUID, member_id: uuid.UUID, event_id: uuid.UUID) -> uuid.UUID:
    mail_id = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    await ConsentMail.insert(
        ConsentMail(
            id=mail_id,
            org_id=org_id,
            member_id=member_id,
            purpose="feature_emails",
            kind="news",
            consent_event_id=event_id,
            sent_at=now,
            keep_until=now + consent.PROOF,
        )
    )
    return mail_id


async def test_decisions_and_mails_on_consent_pass_with_their_counts(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    grant = await decide(ctx, org.id, org.owner_id, True)
    assert grant.event_id is not None
    await mailed(org.id, org.owner_id, grant.event_id)
    device = uuid.uuid4()
    visitor = Actor("anonymous", "visitor", f"device:{device}", "203.0.113.5")
    await consent.decide(
        ctx,
        visitor,
        org.id,
        "device",
        device,
        "remember_device",
        True,
        version=consent.VERSIONS["remember_device"],
        language="de",
        source="join_page",
    )

    observation = await collector.collect(ctx, period(org.id))

    assert [(c.name, c.result) for c in observation.checks] == [
        ("consent_recorded", "pass"),
        ("mails_with_consent", "pass"),
    ], observation.checks
    recorded = observation.check("consent_recorded")
    assert recorded.figures["events_in_period"] == 2 and recorded.figures["in_force_feature_emails"] == 1
    assert recorded.figures["in_force_remember_device"] == 1 and recorded.figures["in_force_onboarding_emails"] == 0
    assert observation.evidence["decisions"]["in_period_by_purpose_and_action"] == {
        "feature_emails:granted": 1,
        "remember_device:granted": 1,
    }
    assert observation.check("mails_with_consent").figures["emails_in_period"] == 1
    assert "olga" not in str(observation.evidence).lower()  # pseudonymous only


async def test_a_mail_after_withdrawal_and_an_unlogged_decision_are_named(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    grant = await decide(ctx, org.id, org.owner_id, True)
    assert grant.event_id is not None
    await decide(ctx, org.id, org.owner_id, False)
    late = await mailed(org.id, org.owner_id, grant.event_id)  # sent on a grant already withdrawn
    sneaked = uuid.uuid4()
    await ConsentEvent.insert(
        ConsentEvent(
            id=sneaked,
            org_id=org.id,
            subject_kind="member",
            subject_id=org.owner_id,
            purpose="onboarding_emails",
            action="granted",
            wording_version=consent.VERSIONS["onboarding_emails"],
            language="en",
            source="email_preferences",
            at=dt.datetime.now(dt.UTC),
        )
    )

    observation = await collector.collect(ctx, period(org.id))

    recorded, mails = observation.check("consent_recorded"), observation.check("mails_with_consent")
    assert recorded.result == "fail" and str(sneaked) in recorded.reason and "access-log" in recorded.reason
    assert recorded.figures["withdrawn_in_period"] == 1
    assert mails.result == "fail" and str(late) in mails.reason
    assert observation.evidence["emails"]["emails_without_consent"] == [str(late)]
