"""Who is calling a region service: member sessions, integration tokens, CSRF,
and the authorization rule every route declares.

Each route handler carries ``opt={"auth": Rule(...)}``; the app-wide guard
``authorize`` fails closed for a route without a rule unless it is marked
``public``. Organisation-scoped routes resolve the organisation first, so an
organisation of another region (or none) answers 404.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Empty, EmptyType

from konsil.platform.core import clock, database, errors
from konsil.platform.core.authz import Rule, token_hash
from konsil.platform.core.region import RegionContext
from konsil.tenants.actors import record_denial
from konsil.tenants.tables import ApiToken, Member, MemberSession, Organisation

SESSION_COOKIE = "konsil_session"
CSRF_HEADER = "x-csrf-token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class LoginRequired(Exception):
    """A page asked for a member session; the app answers with a redirect to /login."""


NO_ORGANISATION = uuid.UUID(int=0)
SIGNED_INTERNAL: dict[str, Any] = {"internal": True}


@dataclass(frozen=True)
class Principal:
    kind: str  # member | token | ops
    org_id: uuid.UUID
    id: uuid.UUID
    role: str  # member role, or "integration"
    scopes: frozenset[str] = frozenset()
    session_id: str | None = None
    csrf_token: str | None = None

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.id}"


def new_secret_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


async def start_session(member: dict[str, Any]) -> tuple[str, str]:
    """Create a session; return (cookie value, CSRF token)."""
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    await MemberSession.insert(
        MemberSession(id=token_hash(cookie), org_id=member["org_id"], member_id=member["id"], csrf_token=csrf)
    ).run()
    return cookie, csrf


async def end_session(session_id: str) -> None:
    await MemberSession.delete().where(MemberSession.id == session_id).run()


# The guard's lookups on PostgreSQL, as fixed SQL: the organisation and the caller's
# token or session in one statement (building a piccolo query costs more CPU than
# PostgreSQL spends on it, and each borrowed connection is a round trip). A credential
# of another organisation comes back too and is refused as before (404). The
# organisation's columns are those piccolo's select() gives (a test compares the two,
# so a new column cannot be missed here).
_ORGANISATION_SQL = """
SELECT o.id, o.slug, o.name, o.retention_days, o.contract_end, o.relay_only, o.created_at
FROM organisation o
WHERE o.slug = $1"""
_ORGANISATION_AND_INTEGRATION_SQL = """
SELECT o.id, o.slug, o.name, o.retention_days, o.contract_end, o.relay_only, o.created_at,
       t.id AS caller_id, t.org_id AS caller_org_id, t.scopes AS caller_scopes
FROM organisation o
LEFT JOIN api_token t ON t.token_hash = $2 AND t.revoked_at IS NULL
WHERE o.slug = $1"""
_ORGANISATION_AND_SESSION_SQL = """
SELECT o.id, o.slug, o.name, o.retention_days, o.contract_end, o.relay_only, o.created_at,
       s.org_id AS caller_org_id, s.member_id AS caller_member_id, s.csrf_token AS caller_csrf_token,
       s.last_seen_at AS caller_last_seen_at, m.role AS caller_role
