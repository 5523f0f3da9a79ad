"""The access log as every area sees it: one event per access to personal data, in
NEN 7513 terms, appended through the region container's ``access_log``. The
hash-chained store behind it is ``compliance/access_log``."""

from __future__ import annotations

import uuid
from typing import Literal, Protocol, get_args

import msgspec

Action = Literal["create", "read", "update", "delete", "export", "search"]
Outcome = Literal["success", "failure", "denied"]

ACTIONS: frozenset[str] = frozenset(get_args(Action))
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))


class AccessEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One access to personal data. References are pseudonymous ("member:<uuid>",
    "token:<uuid>", "system", "anonymous"), never names or e-mails: the log outlives
    the data it describes."""

    org_id: uuid.UUID
    actor: str
    actor_role: str
    subject_ref: str
    action: Action
    object_type: str
    object_id: str
    source_address: str
    outcome: Outcome
    purpose: str
    source: str  # the system that wrote it, e.g. "region:eu/region-service"
    on_behalf_of: str = ""  # the responsible user; empty means the actor itself


class OrganisationRemoved(msgspec.Struct, frozen=True, kw_only=True):
    """What an organisation's removal destroyed, for its deletion certificate."""

    org_id: uuid.UUID
    slug: str
    removed_by: str  # the actor's pseudonymous reference, e.g. "operator:cli"
    key_destroyed: bool  # its key was deleted from the key service (crypto-shredding)
    key_versions: list[int]  # the versions the key had; empty when it was already gone
    rows_removed: dict[str, int]  # per table


class AccessLog(Protocol):
    """Appends entries of one organisation, joining the caller's transaction when there
    is one, so a data change and its entry commit (or roll back) together."""

    async def append_many(self, events: list[AccessEvent]) -> list[uuid.UUID]: ...

    async def certify_removal(self, removed: OrganisationRemoved) -> None:
        """Write the signed deletion certificate of a removed organisation, in the
        caller's transaction (the one that removes its row), after its last entry."""
