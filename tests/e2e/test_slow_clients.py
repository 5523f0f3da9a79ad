"""Slow and vanishing clients, against real server processes (`konsil serve`) with
short timeouts: half a request head or half a body is answered 408 and the
connection closed, an oversize head 431, and a client that leaves mid-request is
logged as one plain line, with no error and no trace."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from konsil.platform.cli.launcher import wait_healthy
from tests.conftest import services_config, wait_until

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
MAX_HEADER = 8192
# Closing is asserted, not timed: this only keeps a broken server from hanging the test.
GIVE_UP = 30


@pytest.fixture(scope="module")
def servers(
    pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[str, Path]]]:
    """A control plane and an EU region with short timeouts; name → (url, log file)."""
    run_dir = tmp_path_factory.mktemp("slow")
    control_dsn = pg_database("slow_control", "control")
    region_dsn = pg_database("slow_eu", "region")
    timeouts = [
        f"header_timeout_seconds = {HEADER_TIMEOUT}",
        f"body_timeout_seconds = {BODY_TIMEOUT}",
        f"max_header_bytes = {MAX_HEADER}",
    ]
    settings = services_config(run_dir, control_dsn, region_dsn, top_lines=timeouts)
    config = run_dir / "konsil.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    with contextlib.ExitStack() as files:
        for name, what in (("control", ["control"]), ("eu", ["region", "--region", "eu"])):
            logs[name] = run_dir / f"{name}.log"
            out = files.enter_context(logs[name].open("wb"))
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "konsil.platform.cli.main", "serve", *what, "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            urls = {"control": settings.require_control().public_url, "eu": settings.region("eu").public_url}
            wait_healthy(urls, procs)
            yield {name: (urls[name], logs[name]) for name in urls}
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(timeout=15)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=GIVE_UP)
    return sock


def answer_and_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    with sock:
        while chunk := sock.recv(65536):
            received += chunk
    return received


def post_head(path: str, length: int | None, extra: str = "") -> bytes:
    size = f"content-length: {length}\r\n" if length is not None else "transfer-encoding: chunked\r\n"
    return f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{size}{extra}\r\n".encode()


def test_half_sent_requests_are_answered_408_and_closed(servers: dict[str, tuple[str, Path]]) -> None:
    for name, path in (("control", "/api/v1/login-discovery"), ("eu", "/api/v1/orgs/nobody/auth/login")):
        url, _ = servers[name]
        # Many at once, as in the attack run: each is closed, none waits for the others.
        silent = [connect(url) for _ in range(5)]
        half_heads = [connect(url) for _ in range(20)]
        half_bodies = [connect(url) for _ in range(26)]
        for sock in half_heads:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
        for sock in half_bodies:
            sock.sendall(post_head(path, 1000) + b'{"email": "')
        trickle = connect(url)
        trickle.sendall(post_head(path, None))
        started = time.monotonic()
        # A body that trickles on, a chunk now and then, is cut off too.
        while time.monotonic() - started < BODY_TIMEOUT + 1:
            with contextlib.suppress(OSError):
                trickle.sendall(b"1\r\n \r\n")
            time.sleep(0.2)

        for sock in silent:
            assert answer_and_close(sock) == b""  # never said anything: just closed
        for sock in half_heads:
            answer = answer_and_close(sock)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"connection: close" in answer and b'"error":"timeout"' in answer
        for sock in [*half_bodies, trickle]:
            answer = answer_and_close(sock)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"connection: close" in answer and b"the request body did not arrive in time" in answer
        assert time.monotonic() - started < GIVE_UP


def test_oversize_heads_and_bodies_are_refused(servers: dict[str, tuple[str, Path]]) -> None:
    url, _ = servers["control"]
    sock = connect(url)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * MAX_HEADER + b"\r\n\r\n")
    answer = answer_and_close(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    # A chunked body past max_body_bytes (1 MiB) is refused without reading the rest.
    sock = connect(url)
    sock.sendall(post_head("/api/v1/login-discovery", None))
    chunk = b"x" * 65536
    for _ in range(16):
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    time.sleep(0.2)
    sock.sendall(b"1\r\nx\r\n")  # one byte past: more would lie unread and reset the connection
    answer = answer_and_close(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    # A declared length past the limit is refused before any of the body is read.
    sock = connect(url)
    sock.sendall(post_head("/api/v1/login-discovery", 2 * 1024 * 1024))
    answer = answer_and_close(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer


def test_requests_in_time_are_served_on_a_kept_alive_connection(servers: dict[str, tuple[str, Path]]) -> None:
    url, _ = servers["control"]
    with httpx.Client(base_url=url, timeout=GIVE_UP) as client:
        for _ in range(3):
            found = client.post("/api/v1/login-discovery", json={"email": "someone@example.org"})
            assert found.status_code == 200, found.text
            assert client.get("/healthz").status_code == 200
    # A body in pieces, complete within the timeout, is fine.
    sock = connect(url)
    body = b'{"email": "someone@example.org"}'
    sock.sendall(post_head("/api/v1/login-discovery", len(body), "connection: close\r\n"))
    for byte in range(0, len(body), 8):
        time.sleep(0.05)
        sock.sendall(body[byte : byte + 8])
    answer = answer_and_close(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    # The next request on a kept-alive connection has the same deadline for its head.
    sock = connect(url)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /healthz HTTP/1.1\r\nho")
    answer = answer_and_close(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 2, answer
    assert b"HTTP/1.1 408 " in answer, answer


def test_a_client_that_went_away_is_one_plain_log_line(servers: dict[str, tuple[str, Path]]) -> None:
    marker = f"gone-{secrets.token_hex(4)}@example.org"  # must not reach the log either
    for name, path in (
        ("control", "/api/v1/signup"),
        ("control", "/api/v1/login-discovery"),
        ("eu", "/api/v1/orgs/nobody/auth/login"),
    ):
        url, log = servers[name]
        before = log.read_text()
        for _ in range(3):
            sock = connect(url)
            sock.sendall(post_head(path, 1000) + f'{{"email": "{marker}'.encode())
            time.sleep(0.1)
            sock.close()

        def gone_three_times(log: Path = log, before: str = before) -> bool:
            return log.read_text()[len(before) :].count("client went away") >= 3

        wait_until(gone_three_times, "three 'client went away' lines", within=GIVE_UP)
        assert httpx.get(url + "/healthz").status_code == 200
    for name, (_, log) in servers.items():
        text = log.read_text()
        assert "ERROR" not in text and "Traceback" not in text, f"{name}:\n{text}"
        # No client address in any line; the process's own listen address is in its start line only.
        others = [line for line in text.splitlines() if " konsil.start: " not in line]
        assert marker not in text and not [line for line in others if "127.0.0.1" in line], f"{name}:\n{text}"
