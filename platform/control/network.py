"""The gateway's client to the regions: HTTP/1.1 over pooled keep-alive connections,
parsed by llhttp (httptools, the C parser uvicorn uses) on asyncio protocols.

It replaced httpcore, whose pure-Python h11, anyio timeout scopes and idle-connection
polls were about half of the control plane's CPU per forwarded request
(bench/gateway_vs_direct.py). What it handles: answers with a length, chunked or
ending with the connection; informational (1xx) answers before the final one; a
region that closes an idle connection (noticed by the event loop, the connection
leaves the pool); a stale pooled connection (a request goes out only on an open one,
else on a fresh one: never sent twice); connect, read and pool timeouts; response
heads bounded as httpcore bounded them; reading paused while the client is slower
than the region.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import typing
from urllib.parse import urlsplit

import httptools

CONNECT_SECONDS = 3.0
READ_SECONDS = 15.0  # for the answer's head, and between parts of its body
POOL_SECONDS = 15.0  # waiting for a free connection when all are busy
MAX_HEAD_BYTES = 100 * 1024  # as httpcore allowed h11
# The region service (uvicorn) closes connections idle for 5 s: reuse one only well
# before that, so a request rarely meets a connection the region is just closing.
IDLE_SECONDS = 4.0
_PAUSE_AT = 256 * 1024  # body bytes buffered for a slow client: stop reading from the region
_RESUME_AT = 64 * 1024


class RegionUnavailable(Exception):
    """The region could not be reached or broke off its answer (the text names no data)."""


class RegionTimeout(RegionUnavailable):
    """The region (or a free connection to it) did not come in time."""


class Origin:
    """Where a region is reached: scheme, host and port, and the path prefix of its URL."""

    __slots__ = ("host", "key", "port", "prefix", "ssl")

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a region URL needs http or https and a host")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/").encode("ascii")
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if parts.scheme == "https" else None
        self.key = (parts.scheme, self.host, self.port)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(RegionTimeout("region did not answer in time"))


class Answer(asyncio.Protocol):
    """One keep-alive connection to a region, and the answer being read on it."""

    def __init__(self, pool: RegionPool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._begin(False)

    def _begin(self, head_request: bool) -> None:
        self.expecting = False  # a request was sent and its final answer has not ended
        self.head_request = head_request
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self.error: RegionUnavailable | None = None

    # -- sending -----------------------------------------------------------------

    def send(self, head: bytes, body: bytes, head_request: bool) -> None:
        """Write one request; the answer is read with ``read_head`` and ``read_body``."""
        assert self.transport is not None
        self._begin(head_request)
        self.expecting = True
        if len(body) <= 65536:
            self.transport.write(head + body)  # one system call for the usual small request
        else:
            self.transport.writelines((head, body))

    # -- reading (the gateway's side) ----------------------------------------------

    async def read_head(self) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def read_body(self) -> bytes:
        """All body bytes buffered so far, waiting for some if there are none; b"" at the end."""
        while True:
            if self.chunks:
                chunk = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
                self.chunks.clear()
                self._buffered = 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return chunk
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            await self._wait()

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(READ_SECONDS, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.lost and self.error is None

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def _break(self, error: RegionUnavailable) -> None:
        """Never reuse this connection; fail the answer unless it was already whole."""
        self.keep_alive = False
        if not self.complete and self.error is None:
            self.error = error
        self.close()
        self._wake()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.expecting:  # spoken out of turn (or after a HEAD answer): drop the connection
            self._break(RegionUnavailable("region sent data outside an answer"))
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            reason = exc.__context__  # what a callback below refused, if one did
            if not isinstance(reason, RegionUnavailable):
                reason = RegionUnavailable(f"region answered malformed HTTP ({type(exc).__name__})")
            self._break(reason)
            return
        self._wake()

    def eof_received(self) -> bool:
        if self.expecting and self.head_done and not self.complete and self._ends_with_connection():
            self.complete = True  # a body delimited by the end of the connection
            self.expecting = False
        self._break(RegionUnavailable("region closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.keep_alive = False
        if self.expecting and not self.complete and self.error is None:
            self.error = RegionUnavailable("region closed the connection")
        self.pool.forget(self)
        self._wake()

    def _ends_with_connection(self) -> bool:
        if self.status in (204, 304):
            return False
        return not any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers)

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self.expecting:
            raise RegionUnavailable("region sent an answer nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            raise RegionUnavailable("region answered with an oversized head")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            if status == 101:
                raise RegionUnavailable("region switched protocols unasked")
            self.headers = []  # informational (100 Continue, 103 Early Hints): the final answer follows
            self._head_bytes = 0
            return
        self.status = status
        self.head_done = True
        if self.head_request:
            # llhttp would wait for the body a HEAD answer announces but never sends:
            # the answer ends here and the connection is not reused.
            self.complete = True
            self.expecting = False

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.head_done and not self.complete:
            self.complete = True
            self.expecting = False
            self.keep_alive = self.parser.should_keep_alive()


class RegionPool:
    """Keep-alive connections per region. At most ``max_connections`` requests are in
    flight at once (more wait up to POOL_SECONDS); at most ``max_idle`` connections
    are kept open between requests, the most recently used first."""

    def __init__(self, max_connections: int = 200, max_idle: int = 64, idle_seconds: float = IDLE_SECONDS) -> None:
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, str, int], list[Answer]] = {}
        self._idle_count = 0
        self.connections_made = 0
        self._closed = False

    async def request(self, origin: Origin, head: bytes, body: bytes, head_request: bool = False) -> Answer:
        """Send a request (``head`` is the request line and headers, ending in a blank
        line) and wait for the answer's head. The caller reads the body from the answer
        and must hand it back with ``release``, also after an error."""
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), POOL_SECONDS)
            except TimeoutError:
                raise RegionTimeout("no free connection to the region") from None
        else:
            await self._slots.acquire()
        try:
            answer = self._idle_connection(origin) or await self._connect(origin)
            answer.send(head, body, head_request)
        except BaseException:
            self._slots.release()
            raise
        try:
            await answer.read_head()
        except BaseException:
            self.release(answer)
            raise
        return answer

    def release(self, answer: Answer) -> None:
        """Back into the pool when whole and reusable, else closed."""
        self._slots.release()
        if not answer.reusable or self._closed or self._idle_count >= self.max_idle:
            answer.close()
            return
        answer.expecting = False
        answer.idle_since = time.monotonic()
        self._idle.setdefault(answer.origin.key, []).append(answer)
        self._idle_count += 1

    def forget(self, answer: Answer) -> None:
        """A connection closed: out of the idle list if it was idle."""
        idle = self._idle.get(answer.origin.key)
        if idle and answer in idle:
            idle.remove(answer)
            self._idle_count -= 1

    def _idle_connection(self, origin: Origin) -> Answer | None:
        idle = self._idle.get(origin.key)
        if not idle:
            return None
        oldest = time.monotonic() - self.idle_seconds
        while idle:
            answer = idle.pop()
            self._idle_count -= 1
            transport = answer.transport
            if answer.lost or transport is None or transport.is_closing() or answer.idle_since < oldest:
                answer.close()  # closed by the region, or about to be: never send on it
                continue
            return answer
        return None

    async def _connect(self, origin: Origin) -> Answer:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Answer(self, origin),
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.host if origin.ssl else None,
                ),
                CONNECT_SECONDS,
            )
        except TimeoutError:
            raise RegionTimeout("connecting to the region timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise RegionUnavailable(f"connecting to the region failed ({type(exc).__name__})") from None
        self.connections_made += 1
        return protocol

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for answer in idle:
                answer.close()
            idle.clear()
        self._idle_count = 0
