"""A real ``konsil worker`` on the real RabbitMQ: its event loop keeps its liveness file
fresh (``konsil alive worker`` passes), and once the process is stopped (a hung worker)
the file goes stale and the probe fails."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from konsil.platform.cli.main import main
from konsil.platform.core import liveness
from tests.conftest import SESSION_TAG
from tests.conftest import rabbitmq_vhost as vhost
from tests.regions.test_liveness import config

pytestmark = pytest.mark.e2e


def mtime_after(path: Path, after: float, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if (mtime := path.stat().st_mtime) > after:
                return mtime
        time.sleep(0.5)
    raise AssertionError(f"{path.name} was not touched within {timeout} s")


def test_a_real_workers_loop_keeps_its_file_fresh_and_a_stopped_one_goes_stale(tmp_path: Path) -> None:
    with vhost(f"{SESSION_TAG}_alive") as name:
        path = config(tmp_path, f"amqp://guest:guest@127.0.0.1:5672/{name}")
        alive = liveness.alive_file(tmp_path / "data", "worker", "eu")
        log = (tmp_path / "worker.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "konsil.platform.cli.main", "worker", "--region", "eu", "--config", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")},
            start_new_session=True,
        )
        try:
            # Touched at start, then again by the consumer's loop (every 10 s).
            first = mtime_after(alive, 0, 30)
            second = mtime_after(alive, first + 5, 3 * liveness.TOUCH_EVERY_SECONDS)
            assert main(["alive", "worker", "--region", "eu", "--config", str(path), "--max-age", "20"]) == 0
            # A hung worker: its loop stops, the file is touched no more, the probe fails.
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(2 * liveness.TOUCH_EVERY_SECONDS + 2)
            assert alive.stat().st_mtime <= second + liveness.TOUCH_EVERY_SECONDS
            assert main(["alive", "worker", "--region", "eu", "--config", str(path), "--max-age", "20"]) == 1
        finally:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
