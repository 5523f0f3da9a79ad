"""``konsil up``: the embedded default. Starts the control plane and one region
service per configured region on localhost, each in its own process with only
its own configuration; SQLite files under the data directory; and, when coturn's
``turnserver`` is installed, a local TURN relay per region (media_nodes/local_relay.py)
so that calls go through a relay as in production. Ctrl-C stops all.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from konsil.media_nodes.coturn import CoturnError
from konsil.media_nodes.local_relay import LocalRelay, has_own_relay, turnserver
from konsil.platform.cli.migrations import migrate_all
from konsil.platform.core.settings import Settings, dump_settings, load_settings

DEFAULT_REGIONS = (("eu", "EU/EEA (GDPR)"), ("us", "United States (HIPAA)"))
# The data directory holds password hashes, blind indexes and keyrings: only its owner
# may read it. SQLite creates its -journal/-wal/-shm files with the database file's mode.
PRIVATE_UMASK = 0o077
DEMO_LOGINS = "demo-logins.txt"


def embedded_config_text(data_dir: Path, port: int) -> str:
    """A first configuration for the embedded default, with fresh secrets."""

    def secret() -> str:
        return secrets.token_urlsafe(32)

    lines = [
        'mode = "embedded"',
        f'data_dir = "{data_dir}"',
        f'discovery_key = "{secret()}"',
        "",
        "[control]",
        f'database = "sqlite://{data_dir}/control.db"',
        f'listen = "127.0.0.1:{port}"',
        f'public_url = "http://127.0.0.1:{port}"',
    ]
    for offset, (region_id, jurisdiction) in enumerate(DEFAULT_REGIONS, start=1):
        lines += [
            "",
            "[[regions]]",
            f'id = "{region_id}"',
            f'jurisdiction = "{jurisdiction}"',
            f'public_url = "http://127.0.0.1:{port + offset}"',
            f'listen = "127.0.0.1:{port + offset}"',
            f'database = "sqlite://{data_dir}/region-{region_id}.db"',
            f'internal_secret = "{secret()}"',
            "[regions.vault]",
            'backend = "local"',
            f'keyring_path = "{data_dir}/keyring-{region_id}"',
        ]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


# What konsil up keeps in its data directory (a folder chosen by hand may hold other things,
# which the folder's own 0700 then keeps from others without changing their modes).
KONSIL_FILES = (
    "konsil.toml",
    "*.db",
    "*.db-*",
    "demo.json",
    DEMO_LOGINS,
    "run",
    "keyring-*",
    "celerybeat-*",
    "relay-*",
)
# Each region's local relay listens on the control plane's port + this + the region's
# place (1, 2, …): with the default 8000, 8011 and 8012.
RELAY_PORT_OFFSET = 10
# A relay that stops is started again, at most this often; after this many, it is left off.
RELAY_RESTART_SECONDS = 5.0
RELAY_RESTARTS = 5
INSTALL_COTURN = (
    "To try calls through a relay as in production, install coturn "
    "(Debian/Ubuntu: sudo apt-get install coturn; macOS: brew install coturn) and run konsil up again."
)


def make_private(root: Path, settings: Settings | None = None, echo: Any = print) -> None:
    """Create ``root`` 0700; in an existing one, take every permission of group and
    others away from the folder, Konsil's files in it (keyrings and the run folder
    with everything inside) and the SQLite databases the settings name, with their
    journal and WAL files. Says so when anything was open."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = {root}
    for pattern in KONSIL_FILES:
        for found in root.glob(pattern):
            paths |= {found, *(found.rglob("*") if found.is_dir() else ())}
    for dsn in [settings.control.database] if settings and settings.control else []:
        paths |= _sqlite_files(dsn)
    for region in settings.regions if settings else []:
        paths |= _sqlite_files(region.database)
    loose = 0
    for path in sorted(paths):
        if path.is_symlink() or not path.exists():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & 0o700)
            loose += 1
    if loose:
        echo(f"made {loose} files and folders in {root} private: group and others could read them")


def _sqlite_files(dsn: str) -> set[Path]:
    if not dsn.startswith("sqlite://"):
        return set()
    database = Path(dsn[len("sqlite://") :])
    return {database, *(database.with_name(database.name + suffix) for suffix in ("-journal", "-wal", "-shm"))}


def resolve_settings(config: str | None, data_dir: str, port: int) -> tuple[Settings, Path]:
    if config or os.environ.get("KONSIL_CONFIG"):
        settings = load_settings(config)
        return settings, Path(settings.data_dir).resolve()
    root = Path(data_dir).resolve()
    path = root / "konsil.toml"
    if not path.exists():
        _write_private(path, embedded_config_text(root, port))
    return load_settings(path), root


