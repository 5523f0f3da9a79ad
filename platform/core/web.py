"""Web plumbing shared by the control plane and the region services."""

from __future__ import annotations

import datetime as dt
import json
import logging
import typing
from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes

import msgspec
from litestar import Request, get
from litestar.enums import RequestEncodingType, ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.logging.config import LoggingConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from konsil.platform.core.errors import AppError
from konsil.platform.core.signing import SIGNATURE_HEADER, SignatureError, Verifier
from konsil.platform.core.telemetry.tracing import serve_verified

log = logging.getLogger("konsil.web")

# Warnings and errors only, and no exception traces from request handling: messages
# may carry request values, and logs must stay free of personal data.
# Lines are text or JSON with trace ids, as ``[telemetry] log_format`` says, and scrubbed of
# personal data either way (platform/core/telemetry/logs.py).
LOGGING = LoggingConfig(
    root={"level": "WARNING", "handlers": ["queue_listener"]},
    formatters={"standard": {"()": "konsil.platform.core.telemetry.logs.Formatter"}},
    loggers={"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
    log_exceptions="never",
)


async def send_json_error(send: Send, status: int, code: str, message: str) -> None:
    """A JSON error answered straight from ASGI middleware or a raw ASGI handler."""
    body = msgspec.json.encode({"error": code, "message": message})
    start: Any = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    end: Any = {"type": "http.response.body", "body": body}
    await send(end)


async def read_body(receive: Receive, send: Send, limit: int) -> bytes | None:
    """The whole request body; None when the client went away or after answering 413."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Any = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await send_json_error(send, 413, "too_large", "request body is too large")
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# Set in the request's state by the HTTP server (http_server.CompleteBodies) when a
# browser's form post was larger than ``max_body_bytes``: the app answers 413 with a page.
BODY_TOO_LARGE = "body_too_large"


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` for the app after a middleware read the whole body: ``body`` as one
    message first, then whatever the client sends next (its disconnect)."""
    replayed = False

    async def replay() -> Any:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class SignedCalls:
    """ASGI middleware: verifies signed internal calls before any route runs.

    Paths under ``required_prefix`` must be signed; any other request that
    carries a signature must carry a valid one. The verified signer is put in
    ``scope["state"]["signed_by"]``; the body is replayed to the app unchanged.
    """

    def __init__(self, app: ASGIApp, verifier: Verifier, max_body: int, required_prefix: str = "/internal/") -> None:
        self.app = app
        self.verifier = verifier
        self.max_body = max_body
        self.required_prefix = required_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        state = scope.setdefault("state", {})
        state.pop("signed_by", None)
        if SIGNATURE_HEADER not in headers and not path.startswith(self.required_prefix):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, send, self.max_body)
        if body is None:
            return
        query = scope.get("query_string", b"").decode("latin-1")
        full_path = scope.get("raw_path", path.encode()).decode("latin-1") + (f"?{query}" if query else "")
        try:
            state["signed_by"] = self.verifier.verify(str(scope.get("method", "")), full_path, body, headers)
        except SignatureError as exc:
            log.warning("refused internal call to %s: %s", path, exc)
            await send_json_error(send, 401, "bad_signature", str(exc))
            return
        await serve_verified(self.app, scope, replaying(body, receive), send)


@get("/healthz", opt={"public": True}, include_in_schema=False)
async def healthz() -> dict[str, Any]:
    return {"ok": True}


class _JsonBody(NamedTuple):
    decoder: msgspec.json.Decoder[Any]
    optional: bool  # ``data: X | None = None``: an empty body is allowed


_FORM = "form"  # a URL-encoded form: its values must be UTF-8 once percent-decoded
_bodies: dict[BaseRouteHandler, _JsonBody | str | None] = {}


def _body_of(handler: BaseRouteHandler) -> _JsonBody | str | None:
    """How a handler's ``data`` is checked: a strict decoder of its type for a JSON body,
    ``_FORM`` for a URL-encoded form, else None."""
    if handler in _bodies:
        return _bodies[handler]
    found: _JsonBody | str | None = None
    field = handler.parsed_fn_signature.parameters.get("data")
    media_type = getattr(field.kwarg_definition, "media_type", RequestEncodingType.JSON) if field else None
    if field is not None and media_type == RequestEncodingType.URL_ENCODED:
        found = _FORM
    elif field is not None and media_type == RequestEncodingType.JSON and field.annotation not in (bytes, str):
        try:  # a Struct, X | None, list[X], dict[...]: whatever msgspec can check strictly
            found = _JsonBody(msgspec.json.Decoder(field.annotation, strict=True), field.is_optional)
        except TypeError:  # a type msgspec does not know: Litestar's own parsing only
            found = None
    _bodies[handler] = found
    return found


