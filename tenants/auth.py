"""Who is calling a region service: member sessions, integration tokens, CSRF,
and the authorization rule every route declares.

Each route handler carries ``opt={"auth": Rule(...)}``; the app-wide guard
``authorize`` fails closed for a route without a rule unless it is marked
``public``. Organisation-scoped routes resolve the organisation first, so an
organisation of another region (or none) answers 404.

Auditors are read-only and time-boxed, whatever a route's rule says: the guard refuses
them every unsafe method and every socket (but logging out, ``OWN_SESSION``), and from
the end of their grant their sessions and the tokens they made are refused.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Empty, EmptyType

from konsil.platform.core import clock, database, errors
from konsil.platform.core.authz import AUDIT_WORK_KEY, OWN_SESSION_KEY, Rule, token_hash
from konsil.platform.core.region import RegionContext, region_of
from konsil.tenants import members, records
from konsil.tenants.actors import Actor, record, record_denial
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


class LoggedIn(msgspec.Struct, frozen=True, kw_only=True):
    member: records.Member
    organisation: records.Organisation
    cookie: str  # the session cookie's value
    csrf_token: str


async def start_session(ctx: RegionContext, member: records.Member, source_address: str) -> tuple[str, str]:
    """Log ``member`` in: their session and the login's access-log entry, in one
    transaction. Returns (cookie value, CSRF token)."""
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    who = members.subject(member.id)
    actor = Actor(who, member.role, who, source_address, "log in")
    async with database.transaction(ctx.engine):
        await MemberSession.insert(
            MemberSession(id=token_hash(cookie), org_id=member.org_id, member_id=member.id, csrf_token=csrf)
        ).run()
        await record(ctx, actor, member.org_id, "read", "member", member.id, who)
    return cookie, csrf


async def log_in(
    ctx: RegionContext, email: str, password: str, org_slug: str | None, source_address: str
) -> LoggedIn | list[str]:
    """The one way in, for the API and the login page: the member whose e-mail and
    password match (``members.authenticate``), then their session. A login that opens
    several organisations returns their slugs to choose from instead."""
    found = await members.authenticate(ctx, email, password, org_slug, source_address)
    if isinstance(found, list):
        return found
    member, organisation = found
    cookie, csrf = await start_session(ctx, member, source_address)
    return LoggedIn(member=member, organisation=organisation, cookie=cookie, csrf_token=csrf)


async def end_session(session_id: str) -> None:
    await MemberSession.delete().where(MemberSession.id == session_id).run()


# The guard's lookups on PostgreSQL, as fixed SQL: the organisation and the caller's
# token or session in one statement (building a piccolo query costs more CPU than
# PostgreSQL spends on it, and each borrowed connection is a round trip). A credential
# of another organisation comes back too and is refused as before (404). The
# organisation's columns are those piccolo's select() gives (a test compares the two,
# so a new column cannot be missed here).
_ORGANISATION_SQL = """
SELECT o.id, o.slug, o.name, o.retention_days, o.contract_end, o.relay_only, o.created_at, o.locale, o.country
FROM organisation o
WHERE o.slug = $1"""
_ORGANISATION_AND_INTEGRATION_SQL = """
SELECT o.id, o.slug, o.name, o.retention_days, o.contract_end, o.relay_only, o.created_at, o.locale, o.country,
       t.id AS caller_id, t.org_id AS caller_org_id, t.scopes AS caller_scopes,
       t.last_used_at AS caller_last_used_at,
       m.role AS caller_maker_role, m.access_expires_at AS caller_maker_access_expires_at
FROM organisation o
LEFT JOIN api_token t ON t.token_hash = $2 AND t.revoked_at IS NULL
LEFT JOIN member m ON m.id = t.created_by
WHERE o.slug = $1"""
_ORGANISATION_AND_SESSION_SQL = """
SELECT o.id, o.slug, o.name, o.retention_days, o.contract_end, o.relay_only, o.created_at, o.locale, o.country,
       s.org_id AS caller_org_id, s.member_id AS caller_member_id, s.csrf_token AS caller_csrf_token,
       s.last_seen_at AS caller_last_seen_at, m.role AS caller_role,
       m.access_expires_at AS caller_access_expires_at
