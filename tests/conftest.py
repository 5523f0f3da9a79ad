"""Shared fixtures: real PostgreSQL databases created per test session.

Databases are named ``konsil_t<random>_<label>`` and dropped at the end of the
session. ``KONSIL_TEST_PG`` points at the server (default: local trust auth).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import pytest
from piccolo.engine.base import Engine

from konsil.platform import database
from konsil.platform.migrations import Target, migrate_target

PG_SERVER = os.environ.get("KONSIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
SESSION_TAG = f"konsil_t{secrets.token_hex(3)}"


async def _drop(names: list[str]) -> None:
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[str, str], str]]:
    """Factory: ``pg_database(label, app)`` → DSN of a fresh, migrated database."""
    created: list[str] = []

    def make(label: str, app: str) -> str:
        name = f"{SESSION_TAG}_{label}"
        dsn = f"{PG_SERVER}/{name}"
        migrate_target(Target(label, app, dsn))
        created.append(name)
        return dsn

    yield make
    asyncio.run(_drop(created))


@pytest.fixture(scope="session")
async def region_engine(pg_database: Callable[[str, str], str]) -> AsyncIterator[Engine]:
    """A migrated region database with the region tables bound to it."""
    from konsil.regions.tables import REGION_TABLES

    engine = database.engine_for(await asyncio.to_thread(pg_database, "unit_region", "region"))
    await database.start(engine)
    database.bind(REGION_TABLES, engine)
    yield engine
    await database.stop(engine)
