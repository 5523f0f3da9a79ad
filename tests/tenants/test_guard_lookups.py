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
from konsil.platform.core.authz import token_hash
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
    await Organisation.insert(Organisation(id=uuid.uuid4(), slug=slug, name="Guarded practice")).run()
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


async def new_session(org: records.Organisation, role: str = "expert") -> tuple[str, uuid.UUID]:
    member_id = uuid.uuid4()
    await Member.insert(
        Member(id=member_id, org_id=org.id, name="kf1:x", email="kf1:x", email_lookup="x", role=role, password_hash="x")
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
