"""A production install: the wheel installed with plain ``pip install`` (no extras) into a
fresh virtual environment starts every process kind.

An operator found that ``pip install .`` gave a region service that could not start
(``ModuleNotFoundError: aiortc``: the connection test's probe peer, a dev-only library,
was imported at start). Here the built wheel goes into a new venv without extras, and
from that venv's own ``konsil`` script the control plane, a region service, its Celery
worker and beat and a media node's agent run in services mode against the real
PostgreSQL and RabbitMQ and a real coturn: a signup goes through the control plane into
the region, the worker answers a ping on the region's queue, beat sends the purge
schedule, and the region's registry lists the media node from its signed heartbeats.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import AMQP_SERVER, SESSION_TAG, free_port, rabbitmq_vhost, services_config, wait_until

pytestmark = pytest.mark.e2e

BROKER_HOST = AMQP_SERVER.rsplit("/", 1)[0]  # amqp://user:password@host:port


@pytest.fixture(scope="module")
def production_venv(built_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the session's wheel (tests/e2e/conftest.py) and its runtime
    dependencies only. (No bytecode compiled at install: Python compiles what it imports.)"""
    wheel = built_wheel
    work = tmp_path_factory.mktemp("production")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "--no-compile", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def test_the_production_install_has_no_dev_or_optional_libraries(production_venv: Path) -> None:
    python = production_venv / "bin" / "python"
    for module in ("aiortc", "pytest", "playwright"):
        probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, timeout=60, check=False)
        assert probe.returncode != 0, f"{module} is installed: the test would not show a production install"
    # Every process kind's entry module imports (the operator's report: the region's did not).
    modules = [
        "konsil.platform.control.app",
        "konsil.regions.app",
        "konsil.regions.tasks",
        "konsil.media_nodes.agent",
        "konsil.platform.cli.main",
    ]
    code = "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]"
    done = subprocess.run(
        [str(python), "-I", "-c", code, *modules], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]


@contextlib.contextmanager
def started(venv: Path, log_dir: Path, name: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``konsil <args>`` from the production venv, output in ``log_dir/<name>.log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KONSIL_", "PICCOLO_", "PYTHON"))}
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "konsil"), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log_dir,
            env=env,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def output(log_dir: Path, name: str) -> str:
    return (log_dir / f"{name}.log").read_text(errors="replace")


def alive(proc: subprocess.Popen[bytes], log_dir: Path, name: str) -> None:
    assert proc.poll() is None, f"konsil {name} exited ({proc.returncode}):\n{output(log_dir, name)[-3000:]}"


def test_every_process_kind_starts_from_the_production_install(
    production_venv: Path, pg_database: Callable[[str, str], str], tmp_path: Path
) -> None:
    vhost = f"{SESSION_TAG}_production"
    cleanup = contextlib.ExitStack()
    cleanup.enter_context(rabbitmq_vhost(vhost))
    ops_token = secrets.token_urlsafe(24)
    media_key = secrets.token_urlsafe(24)
    turn_port = free_port()
    relay_min = 46000 + (turn_port % 100) * 100
    settings = services_config(
        tmp_path,
        pg_database("production_control", "control"),
        pg_database("production_eu", "region"),
        region_lines=[
            f'broker_url = "{BROKER_HOST}/{vhost}"',
            f'media_node_key = "{media_key}"',
            f'turn_secret = "{secrets.token_urlsafe(24)}"',
            f'ops_token_hashes = ["{hashlib.sha256(ops_token.encode()).hexdigest()}"]',
            "[regions.lifecycle]",
            "purge_every_seconds = 1",
            "[regions.vault]",
            'backend = "local"',
            f'keyring_path = "{tmp_path / "keyring-eu"}"',
        ],
    )
    config = str(tmp_path / "konsil.toml")
    control_url = settings.require_control().public_url
    region_url = settings.region("eu").public_url
    venv = production_venv
    try:
        migrated = subprocess.run(
            [str(venv / "bin" / "konsil"), "migrate", "--config", config],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        node_args = ["--region", "eu", "--node-id", "prod-node-1", "--config", config, "--public-host", "relay.test"]
        node_args += ["--listen-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--port", str(turn_port)]
        node_args += ["--min-port", str(relay_min), "--max-port", str(relay_min + 99), "--heartbeat-seconds", "0.5"]
        node_args += ["--workdir", str(tmp_path / "coturn")]
        with (
            started(venv, tmp_path, "control", "serve", "control", "--config", config) as control,
            started(venv, tmp_path, "region", "serve", "region", "--region", "eu", "--config", config) as region,
            started(venv, tmp_path, "worker", "worker", "--region", "eu", "--config", config) as worker,
            started(venv, tmp_path, "beat", "beat", "--region", "eu", "--config", config) as beat,
            started(venv, tmp_path, "media-node", "media-node", "run", *node_args) as node,
        ):
            processes = {"control": control, "region": region, "worker": worker, "beat": beat, "media-node": node}

            def answers(url: str) -> bool:
                for name, proc in processes.items():
                    alive(proc, tmp_path, name)
                with contextlib.suppress(httpx.HTTPError):
                    return httpx.get(url + "/healthz", timeout=2).status_code == 200
                return False

            wait_until(lambda: answers(control_url), "the control plane answers", within=60)
            wait_until(lambda: answers(region_url), "the region service answers", within=60)

            # A signup through the control plane lands in the region (the region's own pages work too).
            slug = f"prod-{secrets.token_hex(3)}"
            body = {
                "region": "eu",
                "organisation": {"name": "Praxis Produktion", "slug": slug},
                "owner": {"name": "Olga Owner", "email": f"owner@{slug}.example", "password": "correct horse battery"},
            }
            made = httpx.post(f"{control_url}/api/v1/signup", json=body, timeout=30)
            assert made.status_code == 201, made.text
            assert httpx.get(f"{region_url}/login", timeout=10).status_code == 200

            # The worker takes tasks from the region's own queue.
            wait_until(lambda: "ready." in output(tmp_path, "worker"), "the worker is ready", within=60)
            ping = subprocess.run(
                [str(venv / "bin" / "celery"), "-b", f"{BROKER_HOST}/{vhost}", "inspect", "ping", "--timeout", "10"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr
            # Beat sends the region's schedule.
            wait_until(lambda: "Sending due task" in output(tmp_path, "beat"), "beat sends a task", within=60)

            # The media node's signed heartbeats reach the region's registry.
            def node_listed() -> bool:
                alive(node, tmp_path, "media-node")
                listed = httpx.get(
                    f"{region_url}/ops/v1/media-nodes",
                    headers={"authorization": f"Bearer {ops_token}"},
                    timeout=5,
                )
                assert listed.status_code == 200, listed.text
                return any(n["node_id"] == "prod-node-1" and n["alive"] for n in listed.json()["nodes"])

            wait_until(node_listed, "the region lists the media node as healthy", within=30)
            for name, proc in processes.items():
                alive(proc, tmp_path, name)
            # Without the optional network-test extra the region runs and says so.
            assert "pre-call connection test is off" in output(tmp_path, "region")
    finally:
        cleanup.close()
