"""The gateway pool's network backend: a pooled connection the region closed is noticed
(and replaced) before a request is sent on it; a live one is reused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from konsil.platform.control.context import new_gateway_pool
from konsil.platform.control.network import GatewayNetwork

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


class Region:
    """A loopback HTTP/1.1 peer that answers every request with 200 and can hang up."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(RESPONSE)
            await writer.drain()

    def hang_up(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()


@pytest.fixture
async def region() -> AsyncIterator[tuple[Region, int]]:
    peer = Region()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await peer.serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield peer, server.sockets[0].getsockname()[1]
    peer.hang_up()
    server.close()


async def test_an_idle_connection_reads_as_closed_once_the_region_hangs_up(region: tuple[Region, int]) -> None:
    peer, port = region
    stream = await GatewayNetwork().connect_tcp("127.0.0.1", port)
    await asyncio.sleep(0.05)
    assert stream.get_extra_info("is_readable") is False
    assert stream.get_extra_info("socket") is not None
    peer.hang_up()
    await asyncio.sleep(0.05)
    assert stream.get_extra_info("is_readable") is True
    await stream.aclose()


async def test_the_pool_reuses_live_connections_and_replaces_closed_ones(region: tuple[Region, int]) -> None:
    peer, port = region
    url = f"http://127.0.0.1:{port}/api/v1/orgs/x/rooms"
    async with new_gateway_pool() as pool:
        for _ in range(3):
            assert (await pool.request("GET", url)).status == 200
        assert peer.connections == 1, "kept alive"
        peer.hang_up()
        await asyncio.sleep(0.05)
        answer = await pool.request("GET", url)  # not sent on the closed connection
        assert answer.status == 200 and answer.content == b"ok"
        assert peer.connections == 2
