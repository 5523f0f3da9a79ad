"""coturn, the TURN relay a media node runs: its configuration file, the process, and
the load figures read from its log.

coturn authenticates with TURN REST credentials (``use-auth-secret``): the region's
shared secret signs short-lived ``expiry:ref`` user names (see ``ice.turn_credentials``).
The configuration file holds that secret, so it is written 0600 in a private directory.

Load figures come from coturn's own log (the Debian build has no Prometheus exporter, and
the totals its CLI shows move only when it logs): with ``verbose`` it logs ``session N:
new, ...`` when an allocation is made and ``session N: delete: ...`` when it ends, and
``session N: peer usage: ..., rb=B, sb=B`` with the bytes relayed to and from peers since
its last report each time the session's packet counters (client and peer side, in and
out) reach a multiple of 4096, i.e. every 2048 relayed packets (seconds in a video call),
and once more at its end. A session's rate is the bytes of its last report over the
time that report covers; it is live from the session's first report on, falls when the
next report is late (it cannot be more than those bytes over the time since), and counts
no more once the session has ended: its last report says what it relayed, not what it
relays now. Before its first report a session counts as relaying nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Values end up in a line-oriented configuration file: nothing that could start a new line
# or option, nor quotes.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._~+/=:@-]+$")
_NEW = re.compile(r"session (\d+): new,")
_GONE = re.compile(r"session (\d+): delete:")
_UPTIME = re.compile(r"^(\d+): ")  # simple-log lines begin with coturn's seconds since start
_PEER_USAGE = re.compile(r"session (\d+): peer usage: .*?\brb=(\d+), sp=\d+, sb=(\d+)")


PID_FILE = "turnserver.pid"  # coturn writes it (``pidfile=`` in CoturnConfig.render)
CONFIG_FILE = "turnserver.conf"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class CoturnError(Exception):
    """coturn could not be configured or started (one line, names no secret)."""


def command_line(pid: int) -> str | None:
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
        if command_line(pid) is None:
            return True
        with contextlib.suppress(ChildProcessError):  # our own child (tests): reap it
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    return False


def reap_leftover(workdir: Path, grace_seconds: float = 5.0) -> int | None:
    """Stop a turnserver left running with this folder's configuration (its pid file
    names it), say by a supervisor that was killed: SIGTERM, then SIGKILL after
    ``grace_seconds``. Only a process that is a turnserver reading this folder's
    configuration file is stopped (a pid can be reused by a stranger). Returns its pid,
    or None when there was none."""
    pid_file = workdir / PID_FILE
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
    except (FileNotFoundError, ValueError, OSError):
        return None
    line = command_line(pid) if pid > 1 else None
    if not line or "turnserver" not in line or str(workdir / CONFIG_FILE) not in line:
        pid_file.unlink(missing_ok=True)  # stale: that process is gone, or is another program now
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _gone(pid, grace_seconds):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _gone(pid, grace_seconds)
    pid_file.unlink(missing_ok=True)
    return pid


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGTERM the child when its parent dies
    (Linux ``prctl(PR_SET_PDEATHSIG)``), or None elsewhere. Resolved here, before any
    fork: the child only makes one system call, nothing that could wait on a lock."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    signum = int(signal.SIGTERM)

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return set_death_signal


@dataclass(frozen=True)
class CoturnConfig:
    listening_ip: str
    listening_port: int
    static_auth_secret: str
    realm: str = "konsil"
    relay_ip: str | None = None  # default: coturn relays on its listening IPs
    external_ip: str | None = None  # public address when the node sits behind 1:1 NAT
    min_port: int = 49152
    max_port: int = 65535
    # Tests only (docs/architecture.md, real parts in tests): relays to loopback peers only.
    allow_loopback_peers: bool = False
    denied_peer_ranges: tuple[str, ...] = ()
    total_quota: int | None = None  # concurrent allocations of the whole server
    max_bps: int | None = None  # bytes per second of one session
    # TURN over TLS (``turns:``), for networks that let only HTTPS-like traffic out:
    # a certificate chain and key in PEM files, valid for the node's public host name.
    tls_port: int | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @classmethod
    def loopback(cls, port: int, secret: str, realm: str = "konsil.test") -> CoturnConfig:
        """A relay on 127.0.0.1 that relays to loopback peers only (docs/architecture.md,
        real parts in tests: tests and benchmarks). Its 100 relay ports are chosen from its listening port."""
        relay_min = 40000 + (port % 150) * 100
        if relay_min <= port <= relay_min + 99:
            relay_min = 30000
        return cls(
            listening_ip="127.0.0.1",
            listening_port=port,
            static_auth_secret=secret,
            realm=realm,
            relay_ip="127.0.0.1",
            min_port=relay_min,
            max_port=relay_min + 99,
            allow_loopback_peers=True,
            denied_peer_ranges=("0.0.0.0-126.255.255.255", "128.0.0.0-255.255.255.255"),
        )

    def __post_init__(self) -> None:
        if not (0 < self.listening_port < 65536):
            raise CoturnError(f"coturn: listening port {self.listening_port} out of range")
        if not (0 < self.min_port <= self.max_port < 65536):
            raise CoturnError(f"coturn: bad relay port range {self.min_port}-{self.max_port}")
        if self.min_port <= self.listening_port <= self.max_port:
            raise CoturnError(f"coturn: listening port {self.listening_port} inside the relay port range")
        if len(self.static_auth_secret) < 16 or not _SAFE_VALUE.match(self.static_auth_secret):
            raise CoturnError("coturn: the TURN secret must be at least 16 characters of [A-Za-z0-9._~+/=:@-]")
        for name in ("listening_ip", "realm", "relay_ip", "external_ip"):
            value = getattr(self, name)
            if value is not None and not _SAFE_VALUE.match(value):
                raise CoturnError(f"coturn: {name} {value!r} is not a plain value")
        for peer_range in self.denied_peer_ranges:
            if not _SAFE_VALUE.match(peer_range):
                raise CoturnError(f"coturn: denied peer range {peer_range!r} is not a plain value")
        if self.tls_port is not None:
            if not (0 < self.tls_port < 65536) or self.tls_port == self.listening_port:
                raise CoturnError(f"coturn: TLS port {self.tls_port} out of range or equal to the listening port")
            if self.min_port <= self.tls_port <= self.max_port:
                raise CoturnError(f"coturn: TLS port {self.tls_port} inside the relay port range")
            for name in ("tls_cert_file", "tls_key_file"):
                path = getattr(self, name)
                if not path or not _SAFE_VALUE.match(path):
                    raise CoturnError(f"coturn: {name} is required for TLS and must be a plain path")
                if not Path(path).is_file():
                    raise CoturnError(f"coturn: {name} {path!r} is not a readable file")

    @property
    def tls(self) -> bool:
        return self.tls_port is not None

    def render(self, workdir: str | Path) -> str:
        """turnserver.conf text; pid file, user database and log live in ``workdir``."""
        workdir = Path(workdir)
        lines = [
            f"listening-ip={self.listening_ip}",
            f"listening-port={self.listening_port}",
            f"min-port={self.min_port}",
            f"max-port={self.max_port}",
            "use-auth-secret",
            f"static-auth-secret={self.static_auth_secret}",
            f"realm={self.realm}",
            "fingerprint",
            "no-cli",
            "no-dtls",
            "no-multicast-peers",
            # The agent reads allocations and relayed bytes from the log (see module docstring).
            "verbose",
            "no-stdout-log",
            "simple-log",
            f"log-file={workdir / 'turn.log'}",
            f"pidfile={workdir / PID_FILE}",
            f"userdb={workdir / 'turndb'}",
        ]
        if self.tls:
            # TLS 1.2 and 1.3 only; the old protocol versions are switched off.
            lines += [
                f"tls-listening-port={self.tls_port}",
                f"cert={self.tls_cert_file}",
                f"pkey={self.tls_key_file}",
                "no-tlsv1",
                "no-tlsv1_1",
            ]
        else:
            lines.append("no-tls")
        if self.relay_ip:
            lines.append(f"relay-ip={self.relay_ip}")
        if self.external_ip:
            lines.append(f"external-ip={self.external_ip}")
        if self.allow_loopback_peers:
            lines.append("allow-loopback-peers")
        lines += [f"denied-peer-ip={peer_range}" for peer_range in self.denied_peer_ranges]
        if self.total_quota is not None:
            lines.append(f"total-quota={self.total_quota}")
        if self.max_bps is not None:
            lines.append(f"max-bps={self.max_bps}")
        return "\n".join(lines) + "\n"

    def turn_urls(self, public_host: str) -> list[str]:
        """Where browsers reach this relay."""
        host = f"[{public_host}]" if ":" in public_host and not public_host.startswith("[") else public_host
        base = f"{host}:{self.listening_port}"
        urls = [f"turn:{base}?transport=udp", f"turn:{base}?transport=tcp"]
        if self.tls:
            urls.append(f"turns:{host}:{self.tls_port}?transport=tcp")
        return urls


@dataclass
class Load:
    allocations: int
    relayed_kbps: float


@dataclass
class _Session:
    """One allocation as its usage reports tell it: the bytes of its last report and
    the time that report covers, from the one before (or from the allocation)."""

    since: float  # when the last report (or the allocation) was logged
    rate: float = 0.0  # bytes/s over the interval of the last report; 0 before the first
    last_bytes: int = 0

    def report(self, at: float, relayed: int) -> None:
        self.rate = relayed / max(at - self.since, 1.0)  # the log's clock counts whole seconds
        self.last_bytes, self.since = relayed, at

    def bytes_per_second(self, now: float) -> float:
        # The next report comes after as many packets again: if it is late, the session
        # relays less than it did, at most last_bytes over the time since the last one.
        if not self.last_bytes:
            return 0.0
        return min(self.rate, self.last_bytes / max(now - self.since, 1.0))


@dataclass
class _LogReader:
    """Follows one coturn log file and keeps the live allocations and their relay rates.
    A line's time is coturn's own (the seconds since it started that begin each line),
    on the clock of ``started``; a line without one is taken as read at ``poll``."""

    path: Path
    started: float = field(default_factory=time.monotonic)
    offset: int = 0
    partial: bytes = b""
    sessions: dict[str, _Session] = field(default_factory=dict)

    def poll(self, now: float) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(4 * 1024 * 1024)
        except FileNotFoundError:
            return
        self.offset += len(chunk)
        data = self.partial + chunk
        *lines, self.partial = data.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            uptime = _UPTIME.match(line)
            at = min(now, self.started + int(uptime.group(1))) if uptime else now
            if match := _NEW.search(line):
                self.sessions[match.group(1)] = _Session(since=at)
            elif match := _GONE.search(line):
                self.sessions.pop(match.group(1), None)
            elif (match := _PEER_USAGE.search(line)) and (session := self.sessions.get(match.group(1))):
                session.report(at, int(match.group(2)) + int(match.group(3)))

    def load(self, now: float) -> Load:
        rate = sum(session.bytes_per_second(now) for session in self.sessions.values())
        return Load(allocations=len(self.sessions), relayed_kbps=rate * 8 / 1000)


def _probe_host(ip: str) -> str:
    if ip in ("0.0.0.0", ""):  # noqa: S104 - probing, not binding
        return "127.0.0.1"
    if ip == "::":
        return "::1"
    return ip


class CoturnProcess:
    """One coturn server process, restartable. Not thread-safe: one supervisor calls it."""

    def __init__(
        self,
        config: CoturnConfig,
        workdir: str | Path | None = None,
        binary: str | None = None,
        own_session: bool = False,
        die_with_parent: bool = False,
    ) -> None:
        self.config = config
        # In a session of its own, a Ctrl-C in the terminal reaches only the supervisor,
        # which then stops coturn in its own time (``konsil up``).
        self.own_session = own_session
        # The kernel stops coturn when the thread that started it dies (the media-node
        # agent starts it from threads that live as long as the agent does): a killed
        # agent leaves no relay behind where Linux allows it (reap_leftover covers the rest).
        self._preexec = _parent_death_signal() if die_with_parent else None
        found = binary or shutil.which("turnserver")
        if not found:
            raise CoturnError("coturn: turnserver is not installed (Debian package coturn)")
        self.binary = found
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="konsil-coturn-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        self.config_path = self.workdir / CONFIG_FILE
        self.log_path = self.workdir / "turn.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = _LogReader(self.log_path)
        self._lock = threading.Lock()

    def write_config(self) -> None:
        text = self.config.render(self.workdir)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(self.config_path, 0o600)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, ready_timeout: float = 10.0) -> None:
        if self.is_alive():
            return
        if self.accepts_connections():
            # Otherwise the probe would take a leftover server (say, of a killed agent) for ours.
            raise CoturnError(f"coturn: port {self.config.listening_port} is already in use (a leftover turnserver?)")
        self.write_config()
        # A new process starts with no allocations: follow a fresh log.
        self.log_path.unlink(missing_ok=True)
        with self._lock:
            self._log = _LogReader(self.log_path)
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.own_session,
            preexec_fn=self._preexec,  # one prctl call, resolved before the fork (see _parent_death_signal)
        )
        deadline = time.monotonic() + ready_timeout
        while not self.accepts_connections():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise CoturnError(f"coturn exited with status {code} at start (see {self.log_path})")
            if time.monotonic() > deadline:
                self.stop()
                raise CoturnError(f"coturn did not listen on port {self.config.listening_port} in {ready_timeout:g} s")
            time.sleep(0.05)

    def reap_leftover(self, grace_seconds: float = 5.0) -> int | None:
        """Stop a turnserver of this workdir left running by a supervisor that was killed
        (``reap_leftover``), then wait for its port to be free: the kernel drops a dying
        process's command line before it closes its sockets, so ``start`` would take the
        leftover for a stranger's server. Returns its pid, or None when there was none."""
        reaped = reap_leftover(self.workdir, grace_seconds)
        if reaped is not None:
            deadline = time.monotonic() + grace_seconds
            while self.accepts_connections() and time.monotonic() < deadline:
                time.sleep(0.05)
        return reaped

    def accepts_connections(self) -> bool:
        try:
            with socket.create_connection(
                (_probe_host(self.config.listening_ip), self.config.listening_port), timeout=0.5
            ):
                return True
        except OSError:
            return False

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def load(self) -> Load:
        """Live allocations and relayed kbit/s (approximate, see module docstring)."""
        with self._lock:
            now = time.monotonic()
            self._log.poll(now)
            return self._log.load(now)
