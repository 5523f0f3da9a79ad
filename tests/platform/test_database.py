"""The region's connection pool: releasing a connection costs no round trip, and still
never hands on an open transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from piccolo.engine.postgres import PostgresEngine

from konsil.platform.core import database


@pytest.fixture(scope="module")
async def engine(pg_database: Callable[[str, str], str]) -> AsyncIterator[PostgresEngine]:
    dsn = await asyncio.to_thread(pg_database, "pool_reset", "region")
    engine = database.engine_for(dsn)
    assert isinstance(engine, PostgresEngine)
    await database.start(engine)
    yield engine
    await database.stop(engine)


def pool(engine: PostgresEngine) -> asyncpg.Pool:
    assert engine.pool is not None
    return engine.pool


async def backend(engine: PostgresEngine, pid: int) -> asyncpg.Record:
    """What PostgreSQL says a pooled connection's backend is doing, seen from outside."""
    conn = await asyncpg.connect(engine.config["dsn"])
    try:
        return await conn.fetchrow("SELECT state, query FROM pg_stat_activity WHERE pid = $1", pid)
    finally:
        await conn.close()


async def test_releasing_a_connection_sends_no_reset(engine: PostgresEngine) -> None:
    async with pool(engine).acquire() as conn:
        pid = conn.get_server_pid()
        await conn.fetch("SELECT 'the last statement' AS marker")
    seen = await backend(engine, pid)
    # asyncpg's default reset would have sent "SELECT pg_advisory_unlock_all(); CLOSE ALL; …".
    assert seen["state"] == "idle" and "the last statement" in seen["query"]


async def test_a_transaction_left_open_is_still_rolled_back_on_release(engine: PostgresEngine) -> None:
    async with pool(engine).acquire() as conn:
        pid = conn.get_server_pid()
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMP TABLE left_open (x int) ON COMMIT DROP")
        assert conn.is_in_transaction()
    seen = await backend(engine, pid)
    assert seen["state"] == "idle", "asyncpg rolls back before the (empty) reset runs"
    assert seen["query"] == "ROLLBACK"


async def test_a_failed_transaction_leaves_nothing_open(engine: PostgresEngine) -> None:
    with pytest.raises(asyncpg.UndefinedTableError):
        async with database.transaction(engine):
            await engine.run_ddl("SELECT * FROM no_such_table")
    for _ in range(pool(engine).get_size()):  # every pooled connection
        async with pool(engine).acquire() as conn:
            assert not conn.is_in_transaction()  # the server's own transaction status


async def test_fixed_sql_runs_inside_the_current_transaction(engine: PostgresEngine) -> None:
    async with database.transaction(engine):
        await engine.run_ddl("CREATE TEMP TABLE seen_in_tx (x int) ON COMMIT DROP")
        await engine.run_ddl("INSERT INTO seen_in_tx VALUES (7)")
        assert await database.fetch(engine, "SELECT x FROM seen_in_tx") == [{"x": 7}]


def test_fixed_sql_is_refused_on_sqlite(tmp_path: object) -> None:
    engine = database.engine_for(f"sqlite://{tmp_path}/x.db")
    with pytest.raises(TypeError):
        asyncio.run(database.fetch(engine, "SELECT 1"))
