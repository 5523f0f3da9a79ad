"""Session and sign-in evidence (P6, P11, P15; HIPAA 164.312(a)(2)(iii) and (d), NEN 7510
A.9.2.5, Normen kap. 5.2): the idle timeout against its documented limit, how staff
signed in during the period, who holds which role, and the auditors' time-boxed grants.

Reads this region's settings, its member table (ids and roles only) and the
organisation's access log (each sign-in writes an entry, ``tenants/auth.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.compliance.evidence.model import Check, Observation, Scope
from konsil.compliance.evidence.observations import listed, named, observation, plural
from konsil.platform.core.region import RegionContext
from konsil.tenants import members
from konsil.tenants.tables import Member

COLLECTOR = "sessions"
# The documented limit of the idle timeout: member sessions end after at most 30 idle
# minutes, the default of ``session_idle_minutes`` (README, settings). The setting
# itself accepts up to a day, so the check is what holds an operator to the limit.
IDLE_LIMIT_MINUTES = 30
# How staff can sign in today: e-mail and password (tenants/members.py authenticate).
# Konsil has no second factor and no identity-provider sign-in yet.
SIGN_IN_METHODS = ("password",)
STRONG_METHODS: frozenset[str] = frozenset()
# The purpose every sign-in's access-log entry carries (tenants/auth.py start_session).
SIGN_IN_PURPOSE = "log in"


def idle_timeout(region: RegionContext) -> tuple[Check, dict[str, Any]]:
    minutes = region.settings.session_idle_minutes
    evidence = {
        "session_idle_minutes": minutes,
        "documented_limit_minutes": IDLE_LIMIT_MINUTES,
        "enforced_by": "tenants/auth.py: a session idle for longer is refused and must sign in again",
    }
    figures: dict[str, int | float | str | bool | None] = {"configured": minutes, "limit": IDLE_LIMIT_MINUTES}
    if minutes <= IDLE_LIMIT_MINUTES:
        reason = (
            f"Member sessions end after {minutes} idle minutes in region {region.region.id}, within the "
            f"documented limit of {IDLE_LIMIT_MINUTES} minutes."
        )
        return Check(name="idle_timeout", result="pass", reason=reason, figures=figures), evidence
    reason = (
        f"Member sessions end only after {minutes} idle minutes in region {region.region.id}, longer than the "
        f"documented limit of {IDLE_LIMIT_MINUTES} minutes: set session_idle_minutes to {IDLE_LIMIT_MINUTES} or less."
    )
    return Check(name="idle_timeout", result="fail", reason=reason, figures=figures), evidence


async def strong_sign_in(scope: Scope) -> tuple[Check, dict[str, Any]]:
    rows = (
        await AccessLogEntry.select(AccessLogEntry.actor)
        .where(
            (AccessLogEntry.org_id == scope.org_id)
            & (AccessLogEntry.purpose == SIGN_IN_PURPOSE)
            & (AccessLogEntry.object_type == "member")
            & (AccessLogEntry.outcome == "success")
            & (AccessLogEntry.at >= scope.period_start)
            & (AccessLogEntry.at < scope.period_end)
        )
        .run()
    )
    per_member: dict[str, int] = {}
    for row in rows:
        per_member[row["actor"]] = per_member.get(row["actor"], 0) + 1
    evidence = {
        "sign_ins": len(rows),
        "members_signed_in": len(per_member),
        "sign_ins_by_method": {"password": len(rows)},
        "methods_available": list(SIGN_IN_METHODS),
        "strong_methods_available": sorted(STRONG_METHODS),
        "sign_ins_per_member": listed({"actor": actor, "sign_ins": n} for actor, n in sorted(per_member.items())),
    }
    figures: dict[str, int | float | str | bool | None] = {
        "sign_ins": len(rows),
        "members": len(per_member),
        "with_second_factor": 0,
    }
    missing = (
        "Konsil offers sign-in by e-mail and password only: it has no second factor and no strong identity "
        "provider (such as BankID) yet, so no staff sign-in can meet this control"
    )
    if rows:
        reason = (
            f"{plural(len(rows), 'staff sign-in')} by {plural(len(per_member), 'member')} in the period, none with a "
            f"second factor or a strong identity provider. {missing}."
        )
    else:
        reason = f"No staff member signed in during the period. {missing}."
    return Check(name="strong_sign_in", result="fail", reason=reason, figures=figures), evidence


async def role_review(scope: Scope) -> tuple[Check, dict[str, Any]]:
    rows = (
        await Member.select(Member.id, Member.role)
        .where(Member.org_id == scope.org_id)
        .order_by(Member.role)
        .order_by(Member.id)
        .run()
    )
    by_role: dict[str, int] = {}
    for row in rows:
        by_role[row["role"]] = by_role.get(row["role"], 0) + 1
    holders = [{"member_id": str(row["id"]), "role": row["role"]} for row in rows]
    evidence = {
        "role_holders": listed(holders),
        "members_by_role": dict(sorted(by_role.items())),
        "review_recorded": False,
    }
    figures: dict[str, int | float | str | bool | None] = {"members": len(rows), **by_role}
    counts = ", ".join(f"{plural(count, role)}" for role, count in sorted(by_role.items()))
    reason = (
        f"No role review is recorded for the period: Konsil keeps no record of role reviews yet. The "
        f"{plural(len(rows), 'role holder')} ({counts or 'none'}) are listed by member id in the evidence. "
        "To meet this control an owner reviews that list (does each person still need their role?), removes or "
        "changes what is no longer needed, and keeps a signed record of the review for the period."
    )
    return Check(name="role_review", result="fail", reason=reason, figures=figures), evidence


# An auditor's grant may last at most this long (tenants/members.py refuses longer).
GRANT_LIMIT = dt.timedelta(days=366)


async def auditor_grants(scope: Scope) -> tuple[Check, dict[str, Any]]:
    """Auditors are let in time-boxed: every grant has an end at most a year after it
    was given, and no auditor's access succeeded after their grant ended."""
    grants = await members.auditor_grants(scope.org_id, scope.now)
    unbounded = [g for g in grants if g.expires_at is None]
    too_long = [
        g
        for g in grants
        if g.expires_at is not None and g.granted_at is not None and g.expires_at - g.granted_at > GRANT_LIMIT
    ]
    used_after: list[str] = []
    for grant in grants:
        if grant.expires_at is None:
            continue
        late = await AccessLogEntry.count().where(
            (AccessLogEntry.org_id == scope.org_id)
            & (AccessLogEntry.actor == f"member:{grant.member_id}")
            & (AccessLogEntry.outcome == "success")
            & (AccessLogEntry.at > grant.expires_at)
        )
        if late:
            used_after.append(str(grant.member_id))
    evidence = {
        "grants": listed(
            [
                {
                    "member_id": str(g.member_id),
                    "granted_at": g.granted_at.isoformat() if g.granted_at else None,
                    "granted_by": str(g.granted_by) if g.granted_by else None,
                    "expires_at": g.expires_at.isoformat() if g.expires_at else None,
                    "active": g.active,
                }
                for g in grants
            ]
        ),
        "without_end": [str(g.member_id) for g in unbounded],
        "longer_than_a_year": [str(g.member_id) for g in too_long],
        "used_after_end": used_after,
    }
    figures: dict[str, int | float | str | bool | None] = {
        "auditor_grants": len(grants),
        "active": sum(1 for g in grants if g.active),
        "ended": sum(1 for g in grants if not g.active),
    }
    if not grants:
        return Check(
            name="auditor_grants", result="not_applicable", reason="No auditor was given access.", figures=figures
        ), evidence
    problems = []
    if unbounded:
        problems.append(f"{plural(len(unbounded), 'auditor grant')} without an end ({named(evidence['without_end'])})")
    if too_long:
        problems.append(
            f"{plural(len(too_long), 'grant')} longer than a year ({named(evidence['longer_than_a_year'])})"
        )
    if used_after:
        problems.append(
            f"{plural(len(used_after), 'auditor')} whose access succeeded after it ended ({named(used_after)})"
        )
    if problems:
        reason = "Auditor access is not time-boxed as required: " + "; ".join(problems) + "."
        return Check(name="auditor_grants", result="fail", reason=reason, figures=figures), evidence
    reason = (
        f"Every auditor grant ({len(grants)}; {figures['active']} active) ends within a year of being given, "
        "and no auditor's access succeeded after its end."
    )
    return Check(name="auditor_grants", result="pass", reason=reason, figures=figures), evidence


async def collect(region: RegionContext, scope: Scope) -> Observation:
    results = [
        idle_timeout(region),
        await strong_sign_in(scope),
        await role_review(scope),
        await auditor_grants(scope),
    ]
    return observation(
        COLLECTOR,
        "EXAMINE",
        "Read the region's session idle timeout, counted the organisation's staff sign-ins of the period in its "
        "access log with the sign-in methods Konsil offers, listed who holds which role (member ids only) "
        "and read every auditor grant with the access-log entries of each auditor after their grant ended.",
        scope,
        [c for c, _ in results],
        {c.name: e for c, e in results},
    )
