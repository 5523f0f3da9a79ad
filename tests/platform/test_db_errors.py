"""Which database errors mean "the database does not answer" (a 503 with Retry-After)
and which stay a 500. Answering over HTTP, with a real PostgreSQL restart, is
tests/e2e/test_faults.py."""

from __future__ import annotations

import asyncpg
import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from konsil.platform.core.db_errors import DATABASE_UNAVAILABLE_HANDLERS, database_down
from konsil.platform.core.errors import EXCEPTION_HANDLERS


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
        asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    ],
)
def test_a_lost_or_refused_connection_is_the_database_being_down(exc: Exception) -> None:
    assert database_down(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
        asyncpg.exceptions.InternalClientError("unexpected error while performing authentication"),
    ],
)
def test_other_database_errors_are_not(exc: Exception) -> None:
    assert not database_down(exc)


def app_raising(exc: Exception) -> Litestar:
    @get("/")
    async def handler() -> None:
        raise exc

    return Litestar([handler], exception_handlers={**EXCEPTION_HANDLERS, **DATABASE_UNAVAILABLE_HANDLERS})


def test_the_answers() -> None:
    with TestClient(app_raising(asyncpg.exceptions.CannotConnectNowError("starting up"))) as client:
        down = client.get("/")
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    assert down.json() == {
        "error": "unavailable",
        "message": "the service cannot reach its database right now; try again in a few seconds",
    }
    with TestClient(app_raising(asyncpg.InterfaceError("another operation is in progress"))) as client:
        misuse = client.get("/")
    assert misuse.status_code == 500 and misuse.json()["error"] == "internal"
