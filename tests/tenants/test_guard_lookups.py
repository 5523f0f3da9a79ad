"""The guard's lookups, on PostgreSQL (organisation and caller in one fixed statement)
and on SQLite (piccolo queries): the same organisation row, the same callers, the same
refusals."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import types
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from litestar.connection import ASGIConnection
from piccolo.engine.base import Engine

from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core import clock, database, errors
from konsil.platform.core.authz import OWN_SESSION, rule, token_hash
from konsil.platform.core.region import RegionContext
from konsil.tenants import auth, records
from konsil.tenants.tables import TENANT_TABLES, ApiToken, Member, MemberSession, Organisation
from tests.conftest import bindings_restored


@pytest.fixture(scope="module")
async def pg_engine(pg_database: Callable[[str, str], str]) -> AsyncIterator[Engine[Any]]:
    engine = database.engine_for(await asyncio.to_thread(pg_database, "guard_lookups", "region"))
    await database.start(engine)
    yield engine
    await database.stop(engine)


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine[Any]:
    dsn = f"sqlite://{Path(tmp_path_factory.mktemp('guard')) / 'region.sqlite'}"
    migrate_target(Target("sqlite region", "region", dsn))
    return database.engine_for(dsn)


@pytest.fixture(params=["postgres", "sqlite"])
async def engine(
    request: pytest.FixtureRequest, pg_engine: Engine[Any], sqlite_engine: Engine[Any]
) -> AsyncIterator[Engine[Any]]:
    """The tenant tables bound to either database; the previous binding is put back."""
    chosen = pg_engine if request.param == "postgres" else sqlite_engine
    with bindings_restored(TENANT_TABLES):
        database.bind(TENANT_TABLES, chosen)
        yield chosen


def region(engine: Engine[Any]) -> RegionContext:
    # Only what the guard's lookups read of the region's context.
    return cast(
        RegionContext,
        types.SimpleNamespace(
            engine=engine,
            region=types.SimpleNamespace(ops_token_hashes=()),
            settings=types.SimpleNamespace(session_idle_minutes=30),
        ),
    )


def connection(slug: str, *, token: str | None = None, cookie: str | None = None) -> ASGIConnection[Any, Any, Any, Any]:
    headers = [(b"host", b"region.test")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if cookie is not None:
        headers.append((b"cookie", f"{auth.SESSION_COOKIE}={cookie}".encode()))
    scope: Any = {"type": "http", "method": "GET", "path": f"/api/v1/orgs/{slug}/rooms", "headers": headers}
    scope |= {"path_params": {"slug": slug}, "query_string": b"", "state": {}}
    return ASGIConnection(scope)


async def new_org() -> records.Organisation:
    slug = f"guard-{secrets.token_hex(4)}"
    # Not the defaults: the guard's own SQL must read every column (language, country).
    await Organisation.insert(
        Organisation(id=uuid.uuid4(), slug=slug, name="Guarded practice", locale="nl", country="NL")
    ).run()
    row = await Organisation.select().where(Organisation.slug == slug).first().run()
    assert row is not None
    return records.Organisation.of(row)


async def new_token(org: records.Organisation, scopes: str = "rooms:read") -> tuple[str, uuid.UUID]:
    token, token_id = auth.new_secret_token("kst"), uuid.uuid4()
    await ApiToken.insert(
        ApiToken(
            id=token_id,
            org_id=org.id,
            label="t",
            token_hash=token_hash(token),
            scopes=scopes,
            created_by=org.id,
        )
    ).run()
    return token, token_id


async def new_session(
    org: records.Organisation, role: str = "expert", access_expires_at: dt.datetime | None = None
) -> tuple[str, uuid.UUID]:
    member_id = uuid.uuid4()
    if role == "auditor" and access_expires_at is None:
        access_expires_at = clock.now() + dt.timedelta(days=30)
    await Member.insert(
        Member(
            id=member_id,
            org_id=org.id,
            name="kf1:x",
            email="kf1:x",
            email_lookup="x",
            role=role,
            password_hash="x",
            access_expires_at=access_expires_at,
        )
    ).run()
    cookie = secrets.token_urlsafe(32)
    await MemberSession.insert(
        MemberSession(id=token_hash(cookie), org_id=org.id, member_id=member_id, csrf_token=secrets.token_urlsafe(24))
    ).run()
    return cookie, member_id


async def caller(
    engine: Engine[Any], slug: str, **credential: str
) -> tuple[records.Organisation | None, auth.Principal | None]:
    """What the guard does: the organisation first, then the caller."""
    conn = connection(slug, **credential)
    org = await auth.find_organisation(conn, region(engine), slug)
    return org, await auth.identify(conn, region(engine))


async def test_the_organisation_row_is_the_one_piccolo_reads(engine: Engine[Any]) -> None:
    org = await new_org()
    found, _ = await caller(engine, org.slug)
    fields = records.Organisation.__struct_fields__
    assert found == org and list(fields) == [c._meta.name for c in Organisation._meta.columns]
    assert {f: type(getattr(found, f)) for f in fields} == {f: type(getattr(org, f)) for f in fields}
    assert (await caller(engine, "no-such-organisation"))[0] is None


async def test_a_token_is_found_with_its_organisation(engine: Engine[Any]) -> None:
    org, other = await new_org(), await new_org()
    token, token_id = await new_token(org, "rooms:read members:read")
    found, principal = await caller(engine, org.slug, token=token)
    assert found == org
    assert principal == auth.Principal(
        "token", org.id, token_id, "integration", frozenset({"rooms:read", "members:read"})
    )
    # Another organisation's address: the token still names its own organisation (the guard answers 404).
    _, elsewhere = await caller(engine, other.slug, token=token)
    assert elsewhere is not None and elsewhere.org_id == org.id != other.id


async def test_revoked_and_unknown_tokens_are_refused(engine: Engine[Any]) -> None:
    org = await new_org()
    token, token_id = await new_token(org)
    await ApiToken.update({ApiToken.revoked_at: clock.now()}).where(ApiToken.id == token_id).run()
    for presented in (token, "kst_" + secrets.token_urlsafe(32)):
        with pytest.raises(errors.AppError) as refused:
            await caller(engine, org.slug, token=presented)
        assert refused.value.status == 401


async def test_a_session_is_found_with_its_member_role(engine: Engine[Any]) -> None:
    org = await new_org()
    cookie, member_id = await new_session(org, "auditor")
    _, principal = await caller(engine, org.slug, cookie=cookie)
    assert principal is not None and (principal.kind, principal.id, principal.role) == ("member", member_id, "auditor")
    assert principal.org_id == org.id and principal.session_id == token_hash(cookie)
    assert principal.csrf_token


async def test_a_session_of_a_removed_member_or_past_its_idle_time_ends(engine: Engine[Any]) -> None:
    org = await new_org()
    gone, member_id = await new_session(org)
    await Member.delete().where(Member.id == member_id).run()
    idle, _ = await new_session(org)
    long_ago = clock.now() - dt.timedelta(minutes=31)
    await MemberSession.update({MemberSession.last_seen_at: long_ago}).where(MemberSession.id == token_hash(idle)).run()
    for cookie in (gone, idle, secrets.token_urlsafe(32)):
        found, principal = await caller(engine, org.slug, cookie=cookie)
        assert found == org and principal is None
        assert not await MemberSession.exists().where(MemberSession.id == token_hash(cookie)).run()


# --- auditors: access ends at a set moment ----------------------------------------------------


async def test_an_auditor_session_is_refused_from_the_moment_the_grant_ends(
    engine: Engine[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await new_org()
    ends = clock.now().replace(microsecond=0) + dt.timedelta(minutes=5)
    cookie, member_id = await new_session(org, "auditor", access_expires_at=ends)
    # Just before the end, the session works (and counts as active).
    monkeypatch.setattr(clock, "now", lambda: ends - dt.timedelta(microseconds=1))
    _, principal = await caller(engine, org.slug, cookie=cookie)
    assert principal is not None and principal.role == "auditor" and principal.id == member_id
    # At the end, it is refused with a message saying so, and the session is over.
    monkeypatch.setattr(clock, "now", lambda: ends)
    with pytest.raises(errors.AppError) as refused:
        await caller(engine, org.slug, cookie=cookie)
    assert refused.value.status == 401 and refused.value.code == "access_expired"
    assert "auditor access to this organisation ended on" in refused.value.message
    assert not await MemberSession.exists().where(MemberSession.id == token_hash(cookie)).run()


async def test_an_auditor_without_an_end_date_is_refused(engine: Engine[Any]) -> None:
    org = await new_org()
    cookie, member_id = await new_session(org, "auditor")
    await Member.update({Member.access_expires_at: None}).where(Member.id == member_id).run()
    with pytest.raises(errors.AppError) as refused:
        await caller(engine, org.slug, cookie=cookie)
    assert refused.value.status == 401 and "has no end date" in refused.value.message


async def test_a_token_made_by_a_member_who_is_now_an_auditor_is_refused(
    engine: Engine[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Becoming an auditor revokes a member's tokens (tenants/members.py); one made
    before that rule (or left live some other way) is refused all the same, and after
    the grant's end with a message saying it ended."""
    org = await new_org()
    ends = clock.now().replace(microsecond=0) + dt.timedelta(minutes=5)
    _, maker = await new_session(org, "admin")
    token, token_id = await new_token(org)
    await ApiToken.update({ApiToken.created_by: maker}).where(ApiToken.id == token_id).run()
    _, principal = await caller(engine, org.slug, token=token)
    assert principal is not None and principal.id == token_id, "the admin's token works"
    await Member.update({Member.role: "auditor", Member.access_expires_at: ends}).where(Member.id == maker).run()
    with pytest.raises(errors.AppError) as refused:
        await caller(engine, org.slug, token=token)
    assert refused.value.status == 401 and "made by a member who is now an auditor" in refused.value.message
    monkeypatch.setattr(clock, "now", lambda: ends)
    with pytest.raises(errors.AppError) as ended:
        await caller(engine, org.slug, token=token)
    assert ended.value.status == 401 and ended.value.code == "access_expired"
    assert "made by an auditor whose access ended on" in ended.value.message


