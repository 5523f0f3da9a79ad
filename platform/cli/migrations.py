"""``konsil migrate``: apply the piccolo migrations to every configured database, or
to one of them (``--region ID`` or ``--control``: a Helm release migrates only its own
database, from a configuration file that holds only its own part).

Each database is migrated in a short child process, because piccolo finds its
engine through one module-level configuration (platform/core/piccolo_conf.py).
Running it twice is safe: piccolo records what ran.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse, urlunparse

from konsil.platform.core.settings import Settings, load_control_settings, load_settings


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    label: str
    app: str  # control | region
    dsn: str


def targets(settings: Settings) -> list[Target]:
    found: list[Target] = []
    if settings.control is not None:
        found.append(Target("control", "control", settings.control.database))
    for region in settings.regions:
        found.append(Target(f"region {region.id}", "region", region.database))
    return found


async def ensure_postgres_database(dsn: str) -> None:
    """Create the PostgreSQL database named in the DSN if it does not exist."""
    import asyncpg

    parsed = urlparse(dsn)
    name = parsed.path.lstrip("/")
    if not name or not name.replace("_", "").isalnum():
        raise MigrationError("database name must be letters, digits and underscores")
    admin = urlunparse(parsed._replace(path="/postgres"))
    conn = await asyncpg.connect(admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def redact(dsn: str) -> str:
    """The DSN as it may be printed: the password masked and the query string dropped
    (libpq takes ``?password=`` and ``sslpassword=`` there too)."""
    parsed = urlparse(dsn)
    if not parsed.password and not parsed.query:
        return dsn  # (urlunparse would also turn sqlite:/// into sqlite:/)
    netloc = parsed.netloc
    if parsed.password:
        netloc = netloc.replace(f":{parsed.password}@", ":***@")
    return urlunparse(parsed._replace(netloc=netloc, query="…" if parsed.query else ""))


def migrate_target(target: Target) -> str:
    if target.dsn.startswith(("postgres://", "postgresql://")):
        asyncio.run(ensure_postgres_database(target.dsn))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KONSIL_", "PICCOLO_"))}
    env |= {
        "PICCOLO_CONF": "konsil.platform.core.piccolo_conf",
        "PICCOLO_TARGET_DSN": target.dsn,
        "PICCOLO_TARGET_APP": target.app,
    }
    done = subprocess.run(
        [sys.executable, "-m", "konsil.platform.cli.migrations", target.app],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise MigrationError(f"{target.label}: migration failed: {detail[-1] if detail else 'no output'}")
    return done.stdout


def migrate_all(settings: Settings, echo: Callable[[str], object] = print) -> None:
    migrate_targets(targets(settings), echo)


def migrate_targets(chosen: list[Target], echo: Callable[[str], object] = print) -> None:
    for target in chosen:
        migrate_target(target)
        echo(f"migrated {target.label} ({redact(target.dsn)})")


def selected_targets(config: str | None, region: str | None = None, control: bool = False) -> list[Target]:
    """What ``konsil migrate`` migrates: one region, the control plane, or everything.

    The control plane's database is read the way the control plane reads its file
    (``load_control_settings``): the control chart's file has each region's endpoint only,
    no region database, and must migrate all the same. A region is read from the whole
    settings, so its database is checked as the region service checks it."""
    if control:
        return [Target("control", "control", load_control_settings(config).control.database)]
    settings = load_settings(config)
    if region is not None:
        return [Target(f"region {region}", "region", settings.region(region).database)]
    return targets(settings)


async def _forwards(app: str) -> None:
    from piccolo.apps.migrations.commands.forwards import run_forwards

    result = await run_forwards(app_name=app, migration_id="all", fake=False)
    if not result.success:
        raise SystemExit(result.message)


if __name__ == "__main__":
    asyncio.run(_forwards(sys.argv[1]))
