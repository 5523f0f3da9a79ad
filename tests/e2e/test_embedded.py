"""The embedded default: `konsil up --demo` starts everything on SQLite with no
other server, prints working logins, and Ctrl-C stops every process."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port_run

pytestmark = pytest.mark.e2e


def start_up(data: Path, port: int) -> subprocess.Popen[str]:
    """``konsil up --demo`` on ``port`` (and the next two), output on a pipe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "konsil.platform.cli.main",
            "up",
            "--demo",
            "--data-dir",
            str(data),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def read_until(proc: subprocess.Popen[str], lines: list[str], done: str, within: float = 90) -> str:
    """Read the output into ``lines`` until a line holds ``done``; the output so far."""
    deadline = time.monotonic() + within
    assert proc.stdout is not None
    while not lines or done not in lines[-1]:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, "konsil up exited early:\n" + "".join(lines)
        lines.append(line)
        assert time.monotonic() < deadline, "no demo output in time:\n" + "".join(lines)
    return "".join(lines)


def stop(proc: subprocess.Popen[str], lines: list[str]) -> str:
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "Traceback" not in rest
    return rest


def test_konsil_up_demo_runs_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port_run(3)  # the control plane, then the EU and US regions
    proc = start_up(tmp_path / "data", port)
    lines: list[str] = []
    try:
        output = read_until(proc, lines, "readable only by you")
        assert f"control plane   http://127.0.0.1:{port}" in output
        owners = re.findall(r"owner:\s+(\S+) / (\S+)", output)
        assert len(owners) == 2
        # Log in as the EU owner: discovery names the region; the gateway forwards.
        email, password = owners[0]
        control = f"http://127.0.0.1:{port}"
        found = httpx.post(f"{control}/api/v1/login-discovery", json={"email": email}).json()
        assert found["regions"][0]["region"] == "eu"
        client = httpx.Client(base_url=control)
        login = client.post("/api/v1/orgs/demo-eu/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200
        rooms = client.get("/api/v1/orgs/demo-eu/rooms").json()
        assert rooms[0]["join_path"] == "/demo-eu/consultation"
        data = tmp_path / "data"
        assert {"control.db", "region-eu.db", "region-us.db", "konsil.toml"} <= {p.name for p in data.iterdir()}
        assert (data / "konsil.toml").stat().st_mode & 0o077 == 0, "secrets file is private"
        # The local keyring of each region: a master key and the per-organisation keys.
        for region in ("eu", "us"):
            keyring = data / f"keyring-{region}"
            assert (keyring / "master.key").stat().st_mode & 0o077 == 0
            assert "demo" not in (keyring / "keyring.json").read_text()
        assert "Owner" not in (data / "region-eu.db").read_bytes().decode("latin-1"), "names are encrypted"
    finally:
        stop(proc, lines)
    for offset in (0, 1, 2):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port + offset}/healthz", timeout=2)


def open_to_others(data: Path) -> list[str]:
    """Every file or folder under ``data`` (itself included) that group or others may use."""
    return [
        f"{stat.S_IMODE(path.lstat().st_mode):04o} {path}"
        for path in [data, *data.rglob("*")]
        if stat.S_IMODE(path.lstat().st_mode) & 0o077
    ]


def test_the_data_directory_and_demo_logins_are_private(tmp_path: Path) -> None:
    """Password hashes, blind indexes and keyrings: 0600 files in a 0700 folder, the
    SQLite journal files too; the demo logins are saved to a 0600 file as printed."""
    data = tmp_path / "data"
    # An older data directory made with a loose umask: konsil up tightens it, and says so.
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "demo-logins.txt").write_text("left by an older version")
    (data / "region-eu.db").touch()  # an empty file is an empty SQLite database
    (data / "keyring-eu").mkdir()
    for path in ("demo-logins.txt", "region-eu.db", "keyring-eu"):
        (data / path).chmod(0o755 if path.startswith("keyring") else 0o644)
    port = free_port_run(3)
    proc = start_up(data, port)
    lines: list[str] = []
    try:
        output = read_until(proc, lines, "readable only by you")
        assert f"made 4 files and folders in {data} private" in output
        entries = [p.name for p in data.iterdir()]
        assert {"control.db", "region-eu.db", "region-us.db", "demo-logins.txt"} <= set(entries)
        assert open_to_others(data) == []
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        logins = data / "demo-logins.txt"
        assert stat.S_IMODE(logins.stat().st_mode) == 0o600
        assert f"also in {logins}" in output
        saved = logins.read_text()
        printed = re.findall(r"(owner|expert):\s+(\S+) / (\S+)", output)
        assert len(printed) == 4
        assert re.findall(r"(owner|expert):\s+(\S+) / (\S+)", saved) == printed
        # The saved logins work; each login writes a session (and its journal) in the region.
        for (_, email, password), region in zip(printed[::2], ("eu", "us"), strict=True):
            login = httpx.post(
                f"http://127.0.0.1:{port}/api/v1/orgs/demo-{region}/auth/login",
                json={"email": email, "password": password},
            )
            assert login.status_code == 200
        assert open_to_others(data) == []
    finally:
        stop(proc, lines)
    assert open_to_others(data) == [], "nothing left behind at shutdown is readable by others"