FROM organisation o
LEFT JOIN member_session s ON s.id = $2
LEFT JOIN member m ON m.id = s.member_id
WHERE o.slug = $1"""
_CALLER = "caller_"
_PREFETCHED = "konsil.caller"


def _header(connection: ASGIConnection[Any, Any, Any, Any], name: bytes) -> str:
    """One request header straight from the scope (no Headers object on the hot path)."""
    for key, value in connection.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


# A credential: ("token" | "session", its SHA-256), or MALFORMED for an Authorization
# header that is not a bearer token (identify refuses it), or None for none.
Credential = tuple[str, str]
MALFORMED: Credential = ("malformed", "")


def _credential(connection: ASGIConnection[Any, Any, Any, Any]) -> Credential | None:
    """The credential the request presents, hashed once per request."""
    auth = _header(connection, b"authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return MALFORMED
        return "token", token_hash(value.strip())
    cookie = connection.cookies.get(SESSION_COOKIE)
    return ("session", token_hash(cookie)) if cookie else None


async def find_organisation(
    connection: ASGIConnection[Any, Any, Any, Any],
    ctx: RegionContext,
    slug: str,
    credential: Credential | EmptyType | None = Empty,
) -> dict[str, Any] | None:
    """The organisation named by ``slug``. On PostgreSQL the caller's token or session
    row comes in the same statement and is kept for ``identify``."""
    if not database.is_postgres(ctx.engine):
        return await Organisation.select().where(Organisation.slug == slug).first().run()
    if credential is Empty:
        credential = _credential(connection)
    if credential is None or credential is MALFORMED:
        credential = None
        rows = await database.fetch(ctx.engine, _ORGANISATION_SQL, slug)
    else:
        sql = _ORGANISATION_AND_INTEGRATION_SQL if credential[0] == "token" else _ORGANISATION_AND_SESSION_SQL
        rows = await database.fetch(ctx.engine, sql, slug, credential[1])
    if not rows:
        return None
    org = rows[0]
    caller = {key.removeprefix(_CALLER): org.pop(key) for key in list(org) if key.startswith(_CALLER)}
    if credential is not None:
        # Kept in the request's own state (the scope's dict behind connection.state).
        connection.scope.setdefault("state", {})[_PREFETCHED] = (
            credential,
            caller if caller["org_id"] is not None else None,
        )
    return org


def _prefetched(connection: ASGIConnection[Any, Any, Any, Any], kind: str, hashed: str) -> tuple[bool, Any]:
    """(found, row) of this credential if it was fetched with the organisation."""
    kept = connection.scope.get("state", {}).get(_PREFETCHED)
    if kept is None or kept[0] != (kind, hashed):
        return False, None
    return True, kept[1]


async def _session_row(sid: str) -> dict[str, Any] | None:
    row = await MemberSession.select().where(MemberSession.id == sid).first().run()
    if row is None:
        return None
    member = await Member.select(Member.role).where(Member.id == row["member_id"]).first().run()
    return row | {"role": member["role"] if member else None}


async def _from_session(ctx: RegionContext, sid: str, row: dict[str, Any] | None) -> Principal | None:
    if row is None:
        return None
    now = clock.now()
    idle = dt.timedelta(minutes=ctx.settings.session_idle_minutes)
    if row["last_seen_at"] + idle < now:
        await end_session(sid)
        return None
    if row["role"] is None:  # the member is gone
        await end_session(sid)
        return None
    if now - row["last_seen_at"] > dt.timedelta(seconds=30):
        await MemberSession.update({MemberSession.last_seen_at: now}).where(MemberSession.id == sid).run()
    return Principal(
        "member", row["org_id"], row["member_id"], row["role"], session_id=sid, csrf_token=row["csrf_token"]
    )


async def _token_row(hashed: str) -> dict[str, Any] | None:
    return (
        await ApiToken.select(ApiToken.id, ApiToken.org_id, ApiToken.scopes)
        .where((ApiToken.token_hash == hashed) & ApiToken.revoked_at.is_null())
        .first()
        .run()
    )


def _from_token(row: dict[str, Any] | None) -> Principal | None:
    if row is None:
        return None
    return Principal("token", row["org_id"], row["id"], "integration", frozenset(row["scopes"].split()))


async def identify(
    connection: ASGIConnection[Any, Any, Any, Any],
    ctx: RegionContext,
    credential: Credential | EmptyType | None = Empty,
) -> Principal | None:
    if credential is Empty:
        credential = _credential(connection)
    if credential is None:
        return None
    kind, hashed = credential
    if kind == "malformed":
        raise errors.unauthorized("use 'Authorization: Bearer <token>'")
    if kind == "token":
        if any(hmac.compare_digest(hashed, known) for known in ctx.region.ops_token_hashes):
            return Principal("ops", NO_ORGANISATION, uuid.UUID(hashed[:32]), "ops")
        found, row = _prefetched(connection, "token", hashed)
        principal = _from_token(row if found else await _token_row(hashed))
        if principal is None:
            raise errors.unauthorized("the API token is not valid or was revoked")
        return principal
    found, row = _prefetched(connection, "session", hashed)
    return await _from_session(ctx, hashed, row if found else await _session_row(hashed))


def _check_csrf(connection: ASGIConnection[Any, Any, Any, Any], principal: Principal) -> None:
    if principal.kind != "member" or connection.scope.get("method") not in UNSAFE:
        return
    sent = _header(connection, CSRF_HEADER.encode())
    if not principal.csrf_token or not hmac.compare_digest(sent, principal.csrf_token):
        raise errors.AppError(403, "csrf", "missing or wrong X-CSRF-Token header")


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The app-wide guard: resolve the organisation, the caller, and check the rule."""
    opt = handler.opt
    if opt.get("public") or opt.get("internal"):
        return
    found = opt.get("auth")
    if not isinstance(found, Rule):
        raise errors.forbidden("this route has no authorization rule")
    ctx: RegionContext = connection.app.state.region
    # The request's state dict (what connection.state wraps, without a State per access).
    state = connection.scope.setdefault("state", {})
    credential = _credential(connection)
    if found.org_scoped:
        slug = connection.path_params.get("slug")
        org = await find_organisation(connection, ctx, slug, credential) if slug else None
        if org is None:
            raise errors.not_found("no such organisation in this region")
        state["org"] = org
    try:
        principal = await identify(connection, ctx, credential)
    except errors.AppError:
        await _refused(connection, found, None, "invalid credentials")
        raise
    if principal is None:
        await _refused(connection, found, None, "not logged in")
        if opt.get("page"):
            raise LoginRequired()
        raise errors.unauthorized()
    if found.org_scoped and principal.org_id != state["org"]["id"]:
        await _refused(connection, found, principal, "another organisation")
        raise errors.not_found("no such organisation in this region")
    if principal.kind == "token":
        if found.scope is None or found.scope not in principal.scopes:
            await _refused(connection, found, principal, "token scope")
            raise errors.forbidden("the API token lacks the scope this route needs")
    elif principal.role not in found.roles:
        await _refused(connection, found, principal, "role")
        raise errors.forbidden()
    if opt.get("csrf") != "form":  # form routes check their own hidden field
        try:
            _check_csrf(connection, principal)
        except errors.AppError:
            await _refused(connection, found, principal, "csrf")
            raise
    state["principal"] = principal


async def authorize_request(request: Request[Any, Any, Any]) -> None:
    """The region app's ``before_request``: every HTTP route is authorized here, before
    its handler, by ``authorize``. (A Litestar guard would do the same, but Litestar
    copies the route handler for every guard call, a cost on every request.) A route
    with a guard of its own (a visitor's cookie, then ``authorize``) decides there;
    WebSocket routes keep ``authorize`` as their guard."""
    handler = request.route_handler
    if not handler.resolve_guards():
        await authorize(request, handler)


async def _refused(
    connection: ASGIConnection[Any, Any, Any, Any], found: Rule, principal: Principal | None, reason: str
) -> None:
    """A refused call of a route that would have touched personal data goes into the
    organisation's own access log (outcome denied), within the per-actor bound."""
    if found.personal_data is None or not found.org_scoped:
        return
    await record_denial(connection, connection.state.org["id"], found.personal_data, principal, reason)
