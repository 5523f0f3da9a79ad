"""Errors users see: a status, a stable code and a plain message, never a trace
and never personal data."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

log = logging.getLogger("konsil.errors")


class AppError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def bad_request(message: str, code: str = "invalid_input") -> AppError:
    return AppError(400, code, message)


def not_found(what: str = "not found") -> AppError:
    return AppError(404, "not_found", what)


def forbidden(message: str = "your role does not allow this") -> AppError:
    return AppError(403, "forbidden", message)


def unauthorized(message: str = "log in first") -> AppError:
    return AppError(401, "unauthorized", message)


def conflict(message: str) -> AppError:
    return AppError(409, "conflict", message)


def unavailable(message: str) -> AppError:
    return AppError(503, "unavailable", message)


def _body(code: str, message: str, details: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if details:
        body["details"] = details
    return body


def route_of(request: Request[Any, Any, Any]) -> str:
    """The request's route as declared (``/api/v1/orgs/{slug}/rooms``), never its path:
    paths and query strings carry slugs, tokens and other values of the request."""
    template = request.scope.get("path_template")
    if isinstance(template, str) and template:
        return template
    handler = request.scope.get("route_handler")
    paths = sorted(getattr(handler, "paths", None) or ())
    return paths[0] if paths else "(no route)"


def safe_frames(exc: BaseException) -> str:
    """Where an exception was raised, as a traceback of code locations only: the
    exception's message (and its causes') is left out, it may carry request values."""
    lines = ["Traceback (most recent call last; exception messages withheld):"]
    lines += [line.rstrip("\n") for line in traceback.format_list(traceback.extract_tb(exc.__traceback__))]
    lines.append(type(exc).__qualname__)
    return "\n".join(lines)


def log_server_error(
    request: Request[Any, Any, Any], status: int, exc: BaseException, cause: str, *, level: int = logging.ERROR
) -> None:
    """One line for every 5xx answered: the route template, the status, the exception's
    type and a cause that names no personal data (a message written for people, or the
    failing dependency's own error class). ``level`` WARNING for a 503 of a dependency
    known to be down (its outage is expected to pass), ERROR otherwise."""
    log.log(
        level,
        "%s %s answered %d: %s (%s)",
        request.method,
        route_of(request),
        status,
        cause,
        type(exc).__name__,
    )


def app_error_handler(request: Request[Any, Any, Any], exc: AppError) -> Response[Any]:
    if exc.status >= 500:
        # AppError messages are written for the people who get them: no personal data.
        cause = exc.message if exc.__cause__ is None else f"{exc.message}; caused by {type(exc.__cause__).__name__}"
        log_server_error(request, exc.status, exc, cause, level=logging.WARNING if exc.status == 503 else logging.ERROR)
    return Response(_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=exc.headers)


def validation_handler(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    details: list[str] = []
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict):
            where = item.get("key") or item.get("source") or ""
            text = str(item.get("message", ""))
            details.append(f"{where}: {text}" if where else text)
    return Response(_body("invalid_input", "the request is not valid", details), status_code=400)


def http_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    codes = {
        400: "invalid_input",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        410: "gone",
        413: "too_large",
        415: "unsupported_media_type",
        429: "too_many_requests",
        503: "unavailable",
    }
    message = exc.detail if exc.status_code < 500 else "the service could not answer"
    if exc.status_code >= 500:
        log_server_error(request, exc.status_code, exc, "an HTTP error raised by the framework or a handler")
    # Keep the exception's headers: 405 must name the allowed methods (Allow).
    return Response(
        _body(codes.get(exc.status_code, "error"), str(message)), status_code=exc.status_code, headers=exc.headers
    )


def internal_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # The type and where it was raised only: exception messages may carry values from the request.
    log_server_error(request, 500, exc, "unexpected exception\n" + safe_frames(exc))
    return Response(_body("internal", "something went wrong on our side"), status_code=HTTP_500_INTERNAL_SERVER_ERROR)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    AppError: app_error_handler,
    ValidationException: validation_handler,
    HTTPException: http_handler,
    HTTP_500_INTERNAL_SERVER_ERROR: internal_handler,
}
