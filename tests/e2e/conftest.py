"""Fixtures of the tests that run Konsil's commands in child processes: where the
repository and the venv's tools are, and a child-process environment free of the
caller's ``KONSIL_*`` / ``PICCOLO_*`` settings. (Every test in this folder is marked
``e2e`` by tests/conftest.py.)"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
AREAS = ("platform", "tenants", "regions", "media_nodes", "compliance")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def konsil_script() -> Path:
    """The ``konsil`` console script of the interpreter running the tests."""
    return Path(sysconfig.get_path("scripts")) / "konsil"


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def child_env() -> Callable[..., dict[str, str]]:
    """Environment for a child process: no inherited KONSIL_/PICCOLO_ settings or PYTHONPATH."""

    def make(**extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KONSIL_", "PICCOLO_")) and k not in {"PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME"}
        }
        env.update(extra)
        return env

    return make
