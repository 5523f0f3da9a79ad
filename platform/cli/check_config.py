"""``konsil check-config [--connect [--region ID | --control]]``: the configuration file,
and with ``--connect`` every service the process will use, reached for real.

A file that parses can still name a RabbitMQ vhost that does not exist, a Vault whose
Transit engine is not enabled, no TURN secret or a Vault URL pointing nowhere: the
process would start and then fail on the first signup or call. ``--connect`` reaches
each service as the process would (its own login, short timeouts) and prints one line
per check, ``ok`` or ``missing`` with what to do; the exit status is 1 if anything is
missing. Nothing secret is printed: DSNs lose their password, Vault answers are named,
never echoed.

Checks of a region (its service, worker and beat): the database and its migrations;
Vault (reachable, unsealed, login, Transit mount, the signing key readable or creatable
by the login's policy, the TURN secret and SMTP password in KV when configured there);
the TURN secret when relays are configured; RabbitMQ (the vhost exists and the user
may use it); the control plane's internal URL; the SMTP host. Of the control plane: its
database and migrations, and each region's internal URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import hvac
import hvac.exceptions
import pika
import pika.exceptions
import requests

from konsil.platform.cli.launcher import embedded_config_text
from konsil.platform.cli.migrations import redact
from konsil.platform.control import piccolo_app as control_app
from konsil.platform.core import broker
from konsil.platform.core.keys.vault_signing import default_key_name
from konsil.platform.core.settings import ConfigError, RegionSettings, Settings, load_settings
from konsil.regions import piccolo_app as region_app
from konsil.regions.container import check_subprocessors

TIMEOUT = 3.0  # seconds, per connection attempt
_MIGRATION_ID = re.compile(r"^ID = [\"']([^\"']+)[\"']", re.MULTILINE)
_MIGRATIONS = {"control": control_app.APP_CONFIG, "region": region_app.APP_CONFIG}

Status = Literal["ok", "missing"]


@dataclass(frozen=True)
class Check:
    status: Status
    what: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<8}{self.what}: {self.detail}"


def ok(what: str, detail: str) -> Check:
    return Check("ok", what, detail)


def missing(what: str, detail: str) -> Check:
    return Check("missing", what, detail)


# -- the database --------------------------------------------------------------------------------


def migration_ids(app: str) -> set[str]:
    """The ids of the migrations shipped with this version for ``app`` (control | region)."""
    return {
        found.group(1)
        for path in Path(_MIGRATIONS[app].migrations_folder_path).glob("*.py")
        if (found := _MIGRATION_ID.search(path.read_text(encoding="utf-8")))
    }


async def _applied_postgres(dsn: str) -> set[str] | None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=TIMEOUT)
    try:
        if not await conn.fetchval("SELECT to_regclass('public.migration') IS NOT NULL"):
            return None
        return {row["name"] for row in await conn.fetch("SELECT name FROM migration")}
    finally:
        await conn.close()


def _applied_sqlite(path: Path) -> set[str] | None:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=TIMEOUT) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'migration'").fetchone():
            return None
        return {row[0] for row in conn.execute("SELECT name FROM migration")}


def check_database(what: str, dsn: str, app: str) -> Check:
    shown = redact(dsn)
    try:
        if dsn.startswith("sqlite://"):
            path = Path(dsn[len("sqlite://") :])
            if not path.is_file():
                return missing(what, f"{shown}: no such file (`konsil migrate` or `konsil up` creates it)")
            applied = _applied_sqlite(path)
        else:
            applied = asyncio.run(asyncio.wait_for(_applied_postgres(dsn), TIMEOUT * 2))
    except (OSError, TimeoutError, sqlite3.Error) as exc:
        return missing(what, f"{shown}: cannot connect ({_why(exc)}); is the database server running?")
    except Exception as exc:  # asyncpg's errors: a missing database, a refused login
        return missing(what, f"{shown}: {type(exc).__name__} ({_why(exc)})")
    if applied is None:
        return missing(what, f"{shown}: reachable, but no migrations applied: run `konsil migrate`")
    pending = migration_ids(app) - applied
    if pending:
        return missing(what, f"{shown}: {len(pending)} migrations not applied: run `konsil migrate`")
    return ok(what, f"{shown}: reachable, migrations applied")


def _why(exc: BaseException) -> str:
    """A short reason that echoes nothing the service said back (it may quote a secret)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__


# -- Vault ---------------------------------------------------------------------------------------


def _vault_client(region: RegionSettings) -> hvac.Client:
    return hvac.Client(url=region.vault.url, token=region.vault.token or None, timeout=TIMEOUT)


def _vault_login(client: hvac.Client, region: RegionSettings) -> None:
    vault = region.vault
    if vault.auth == "approle":
        client.auth.approle.login(role_id=vault.role_id, secret_id=vault.secret_id)
    elif vault.auth == "kubernetes":
        jwt = Path(vault.kubernetes_jwt_path).read_text(encoding="utf-8").strip()
        client.auth.kubernetes.login(vault.kubernetes_role, jwt)
    else:
        client.auth.token.lookup_self()


