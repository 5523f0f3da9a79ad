"""Consent evidence (P13, P15; GDPR Art. 7(1) and 7(3)): the organisation can show each
consent it relies on, and e-mails that need one went out only on one.

- ``consent_recorded``: every consent event of the organisation names a purpose asked of
  its kind of subject, a decision, the wording's version and language, and has its
  access-log entry; the figures count the period's decisions by purpose and action and
  the agreements in force now.
- ``mails_with_consent``: every onboarding or feature e-mail sent in the period was sent
  on a grant by the same member for the same purpose, made before the e-mail and not
  withdrawn in between (withdrawals honoured).

Reads this region's database only (``consent_event``, ``consent_mail``, the access log).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.compliance.evidence.common import aware, failed, listed, named, observation, passed, plural
from konsil.compliance.evidence.model import Check, Observation, Scope
from konsil.platform.core.region import RegionContext
from konsil.tenants import consent
from konsil.tenants.consent import ConsentEvent, ConsentMail

COLLECTOR = "consent"


async def _events(scope: Scope) -> list[dict[str, Any]]:
    return list(
        await ConsentEvent.select()
        .where((ConsentEvent.org_id == scope.org_id) & (ConsentEvent.at < scope.period_end))
        .order_by(ConsentEvent.at)
    )


async def _logged_ids(scope: Scope) -> set[str]:
    rows = await AccessLogEntry.select(AccessLogEntry.object_id).where(
        (AccessLogEntry.org_id == scope.org_id)
        & (AccessLogEntry.object_type == "consent")
        & (AccessLogEntry.action == "create")
    )
    return {str(row["object_id"]) for row in rows}


def _bad_event(row: dict[str, Any]) -> str | None:
    kind, purpose = row["subject_kind"], row["purpose"]
    allowed = consent.MEMBER_PURPOSES if kind == "member" else consent.DEVICE_PURPOSES if kind == "device" else ()
    if purpose not in allowed:
        return "a purpose not asked of its kind of subject"
    if row["action"] not in ("granted", "withdrawn"):
        return "no decision"
    if not row["wording_version"] or not row["language"]:
        return "no wording"
    return None


async def consent_recorded(scope: Scope, events: list[dict[str, Any]]) -> tuple[Check, dict[str, Any]]:
    logged = await _logged_ids(scope)
    in_period = [e for e in events if aware(e["at"]) >= scope.period_start]
    by_purpose_action = Counter(f"{e['purpose']}:{e['action']}" for e in in_period)
    incomplete = [str(e["id"]) for e in events if _bad_event(e)]
    unlogged = [str(e["id"]) for e in events if str(e["id"]) not in logged]
    latest: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}
    for e in events:
        latest[(e["subject_id"], e["purpose"])] = e
    in_force = Counter(
        e["purpose"]
        for e in latest.values()
        if e["action"] == "granted" and (e["expires_at"] is None or aware(e["expires_at"]) > scope.now)
    )
    figures: dict[str, int | float | str | bool | None] = {
        "events_in_period": len(in_period),
        "granted_in_period": sum(e["action"] == "granted" for e in in_period),
        "withdrawn_in_period": sum(e["action"] == "withdrawn" for e in in_period),
        **{f"in_force_{p}": in_force.get(p, 0) for p in consent.PURPOSES},
        "incomplete": len(incomplete),
        "not_access_logged": len(unlogged),
    }
    evidence = {
        "events_held": len(events),
        "in_period_by_purpose_and_action": dict(sorted(by_purpose_action.items())),
        "in_force_by_purpose": {p: in_force.get(p, 0) for p in consent.PURPOSES},
        "wording_versions_now": dict(consent.VERSIONS),
        "incomplete": listed(incomplete),
        "not_access_logged": listed(unlogged),
    }
    looked = (
        f"Looked at the organisation's {plural(len(events), 'consent decision')} "
        f"({len(in_period)} in the period: {figures['granted_in_period']} granted, "
        f"{figures['withdrawn_in_period']} withdrawn)"
    )
    problems = []
    if incomplete:
        problems.append(
            f"{plural(len(incomplete), 'decision')} without a valid purpose, decision or wording ({named(incomplete)})"
        )
    if unlogged:
        problems.append(f"{plural(len(unlogged), 'decision')} without an access-log entry ({named(unlogged)})")
    if problems:
        return failed("consent_recorded", f"{looked}. Fails: {'; '.join(problems)}.", **figures), evidence
    reason = (
        f"{looked}: each names its purpose, the decision, when, and the version and language of the wording "
        "shown, and each is in the access log."
    )
    return passed("consent_recorded", reason, **figures), evidence


async def mails_with_consent(scope: Scope, events: list[dict[str, Any]]) -> tuple[Check, dict[str, Any]]:
    mails = list(
        await ConsentMail.select().where(
            (ConsentMail.org_id == scope.org_id)
            & (ConsentMail.sent_at >= scope.period_start)
            & (ConsentMail.sent_at < scope.period_end)
        )
    )
    by_id = {e["id"]: e for e in events}
    without: list[str] = []
    for mail in mails:
        grant = by_id.get(mail["consent_event_id"])
        sent = aware(mail["sent_at"])
        ok = (
            grant is not None
            and grant["action"] == "granted"
            and grant["subject_id"] == mail["member_id"]
            and grant["purpose"] == mail["purpose"]
            and aware(grant["at"]) <= sent
        )
        if ok and grant is not None:
            later = [
                e
                for e in events
                if e["subject_id"] == mail["member_id"]
                and e["purpose"] == mail["purpose"]
                and aware(grant["at"]) < aware(e["at"]) <= sent
                and e["action"] == "withdrawn"
            ]
            ok = not later
        if not ok:
            without.append(str(mail["id"]))
    figures: dict[str, int | float | str | bool | None] = {
        "emails_in_period": len(mails),
        "emails_without_consent": len(without),
    }
    evidence = {
        "emails_in_period_by_purpose": dict(sorted(Counter(m["purpose"] for m in mails).items())),
        "emails_without_consent": listed(without),
    }
    looked = f"Looked at the {plural(len(mails), 'onboarding or feature e-mail')} sent in the period"
    if without:
        reason = (
            f"{looked}. Fails: {plural(len(without), 'e-mail')} without a grant in force when sent ({named(without)})."
        )
        return failed("mails_with_consent", reason, **figures), evidence
    reason = f"{looked}: each went out on the member's grant for its purpose, made before and not withdrawn since."
    return passed("mails_with_consent", reason, **figures), evidence


async def collect(region: RegionContext, scope: Scope) -> Observation:
    events = await _events(scope)
    recorded, recorded_evidence = await consent_recorded(scope, events)
    mailed, mailed_evidence = await mails_with_consent(scope, events)
    return observation(
        scope,
        COLLECTOR,
        "TEST",
        "Read the organisation's consent decisions and the onboarding and feature e-mails sent, from the region's "
        "database, checked each decision's record and access-log entry, and each e-mail against the member's "
        "decisions before it.",
        [recorded, mailed],
        {"decisions": recorded_evidence, "emails": mailed_evidence},
    )
