"""The gateway's client to the regions against a loopback HTTP/1.1 peer: answers with a
length, chunked or ending with the connection; 1xx answers; a region that hangs up
(idle or mid-answer), says too much, or says nothing in time; keep-alive reuse."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import pytest

from konsil.platform.control import network
from konsil.platform.control.network import Answer, Origin, RegionPool, RegionTimeout, RegionUnavailable
from konsil.platform.core.signing import NONCE_HEADER, RequestSigner, Verifier
from tests.conftest import wait_until_async

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"

# What the peer answers to one request: bytes to write, or a callable that takes
# the writer and does something else (write in parts, hang up, stay silent).
Reply = bytes | Callable[[asyncio.StreamWriter], object]


class Region:
    """A loopback HTTP/1.1 peer answering each request with the next scripted reply
    (then ``OK``), recording the requests it read."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.replies: list[Reply] = []
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head)
            body = await reader.readexactly(int(length.group(1))) if length else b""
            self.requests.append(head + body)
            reply = self.replies.pop(0) if self.replies else OK
            if isinstance(reply, bytes):
                writer.write(reply)
            else:
                outcome = reply(writer)
                if asyncio.iscoroutine(outcome):
                    await outcome
            await writer.drain()

    def hang_up(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()


@pytest.fixture
async def region() -> AsyncIterator[tuple[Region, Origin]]:
    peer = Region()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await peer.serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield peer, Origin(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    peer.hang_up()
    server.close()


def head(method: str = "GET", path: str = "/api/v1/orgs/x/rooms", body: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: region\r\ncontent-length: {len(body)}\r\n\r\n".encode()


async def fetch(pool: RegionPool, origin: Origin, method: str = "GET", body: bytes = b"") -> tuple[Answer, bytes]:
    answer = await pool.request(origin, head(method, body=body), body, head_request=method == "HEAD")
    try:
        parts = []
        while chunk := await answer.read_body():
            parts.append(chunk)
        return answer, b"".join(parts)
    finally:
        pool.release(answer)


async def test_the_pool_reuses_live_connections_and_replaces_closed_ones(region: tuple[Region, Origin]) -> None:
    peer, origin = region
    pool = RegionPool()
    for _ in range(3):
        answer, body = await fetch(pool, origin)
        assert (answer.status, body) == (200, b"ok")
    assert peer.connections == 1, "kept alive"
    peer.hang_up()
    kept = answer
    await wait_until_async(lambda: kept.lost, "the pool to see the region hang up", within=30, every=0.01)
    answer, body = await fetch(pool, origin)  # not sent on the closed connection
    assert (answer.status, body) == (200, b"ok")
    assert peer.connections == 2
    await pool.aclose()


async def test_a_connection_idle_longer_than_the_region_keeps_it_is_not_reused(
    region: tuple[Region, Origin],
) -> None:
    peer, origin = region
    pool = RegionPool(idle_seconds=0.05)
    await fetch(pool, origin)
    await asyncio.sleep(0.1)  # idle past its limit (the pool looks at the age when it reuses one)
    _, body = await fetch(pool, origin)
    assert body == b"ok" and peer.connections == 2
    await pool.aclose()


async def test_request_head_and_body_reach_the_region_as_sent(region: tuple[Region, Origin]) -> None:
    peer, origin = region
    pool = RegionPool()
    big = bytes(range(256)) * 1024  # written in two parts
    for body in (b'{"a": 1}', big):
        answer, _ = await fetch(pool, origin, "POST", body)
        assert answer.status == 200
        assert peer.requests[-1] == head("POST", body=body) + body
    assert peer.connections == 1
    await pool.aclose()


async def test_chunked_answers_stream_in_parts_and_keep_the_connection(region: tuple[Region, Origin]) -> None:
    peer, origin = region
    released = asyncio.Event()

    async def in_parts(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await released.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    peer.replies = [in_parts]
    pool = RegionPool()
    answer = await pool.request(origin, head(), b"")
    assert answer.status == 200 and (b"transfer-encoding", b"chunked") in answer.headers
    assert await answer.read_body() == b"first"
    released.set()
    assert await answer.read_body() == b"second"
    assert await answer.read_body() == b""
    pool.release(answer)
    assert (await fetch(pool, origin))[1] == b"ok" and peer.connections == 1
    await pool.aclose()


async def test_an_answer_ending_with_the_connection_is_whole_and_the_connection_is_not_reused(
    region: tuple[Region, Origin],
) -> None:
    peer, origin = region

    def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
        writer.close()

    peer.replies = [until_close]
    pool = RegionPool()
    answer, body = await fetch(pool, origin)
    assert (answer.status, body) == (200, b"all of it")
    assert (await fetch(pool, origin))[1] == b"ok" and peer.connections == 2
    await pool.aclose()


async def test_an_answer_cut_off_mid_body_is_an_error_not_a_short_body(region: tuple[Region, Origin]) -> None:
    peer, origin = region

    def cut_off(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly some")
        writer.close()

    peer.replies = [cut_off]
    pool = RegionPool()
    with pytest.raises(RegionUnavailable, match="closed"):
        await fetch(pool, origin)
    assert (await fetch(pool, origin))[1] == b"ok" and peer.connections == 2
    await pool.aclose()


async def test_informational_answers_are_skipped(region: tuple[Region, Origin]) -> None:
    peer, origin = region
    peer.replies = [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\nmade"]
    pool = RegionPool()
    answer, body = await fetch(pool, origin, "POST", b"{}")
    assert (answer.status, body) == (201, b"made")
    assert (await fetch(pool, origin))[1] == b"ok" and peer.connections == 1
    await pool.aclose()


async def test_a_head_answer_ends_after_its_head(region: tuple[Region, Origin]) -> None:
    peer, origin = region
    peer.replies = [b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"]
    pool = RegionPool()
    answer, body = await fetch(pool, origin, "HEAD")
    assert (answer.status, body) == (200, b"")
    assert (b"content-length", b"1234") in answer.headers
    assert (await fetch(pool, origin))[1] == b"ok"
    await pool.aclose()


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 200_000 + b"\r\n\r\n", "oversized head"),
        (b"NOT HTTP AT ALL\r\n\r\n", "malformed"),
        (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n", "switched"),
        (OK + b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", None),  # an answer too many
    ],
)
async def test_a_region_that_says_too_much_or_nonsense_loses_the_connection(
    region: tuple[Region, Origin], reply: bytes, reason: str | None
) -> None:
    peer, origin = region
    peer.replies = [reply]
    pool = RegionPool()
    if reason is None:
        _, body = await fetch(pool, origin)
        assert body == b"ok", "the first answer was whole"
    else:
        with pytest.raises(RegionUnavailable, match=reason):
            await fetch(pool, origin)
    assert (await fetch(pool, origin))[1] == b"ok" and peer.connections == 2
    await pool.aclose()


async def test_a_silent_region_times_out_and_its_connection_is_dropped(
    region: tuple[Region, Origin], monkeypatch: pytest.MonkeyPatch
) -> None:
    peer, origin = region
    monkeypatch.setattr(network, "READ_SECONDS", 0.1)
    peer.replies = [lambda writer: None]
    pool = RegionPool()
    with pytest.raises(RegionTimeout):
        await fetch(pool, origin)
    assert (await fetch(pool, origin))[1] == b"ok" and peer.connections == 2
    await pool.aclose()


async def test_requests_beyond_the_connection_limit_wait_for_a_free_one(
    region: tuple[Region, Origin], monkeypatch: pytest.MonkeyPatch
) -> None:
    peer, origin = region
    monkeypatch.setattr(network, "POOL_SECONDS", 0.2)
    pool = RegionPool(max_connections=1)
    held = await pool.request(origin, head(), b"")
    with pytest.raises(RegionTimeout, match="no free connection"):
        await pool.request(origin, head(), b"")
    waiting = asyncio.create_task(fetch(pool, origin))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert await held.read_body() == b"ok"
    pool.release(held)
    assert (await waiting)[1] == b"ok" and peer.connections == 1
    await pool.aclose()


async def test_a_region_that_is_down_is_unavailable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(RegionUnavailable, match="connecting"):
        await RegionPool().request(Origin(f"http://127.0.0.1:{port}"), head(), b"")


def test_region_addresses() -> None:
    plain = Origin("http://eu.internal:8001")
    assert (plain.host, plain.port, plain.prefix, plain.ssl) == ("eu.internal", 8001, b"", None)
    tls = Origin("https://eu.example/konsil/")
    assert (tls.port, tls.prefix) == (443, b"/konsil") and tls.ssl is not None
    with pytest.raises(ValueError):
        Origin("ftp://eu.example")


def test_the_gateway_signature_lines_are_accepted_once_by_the_region() -> None:
    verifier = Verifier({"control": "s3cret"}, window_seconds=60)
    lines = RequestSigner("s3cret", "control").header_lines("POST", "/api/v1/orgs/x/rooms?a=1", b"{}")
    headers = dict(line.split(": ", 1) for line in lines.decode().split("\r\n") if line)
    assert verifier.verify("POST", "/api/v1/orgs/x/rooms?a=1", b"{}", headers) == "control"
    with pytest.raises(Exception, match="replayed"):
        verifier.verify("POST", "/api/v1/orgs/x/rooms?a=1", b"{}", headers)
    again = RequestSigner("s3cret", "control").header_lines("POST", "/api/v1/orgs/x/rooms?a=1", b"{}")
    assert again != lines and NONCE_HEADER in again.decode()


async def test_a_large_answer_pauses_the_region_until_the_client_reads(region: tuple[Region, Origin]) -> None:
    peer, origin = region
    body = bytes(range(256)) * 8192  # 2 MiB
    peer.replies = [b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body]
    pool = RegionPool()
    answer = await pool.request(origin, head(), b"")
    # A slow client (nothing read yet): the pool stops reading instead of buffering it all.
    await wait_until_async(lambda: answer._paused, "the pool to pause reading", within=30, every=0.01)
    assert answer._buffered < len(body)
    parts = []
    while chunk := await answer.read_body():
        parts.append(chunk)
    assert b"".join(parts) == body
    pool.release(answer)
    assert (await fetch(pool, origin))[1] == b"ok" and peer.connections == 1
    await pool.aclose()


async def test_a_region_speaking_on_an_idle_connection_loses_it(region: tuple[Region, Origin]) -> None:
    peer, origin = region
    pool = RegionPool()
    kept, _ = await fetch(pool, origin)
    peer.writers[0].write(OK)  # an answer nobody asked for
    await wait_until_async(lambda: kept.lost, "the pool to drop the connection", within=30, every=0.01)
    assert (await fetch(pool, origin))[1] == b"ok" and peer.connections == 2
    await pool.aclose()
