"""Every 5xx is logged once with its route template, status, exception type and a cause
that carries no value of the request (platform/core/errors.py, db_errors.py)."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from litestar import Litestar, post
from litestar.testing import TestClient

from konsil.platform.core.db_errors import DATABASE_UNAVAILABLE_HANDLERS
from konsil.platform.core.errors import EXCEPTION_HANDLERS, AppError

SEED = "ngozi.seed-4711@example.org"


@post("/api/v1/orgs/{slug:str}/crash", opt={"public": True})
async def crash(slug: str, data: dict[str, str]) -> None:
    raise ValueError(f"could not handle {data['email']} of {slug}")


@post("/api/v1/orgs/{slug:str}/down", opt={"public": True})
async def down(slug: str, data: dict[str, str]) -> None:
    raise asyncpg.exceptions.CannotConnectNowError(f"the database system is starting up ({data['email']})")


@post("/api/v1/orgs/{slug:str}/busy", opt={"public": True})
async def busy(slug: str) -> None:
    raise AppError(503, "unavailable", "the mail relay is not reachable; try again shortly")


@pytest.fixture
def client() -> TestClient[Litestar]:
    app = Litestar([crash, down, busy], exception_handlers={**EXCEPTION_HANDLERS, **DATABASE_UNAVAILABLE_HANDLERS})
    return TestClient(app)


def server_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "konsil.errors"]


def test_an_unexpected_exception_logs_where_it_was_raised_but_not_its_message(
    client: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with client, caplog.at_level(logging.INFO):
        answer = client.post(f"/api/v1/orgs/acme/crash?token={SEED}", json={"email": SEED})
    assert answer.status_code == 500 and SEED not in answer.text
    [record] = server_errors(caplog)
    text = record.getMessage()
    assert record.levelno == logging.ERROR
    assert text.startswith("POST /api/v1/orgs/{slug}/crash answered 500: unexpected exception")
    assert "in crash" in text and "test_error_logging.py" in text  # the traceback's frames
    assert text.rstrip().endswith("(ValueError)")
    assert SEED not in text and "acme" not in text


def test_a_database_that_is_down_is_a_warning_naming_the_route(
    client: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with client, caplog.at_level(logging.INFO):
        assert client.post("/api/v1/orgs/acme/down", json={"email": SEED}).status_code == 503
    [record] = server_errors(caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "POST /api/v1/orgs/{slug}/down answered 503: the database is unavailable (CannotConnectNowError)"
    )


def test_a_503_raised_by_the_code_is_logged_with_its_message(
    client: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    with client, caplog.at_level(logging.INFO):
        assert client.post("/api/v1/orgs/acme/busy").status_code == 503
    [record] = server_errors(caplog)
    assert record.getMessage() == (
        "POST /api/v1/orgs/{slug}/busy answered 503: the mail relay is not reachable; try again shortly (AppError)"
    )
