"""Database engines from DSNs and the binding of table sets to them.

Each process binds only the table sets it serves: the control plane its control
tables, a region service its region tables. The same code runs on SQLite (the
embedded default) and PostgreSQL (services mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.table import Table

# A server that does not answer at all (a dead host) fails a new connection after this
# long instead of asyncpg's 60 s, so requests get their 503 while it is away.
CONNECT_TIMEOUT_SECONDS = 10


class _WithoutTraceback(logging.Filter):
    """asyncpg's pool logs a full traceback every time it fails to reopen a connection
    while the server is away; one line naming the error is enough (the pool retries,
    and requests reconnect by themselves once the server is back)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()} ({type(record.exc_info[1]).__name__})"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_WithoutTraceback())


def engine_for(dsn: str) -> Engine[Any]:
    parsed = urlparse(dsn)
    if parsed.scheme == "sqlite":
        path = Path(dsn[len("sqlite://") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteEngine(path=str(path), timeout=30)
    if parsed.scheme in {"postgresql", "postgres"}:
        return PostgresEngine(config={"dsn": dsn, "timeout": CONNECT_TIMEOUT_SECONDS}, log_queries=False)
    raise ValueError(f"unsupported database scheme {parsed.scheme!r}")


def is_postgres(engine: Engine[Any]) -> bool:
    return engine.engine_type in {"postgres", "cockroach"}


def bind(tables: Iterable[type[Table]], engine: Engine[Any]) -> None:
    for table in tables:
        table._meta.db = engine


def transaction(engine: Engine[Any]) -> Any:
    """A write transaction; SQLite takes its lock up front to avoid upgrade deadlocks."""
    if isinstance(engine, SQLiteEngine):
        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()


def in_transaction(engine: Engine[Any]) -> bool:
    """Whether this task is inside a transaction (a nested ``transaction()`` joins it,
    so what it writes is committed only when the outermost one ends)."""
    current: Any = getattr(engine, "current_transaction", None)
    return current is not None and current.get() is not None


@contextlib.asynccontextmanager
async def advisory_lock(engine: Engine[Any], key: int, wait_seconds: float = 0) -> AsyncIterator[bool]:
    """Whether this process holds the database-wide lock ``key`` (any fixed 64-bit
    number) now: on PostgreSQL a session-level advisory lock, held on a connection of
    its own for the block (a killed process's connection closes and frees it), waited
    for up to ``wait_seconds``. SQLite is the embedded default, a single process: yes."""
    if not isinstance(engine, PostgresEngine):
        yield True
        return
    conn = await engine.get_new_connection()
    try:
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while not (got := bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))):
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.2)
        try:
            yield got
        finally:
            if got:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)
    finally:
        await conn.close()


async def _keep_session(_: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own part of it.

    asyncpg's default reset sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`` on every release, a round trip each time a query borrows a
    connection (three per authenticated read, about half of PostgreSQL's CPU for it).
    Nothing here leaves such session state on a pooled connection: transactions are
    opened and closed by ``transaction()`` (and asyncpg still rolls back one left open
    and drops listeners before calling this); the live events LISTEN on the channels
    backend's own connections (platform/core/channels.py) and the purge takes its
    session-level advisory lock on a connection of its own (regions/tasks.py); nothing
    runs SET, DECLARE … WITH HOLD or PREPARE on a pooled connection.
    """


async def start(engine: Engine[Any]) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=1, max_size=10, reset=_keep_session)


async def stop(engine: Engine[Any]) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.close_connection_pool()


async def fetch(engine: Engine[Any], sql: str, *args: Any) -> list[dict[str, Any]]:
    """Run fixed PostgreSQL SQL (``$1`` placeholders) for a hot path; rows as piccolo's
    ``select`` gives them (dicts of the same Python values).

    Building and compiling a piccolo query costs more CPU than PostgreSQL spends running
    a simple one; fixed SQL skips that, and asyncpg prepares each statement once per
    pooled connection. Runs on the connection of the piccolo transaction this task is
    in, if any, else on the pool (or a connection of its own before the pool starts).
    """
    return [dict(row) for row in await fetch_records(engine, sql, *args)]


async def fetch_records(engine: Engine[Any], sql: str, *args: Any) -> list[asyncpg.Record]:
    """``fetch`` with asyncpg's own records (read by position): for a loop over many
    thousands of rows, where making a dict of each costs more than using it."""
    if not isinstance(engine, PostgresEngine):
        raise TypeError("fixed SQL runs on PostgreSQL only; use piccolo queries elsewhere")
    current = engine.current_transaction.get()
    if current is not None:
        rows: list[asyncpg.Record] = await current.connection.fetch(sql, *args)
    elif engine.pool is not None:
        async with engine.pool.acquire() as connection:
            rows = await connection.fetch(sql, *args)
    else:
        connection = await engine.get_new_connection()
        try:
            rows = await connection.fetch(sql, *args)
        finally:
            await connection.close()
    return rows
