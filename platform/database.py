"""Database engines from DSNs and the binding of table sets to them.

Each process binds only the table sets it serves: the control plane its control
tables, a region service its region tables. The same code runs on SQLite (the
embedded default) and PostgreSQL (services mode).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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


def engine_for(dsn: str) -> Engine:
    parsed = urlparse(dsn)
    if parsed.scheme == "sqlite":
        path = Path(dsn[len("sqlite://") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteEngine(path=str(path), timeout=30)
    if parsed.scheme in {"postgresql", "postgres"}:
        return PostgresEngine(config={"dsn": dsn, "timeout": CONNECT_TIMEOUT_SECONDS}, log_queries=False)
    raise ValueError(f"unsupported database scheme {parsed.scheme!r}")


def is_postgres(engine: Engine) -> bool:
    return engine.engine_type in {"postgres", "cockroach"}


def bind(tables: Iterable[type[Table]], engine: Engine) -> None:
    for table in tables:
        table._meta.db = engine


def transaction(engine: Engine) -> Any:
    """A write transaction; SQLite takes its lock up front to avoid upgrade deadlocks."""
    if isinstance(engine, SQLiteEngine):
        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()


async def start(engine: Engine) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=1, max_size=10)


async def stop(engine: Engine) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.close_connection_pool()
