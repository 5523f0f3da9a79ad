"""Live events between a region's replicas over PostgreSQL LISTEN/NOTIFY.

Litestar's asyncpg backend opens a new connection for every published event (about
12 ms here) and its publish worker stops for good after one failed publish. This
one keeps a publishing connection, reconnects once on failure and logs (never
raises) when an event cannot be sent, so one database hiccup does not silence the
region's live events. NOTIFY payloads are limited to 8000 bytes: larger events are
compressed, and an event that still does not fit is dropped with a warning.

Each subscriber (one per socket and channel set) holds the events its socket has not
sent yet. Litestar's queue for them has no bound, so a peer that never reads would
make it grow without end; ``BoundedSubscriber`` caps it in events and bytes, and past
either cap drops the backlog and tells its socket, which is then closed: a slow
consumer is cut off, not buffered (tenants/signaling.py). ``RegionChannels`` makes
such subscribers, and forgets a channel when its last subscriber leaves (Litestar
keeps an empty entry for every channel ever used: a few hundred bytes per call).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import zlib
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import asyncpg
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.asyncpg import AsyncPgChannelsBackend
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.subscriber import BacklogStrategy, Subscriber

log = logging.getLogger("konsil.channels")

NOTIFY_LIMIT = 7900  # PostgreSQL's limit is 8000 bytes, channel name included
_COMPRESSED = "z:"


def pack(data: bytes) -> str | None:
    text = data.decode()
    if len(data) < NOTIFY_LIMIT - 100 and not text.startswith(_COMPRESSED):
        return text
    packed = _COMPRESSED + base64.b64encode(zlib.compress(data, 6)).decode()
    return packed if len(packed) < NOTIFY_LIMIT - 100 else None


def unpack(payload: str) -> bytes:
    if payload.startswith(_COMPRESSED):
        return zlib.decompress(base64.b64decode(payload[len(_COMPRESSED) :]))
    return payload.encode()


class PgNotifyChannels(AsyncPgChannelsBackend):
    def __init__(self, dsn: str) -> None:
        super().__init__(dsn=dsn)
        self._publisher: asyncpg.Connection | None = None
        self._publish_lock = asyncio.Lock()
        self._stopping = False

    async def on_startup(self) -> None:
        await super().on_startup()
        self._listener_conn.add_termination_listener(self._listen_again)

    async def on_shutdown(self) -> None:
        self._stopping = True
        if self._publisher is not None:
            await self._publisher.close()
            self._publisher = None
        await super().on_shutdown()

    async def _listen_again(self, _lost: object = None) -> None:
        """The listening connection closed (the database restarted): listen again on
        every subscribed channel, retrying until the database is back, so open sockets
        get their events again without restarting the region."""
        delay = 0.2
        while not self._stopping:
            try:
                await self._reopen()
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("live events: the database is not back yet (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _reopen(self) -> None:
        async with self._listener_lock:
            if not self._listener_conn.is_closed():
                return
            conn = await self._connect()
            try:
                for channel in self._subscribed_channels:
                    await conn.add_listener(channel, self._listener)
            except BaseException:
                conn.terminate()
                raise
            conn.add_termination_listener(self._listen_again)
            self._listener_conn = conn
        log.warning("live events: listening again after the database connection was lost")

    async def subscribe(self, channels: Iterable[str]) -> None:
        if self._listener_conn.is_closed():  # not listening again yet: try now (raises while it is down)
            await self._reopen()
        await super().subscribe(channels)

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        payload = pack(data)
        if payload is None:
            log.warning("a live event of %d bytes is too large to relay; dropped", len(data))
            return
        async with self._publish_lock:
            for attempt in (1, 2):
                try:
                    if self._publisher is None or self._publisher.is_closed():
                        self._publisher = await self._connect()
                    for channel in channels:
                        await self._publisher.execute("SELECT pg_notify($1, $2)", channel, payload)
                    return
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    self._publisher = None
                    if attempt == 2:
                        log.error("live event not sent (%s); the next one tries again", type(exc).__name__)

    def _listener(self, /, connection: asyncpg.Connection, pid: int, channel: str, payload: object) -> None:
        if isinstance(payload, str) and self._queue is not None:
            try:
                self._queue.put_nowait((channel, unpack(payload)))
            except (ValueError, zlib.error):
                log.warning("an unreadable live event on %s was ignored", channel[:12])


class BoundedSubscriber(Subscriber):
    """A subscriber whose backlog is bounded: at most ``MAX_EVENTS`` events and
    ``MAX_BYTES`` bytes wait for its consumer. Past either bound the backlog is dropped,
    the subscriber takes no more events, its stream ends and ``on_overflow`` is called
    (the socket it feeds is closed: its reader is too slow)."""

    # A call's burst (an offer of up to 20 kB and a few dozen ICE candidates) fits many
    # times over; a peer that does not read for a while does not.
    MAX_EVENTS = 200
    MAX_BYTES = 512 * 1024

    def __init__(
        self, plugin: ChannelsPlugin, max_backlog: int | None = None, backlog_strategy: BacklogStrategy = "backoff"
    ) -> None:
        super().__init__(plugin)  # an unbounded queue: the bounds are kept here, with bytes
        self.backlog_bytes = 0
        self.overflowed = False
        self.channels: list[str] = []  # what it was subscribed to (to unsubscribe just those)
        self.on_overflow: Callable[[], None] | None = None

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def put_nowait(self, item: bytes | None) -> bool:
        if self.overflowed:
            return False
        if item is not None:
            if self._queue.qsize() >= self.MAX_EVENTS or self.backlog_bytes + len(item) > self.MAX_BYTES:
                self._overflow()
                return False
            self.backlog_bytes += len(item)
        return super().put_nowait(item)

    async def put(self, item: bytes | None) -> None:
        if item is None:
            await super().put(None)  # the end of the stream (unsubscribed)
        else:
            self.put_nowait(item)

    def _overflow(self) -> None:
        self.overflowed = True
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
        self.backlog_bytes = 0
        self._queue.put_nowait(None)  # ends iter_events
        if self.on_overflow is not None:
            self.on_overflow()

    async def iter_events(self) -> AsyncGenerator[bytes, None]:
        async for item in super().iter_events():
            self.backlog_bytes -= len(item)
            yield item


class RegionChannels(ChannelsPlugin):
    """The region's channels plugin: bounded subscribers, no entries left behind."""

    def __init__(self, backend: ChannelsBackend, **options: Any) -> None:
        super().__init__(backend, arbitrary_channels_allowed=True, subscriber_class=BoundedSubscriber, **options)

    async def unsubscribe(self, subscriber: Subscriber, channels: str | Iterable[str] | None = None) -> None:
        left = [channels] if isinstance(channels, str) else list(channels if channels is not None else self._channels)
        await super().unsubscribe(subscriber, left)
        for channel in left:
            if not self._channels.get(channel, True):
                del self._channels[channel]