FROM organisation o
LEFT JOIN member_session s ON s.id = $2
LEFT JOIN member m ON m.id = s.member_id
WHERE o.slug = $1"""
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


class _SessionCaller(msgspec.Struct, frozen=True, kw_only=True):
    org_id: uuid.UUID
    member_id: uuid.UUID
    csrf_token: str
    last_seen_at: dt.datetime
    role: str | None  # None: the member is gone
    access_expires_at: dt.datetime | None = None  # an auditor's end of access


class _TokenCaller(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    org_id: uuid.UUID
    scopes: str
    # The member who made the token: their access ending ends the token's too.
    maker_role: str | None = None  # None: the maker is gone
    maker_access_expires_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None


Caller = _SessionCaller | _TokenCaller


def _caller_of(kind: str, row: dict[str, Any]) -> Caller | None:
    """The caller's columns of the guard's statement (``caller_*``), when it found one."""
    if row["caller_org_id"] is None:
        return None
    if kind == "token":
        return _TokenCaller(
            id=row["caller_id"],
            org_id=row["caller_org_id"],
            scopes=row["caller_scopes"],
            maker_role=row["caller_maker_role"],
            maker_access_expires_at=row["caller_maker_access_expires_at"],
            last_used_at=row["caller_last_used_at"],
        )
    return _SessionCaller(
        org_id=row["caller_org_id"],
        member_id=row["caller_member_id"],
        csrf_token=row["caller_csrf_token"],
        last_seen_at=row["caller_last_seen_at"],
        role=row["caller_role"],
        access_expires_at=row["caller_access_expires_at"],
    )


async def find_organisation(
    connection: ASGIConnection[Any, Any, Any, Any],
    ctx: RegionContext,
    slug: str,
    credential: Credential | EmptyType | None = Empty,
) -> records.Organisation | None:
    """The organisation named by ``slug``. On PostgreSQL the caller's token or session
    row comes in the same statement and is kept for ``identify``."""
    if not database.is_postgres(ctx.engine):
        return records.Organisation.maybe(await Organisation.select().where(Organisation.slug == slug).first().run())
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
    row = rows[0]
    if credential is not None:
        # Kept in the request's own state (the scope's dict behind connection.state).
        connection.scope.setdefault("state", {})[_PREFETCHED] = (credential, _caller_of(credential[0], row))
    return records.Organisation.of(row)  # its own columns; the caller's are left out


def _prefetched(connection: ASGIConnection[Any, Any, Any, Any], kind: str, hashed: str) -> tuple[bool, Caller | None]:
    """(found, caller) of this credential if it was fetched with the organisation."""
    kept = connection.scope.get("state", {}).get(_PREFETCHED)
    if kept is None or kept[0] != (kind, hashed):
        return False, None
    caller: Caller | None = kept[1]
    return True, caller


async def _session_caller(sid: str) -> _SessionCaller | None:
    row = await MemberSession.select().where(MemberSession.id == sid).first().run()
    if row is None:
        return None
    member = (
        await Member.select(Member.role, Member.access_expires_at).where(Member.id == row["member_id"]).first().run()
    )
    return _SessionCaller(
        org_id=row["org_id"],
        member_id=row["member_id"],
        csrf_token=row["csrf_token"],
        last_seen_at=row["last_seen_at"],
        role=member["role"] if member else None,
        access_expires_at=member["access_expires_at"] if member else None,
    )


async def _from_session(ctx: RegionContext, sid: str, caller: Caller | None) -> Principal | None:
    if not isinstance(caller, _SessionCaller):
        return None
    now = clock.now()
    idle = dt.timedelta(minutes=ctx.settings.session_idle_minutes)
    if caller.last_seen_at + idle < now:
        await end_session(sid)
        return None
    if caller.role is None:  # the member is gone
        await end_session(sid)
        return None
    if members.access_ended(caller.role, caller.access_expires_at, now):
        await end_session(sid)
        raise members.access_ended_error(401, caller.access_expires_at)
    if now - caller.last_seen_at > dt.timedelta(seconds=30):
        await MemberSession.update({MemberSession.last_seen_at: now}).where(MemberSession.id == sid).run()
    return Principal(
        "member", caller.org_id, caller.member_id, caller.role, session_id=sid, csrf_token=caller.csrf_token
    )


async def _token_caller(hashed: str) -> _TokenCaller | None:
    row = (
        await ApiToken.select(ApiToken.id, ApiToken.org_id, ApiToken.scopes, ApiToken.created_by, ApiToken.last_used_at)
        .where((ApiToken.token_hash == hashed) & ApiToken.revoked_at.is_null())
        .first()
        .run()
    )
    if row is None:
        return None
    maker = (
        await Member.select(Member.role, Member.access_expires_at).where(Member.id == row["created_by"]).first().run()
    )
    return _TokenCaller(
        id=row["id"],
        org_id=row["org_id"],
        scopes=row["scopes"],
        maker_role=maker["role"] if maker else None,
        maker_access_expires_at=maker["access_expires_at"] if maker else None,
        last_used_at=row["last_used_at"],
    )


# A token's last use is noted to within this much (one write per token and period at most).
TOKEN_USE_PRECISION = dt.timedelta(minutes=5)


async def _note_use(caller: Caller | None) -> None:
    """When a token was last used, for the integrations page (no write on most calls)."""
    if not isinstance(caller, _TokenCaller):
        return
    now = clock.now()
    if caller.last_used_at is None or now - caller.last_used_at > TOKEN_USE_PRECISION:
        await ApiToken.update({ApiToken.last_used_at: now}).where(ApiToken.id == caller.id).run()


def _from_token(caller: Caller | None) -> Principal | None:
    if not isinstance(caller, _TokenCaller):
        return None
    if caller.maker_role == members.AUDITOR:
        # Made before its maker became an auditor (a change of role now revokes them):
        # an auditor holds nothing that writes, and nothing at all after their grant.
        if members.access_ended(members.AUDITOR, caller.maker_access_expires_at, clock.now()):
            ended = members.ended_in_words(caller.maker_access_expires_at)
            message = f"this API token was made by an auditor whose access {ended}; it no longer works"
            raise errors.AppError(401, "access_expired", message)
        raise errors.unauthorized("this API token was made by a member who is now an auditor; it no longer works")
    return Principal("token", caller.org_id, caller.id, "integration", frozenset(caller.scopes.split()))


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
        found, caller = _prefetched(connection, "token", hashed)
        if not found:
            caller = await _token_caller(hashed)
        principal = _from_token(caller)
        if principal is None:
            raise errors.unauthorized("the API token is not valid or was revoked")
        await _note_use(caller)
        return principal
    found, caller = _prefetched(connection, "session", hashed)
    return await _from_session(ctx, hashed, caller if found else await _session_caller(hashed))


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
    ctx = region_of(connection)
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
    except errors.AppError as exc:
        ended = exc.code == "access_expired"
        await _refused(connection, found, None, "auditor access ended" if ended else "invalid credentials")
        if ended and opt.get("page"):
            raise LoginRequired() from None  # the login page then says why
        raise
    if principal is None:
        await _refused(connection, found, None, "not logged in")
        if opt.get("page"):
            raise LoginRequired()
        raise errors.unauthorized()
    if found.org_scoped and principal.org_id != state["org"].id:
        await _refused(connection, found, principal, "another organisation")
        raise errors.not_found("no such organisation in this region")
    if principal.kind == "token":
        if found.scope is None or found.scope not in principal.scopes:
            await _refused(connection, found, principal, "token scope")
            raise errors.forbidden("the API token lacks the scope this route needs")
    elif principal.role not in found.roles:
        await _refused(connection, found, principal, "role")
        raise errors.forbidden()
    if principal.role == "auditor" and _changes_state(connection, opt):
        await _refused(connection, found, principal, "auditor access is read-only")
        raise errors.forbidden("auditor access is read-only: an auditor can look but not change anything")
    if opt.get("csrf") != "form":  # form routes check their own hidden field
        try:
            _check_csrf(connection, principal)
        except errors.AppError:
            await _refused(connection, found, principal, "csrf")
            raise
    state["principal"] = principal


def _changes_state(connection: ASGIConnection[Any, Any, Any, Any], opt: dict[str, Any]) -> bool:
    """Whether a call may change something: an unsafe method, or any socket (sockets
    carry actions). Ending one's own session (``OWN_SESSION``) is no change of data, nor
    is making an audit artefact (``AUDIT_WORK``: starting a compliance report)."""
    if opt.get(OWN_SESSION_KEY) or opt.get(AUDIT_WORK_KEY):
        return False
    return connection.scope["type"] == ScopeType.WEBSOCKET or connection.scope.get("method") in UNSAFE


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
    org: records.Organisation = connection.scope["state"]["org"]
    await record_denial(connection, org.id, found.personal_data, principal, reason)


def org_of(request: Request[Any, Any, Any]) -> records.Organisation:
    """The organisation this request's guard resolved (``authorize``)."""
    org: records.Organisation = request.scope["state"]["org"]
    return org


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    """Who this request's guard let in (``authorize``)."""
    principal: Principal = request.scope["state"]["principal"]
    return principal
