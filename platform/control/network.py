"""The gateway pool's network backend: httpcore's anyio backend with a cheaper idle check.

Before every forwarded request httpcore asks each idle pooled connection whether the
region closed it (``get_extra_info("is_readable")``). The anyio stream answers by
rebuilding its table of socket attributes each time, about a tenth of the gateway's
CPU per request (bench/gateway_vs_direct.py); here the socket is looked up once per
connection. Everything else (reads, writes, timeouts, TLS, errors) is anyio's.
"""

from __future__ import annotations

import select
import socket
import ssl
import typing

import httpcore

_UNSET: typing.Any = object()


def _is_readable(sock: socket.socket | None) -> bool:
    """Whether a socket has data or EOF waiting (on an idle connection: it was closed)."""
    if sock is None or sock.fileno() == -1:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket: typing.Any = _UNSET

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 - httpcore interface
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 - httpcore interface
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        return await self._stream.start_tls(ssl_context, server_hostname, timeout)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            if self._socket is _UNSET:
                self._socket = self._stream.get_extra_info("socket")
            return _is_readable(self._socket)
        return self._stream.get_extra_info(info)


class GatewayNetwork(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore interface
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._backend.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)
