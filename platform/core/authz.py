"""Who may call a route, declared on the route (``opt``) and enforced for every route
by one app-level check (the region service's ``tenants.auth.authorize_request``, the
control plane's ``_authorized_and_strict``): a route without a rule is refused (fail
closed)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """Who may call a route: member roles, and the scope an integration token needs.

    ``personal_data`` names what the route reads or changes (the access log's object
    type, e.g. "member") when that is personal data: a refused call of such a route is
    logged in the organisation's access log with outcome ``denied``."""

    roles: frozenset[str]
    scope: str | None = None
    org_scoped: bool = True
    personal_data: str | None = None


def rule(*roles: str, scope: str | None = None, personal_data: str | None = None) -> dict[str, Any]:
    return {"auth": Rule(frozenset(roles), scope, personal_data=personal_data)}


PUBLIC: dict[str, Any] = {"public": True}
# Called by another of Konsil's services only: the route's own guard checks the signature.
INTERNAL: dict[str, Any] = {"internal": True}
# The region's ops team (media-node operations): bearer tokens whose SHA-256 is in
# regions.<id>.ops_token_hashes. Not a member of any organisation.
OPS: dict[str, Any] = {"auth": Rule(frozenset({"ops"}), None, org_scoped=False)}

# A route that only ends the caller's own session (logging out): open to auditors, whom
# the guard otherwise refuses every unsafe method (tenants/auth.py).
OWN_SESSION_KEY = "own_session"
OWN_SESSION: dict[str, Any] = {OWN_SESSION_KEY: True}
# A route that only makes an audit artefact (a compliance report) from the organisation's
# evidence and changes none of its data: open to auditors as well (starting a report is
# what an auditor is there for). Its rule must still name "auditor".
AUDIT_WORK_KEY = "audit_work"
AUDIT_WORK: dict[str, Any] = {AUDIT_WORK_KEY: True}

# The roles that manage an organisation's members, rooms, retention and requests.
MANAGERS: frozenset[str] = frozenset({"owner", "admin"})


def token_hash(token: str) -> str:
    """What is stored of a bearer token or a session id: its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()
