"""The embedded default: `konsil up --demo` starts everything on SQLite with no
other server, prints working logins, and Ctrl-C stops every process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port_run

pytestmark = pytest.mark.e2e


def test_konsil_up_demo_runs_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port_run(3)  # the control plane, then the EU and US regions
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "konsil.platform.cli",
            "up",
            "--demo",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while sum("room:" in line for line in lines) < 2:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "konsil up exited early:\n" + "".join(lines)
            lines.append(line)
            assert time.monotonic() < deadline, "no demo output in time:\n" + "".join(lines)
        output = "".join(lines)
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
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + rest
    for offset in (0, 1, 2):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port + offset}/healthz", timeout=2)
    assert "Traceback" not in rest
