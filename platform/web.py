"""Web plumbing shared by the control plane and the region services."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.logging.config import LoggingConfig
from litestar.types import ASGIApp, Receive, Scope, Send

from konsil.platform.errors import AppError
from konsil.platform.signing import SIGNATURE_HEADER, SignatureError, Verifier

log = logging.getLogger("konsil.web")

# Warnings and errors only, and no exception traces from request handling: messages
# may carry request values, and logs must stay free of personal data.
LOGGING = LoggingConfig(
    root={"level": "WARNING", "handlers": ["queue_listener"]},
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
        if scope["type"] != "http":
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
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@get("/healthz", opt={"public": True}, include_in_schema=False)
async def healthz() -> dict[str, Any]:
    return {"ok": True}


_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


async def strict_json_body(request: Request[Any, Any, Any]) -> None:
    """Validate a JSON body strictly against the handler's msgspec Struct.

    Litestar converts request data leniently (``"30"`` becomes ``30``); wrong types
    must be refused at the edge, so JSON bodies are checked with ``strict=True``
    before the handler's own parsing runs.
    """
    field = request.route_handler.parsed_fn_signature.parameters.get("data")
    annotation = field.annotation if field is not None else None
    if not (isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)):
        return None
    if request.content_type[0] not in ("application/json", ""):
        return None
    decoder = _decoders.get(annotation)
    if decoder is None:
        decoder = _decoders[annotation] = msgspec.json.Decoder(annotation, strict=True)
    try:
        decoder.decode(await request.body())
    except msgspec.ValidationError as exc:
        raise AppError(400, "invalid_input", "the request is not valid", [str(exc)]) from None
    except msgspec.DecodeError:
        raise AppError(400, "invalid_input", "the request body is not valid JSON") from None
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


async def security_headers(response: Response[Any]) -> Response[Any]:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
