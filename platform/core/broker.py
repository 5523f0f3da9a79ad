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


def describe(exc: BaseException, url: str, *, public: bool = False) -> str:
    """What went wrong reaching the broker at ``url``, in a few words. The broker's
    own reasons name vhosts and users, never passwords; the URL's password is never
    used here. ``public``: for an answer anyone may read (``/readyz``), which says what
    fails but never where the broker is (no host, port or vhost)."""
    text = _texts(exc)
    vhost = "" if public else f" {vhost_of(url)!r}"
    at = "" if public else f" at {where(url)}"
    if (str(_NOT_ALLOWED) in text and ("vhost" in text or "NOT_ALLOWED" in text)) or "NotAllowed" in text:
        return f"RabbitMQ vhost{vhost} does not exist or the user has no access to it"
    if (str(_ACCESS_REFUSED) in text and "ACCESS_REFUSED" in text) or "ProbableAuthenticationError" in text:
        return "RabbitMQ refused the login of the configured user" + ("" if public else f" (vhost{vhost})")
    if "ProbableAccessDeniedError" in text:
        return f"RabbitMQ vhost{vhost} does not exist or the user has no access to it"
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return f"nothing accepts connections at {where(url)}" if not public else "RabbitMQ refuses connections"
    if "timed out" in text.lower() or "Timeout" in text:
        return f"RabbitMQ{at} did not answer in time"
    return f"RabbitMQ{at} is unavailable ({type(exc).__name__})"


def quiet_pika() -> None:
    """pika logs each failed connection attempt at ERROR with tracebacks from several of
    its modules (about eight lines per try); Konsil's callers log one line per failure
    themselves (``describe``), so only pika's critical messages are kept."""
    logging.getLogger("pika").setLevel(logging.CRITICAL)
