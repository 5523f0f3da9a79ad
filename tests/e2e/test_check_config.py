"""``konsil check-config`` in a child process: a bad configuration is one line naming the
key, a valid one says so. The settings themselves are tested in-process in
tests/platform/test_settings.py."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import hvac
import pytest

from konsil.platform.cli.launcher import start_processes, stop_processes, wait_healthy
from konsil.platform.cli.migrations import ensure_postgres_database
from konsil.platform.core.settings import load_settings
from tests.conftest import PG_SERVER, SESSION_TAG, free_port, openbao_server, rabbitmqctl
from tests.platform.test_settings import FULL, US_SECRET


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def make(text: str) -> Path:
        path = tmp_path / "konsil.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return make


def run_check(konsil: Path, path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(konsil), "check-config", "--config", str(path)],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param(FULL.replace(US_SECRET, "too-short"), "regions.us.internal_secret", id="short-secret"),
        pytest.param(FULL.replace("[control]\n", "[control]\ncolour = 1\n"), "control.colour", id="unknown-key"),
    ],
)
def test_check_config_cli_reports_one_line(
    konsil_script: Path,
    write: Callable[[str], Path],
    child_env: Callable[..., dict[str, str]],
    text: str,
    key: str,
) -> None:
    done = run_check(konsil_script, write(text), child_env())
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"konsil: configuration error: {key}:")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_check_config_cli_accepts_a_valid_file(
    konsil_script: Path, write: Callable[[str], Path], child_env: Callable[..., dict[str, str]]
) -> None:
    done = run_check(konsil_script, write(FULL), child_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "configuration is valid" in done.stdout and "eu, us" in done.stdout


# --- check-config --connect, against real services ---------------------------------------------


@dataclass
class Services:
    """A region's real services: a migrated PostgreSQL database, an OpenBao dev server
    with Transit and the TURN secret in KV, and a RabbitMQ vhost the user may use."""

    database: str
    vault_url: str
    vault_token: str
    vhost: str
    turn_secret: str
    control_database: str
    control_port: int

    def config(self, **change: str) -> str:
        region = {
            "database": self.database,
            "broker_url": f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}",
            "media_node_key": MEDIA_NODE_KEY,
        }
        vault = {
            "backend": "vault",
            "url": self.vault_url,
            "token": self.vault_token,
            "timeout_seconds": "2",
            "turn_secret_path": "konsil/turn",
        }
        region.update({k: v for k, v in change.items() if k in region})
        vault.update({k.removeprefix("vault_"): v for k, v in change.items() if k.startswith("vault_")})
        lines = [
            'mode = "services"',
            f'discovery_key = "{DISCOVERY_KEY}"',
            "[control]",
            f'database = "{change.get("control_database", self.control_database)}"',
            f'listen = "127.0.0.1:{self.control_port}"',
            f'public_url = "http://127.0.0.1:{self.control_port}"',
            "[[regions]]",
            'id = "eu"',
            'jurisdiction = "EU/EEA"',
            'public_url = "https://eu.konsil.example"',
            'listen = "127.0.0.1:9"',
            f'internal_url = "http://127.0.0.1:{CLOSED_PORT}"',
            f'internal_secret = "{INTERNAL_SECRET}"',
            *(f'{key} = "{value}"' for key, value in region.items()),
            "[regions.vault]",
            *(f"{key} = {value}" if key == "timeout_seconds" else f'{key} = "{value}"' for key, value in vault.items()),
        ]
        return "\n".join(lines) + "\n"


MEDIA_NODE_KEY = "media-node-key-7c1e55aa09f3"
INTERNAL_SECRET = "eu-internal-secret-5d2a77e1"
DISCOVERY_KEY = "discovery-key-0b9d4e3c71aa"
CLOSED_PORT = free_port()  # nothing listens there


@pytest.fixture(scope="module")
def services(pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """... and the control plane running (the region's processes reach it)."""
    vhost = f"{SESSION_TAG}_check"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with openbao_server() as (url, token, _process):
            turn_secret = secrets.token_urlsafe(24)
            vault = hvac.Client(url=url, token=token)
            vault.secrets.kv.v2.create_or_update_secret(path="konsil/turn", secret={"secret": turn_secret})
            found = Services(
                database=pg_database("check_region", "region"),
                vault_url=url,
                vault_token=token,
                vhost=vhost,
                turn_secret=turn_secret,
                control_database=pg_database("check_control", "control"),
                control_port=free_port(),
            )
            run_dir = tmp_path_factory.mktemp("check-connect")
            (run_dir / "konsil.toml").write_text(found.config())
            settings = load_settings(run_dir / "konsil.toml")
            procs = start_processes(settings, run_dir, regions=[])
            wait_healthy({"control": settings.require_control().public_url}, procs)
            yield found
    finally:
        stop_processes(procs)
        with contextlib.suppress(subprocess.SubprocessError):
            rabbitmqctl("delete_vhost", vhost)


def connect(
    konsil: Path, path: Path, env: dict[str, str], *only: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    done = subprocess.run(
        [str(konsil), "check-config", "--config", str(path), "--connect", *only],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done, [line for line in done.stdout.splitlines() if line.startswith("missing")]


def no_secrets(done: subprocess.CompletedProcess[str], services: Services) -> None:
    for secret in (services.vault_token, services.turn_secret, MEDIA_NODE_KEY, INTERNAL_SECRET, DISCOVERY_KEY):
        assert secret not in done.stdout + done.stderr


def test_a_good_region_connects_to_every_service(
    konsil_script: Path, write: Callable[[str], Path], child_env: Callable[..., dict[str, str]], services: Services
) -> None:
    done, failed = connect(konsil_script, write(services.config()), child_env(), "--region", "eu")
    assert done.returncode == 0 and failed == [], done.stdout
    for what in (
        "database (region eu)",
        "vault (region eu)",
        "vault transit (region eu)",
        "TURN secret (region eu)",
        "control plane (from region eu)",
    ):
        assert any(line.startswith(f"ok      {what}:") for line in done.stdout.splitlines()), (what, done.stdout)
    assert f"vhost '{services.vhost}': connected" in done.stdout
    no_secrets(done, services)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param({"broker_url": "amqp://guest:guest@127.0.0.1:5672/konsil_no_such_vhost"}, "broker", id="vhost"),
        pytest.param({"vault_mount": "transit-off"}, "vault transit", id="transit-disabled"),
        pytest.param({"vault_turn_secret_path": "konsil/none"}, "TURN secret", id="no-turn-secret"),
        pytest.param({"vault_url": f"http://127.0.0.1:{CLOSED_PORT}"}, "vault", id="vault-closed-port"),
        pytest.param({"database": f"postgresql://postgres@127.0.0.1:{CLOSED_PORT}/konsil"}, "database", id="db-down"),
    ],
)
def test_what_is_missing_is_named_and_fails(
    konsil_script: Path,
    write: Callable[[str], Path],
    child_env: Callable[..., dict[str, str]],
    services: Services,
    change: dict[str, str],
    named: str,
) -> None:
    """``check-config`` passed with the vhost missing, Transit disabled, no TURN secret
    and a Vault URL pointing nowhere; with --connect each is one line naming it, exit 1."""
    done, failed = connect(konsil_script, write(services.config(**change)), child_env(), "--region", "eu")
    assert done.returncode == 1, done.stdout
    assert len(failed) == 1 and failed[0].startswith(f"missing {named} (region eu): "), done.stdout
    if named == "broker":  # the region's own words for it (platform/core/broker.py), and the fix
        assert "RabbitMQ vhost 'konsil_no_such_vhost' does not exist or the user has no access" in failed[0]
        assert "`rabbitmqctl add_vhost konsil_no_such_vhost`" in failed[0]
    no_secrets(done, services)


def test_pending_migrations_and_the_control_plane_are_checked(
    konsil_script: Path, write: Callable[[str], Path], child_env: Callable[..., dict[str, str]], services: Services
) -> None:
    empty = f"{PG_SERVER}/{SESSION_TAG}_check_empty"
    asyncio.run(ensure_postgres_database(empty))
    try:
        done, failed = connect(konsil_script, write(services.config(database=empty)), child_env(), "--region", "eu")
        assert done.returncode == 1 and len(failed) == 1 and "run `konsil migrate`" in failed[0], done.stdout
    finally:
        asyncio.run(drop_database(f"{SESSION_TAG}_check_empty"))
    # The control plane: its database is fine, the region's internal URL answers nothing.
    done, failed = connect(konsil_script, write(services.config()), child_env(), "--control")
    assert done.returncode == 1, done.stdout
    assert "ok      database (control):" in done.stdout
    assert failed == [
        f"missing region eu (from the control plane): http://127.0.0.1:{CLOSED_PORT}: unreachable (ConnectError); "
        "check regions.eu.internal_url"
    ]


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await conn.close()


def test_without_a_file_it_says_so_and_checks_the_embedded_defaults(
    konsil_script: Path, tmp_path: Path, child_env: Callable[..., dict[str, str]]
) -> None:
    done = subprocess.run(
        [str(konsil_script), "check-config"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("no configuration file given (--config or KONSIL_CONFIG): checked the embedded defaults")
    assert second == "configuration is valid: mode embedded, control plane yes, regions eu, us"
    assert not (tmp_path / ".konsil").exists(), "checking writes nothing"
