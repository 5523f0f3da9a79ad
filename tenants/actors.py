"""Who acts on personal data, for the access log: the caller, on whose behalf,
from where, and for what purpose."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from litestar.connection import ASGIConnection

from konsil.compliance.access_log.service import AccessEvent, append, append_many
from konsil.platform.signing import FORWARDED_FOR
from konsil.regions.context import RegionContext


@dataclass(frozen=True)
class Actor:
    actor: str
    role: str
    on_behalf_of: str
    source_address: str
    purpose: str = "provide the service"

    def for_purpose(self, purpose: str) -> Actor:
        return replace(self, purpose=purpose)


SYSTEM = Actor("system", "system", "system", "local")


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
    if principal is None:
        return Actor("anonymous", "anonymous", "anonymous", source_address(connection))
    # A token acts for the organisation that connected the integration.
    on_behalf = principal.actor if principal.kind == "member" else f"org:{principal.org_id}"
    return Actor(principal.actor, principal.role, on_behalf, source_address(connection))


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
    await append(_event(ctx, actor, org_id, action, object_type, object_id, subject_ref, outcome))


async def record_reads(
    ctx: RegionContext, actor: Actor, org_id: uuid.UUID, object_type: str, subjects: list[tuple[uuid.UUID, str]]
) -> None:
    """One "read" entry per data subject shown by a list, appended in one go."""
    await append_many(
        [
            _event(ctx, actor, org_id, "read", object_type, object_id, subject, "success")
            for object_id, subject in subjects
        ]
    )