def _child_env() -> dict[str, str]:
    # A child gets its own configuration file only, never the launcher's overrides.
    return {k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")}


def wait_healthy(urls: dict[str, str], procs: dict[str, subprocess.Popen[bytes]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(urls)
    while pending:
        for name, url in list(pending.items()):
            if procs[name].poll() is not None:
                raise RuntimeError(f"{name} stopped during start-up (exit code {procs[name].returncode})")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    pending.pop(name)
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not healthy after {timeout:.0f}s: {', '.join(pending)}")
        time.sleep(0.2)


def start_processes(
    settings: Settings, run_dir: Path, regions: list[str] | None = None
) -> dict[str, subprocess.Popen[bytes]]:
    """Start the control plane and the named (default: all) region services."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    cli = [sys.executable, "-m", "konsil.platform.cli.main"]
    control_config = run_dir / "control.toml"
    _write_private(control_config, dump_settings(settings.for_control()))
    procs["control"] = subprocess.Popen(
        [*cli, "serve", "control", "--config", str(control_config)],
        env=_child_env(),
        start_new_session=True,
        umask=PRIVATE_UMASK,
    )
    for region in settings.regions:
        if regions is not None and region.id not in regions:
            continue
        path = run_dir / f"region-{region.id}.toml"
        _write_private(path, dump_settings(settings.for_region(region.id)))
        procs[f"region {region.id}"] = subprocess.Popen(
            [*cli, "serve", "region", "--config", str(path)],
            env=_child_env(),
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
    return procs


def stop_processes(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    # Children run in their own sessions, so a Ctrl-C in the terminal reaches only the
    # launcher; each child then gets exactly one SIGTERM and shuts down gracefully.
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LocalRelays:
    """The local relays ``konsil up`` runs, one per region that has none configured."""

    def __init__(self) -> None:
        self.running: dict[str, LocalRelay] = {}
        self.lines: list[str] = []  # what to tell the operator once everything runs
        self._restarts: dict[str, list[float]] = {}

    def start(self, settings: Settings, data_dir: Path) -> Settings:
        """Start a relay per region without one (when coturn is installed); the settings
        the region services get: each started relay's URLs and secret in its region."""
        wanted = [(place, r) for place, r in enumerate(settings.regions, start=1) if not has_own_relay(r)]
        if not wanted:
            return settings
        binary = turnserver()
        if binary is None:
            self.lines.append(
                "  No relay: coturn (turnserver) is not installed, so calls go directly between the "
                "browsers on this machine, and the connection test measures that direct path."
            )
            self.lines.append(f"  {INSTALL_COTURN}")
            return settings
        control_port = int(settings.require_control().listen.rsplit(":", 1)[1])
        regions = list(settings.regions)
        for place, region in wanted:
            try:
                relay = LocalRelay(region.id, data_dir, control_port + RELAY_PORT_OFFSET + place, binary)
                relay.start()
            except CoturnError as exc:
                self.lines.append(
                    f"  relay {region.id:<9} could not start ({exc}); calls in region {region.id} go directly "
                    "between the browsers"
                )
                continue
            self.running[region.id] = relay
            if relay.reaped is not None:
                self.lines.append(f"  relay {region.id:<9} stopped a relay left running earlier (pid {relay.reaped})")
            self.lines.append(
                f"  relay {region.id:<9} 127.0.0.1:{relay.port}   TURN relay (coturn, UDP and TCP): calls and "
                "the connection test go through it"
            )
            regions = [relay.for_region(r) if r.id == region.id else r for r in regions]
        return msgspec.structs.replace(settings, regions=regions)

    def supervise(self, echo: Any) -> None:
        """Start a relay that stopped again (not too often; then it is left off)."""
        for region_id, relay in list(self.running.items()):
            if relay.is_alive():
                continue
            now = time.monotonic()
            recent = [t for t in self._restarts.get(region_id, []) if now - t < 60]
            if recent and now - recent[-1] < RELAY_RESTART_SECONDS:
                continue
            if len(recent) >= RELAY_RESTARTS:
                echo(f"the relay of region {region_id} keeps stopping; it stays off (see {relay.workdir})")
                relay.stop()
                self.running.pop(region_id)
                continue
            self._restarts[region_id] = [*recent, now]
            echo(f"the relay of region {region_id} stopped; starting it again")
            try:
                relay.process.start()
            except CoturnError as exc:
                echo(f"the relay of region {region_id} could not start again: {exc}")

    def stop(self) -> None:
        for relay in self.running.values():
            relay.stop()
        self.running.clear()


def seed_demo(settings: Settings, data_dir: Path) -> list[dict[str, Any]]:
    """One organisation per region with an owner, an expert and a room (idempotent)."""
    control = settings.require_control()
    saved = data_dir / "demo.json"
    if saved.exists():
        return list(json.loads(saved.read_text()))
    base = control.public_url.rstrip("/")
    seeded = []
    with httpx.Client(timeout=30) as client:
        for region in settings.regions:
            slug = f"demo-{region.id}"
            owner = {"name": "Demo Owner", "email": f"owner@{slug}.example", "password": secrets.token_urlsafe(12)}
            expert = {"name": "Demo Expert", "email": f"expert@{slug}.example", "password": secrets.token_urlsafe(12)}
            response = client.post(
                f"{base}/api/v1/signup",
                json={
                    "region": region.id,
                    "organisation": {"name": f"Demo practice ({region.id.upper()})", "slug": slug},
                    "owner": owner,
                },
            )
            response.raise_for_status()
            api = f"{base}/api/v1/orgs/{slug}"
            login = client.post(f"{api}/auth/login", json={"email": owner["email"], "password": owner["password"]})
            login.raise_for_status()
            csrf = {"x-csrf-token": login.json()["csrf_token"]}
            made = client.post(f"{api}/members", headers=csrf, json={**expert, "role": "expert"})
            made.raise_for_status()
            room = client.post(
                f"{api}/rooms",
                headers=csrf,
                json={"slug": "consultation", "title": "Consultation", "expert_id": made.json()["id"]},
            )
            room.raise_for_status()
            client.cookies.clear()
            seeded.append(
                {
                    "region": region.id,
                    "organisation": slug,
                    "portal": f"{region.public_url.rstrip('/')}/login",
                    "room": f"{region.public_url.rstrip('/')}{room.json()['join_path']}",
                    "owner": {k: owner[k] for k in ("email", "password")},
                    "expert": {k: expert[k] for k in ("email", "password")},
                }
            )
    _write_private(saved, json.dumps(seeded, indent=2))
    return seeded


def demo_login_lines(seeded: list[dict[str, Any]]) -> list[str]:
    lines = []
    for org in seeded:
        lines += [
            f"demo organisation {org['organisation']} (region {org['region']})",
            f"  log in:   {org['portal']}",
            f"  owner:    {org['owner']['email']} / {org['owner']['password']}",
            f"  expert:   {org['expert']['email']} / {org['expert']['password']}",
            f"  room:     {org['room']}",
            "",
        ]
    return lines


def up(config: str | None, data_dir: str, port: int, demo: bool, echo: Any = print) -> int:
    os.umask(PRIVATE_UMASK)  # before the first file: the config, the databases, the keyrings
    settings, root = resolve_settings(config, data_dir, port)
    make_private(root, settings, echo)
    control = settings.require_control()
    migrate_all(settings, echo=lambda line: None)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    relays = LocalRelays()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        procs = start_processes(relays.start(settings, root), root / "run")
        urls = {"control": control.public_url.rstrip("/")}
        urls |= {f"region {r.id}": r.public_url.rstrip("/") for r in settings.regions}
        wait_healthy(urls, procs)
        echo(f"Konsil is running (data in {root}). Press Ctrl-C to stop.")
        echo(f"  control plane   {control.public_url}   (API docs: {control.public_url.rstrip('/')}/schema)")
        for region in settings.regions:
            echo(f"  region {region.id:<8} {region.public_url}   {region.jurisdiction}")
        for line in relays.lines:
            echo(line)
        if demo:
            lines = demo_login_lines(seed_demo(settings, root))
            for line in ["", *lines[:-1]]:
                echo(f"  {line}" if line else "")
            logins = root / DEMO_LOGINS
            _write_private(logins, "\n".join(lines))
            echo(f"\n  These logins are also in {logins} (readable only by you).")
        sys.stdout.flush()
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    echo(f"{name} stopped unexpectedly (exit code {proc.returncode}); stopping everything")
                    return 1
            relays.supervise(echo)
            sys.stdout.flush()
            time.sleep(0.3)
        echo("stopping…")
        return 0
    except (RuntimeError, httpx.HTTPError) as exc:
        echo(f"konsil up failed: {exc}")
        return 1
    finally:
        stop_processes(procs)
        relays.stop()
