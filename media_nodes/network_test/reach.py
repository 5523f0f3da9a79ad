"""Does the region's relay answer at all? Asked from the region service when a visitor's
browser found no way through the relay: if the relay does not answer the service either,
the relay is down (the service's trouble, said so), else the visitor's network blocks it.

A STUN Binding request (RFC 8489), which a TURN server answers without credentials:
over UDP a datagram, over TCP (and TLS, ``turns:``) the same on a connection: an
accepted connection alone is not enough (the kernel accepts for a server that hangs).
Plain asyncio, no WebRTC library."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import struct
from urllib.parse import urlsplit

from konsil.platform.core.region import IceServer

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
UDP_TRIES = (0.25, 0.5, 0.75)  # seconds to wait for each retransmission's answer
TCP_TIMEOUT = 1.5


def binding_request() -> tuple[bytes, bytes]:
    """A STUN Binding request and its transaction id."""
    transaction = secrets.token_bytes(12)
    return struct.pack("!HHI", BINDING_REQUEST, 0, MAGIC_COOKIE) + transaction, transaction


def _host_port(url: str) -> tuple[str, int, str]:
    """(host, port, udp|tcp|tls) of a turn:, turns: or stun: URL."""
    scheme, _, rest = url.partition(":")
    rest, _, query = rest.partition("?")
    parts = urlsplit(f"//{rest}")
    host = parts.hostname or ""
    default = 5349 if scheme == "turns" else 3478
    port = parts.port or default
    if scheme == "turns":
        return host, port, "tls"
    return host, port, "tcp" if query == "transport=tcp" else "udp"


class _Answer(asyncio.DatagramProtocol):
    def __init__(self, transaction: bytes) -> None:
        self.transaction = transaction
        self.answered = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) >= 20 and data[8:20] == self.transaction and not self.answered.done():
            self.answered.set_result(None)


async def _udp_answers(host: str, port: int) -> bool:
    request, transaction = binding_request()
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Answer(transaction), remote_addr=(host, port)
        )
    except OSError:
        return False
    try:
        for wait in UDP_TRIES:
            transport.sendto(request)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(protocol.answered), wait)
                return True
        return False
    finally:
        transport.close()


async def _stream_answers(host: str, port: int, tls: bool) -> bool:
    request, transaction = binding_request()
    context = None
    if tls:  # whether it answers, not who it is: the browser checks the certificate
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(TCP_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            writer.write(request)
            await writer.drain()
            header = await reader.readexactly(20)
        return header[8:20] == transaction
    except (OSError, TimeoutError, EOFError, ssl.SSLError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def url_answers(url: str) -> bool:
    host, port, kind = _host_port(url)
    if not host:
        return False
    return await (_udp_answers(host, port) if kind == "udp" else _stream_answers(host, port, kind == "tls"))


async def any_answers(servers: list[IceServer]) -> bool:
    """Whether any TURN URL of ``servers`` answers (all are asked at once)."""
    urls = [url for server in servers for url in server.urls if url.startswith(("turn:", "turns:"))]
    if not urls:
        return False
    answers = await asyncio.gather(*(url_answers(url) for url in urls))
    return any(answers)
