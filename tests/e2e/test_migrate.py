"""``konsil migrate``: every configured database gets its schema, and running it
again changes nothing (piccolo records each migration once)."""

from __future__ import annotations

import asyncio
import importlib
import secrets
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from konsil.platform.control.tables import CONTROL_TABLES
from konsil.regions.tables import REGION_TABLES
from tests.conftest import PG_SERVER

PG_PASSWORD = "pw-never-printed-4821"  # trust auth ignores it; the output must not show it


def with_password(server: str, password: str) -> str:
    scheme, _, rest = server.partition("://")
    if "@" not in rest or ":" in rest.split("@", 1)[0]:
        return server
    user, _, host = rest.partition("@")
    return f"{scheme}://{user}:{password}@{host}"


def migration_ids(package: str) -> set[str]:
    """The IDs of the migration modules shipped in a piccolo_migrations package."""
    folder = Path(importlib.import_module(package).__file__).parent  # type: ignore[arg-type]
    ids = set()
    for path in folder.glob("*.py"):
        if path.stem != "__init__":
            ids.add(importlib.import_module(f"{package}.{path.stem}").ID)
    return ids


@pytest.fixture
async def region_dsn() -> AsyncIterator[str]:
    """A PostgreSQL database name of our own; ``konsil migrate`` creates it, we drop it."""
    name = f"konsil_t{secrets.token_hex(3)}_migr"
    yield f"{with_password(PG_SERVER, PG_PASSWORD)}/{name}"
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def write_config(tmp_path: Path, control_db: Path, region_dsn: str) -> Path:
    path = tmp_path / "konsil.toml"
    path.write_text(
        f"""
discovery_key = "0123456789abcdef0123"

[control]
database = "sqlite://{control_db}"
listen = "127.0.0.1:8000"
public_url = "http://127.0.0.1:8000"

[[regions]]
id = "eu"
jurisdiction = "EU/EEA (GDPR)"
public_url = "http://127.0.0.1:8101"
listen = "127.0.0.1:8101"
database = "{region_dsn}"
internal_secret = "0123456789abcdef0123"
""",
        encoding="utf-8",
    )
    return path


def sqlite_tables_and_migrations(path: Path) -> tuple[set[str], list[tuple[str, str]]]:
    conn = sqlite3.connect(path)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        ran = [(row[0], row[1]) for row in conn.execute("SELECT name, app_name FROM migration")]
    finally:
        conn.close()
    return tables, ran