def _can(client: hvac.Client, path: str, *wanted: str) -> bool:
    """Whether the login's policy grants one of ``wanted`` on ``path`` (sys/capabilities-self)."""
    try:
        found = client.adapter.post("/v1/sys/capabilities-self", json={"paths": [path]})
    except (hvac.exceptions.VaultError, requests.exceptions.RequestException):
        return False
    answer = found if isinstance(found, dict) else found.json()
    capabilities = set(answer.get(path) or answer.get("capabilities") or [])
    return "root" in capabilities or bool(capabilities.intersection(wanted))


def check_vault(region: RegionSettings, needs_turn_secret: bool) -> list[Check]:
    vault, what = region.vault, f"vault (region {region.id})"
    if vault.backend != "vault":
        return [ok(what, "local keyring (the embedded default): nothing to connect to")]
    try:
        health = httpx.get(f"{vault.url.rstrip('/')}/v1/sys/health", params={"standbyok": "true"}, timeout=TIMEOUT)
        state = health.json()
    except httpx.HTTPError as exc:
        return [missing(what, f"{vault.url}: unreachable ({type(exc).__name__}); check regions.{region.id}.vault.url")]
    except ValueError:
        return [missing(what, f"{vault.url}: does not answer as Vault/OpenBao; check regions.{region.id}.vault.url")]
    if not state.get("initialized", True):
        return [missing(what, f"{vault.url}: not initialised (`bao operator init`)")]
    if state.get("sealed"):
        return [missing(what, f"{vault.url}: sealed; unseal it (`bao operator unseal`)")]
    checks = [ok(what, f"{vault.url}: reachable, unsealed")]
    client = _vault_client(region)
    try:
        _vault_login(client, region)
    except (hvac.exceptions.VaultError, requests.exceptions.RequestException, OSError) as exc:
        checks.append(missing(f"{what} login", f"{vault.auth} login refused ({type(exc).__name__})"))
        return checks
    checks.append(ok(f"{what} login", f"{vault.auth} login works"))
    checks.append(_check_transit(client, region))
    if needs_turn_secret and not region.turn_secret:
        checks.append(_check_kv(client, region, vault.turn_secret_path, "secret", "TURN secret"))
    if region.smtp.password_path:
        checks.append(_check_kv(client, region, region.smtp.password_path, "password", "SMTP password"))
    return checks


def _check_transit(client: hvac.Client, region: RegionSettings) -> Check:
    vault, what = region.vault, f"vault transit (region {region.id})"
    name = vault.signing_key or default_key_name(region.id)
    try:
        client.secrets.transit.read_key(name=name, mount_point=vault.mount)
    except hvac.exceptions.InvalidPath as exc:
        if "no handler for route" in str(exc):
            return missing(
                what,
                f"Transit is not enabled at {vault.mount!r}: `bao secrets enable -path={vault.mount} transit`",
            )
        if _can(client, f"{vault.mount}/keys/{name}", "create", "update"):
            made = f"signing key {name!r} not made yet (the login's policy may create it)"
            return ok(what, f"mount {vault.mount!r} enabled; {made}")
        return missing(what, f"signing key {name!r} does not exist and the login's policy may not create it")
    except hvac.exceptions.Forbidden:
        return missing(what, f"the login's policy may not read {vault.mount}/keys/{name} (the region's signing key)")
    except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
        return missing(what, f"mount {vault.mount!r}: {type(exc).__name__}")
    return ok(what, f"mount {vault.mount!r} enabled, signing key {name!r} readable")


def _check_kv(client: hvac.Client, region: RegionSettings, path: str, field: str, label: str) -> Check:
    mount, what = region.vault.kv_mount, f"{label} (region {region.id})"
    if not path:
        return missing(
            what,
            f"not configured: set regions.{region.id}.turn_secret or regions.{region.id}.vault.turn_secret_path",
        )
    try:
        found = client.secrets.kv.v2.read_secret_version(path=path, mount_point=mount, raise_on_deleted_version=True)
    except hvac.exceptions.InvalidPath:
        return missing(what, f"nothing at {mount}/{path} in KV v2: `bao kv put -mount={mount} {path} {field}=…`")
    except hvac.exceptions.Forbidden:
        return missing(what, f"the login's policy may not read {mount}/data/{path}")
    except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
        return missing(what, f"{mount}/{path}: {type(exc).__name__}")
    if not str((found.get("data") or {}).get("data", {}).get(field) or ""):
        return missing(what, f"{mount}/{path} has no {field!r} field")
    return ok(what, f"present at {mount}/{path}")


# -- RabbitMQ, HTTP, SMTP ------------------------------------------------------------------------


