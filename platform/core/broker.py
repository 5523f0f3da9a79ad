"""A region's RabbitMQ as operators need to hear about it: one line saying what is
wrong (no such vhost, refused login, nothing listening), whatever client failed
(pika for heartbeats, py-amqp under Celery), and never the URL's password."""

from __future__ import annotations

import logging
from urllib.parse import unquote, urlparse

# AMQP reply codes a broker closes a connection with before it is open.
_NOT_ALLOWED = 530  # the vhost does not exist, or the user may not use it
_ACCESS_REFUSED = 403  # login refused (user, password, mechanism)


def vhost_of(url: str) -> str:
    """The vhost an ``amqp://`` URL names ("/" when it names none)."""
    path = urlparse(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def where(url: str) -> str:
    """Host, port and vhost of the broker URL: never its user or password."""
    parsed = urlparse(url)
    return f"{parsed.hostname or 'localhost'}:{parsed.port or 5672} vhost {vhost_of(url)!r}"


def _texts(exc: BaseException) -> str:
    """The exception's words and those of what it wraps (pika wraps the broker's
    close reason; Celery's connection errors wrap py-amqp's)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [type(current).__name__, str(current), *(repr(arg) for arg in current.args)]
        current = current.__cause__ or current.__context__
    return " ".join(parts)


def describe(exc: BaseException, url: str) -> str:
    """What went wrong reaching the broker at ``url``, in a few words. The broker's
    own reasons name vhosts and users, never passwords; the URL's password is never
    used here."""
    text = _texts(exc)
    vhost = vhost_of(url)
    if (str(_NOT_ALLOWED) in text and ("vhost" in text or "NOT_ALLOWED" in text)) or "NotAllowed" in text:
        return f"RabbitMQ vhost {vhost!r} does not exist or the user has no access to it"
    if (str(_ACCESS_REFUSED) in text and "ACCESS_REFUSED" in text) or "ProbableAuthenticationError" in text:
        return f"RabbitMQ refused the login of the configured user (vhost {vhost!r})"
    if "ProbableAccessDeniedError" in text:
        return f"RabbitMQ vhost {vhost!r} does not exist or the user has no access to it"
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return f"nothing accepts connections at {where(url)}"
    if "timed out" in text.lower() or "Timeout" in text:
        return f"RabbitMQ at {where(url)} did not answer in time"
    return f"RabbitMQ at {where(url)} is unavailable ({type(exc).__name__})"


def quiet_pika() -> None:
    """pika logs each failed connection attempt at ERROR with tracebacks from several of
    its modules (about eight lines per try); Konsil's callers log one line per failure
    themselves (``describe``), so only pika's critical messages are kept."""
    logging.getLogger("pika").setLevel(logging.CRITICAL)
