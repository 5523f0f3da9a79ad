"""A real SMTP server in the test process (aiosmtpd) and a control plane with an EU region
whose e-mail goes to it, for the invitation and password-reset tests.

The region runs as its own process (services mode, PostgreSQL, a local keyring) with
``[regions.smtp]`` pointing at the server, as an operator would configure a relay on
the same host."""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from konsil.platform.cli.launcher import start_processes, stop_processes, wait_healthy
from konsil.platform.core.settings import load_settings
from tests.conftest import Stack, free_port, wait_until


@dataclass
class Received:
    to: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        content: str = body.get_content()
        return content

    @property
    def html(self) -> str:
        body = self.message.get_body(("html",))
        assert body is not None
        content: str = body.get_content()
        return content

    def link(self, kind: str) -> str:
        """The one link to ``/{kind}/…`` in the mail."""
        found = re.findall(rf"https?://\S+/{kind}/[A-Za-z0-9_-]+", self.text)
        assert len(found) == 1, self.text
        return str(found[0])


@dataclass
class MailServer:
    """An SMTP server on a loopback port that keeps every mail it receives."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.received.append(Received(list(envelope.rcpt_tos), message))
        return "250 OK"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[Received]:
        with self._lock:
            return [m for m in self.received if address in m.to]

    def wait_for(self, address: str, count: int = 1, within: float = 20) -> list[Received]:
        """The mails to ``address`` once there are ``count`` of them."""
        return wait_until(
            lambda: self.to(address) if len(self.to(address)) >= count else None,
            f"{count} mail(s) to {address}",
            within=within,
        )


@contextlib.contextmanager
def mail_stack(
    label: str,
    pg_database: Callable[[str, str], str],
    run_dir: Path,
    server: MailServer,
    region_lines: tuple[str, ...] = (),
    **limits: int,
) -> Iterator[Stack]:
    """A control plane and an EU region mailing through ``server``; ``limits`` go to
    ``[regions.limits]`` (the per-address ones are off unless given); ``region_lines``
    are more settings of the region (its relays, say)."""
    dsns = {
        name: pg_database(f"{label}_{name}", "control" if name == "control" else "region") for name in ("control", "eu")
    }
    ports = {name: free_port() for name in ("control", "eu")}
    region_limits = {
        "login_failures_per_address_minute": 100_000,
        "joins_per_address_minute": 100_000,
        "password_resets_per_address_minute": 100_000,
        **limits,
    }
    lines = [
        'mode = "services"',
        f'data_dir = "{run_dir}"',
        f'discovery_key = "{secrets.token_urlsafe(24)}"',
        "[control]",
        f'database = "{dsns["control"]}"',
        f'listen = "127.0.0.1:{ports["control"]}"',
        f'public_url = "http://127.0.0.1:{ports["control"]}"',
        "signups_per_address_hour = 100000",
        "discoveries_per_address_minute = 100000",
        "[[regions]]",
        'id = "eu"',
        'jurisdiction = "EU/EEA (GDPR)"',
        f'public_url = "http://127.0.0.1:{ports["eu"]}"',
        f'listen = "127.0.0.1:{ports["eu"]}"',
        f'database = "{dsns["eu"]}"',
        f'internal_secret = "eu-{secrets.token_urlsafe(24)}"',
        *region_lines,
        "[regions.vault]",
        'backend = "local"',
        f'keyring_path = "{run_dir / "keyring-eu"}"',
        "[regions.smtp]",
        'host = "127.0.0.1"',
        f"port = {server.port}",
        'security = "none"',
        'from_address = "Konsil EU <no-reply@eu.konsil.test>"',
        "timeout_seconds = 5",
        "[regions.limits]",
        *(f"{key} = {value}" for key, value in region_limits.items()),
    ]
    config = run_dir / "konsil.toml"
    config.write_text("\n".join(lines) + "\n")
    settings = load_settings(config, environ={})
    procs = start_processes(settings, run_dir)
    try:
        wait_healthy(
            {"control": settings.require_control().public_url, "region eu": settings.region("eu").public_url}, procs
        )
        yield Stack(settings, dsns, procs, run_dir, {})
    finally:
        stop_processes(procs)