def check_broker(region: RegionSettings) -> Check:
    what = f"broker (region {region.id})"
    vhost, where = broker.vhost_of(region.broker_url), broker.where(region.broker_url)
    params = pika.URLParameters(region.broker_url)
    params.socket_timeout = TIMEOUT
    params.blocked_connection_timeout = TIMEOUT
    params.connection_attempts = 1
    params.stack_timeout = TIMEOUT * 2
    try:
        connection = pika.BlockingConnection(params)
    except (pika.exceptions.AMQPError, OSError) as exc:
        # The same words as the region's logs and /readyz (platform/core/broker.py).
        problem = broker.describe(exc, region.broker_url)
        if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
            problem += (
                f" (`rabbitmqctl add_vhost {vhost}`, `rabbitmqctl set_permissions -p {vhost} USER '.*' '.*' '.*'`)"
            )
        return missing(what, problem)
    connection.close()
    return ok(what, f"{where}: connected")


def check_http(what: str, base_url: str, key: str) -> Check:
    url = f"{base_url.rstrip('/')}/healthz"
    try:
        answer = httpx.get(url, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return missing(what, f"{base_url}: unreachable ({type(exc).__name__}); check {key}")
    if answer.status_code != 200:
        return missing(what, f"{base_url}: /healthz answered {answer.status_code}")
    return ok(what, f"{base_url}: reachable")


def check_tcp(what: str, host: str, port: int, key: str) -> Check:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT):
            return ok(what, f"{host}:{port}: reachable")
    except OSError as exc:
        return missing(what, f"{host}:{port}: unreachable ({_why(exc)}); check {key}")


# -- per process kind ----------------------------------------------------------------------------


def relays_configured(region: RegionSettings) -> bool:
    registry = bool(region.media_node_key and region.broker_url)
    return registry or any(url.startswith(("turn:", "turns:")) for url in region.ice_servers)


def region_checks(settings: Settings, region: RegionSettings) -> list[Check]:
    checks = [check_database(f"database (region {region.id})", region.database, "region")]
    relays = relays_configured(region)
    checks += check_vault(region, relays)
    if relays and not region.turn_secret and region.vault.backend != "vault":
        empty = f"relays are configured but regions.{region.id}.turn_secret is empty"
        checks.append(missing(f"TURN secret (region {region.id})", empty))
    elif relays and region.turn_secret:
        checks.append(ok(f"TURN secret (region {region.id})", "set in the configuration"))
    if region.broker_url:
        checks.append(check_broker(region))
    control_url = settings.control_url or (settings.control.base_url if settings.control else "")
    if control_url and settings.mode == "services":  # embedded: `konsil up` starts them together
        key = "control_url" if settings.control_url else "control.internal_url"
        checks.append(check_http(f"control plane (from region {region.id})", control_url, key))
    if region.smtp.host:
        key = f"regions.{region.id}.smtp.host"
        checks.append(check_tcp(f"SMTP (region {region.id})", region.smtp.host, region.smtp.port, key))
    return checks


def control_checks(settings: Settings) -> list[Check]:
    control = settings.require_control()
    checks = [check_database("database (control)", control.database, "control")]
    for region in settings.regions if settings.mode == "services" else ():
        key = f"regions.{region.id}.internal_url"
        checks.append(check_http(f"region {region.id} (from the control plane)", region.endpoint().base_url, key))
    return checks


# -- the command ---------------------------------------------------------------------------------


def _settings(args: argparse.Namespace, echo: Callable[[str], object]) -> Settings:
    if args.config or os.environ.get("KONSIL_CONFIG"):
        return load_settings(args.config)
    data_dir = Path(".konsil").resolve()
    path = data_dir / "konsil.toml"
    if path.is_file():
        echo(f"no configuration file given (--config or KONSIL_CONFIG): checked {path}, which `konsil up` uses")
        return load_settings(path)
    echo(
        "no configuration file given (--config or KONSIL_CONFIG): checked the embedded defaults "
        f"`konsil up` would write to {path} (SQLite, a local keyring, no broker)"
    )
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "konsil.toml"
        path.write_text(embedded_config_text(data_dir, 8000), encoding="utf-8")
        return load_settings(path, {})


def run(args: argparse.Namespace, echo: Callable[[str], object] = print) -> int:
    """``konsil check-config``; 0 when valid (and, with --connect, every service answers)."""
    if (args.region or args.control) and not args.connect:
        raise ConfigError("--region and --control choose what --connect checks: add --connect")
    settings = _settings(args, echo)
    regions = ", ".join(r.id for r in settings.regions) or "none"
    control = "yes" if settings.control else "no"
    for region in settings.regions:  # each integration is a listed subprocessor of its region (P16)
        check_subprocessors(region)
    echo(f"configuration is valid: mode {settings.mode}, control plane {control}, regions {regions}")
    if not args.connect:
        return 0
    # Each check says what failed in one line; pika would add its own tracebacks.
    broker.quiet_pika()
    checks: list[Check] = []
    if args.control:
        checks += control_checks(settings)
    elif args.region:
        checks += region_checks(settings, settings.region(args.region))
    else:
        if settings.control is not None:
            checks += control_checks(settings)
        for region in settings.regions:
            checks += region_checks(settings, region)
    for check in checks:
        echo(check.line())
    failed = [check for check in checks if check.status == "missing"]
    echo(f"{len(checks) - len(failed)} ok, {len(failed)} missing" if checks else "nothing to connect to")
    return 1 if failed else 0
