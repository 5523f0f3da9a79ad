"""The HTTP server of the control plane and the region services (uvicorn), guarded
against slow and vanishing clients.

uvicorn has no timeout for reading a request: a client that sends half a request
head, or half a body, holds its connection (and the request's task) for as long as
it likes. Here:

- the request head must be complete within ``header_timeout_seconds`` of its first
  byte (or of the connection, if no byte comes) and within ``max_header_bytes``;
  else the server answers 408 or 431 and closes the connection;
- a request body must be complete within ``body_timeout_seconds`` of the head and
  within ``max_body_bytes``; else 408 or 413, and the connection is closed. The
  application only runs once the whole body is in, so it never sees a half body;
- a client that goes away in the middle of its request is logged as one plain line,
  "client went away", not as an error;
- a WebSocket close does not wait for a peer that does not read: the close frame is
  queued at once, and a peer that has not answered it within a few seconds is
  dropped with whatever it did not read (tenants/signaling.py closes such sockets).

Log lines name no client address and no path: both can identify a person.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import httptools
import msgspec
import uvicorn
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from konsil.platform.core.settings import ServiceSettings
from konsil.platform.core.telemetry.tracing import TraceRequests
from konsil.platform.core.web import BODY_TOO_LARGE, SECURITY_HEADERS, replaying

log = logging.getLogger("konsil.http")

CLIENT_WENT_AWAY = "client went away"

_PHRASES = {408: "Request Timeout", 413: "Content Too Large", 431: "Request Header Fields Too Large"}


def _error_body(code: str, message: str) -> bytes:
    return msgspec.json.encode({"error": code, "message": message})


def _plain_answer(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, written straight to the
    transport (the request never reached the application)."""
    body = _error_body(code, message)
    head = [
        f"HTTP/1.1 {status} {_PHRASES[status]}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _HeadTooLarge(Exception):
    pass


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit for the request
    head. Configured by subclassing (see ``protocol_classes``)."""

    header_timeout: float = 10.0
    max_header_bytes: int = 32 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._head_started = False
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined head: close once the answer before it is out
            return
        if self._head_started:  # a connection that never said anything is just closed
            log.info("client too slow: request head not complete within %s s; closed", self.header_timeout)
            self.transport.write(_plain_answer(408, "timeout", "the request head did not arrive in time"))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                log.info("request head larger than %d bytes; answered 431", self.max_header_bytes)
                self.transport.write(_plain_answer(431, "too_large", "the request head is too large"))
                self.transport.close()
                return
            self._bad_request()
        except httptools.HttpParserError:
            self._bad_request()
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._head_started = True
        if self._head_timer is None:  # the next request on a kept-alive connection
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.max_header_bytes:
            raise _HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._head_bytes > self.max_header_bytes:
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self._head_started = False
        super().on_headers_complete()


class GuardedWebSocketsProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol whose close does not wait for the peer.

    uvicorn waits until the transport is writable before sending anything, a close
    included, so a peer that never reads keeps it waiting forever; and a transport
    closed with unsent data stays open until that data is gone. Here the close frame
    is queued at once, and if the peer has not answered it within
    ``drop_after_seconds`` the connection is dropped with whatever it did not read."""

    drop_after_seconds: float = 5.0

    async def send(self, message: Any) -> None:
        if (
            message["type"] != "websocket.close"
            or not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or self.conn.state is not State.OPEN
        ):
            await super().send(message)
            return
        code = message.get("code", 1000)
        reason = message.get("reason", "") or ""
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.close_sent = True
        self.conn.send_close(code, reason)  # behind what the peer has not read yet, if anything
        self.transport.write(b"".join(self.conn.data_to_send()))
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.drop_after_seconds, self.transport.abort)


class CompleteBodies:
    """ASGI middleware: the application gets a request only with its whole body.

    The body must arrive within ``body_timeout`` seconds and ``max_body`` bytes, else
    the answer is 408 or 413 and the connection is closed. A client that leaves before
    its body is complete is logged as going away (one line, no trace)."""

    def __init__(self, app: ASGIApp, body_timeout: float, max_body: int) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _declared_length(scope["headers"]) if scope["type"] == ScopeType.HTTP else 0
        if declared == 0:
            await self.app(scope, receive, send)
            return
        if declared > self.max_body:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message: Any = await receive()
                    if message["type"] == "http.disconnect":
                        log.info(CLIENT_WENT_AWAY)
                        return
                    chunk: bytes = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        await self._too_large(scope, receive, send)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            log.info("client too slow: request body not complete within %s s; answered 408", self.body_timeout)
            await _answer_and_close(send, 408, "timeout", "the request body did not arrive in time")
            return
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        """413, and the connection is closed (the rest of the body is not read). A
        browser's form post gets the app's error page, in the person's language: the
        app is called with an empty body and the request marked, and refuses it (see
        ``platform.core.web.strict_input``). Anything else gets the JSON error."""
        if not _from_a_page(scope):
            await _answer_and_close(send, 413, "too_large", "request body is too large")
            return
        scope["state"] = {**scope.get("state", {}), BODY_TOO_LARGE: True}
        scope["headers"] = [
            (name, value) for name, value in scope["headers"] if name not in (b"content-length", b"transfer-encoding")
        ]

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, replaying(b"", receive), closing)


def _from_a_page(scope: Scope) -> bool:
    """A browser sending a page's form (as ``platform.pages.rendering.wants_html`` decides
    who gets a page): not the API, not an internal call, and it accepts HTML."""
    path: str = scope.get("path", "")
    if path.startswith(("/api/", "/internal/", "/ops/", "/schema", "/.well-known/")):
        return False
    accept = b",".join(value for name, value in scope["headers"] if name == b"accept")
    return b"text/html" in accept


def _declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The request's Content-Length; -1 for a chunked body (length unknown); 0 for none."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.strip().isdigit() else -1  # uvicorn refuses a bad one first
        if name == b"transfer-encoding":
            return -1
    return 0


async def _answer_and_close(send: Send, status: int, code: str, message: str) -> None:
    body = _error_body(code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is not read
        *((name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()),
    ]
    start: Any = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: Any = {"type": "http.response.body", "body": body}
    await send(end)


def protocol_classes(settings: ServiceSettings) -> tuple[type[HttpToolsProtocol], type[WebSocketsSansIOProtocol]]:
    """The HTTP and WebSocket protocols, configured from the settings."""
    http = type(
        "KonsilHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout": settings.header_timeout_seconds, "max_header_bytes": settings.max_header_bytes},
    )
    return http, GuardedWebSocketsProtocol


def server_config(app: ASGIApp, settings: ServiceSettings, listen: str) -> uvicorn.Config:
    host, _, port = listen.rpartition(":")
    http, ws = protocol_classes(settings)
    return uvicorn.Config(
        # A server span per request (a no-op pass-through while telemetry is off).
        TraceRequests(CompleteBodies(app, settings.body_timeout_seconds, settings.max_body_bytes)),
        host=host.strip("[]"),
        port=int(port),
        http=http,
        ws=ws,
        log_level="warning",
        # No access log: request lines are not needed and logs must stay free of personal data.
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


def serve(app: ASGIApp, settings: ServiceSettings, listen: str) -> None:
    """Run ``app`` on ``listen`` (``host:port``) until stopped."""
    # Slow and vanishing clients are logged at INFO: expected now and then, never an error.
    log.setLevel(logging.INFO)
    uvicorn.Server(server_config(app, settings, listen)).run()
