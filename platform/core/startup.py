"""The one line every Konsil process logs once it has started: what it is, its region,
its mode and where it listens, so an operator reading the logs of a pod or a unit sees
that it came up and on what. Never a secret: no URL with a password, no token."""

from __future__ import annotations

import logging
import sys

from konsil.platform.core.telemetry import logs
from konsil.platform.core.telemetry import setup as telemetry

log = logging.getLogger("konsil.start")
log.setLevel(logging.INFO)  # the start line is INFO; the processes' default level is WARNING


def metrics_address() -> str:
    """Where this process serves ``/metrics``: only once the endpoint really listens
    (a port in use is logged by telemetry and leaves it off), else ""."""
    running = telemetry.current()
    if running is None or running.metrics_server is None:
        return ""
    host = running.settings.metrics_listen.rpartition(":")[0]
    return f"{host}:{running.metrics_port}"


def started(what: str, *, region: str = "", mode: str = "", listen: str = "", also: str = "") -> str:
    """Log (INFO) and return the start line of a process (``also``: what else it is
    bound to, e.g. a worker's queue and broker)."""
    parts = [f"konsil {what} started"]
    if region:
        parts.append(f"region {region}")
    if mode:
        parts.append(f"mode {mode}")
    if listen:
        parts.append(f"listening on {listen}")
    if also:
        parts.append(also)
    if metrics := metrics_address():
        parts.append(f"metrics on {metrics}")
    line = ", ".join(parts)
    if not logging.getLogger().handlers and not log.handlers:
        # A process whose logging nobody configured (Celery's worker and beat leave the
        # root logger alone): the line still reaches its standard error.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logs.Formatter())  # scrubbed, text or JSON as configured
        log.addHandler(handler)
    log.info("%s", line)
    return line
