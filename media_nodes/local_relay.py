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

import os
import re
import secrets
import shutil
from pathlib import Path

import msgspec

from konsil.media_nodes.coturn import PID_FILE, CoturnConfig, CoturnError, CoturnProcess
from konsil.platform.core.settings import RegionSettings

REALM = "konsil.local"
SECRET_FILE = "turn-secret"  # noqa: S105 - the file's name, not a secret
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
        self.reaped = self.process.reap_leftover()
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
