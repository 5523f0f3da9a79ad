"""Who acts on personal data, for the access log: the caller, on whose behalf,
from where, and for what purpose."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from litestar.connection import ASGIConnection

from konsil.platform.core.access import AccessEvent
from konsil.platform.core.region import RegionContext, region_of
from konsil.platform.core.signing import FORWARDED_FOR

# What an auditor's reads are for, in the access log: an auditor only ever looks, for
# the audit they were let in for, so every entry of theirs says so.
AUDIT_PURPOSE = "compliance audit"


@dataclass(frozen=True)
class Actor:
    actor: str
    role: str
    on_behalf_of: str
    source_address: str
    purpose: str = "provide the service"

    def for_purpose(self, purpose: str) -> Actor:
        if self.role == "auditor":
            return replace(self, purpose=f"{AUDIT_PURPOSE}: {purpose}")
        return replace(self, purpose=purpose)


SYSTEM = Actor("system", "system", "system", "local")
log = logging.getLogger("konsil.access")


def source_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    # Only a call signed by the control plane may name the original client.
    if connection.scope.get("state", {}).get("signed_by") == "control":
        forwarded = connection.headers.get(FORWARDED_FOR)
        if forwarded:
            return forwarded[:64]
    client = connection.client
    return client.host if client else "unknown"


def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Actor:
    principal = connection.state.get("principal") if hasattr(connection.state, "get") else None
    return actor_for(connection, principal)


def actor_for(connection: ASGIConnection[Any, Any, Any, Any], principal: Any) -> Actor:
    """The actor behind a caller (a Principal of tenants.auth, or None for anonymous)."""
    if principal is None:
        return Actor("anonymous", "anonymous", "anonymous", source_address(connection))
    # A token acts for the organisation that connected the integration.
    on_behalf = principal.actor if principal.kind == "member" else f"org:{principal.org_id}"
    actor = Actor(principal.actor, principal.role, on_behalf, source_address(connection))
    return replace(actor, purpose=f"{AUDIT_PURPOSE} (auditor access)") if principal.role == "auditor" else actor


def _event(
    ctx: RegionContext,
    actor: Actor,
    org_id: uuid.UUID,
    action: str,
    object_type: str,
    object_id: uuid.UUID | str,
    subject_ref: str,
    outcome: str,
) -> AccessEvent:
    return AccessEvent(
        org_id=org_id,
        actor=actor.actor,
        actor_role=actor.role,
        on_behalf_of=actor.on_behalf_of,
        subject_ref=subject_ref,
        action=action,  # type: ignore[arg-type]
        object_type=object_type,
        object_id=str(object_id),
        source_address=actor.source_address,
        outcome=outcome,  # type: ignore[arg-type]
        purpose=actor.purpose,
        source=ctx.source,
    )


async def record(
    ctx: RegionContext,
    actor: Actor,
    org_id: uuid.UUID,
    action: str,
    object_type: str,
    object_id: uuid.UUID | str,
    subject_ref: str,
    outcome: str = "success",
) -> None:
    await ctx.access_log.append_many([_event(ctx, actor, org_id, action, object_type, object_id, subject_ref, outcome)])


async def record_reads(
    ctx: RegionContext, actor: Actor, org_id: uuid.UUID, object_type: str, subjects: list[tuple[uuid.UUID, str]]
) -> None:
    """One "read" entry per data subject shown by a list, appended in one go."""
    await ctx.access_log.append_many(
        [
            _event(ctx, actor, org_id, "read", object_type, object_id, subject, "success")
            for object_id, subject in subjects
        ]
    )


# --- refused access ---------------------------------------------------------------------------

# Refused calls logged per organisation and actor (or source address, for anonymous
# callers) and minute; the next one writes a single entry saying that more were
# refused and not logged, so a flood cannot fill the organisation's log.
DENIALS_PER_MINUTE = 30
_ACTIONS = {"GET": "read", "HEAD": "read", "POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
# Path parameters that name the data subject a refused call was aimed at.
_SUBJECT_PARAMS = {
    "member_id": "member",
    "visit_id": "visit",
    "call_id": "call",
    "dsr_id": "dsr",
    "invitation_id": "invitation",
}


class DenialBound:
    """Counts refused calls per key in fixed one-minute windows, in the process."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._max_keys = max_keys
        self._minute = -1
        self._counts: dict[str, int] = {}

    def admit(self, key: str) -> str | None:
        """ "log" for an entry, "summary" for the one entry past the bound, None for nothing."""
        minute = int(self._clock() // 60)
        if minute != self._minute:
            self._minute, self._counts = minute, {}
        if key not in self._counts and len(self._counts) >= self._max_keys:
            return None
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        if count <= self.per_minute:
            return "log"
        return "summary" if count == self.per_minute + 1 else None


DENIALS = DenialBound(DENIALS_PER_MINUTE)
# And per organisation, whoever the actors: many addresses together cannot fill it either.
DENIALS_PER_ORGANISATION_MINUTE = 600
ORGANISATION_DENIALS = DenialBound(DENIALS_PER_ORGANISATION_MINUTE)


async def record_denial(
    connection: ASGIConnection[Any, Any, Any, Any], org_id: uuid.UUID, object_type: str, principal: Any, reason: str
) -> None:
    """Log a refused call of a route that would have read or changed personal data
    (NEN 7513, HIPAA 164.312(b): attempts count). Never fails the refusal itself."""
    actor = actor_for(connection, principal)
    who = actor.actor if principal is not None else f"anonymous@{actor.source_address}"
    verdict = DENIALS.admit(f"{org_id}/{who}")
    if verdict is None:
        return
    for_organisation = ORGANISATION_DENIALS.admit(str(org_id))
    if for_organisation is None:
        return
    purpose = f"refused: {reason}"
    if verdict == "summary":
        purpose = f"refused: over {DENIALS_PER_MINUTE} this minute, more not logged"
    if for_organisation == "summary":
        purpose = f"refused: over {DENIALS_PER_ORGANISATION_MINUTE} for all, more not logged"
    object_id: str = "*"  # a list: every subject the route would have shown
    subject_ref = "*"
    for name, kind in _SUBJECT_PARAMS.items():
        value = connection.path_params.get(name)
        if value is not None:
            object_id, subject_ref = str(value), f"{kind}:{value}"
            break
    action = _ACTIONS.get(str(connection.scope.get("method", "GET")), "read")
    ctx = region_of(connection)
    try:
        # The refusal's own purpose (an auditor's too: a refused call is no audit read).
        refused = replace(actor, purpose=purpose)
        await record(ctx, refused, org_id, action, object_type, object_id, subject_ref, "denied")
    except Exception as exc:  # the call is refused all the same
        log.warning("a refused call could not be access-logged (%s)", type(exc).__name__)
