"""The liveness of the Celery worker and beat (``konsil alive``, the charts' exec probe):
the file their loop touches, the check, and beat's scheduler touching it at each tick.
A real worker's loop is in tests/e2e/test_worker_liveness.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from konsil.platform.cli.main import main
from konsil.platform.core import liveness
from konsil.platform.core.settings import load_settings
from konsil.regions.tasks import alive_scheduler, celery_app


def config(tmp_path: Path, broker_url: str = "amqp://guest:guest@127.0.0.1:5672/none") -> Path:
    path = tmp_path / "konsil.toml"
    path.write_text(
        "\n".join(
            [
                'mode = "services"',
                'discovery_key = "liveness-test-discovery-key-0123456789"',
                f'data_dir = "{tmp_path / "data"}"',
                "[[regions]]",
                'id = "eu"',
                'jurisdiction = "EU"',
                'public_url = "http://127.0.0.1:9"',
                'listen = "127.0.0.1:9"',
                # Never connected to: neither the probe nor a worker at rest opens it.
                'database = "postgresql://konsil@127.0.0.1:9/none"',
                'internal_secret = "liveness-test-internal-secret-0123456789"',
                f'broker_url = "{broker_url}"',
                "[regions.lifecycle]",
                'runner = "celery"',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def test_a_fresh_file_is_alive_an_old_or_missing_one_is_not(tmp_path: Path) -> None:
    path = liveness.alive_file(tmp_path, "worker", "eu")
    assert path == tmp_path / "worker-eu.alive"
    assert liveness.stale(path, 90, 3600) == "worker-eu.alive does not exist: the process has not started its loop"
    liveness.touch(path)
    assert liveness.stale(path, 90, 3600) is None
    os.utime(path, (time.time() - 120, time.time() - 120))
    reason = liveness.stale(path, 90, 3600)
    assert reason is not None and reason.startswith("the loop last turned 12") and "(more than 90 s)" in reason


def test_a_running_task_may_keep_the_loop_busy_up_to_its_own_limit(tmp_path: Path) -> None:
    path = tmp_path / "worker-eu.alive"
    now = time.time()
    liveness.task_started(path, now - 600)
    os.utime(path, (now - 600, now - 600))
    # Ten minutes into a purge: the loop has not turned since, and that is expected.
    assert liveness.stale(path, 90, 3600, now) is None
    assert liveness.stale(path, 90, 300, now) == "a task has run for 600 s (more than 300 s)"
    liveness.touch(path)  # the task ended: the loop turns again
    assert liveness.stale(path, 90, 300) is None
    path.write_text("task yesterday\n", encoding="ascii")
    assert liveness.stale(path, 90, 300) == "worker-eu.alive is damaged"


def test_konsil_alive_exits_1_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path)
    settings = load_settings(path)
    alive = liveness.alive_file(settings.data_dir, "beat", "eu")
    args = ["alive", "beat", "--region", "eu", "--config", str(path), "--max-age", "30"]
    assert main(args) == 1
    assert "konsil beat of region eu is not alive: beat-eu.alive does not exist" in capsys.readouterr().err
    liveness.touch(alive)
    assert main(args) == 0
    os.utime(alive, (time.time() - 45, time.time() - 45))
    assert main(args) == 1
    assert "the loop last turned 4" in capsys.readouterr().err


def test_beats_scheduler_touches_the_file_at_every_tick(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path))
    app = celery_app(settings, "eu")
    alive = tmp_path / "beat-eu.alive"
    scheduler = alive_scheduler(alive)(app, schedule_filename=str(tmp_path / "schedule"), lazy=False)
    try:
        # Nothing is due at start (Celery beat runs each entry one interval after start),
        # so the tick sends nothing and needs no broker.
        wait = scheduler.tick()
        assert 0 < wait
        assert liveness.stale(alive, 5, 5) is None
        os.utime(alive, (time.time() - 60, time.time() - 60))
        scheduler.tick()
        assert liveness.stale(alive, 5, 5) is None
    finally:
        scheduler.close()
