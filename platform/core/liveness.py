"""Liveness of the processes without an HTTP port (the Celery worker and beat): the
process touches a file while its loop turns, and ``konsil alive`` (a Kubernetes exec
probe) says whether the file is fresh.

A thread touching the file would prove only that the thread runs; the worker touches it
from its event loop and the beat from its scheduler's tick, so a file that goes stale
means the loop itself stopped turning. While a worker runs a task its loop is busy by
design (the solo pool runs the task in the loop), so it marks the file ``task <start>``
and the check then allows the task up to ``max_task_seconds`` instead of ``max_age``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

Kind = Literal["worker", "beat"]
# How often a live loop touches its file; the probe's max age must be well above it.
TOUCH_EVERY_SECONDS = 10.0
TASK = "task"


def alive_file(data_dir: str | Path, kind: Kind, region_id: str) -> Path:
    """The file a region's worker or beat touches (in ``data_dir``, the processes' only
    writable place in a container)."""
    return Path(data_dir) / f"{kind}-{region_id}.alive"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole and renamed: the probe never reads half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="ascii")
    os.replace(partial, path)


def touch(path: Path) -> None:
    """The loop turned and is free."""
    _write(path, "idle\n")


def task_started(path: Path, now: float | None = None) -> None:
    """The loop is running a task from now on (until ``touch`` again)."""
    _write(path, f"{TASK} {time.time() if now is None else now:.0f}\n")


def stale(path: Path, max_age: float, max_task_seconds: float, now: float | None = None) -> str | None:
    """Why the process is not alive, or None if it is: the file is missing, older than
    ``max_age`` while idle, or its task has run longer than ``max_task_seconds``."""
    now = time.time() if now is None else now
    try:
        text = path.read_text(encoding="ascii")
        age = now - path.stat().st_mtime
    except FileNotFoundError:
        return f"{path.name} does not exist: the process has not started its loop"
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path.name} cannot be read: {type(exc).__name__}"
    word, _, since = text.strip().partition(" ")
    if word == TASK:
        try:
            running = now - float(since)
        except ValueError:
            return f"{path.name} is damaged"
        if running > max_task_seconds:
            return f"a task has run for {running:.0f} s (more than {max_task_seconds:.0f} s)"
        return None
    if age > max_age:
        return f"the loop last turned {age:.0f} s ago (more than {max_age:.0f} s)"
    return None
