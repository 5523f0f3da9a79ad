"""``konsil check-config`` in a child process: a bad configuration is one line naming the
key, a valid one says so. The settings themselves are tested in-process in
tests/platform/test_settings.py."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

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