async def postgres_tables_and_migrations(dsn: str) -> tuple[set[str], list[tuple[str, str]]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        ran = await conn.fetch("SELECT name, app_name FROM migration")
    finally:
        await conn.close()
    return {r["table_name"] for r in rows}, [(r["name"], r["app_name"]) for r in ran]


async def test_migrate_twice_creates_every_table_once(
    tmp_path: Path,
    region_dsn: str,
    konsil_script: Path,
    child_env: Callable[..., dict[str, str]],
) -> None:
    control_db = tmp_path / "data" / "control.db"
    config = write_config(tmp_path, control_db, region_dsn)

    runs = []
    for _ in range(2):
        done = await asyncio.to_thread(
            subprocess.run,
            [str(konsil_script), "migrate", "--config", str(config)],
            cwd=tmp_path,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(done)
    for done in runs:
        lines = done.stdout.splitlines()
        assert any(line.startswith("migrated control (") for line in lines), done.stdout
        assert any(line.startswith("migrated region eu (") for line in lines), done.stdout
        assert PG_PASSWORD not in done.stdout + done.stderr
        if PG_PASSWORD in region_dsn:
            assert ":***@" in done.stdout, done.stdout

    control_ids = migration_ids("konsil.platform.control.piccolo_migrations")
    region_ids = migration_ids("konsil.regions.piccolo_migrations")
    assert control_ids and region_ids

    tables, ran = sqlite_tables_and_migrations(control_db)
    control_tables = {t._meta.tablename for t in CONTROL_TABLES}
    assert {"directory_organisation", "region", "login_index"} <= control_tables
    assert control_tables | {"migration"} <= tables
    assert not {t._meta.tablename for t in REGION_TABLES} & tables, "region tables in the control database"
    assert sorted(ran) == sorted((mid, "control") for mid in control_ids), "each control migration exactly once"

    tables, ran = await postgres_tables_and_migrations(region_dsn)
    region_tables = {t._meta.tablename for t in REGION_TABLES}
    assert {"organisation", "member", "room", "access_log_entry", "access_log_head"} <= region_tables
    assert region_tables | {"migration"} <= tables
    assert not (control_tables - region_tables) & tables, "control tables in the region database"
    assert sorted(ran) == sorted((mid, "region") for mid in region_ids), "each region migration exactly once"


def test_migrate_with_a_bad_config_is_one_line(
    tmp_path: Path, konsil_script: Path, child_env: Callable[..., dict[str, str]]
) -> None:
    config = write_config(tmp_path, tmp_path / "control.db", "mysql://nobody@127.0.0.1/none")
    done = subprocess.run(
        [str(konsil_script), "migrate", "--config", str(config)],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert "regions.eu.database" in done.stderr
    assert not (tmp_path / "control.db").exists(), "nothing is migrated when the configuration is bad"


async def database_exists(name: str) -> bool:
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def test_migrate_one_region_or_the_control_plane_only(
    tmp_path: Path,
    region_dsn: str,
    konsil_script: Path,
    child_env: Callable[..., dict[str, str]],
) -> None:
    """The Helm charts' migration jobs: a region's job migrates its own database and no
    other region's nor the control plane's; the control plane's job migrates its own from
    the control chart's file, which has each region's endpoint and no region database."""
    control_db = tmp_path / "data" / "control.db"
    other_name = f"{region_dsn.rsplit('/', 1)[1]}_us"
    config = write_config(tmp_path, control_db, region_dsn)
    with config.open("a", encoding="utf-8") as extra:
        extra.write(
            f"""
[[regions]]
id = "us"
jurisdiction = "United States"
public_url = "http://127.0.0.1:8102"
listen = "127.0.0.1:8102"
database = "{PG_SERVER}/{other_name}"
internal_secret = "0123456789abcdef0123"
"""
        )

    def konsil(*args: str, file: Path = config) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(konsil_script), "migrate", "--config", str(file), *args],
            cwd=tmp_path,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    try:
        done = await asyncio.to_thread(konsil, "--region", "eu")
        assert done.returncode == 0, done.stderr[-3000:]
        assert [line.split(" (")[0] for line in done.stdout.splitlines()] == ["migrated region eu"]
        assert PG_PASSWORD not in done.stdout + done.stderr
        tables, ran = await postgres_tables_and_migrations(region_dsn)
        assert {t._meta.tablename for t in REGION_TABLES} <= tables
        assert sorted(ran) == sorted((mid, "region") for mid in migration_ids("konsil.regions.piccolo_migrations"))
        assert not await database_exists(other_name), "another region's database was touched"
        assert not control_db.exists(), "the control database was touched by a region's migration"

        # The control chart's file: [control] and each region's endpoint only.
        control_file = tmp_path / "control.toml"
        control_file.write_text(
            f"""
mode = "services"
discovery_key = "0123456789abcdef0123"

[control]
database = "sqlite://{control_db}"
listen = "0.0.0.0:8080"
public_url = "https://konsil.example"

[[regions]]
id = "eu"
jurisdiction = "EU/EEA (GDPR)"
public_url = "https://eu.konsil.example"
internal_url = "http://konsil-eu-region.konsil-eu.svc:8080"
internal_secret = "0123456789abcdef0123"
""",
            encoding="utf-8",
        )
        done = await asyncio.to_thread(konsil, "--control", file=control_file)
        assert done.returncode == 0, done.stderr[-3000:]
        assert [line.split(" (")[0] for line in done.stdout.splitlines()] == ["migrated control"]
        tables, ran = sqlite_tables_and_migrations(control_db)
        assert {t._meta.tablename for t in CONTROL_TABLES} <= tables
        assert not {t._meta.tablename for t in REGION_TABLES} & tables
        assert not await database_exists(other_name)

        done = await asyncio.to_thread(konsil, "--region", "xx")
        assert done.returncode == 2
        assert done.stderr.strip() == "konsil: configuration error: regions: no region with id 'xx' is configured"

        done = await asyncio.to_thread(konsil, "--region", "eu", "--control")
        assert done.returncode == 2
        assert "not allowed with argument" in done.stderr
    finally:
        conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{other_name}" WITH (FORCE)')
        finally:
            await conn.close()