def _check_form(body: bytes) -> None:
    """Litestar decodes form bytes that are not UTF-8 into U+FFFD, which would store
    something other than what was sent: refused instead."""
    try:
        for pair in body.split(b"&"):
            for part in pair.split(b"=", 1):
                unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise AppError(400, "invalid_input", "the form in the request body is not valid UTF-8") from None


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(ValueError):
    pass


def is_json_media_type(media_type: str) -> bool:
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


_time_params: dict[BaseRouteHandler, tuple[str, ...]] = {}


def _time_parameters(handler: BaseRouteHandler) -> tuple[str, ...]:
    """Names of the handler's date-time parameters (plain or optional)."""
    found = _time_params.get(handler)
    if found is None:
        names = []
        for name, field in handler.parsed_fn_signature.parameters.items():
            kinds = typing.get_args(field.annotation) or (field.annotation,)
            if any(kind in (dt.datetime, dt.date) for kind in kinds):
                names.append(name)
        found = _time_params[handler] = tuple(names)
    return found


def _check_query_times(request: Request[Any, Any, Any]) -> None:
    """A date-time in the query must be ISO 8601 text, as documented: Litestar would also
    take a number (``until=0.5``) as seconds since 1970."""
    for name in _time_parameters(request.route_handler):
        raw = request.query_params.get(name)
        if raw is None:
            continue
        try:
            dt.datetime.fromisoformat(raw)
        except ValueError:
            raise AppError(
                400, "invalid_input", f"{name} must be a date and time such as 2026-11-28T00:00:00+01:00"
            ) from None


async def strict_input(request: Request[Any, Any, Any]) -> None:
    """Validate a JSON body strictly against the type of the handler's ``data``.

    Litestar converts request data leniently (``"30"`` becomes ``30``), decodes any
    content type as JSON and keeps the last of duplicate keys; all of that must be
    refused at the edge, so JSON bodies are checked here before the handler's own
    parsing runs: JSON content type (415), UTF-8 (400), strict types (400), no key
    given twice in one object (400, the two copies could be read differently by
    different parsers). URL-encoded forms are checked for UTF-8 only.
    """
    if request.scope.get("state", {}).get(BODY_TOO_LARGE):
        raise AppError(413, "too_large", "request body is too large")
    _check_query_times(request)
    body_spec = _body_of(request.route_handler)
    if body_spec is None:
        return None
    body = await request.body()
    if isinstance(body_spec, str):
        _check_form(body)
        return None
    if body_spec.optional and not body.strip():
        return None
    if not is_json_media_type(request.content_type[0]):
        raise AppError(415, "unsupported_media_type", "the request body must be sent as application/json")
    try:
        body_spec.decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise AppError(400, "invalid_input", "the request is not valid", [str(exc)]) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        # msgspec reports bytes that are not UTF-8 inside a string as UnicodeDecodeError.
        raise AppError(400, "invalid_input", "the request body is not valid JSON in UTF-8") from None
    try:
        # Bodies are bounded (max_body_bytes); the standard parser reports every object's pairs.
        json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    except _DuplicateKey:
        raise AppError(400, "invalid_input", "the request body gives a key twice in one object") from None
    except (ValueError, RecursionError):
        raise AppError(400, "invalid_input", "the request body is not valid JSON in UTF-8") from None
    return None


# Pages load only their own scripts and styles (no inline code, no third parties, P14);
# camera and microphone only for this origin.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "permissions-policy": "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


_SECURITY_HEADERS = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
_SECURITY_NAMES = frozenset(name for name, _ in _SECURITY_HEADERS)


async def security_headers(message: Message, _: Scope) -> None:
    """``before_send`` hook: every HTTP response gets the security headers, also those
    answered by exception handlers, raw ASGI handlers and forwarded from a region;
    a header the response already sets is kept."""
    if message["type"] != "http.response.start":
        return
    headers = message.get("headers")
    if headers is None:
        message["headers"] = list(_SECURITY_HEADERS)
        return
    present = {bytes(name).lower() for name, _ in headers} & _SECURITY_NAMES
    missing = [header for header in _SECURITY_HEADERS if header[0] not in present]
    if missing:
        message["headers"] = [*headers, *missing]
