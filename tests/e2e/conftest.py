"""Fixtures of the tests that run Konsil's commands in child processes: where the
repository and the venv's tools are, and a child-process environment free of the
caller's ``KONSIL_*`` / ``PICCOLO_*`` settings. (Every test in this folder is marked
``e2e`` by tests/conftest.py.)"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
AREAS = ("platform", "tenants", "regions", "media_nodes", "compliance")
# Working-tree clutter that is never part of a build.
BUILD_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".konsil",
    ".mypy-view",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "test-output",
    "node_modules",
)


def build_wheel(source: Path, outdir: Path) -> subprocess.CompletedProcess[str]:
    """``python -m build --wheel`` of ``source``: an isolated build, the build backend from
    the configured (local) package index."""
    return subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


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


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built once per test session from a copy of the repository root (the
    wheel, catalog and production-install tests share it; a build takes half a minute).
    Built from a copy so the build writes no ``build/`` or ``*.egg-info`` into the working
    tree. pytest-xdist workers share one build: the first takes a lock and builds, the
    others wait for it and read its wheel."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    work = shared / "built-wheel"
    with (shared / "built-wheel.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        wheels = list((work / "dist").glob("konsil-*.whl"))
        if not wheels:
            shutil.rmtree(work, ignore_errors=True)  # a failed build's leftovers
            source = work / "src"
            shutil.copytree(REPO_ROOT, source, ignore=BUILD_IGNORE, symlinks=True)
            done = build_wheel(source, work / "dist")
            assert done.returncode == 0, f"wheel build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            wheels = list((work / "dist").glob("konsil-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]