class _Handler:
    """What the guard reads of a route handler: its ``opt``."""

    def __init__(self, opt: dict[str, Any]) -> None:
        self.opt = opt


async def guarded(engine: Engine[Any], slug: str, cookie: str, method: str, opt: dict[str, Any]) -> None:
    """The app-wide guard on one call with a member's session (and its CSRF token)."""
    row = await MemberSession.select(MemberSession.csrf_token).where(MemberSession.id == token_hash(cookie)).first()
    assert row is not None
    conn = connection(slug, cookie=cookie)
    scope: Any = conn.scope
    app = types.SimpleNamespace(state=types.SimpleNamespace(region=region(engine)))
    scope.update({"type": "websocket" if method == "WS" else "http", "method": method, "litestar_app": app})
    scope["headers"].append((auth.CSRF_HEADER.encode(), row["csrf_token"].encode()))
    await auth.authorize(conn, cast(Any, _Handler(opt)))


async def test_an_auditor_is_refused_every_unsafe_call_whatever_the_rule(engine: Engine[Any]) -> None:
    """Read-only by the guard itself, not only by each route's roles: a rule that names
    the auditor still lets them look and log out, nothing else."""
    org = await new_org()
    cookie, _ = await new_session(org, "auditor")
    admits_auditors = rule("owner", "auditor")
    for method in ("GET", "HEAD"):
        await guarded(engine, org.slug, cookie, method, admits_auditors)
    for method in ("POST", "PUT", "PATCH", "DELETE", "WS"):
        with pytest.raises(errors.AppError) as refused:
            await guarded(engine, org.slug, cookie, method, admits_auditors)
        assert refused.value.status == 403 and "auditor access is read-only" in refused.value.message, method
    await guarded(engine, org.slug, cookie, "POST", {**admits_auditors, **OWN_SESSION})
    # Other roles are not touched by it.
    owner_cookie, _ = await new_session(org, "owner")
    await guarded(engine, org.slug, owner_cookie, "POST", admits_auditors)
