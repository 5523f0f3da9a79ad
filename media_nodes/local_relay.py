"""A local TURN relay per region for ``konsil up`` (the embedded default), so that calls
and the pre-call connection test go through a relay as they do in production.

It is coturn, run and stopped as the media-node agent runs it (``coturn.CoturnProcess``),
listening on 127.0.0.1 only and relaying to loopback peers only
(``CoturnConfig.loopback``). Its TURN secret is made once and kept in the data
directory (``relay-<region>/turn-secret``, 0600, in a 0700 folder with coturn's
configuration, pid file and log); the region service gets it with the relay's URLs in
the configuration ``konsil up`` hands it, never in the operator's ``konsil.toml``, so
that a later start without coturn simply goes direct.

A relay left running by a ``konsil up`` that was killed is found by the pid file coturn
writes in that folder and stopped before a new one starts (only when that process is
a turnserver with this folder's configuration: a pid can be reused).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import msgspec

from konsil.media_nodes.coturn import CoturnConfig, CoturnError, CoturnProcess
from konsil.platform.core.settings import RegionSettings

REALM = "konsil.local"
SECRET_FILE = "turn-secret"  # noqa: S105 - the file's name, not a secret
PID_FILE = "turnserver.pid"  # coturn's own (CoturnConfig.render)
CONFIG_FILE = "turnserver.conf"
_SECRET = re.compile(r"^[0-9a-f]{32,128}$")


def turnserver() -> str | None:
    """coturn's server binary, if installed."""
    return shutil.which("turnserver")


def has_own_relay(region: RegionSettings) -> bool:
    """The region is configured with relays already: TURN URLs, or media nodes."""
    registry = bool(region.media_node_key and region.broker_url)
    return registry or any(url.startswith(("turn:", "turns:")) for url in region.ice_servers)


def workdir_of(data_dir: Path, region_id: str) -> Path:
    return data_dir / f"relay-{region_id}"


def read_or_make_secret(path: Path) -> str:
    """The relay's TURN secret, made on first use: 48 hex digits, in a 0600 file."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise CoturnError(f"the local relay's secret {path} cannot be read ({exc.__class__.__name__})") from None
    if _SECRET.match(text):
        path.chmod(0o600)
        return text
    made = secrets.token_hex(24)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(made + "\n")
    return made


def _command_line(pid: int) -> str | None:
    """The command line of a running process, or None when there is none (a zombie has none)."""
    if Path("/proc/self/cmdline").exists():
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            return None
        return line.strip() or None
    found = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or None


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _command_line(pid) is None:
            return True
        with contextlib.suppress(ChildProcessError):  # our own child (tests): reap it
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    return False


def reap_leftover(workdir: Path) -> int | None:
    """Stop a turnserver left running with this folder's configuration (its pid file
    names it). Returns its pid, or None when there was none."""
    pid_file = workdir / PID_FILE
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
    except (FileNotFoundError, ValueError, OSError):
        return None
    line = _command_line(pid) if pid > 1 else None
    if not line or "turnserver" not in line or str(workdir / CONFIG_FILE) not in line:
        pid_file.unlink(missing_ok=True)  # stale: that process is gone, or is another program now
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _gone(pid, 5.0):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _gone(pid, 5.0)
    pid_file.unlink(missing_ok=True)
    return pid


class LocalRelay:
    """One region's relay for ``konsil up``: coturn on 127.0.0.1:``port`` over UDP and TCP."""

    def __init__(self, region_id: str, data_dir: Path, port: int, binary: str | None = None) -> None:
        self.region_id = region_id
        self.workdir = workdir_of(data_dir, region_id)
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        self.secret = read_or_make_secret(self.workdir / SECRET_FILE)
        self.config = CoturnConfig.loopback(port, self.secret, REALM)
        self.process = CoturnProcess(self.config, self.workdir, binary, own_session=True)
        self.reaped: int | None = None  # the pid of a leftover relay stopped at start

    @property
    def port(self) -> int:
        return self.config.listening_port

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def urls(self) -> list[str]:
        return self.config.turn_urls("127.0.0.1")

    def start(self) -> None:
        """Stop a leftover relay of this folder, then start (raises CoturnError)."""
        self.reaped = reap_leftover(self.workdir)
        if self.reaped is not None:
            # The kernel drops a process's command line before it closes its sockets: give
            # the leftover's port a moment to be free, else start() takes it for a stranger's.
            deadline = time.monotonic() + 5.0
            while self.process.accepts_connections() and time.monotonic() < deadline:
                time.sleep(0.05)
        self.process.start()

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def stop(self) -> None:
        self.process.stop()
        (self.workdir / PID_FILE).unlink(missing_ok=True)

    def for_region(self, region: RegionSettings) -> RegionSettings:
        """The region's settings with this relay: its URLs (STUN servers kept) and secret."""
        stun = [url for url in region.ice_servers if url.startswith("stun:")]
        return msgspec.structs.replace(region, ice_servers=[*stun, *self.urls()], turn_secret=self.secret)
