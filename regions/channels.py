"""Live events between a region's replicas over PostgreSQL LISTEN/NOTIFY.

Litestar's asyncpg backend opens a new connection for every published event (about
12 ms here) and its publish worker stops for good after one failed publish. This
one keeps a publishing connection, reconnects once on failure and logs (never
raises) when an event cannot be sent, so one database hiccup does not silence the
region's live events. NOTIFY payloads are limited to 8000 bytes: larger events are
compressed, and an event that still does not fit is dropped with a warning.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import zlib
from collections.abc import Iterable

import asyncpg
from litestar.channels.backends.asyncpg import AsyncPgChannelsBackend

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
