"""A database that does not answer is a 503 with Retry-After, never a 500.

While PostgreSQL restarts (or its host is unreachable) queries fail with connection
errors: refused or reset sockets, "the database system is shutting down / starting
up", a connection closed in the middle of an operation. Those are answered as the
service being briefly unavailable; the pool opens new connections by itself once the
server is back, so nothing needs restarting. Any other database error stays a 500.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from litestar import Request, Response

from konsil.platform.core.errors import internal_handler, log_server_error

RETRY_AFTER_SECONDS = 5
MESSAGE = "the service cannot reach its database right now; try again in a few seconds"

# Always a lost or refused connection: sockets, SQLSTATE class 08 (connection
# exception), class 57 (operator intervention: shutting down, starting up, terminated).
_DOWN: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)
# Client-side errors that also cover misuse: only their closed-connection cases.
_MAYBE_DOWN: tuple[type[BaseException], ...] = (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)
# (A server that terminates a connection in the middle of a statement leaves asyncpg's
# protocol waiting for a sync message that never comes: "cannot switch to state".)
_CLOSED = ("connection is closed", "connection was closed", "cannot switch to state")


def database_down(exc: BaseException) -> bool:
    if isinstance(exc, _DOWN):
        return True
    return isinstance(exc, _MAYBE_DOWN) and any(text in str(exc) for text in _CLOSED)


def database_unavailable_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if not database_down(exc):
        return internal_handler(request, exc)
    # The type only: messages can carry query values.
    log_server_error(request, 503, exc, "the database is unavailable", level=logging.WARNING)
    return Response(
        {"error": "unavailable", "message": MESSAGE},
        status_code=503,
        headers={"retry-after": str(RETRY_AFTER_SECONDS)},
    )


DATABASE_UNAVAILABLE_HANDLERS: dict[Any, Any] = dict.fromkeys(_DOWN + _MAYBE_DOWN, database_unavailable_handler)
