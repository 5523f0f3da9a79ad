"""The pre-call network test's probe peer against a real coturn relay (a process of its
own), with aiortc peers forced to relay (docs/architecture.md, real parts in tests).

``BrowserPeer`` plays the visitor's browser exactly as tenants/static/network-test.js
does: the same negotiated channels, echoing probes, sending bulk data when asked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection, RTCSessionDescription

from konsil.media_nodes.ice import turn_credentials
from konsil.media_nodes.network_test import service
from konsil.media_nodes.network_test.measures import Figures, Plan, relay_candidates_only
from konsil.media_nodes.network_test.peer import ProbePeer
from konsil.platform.core.region import IceServer
from tests.conftest import coturn_server

CHUNK = b"\x5a" * 16_384
MAX_BUFFERED = 1_000_000


class BrowserPeer:
    """The visitor's side of the test, relay-only over the given ICE servers (every
    candidate with ``relay_only=False``: a region without relays, whose calls go direct)."""

    def __init__(self, ice_servers: list[dict[str, Any]], relay_only: bool = True) -> None:
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[RTCIceServer(**server) for server in ice_servers],
                iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
            )
        )
        self.probe = self.pc.createDataChannel("probe", ordered=False, maxRetransmits=0, negotiated=True, id=1)
        self.bulk = self.pc.createDataChannel("bulk", negotiated=True, id=2)
        self.result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.sent_bytes = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.probe.on("message", self._echo)
        self.bulk.on("message", self._on_bulk)

    def _echo(self, message: Any) -> None:
        self.probe.send(message)

    def _on_bulk(self, message: Any) -> None:
        if not isinstance(message, str):
            return
        event = json.loads(message)
        if event["type"] == "send":
            task = asyncio.create_task(self._send_bulk(event["seconds"], event["max_bytes"]))
            self._tasks.add(task)
        elif event["type"] == "result" and not self.result.done():
            self.result.set_result(event)

    async def _send_bulk(self, seconds: float, max_bytes: int) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end and self.sent_bytes < max_bytes:
            if self.bulk.bufferedAmount < MAX_BUFFERED:
                self.bulk.send(CHUNK)
                self.sent_bytes += len(CHUNK)
            await asyncio.sleep(0 if self.bulk.bufferedAmount < MAX_BUFFERED else 0.005)
        self.bulk.send(json.dumps({"type": "sent", "bytes": self.sent_bytes}))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


SECRET = "network-test-relay-secret"


@pytest.fixture(scope="module")
def relay_port() -> Iterator[int]:
    with coturn_server(SECRET) as port:
        yield port


def relay_servers(port: int, transport: str) -> list[IceServer]:
    username, credential = turn_credentials(SECRET, "nt-test", 600)
    return [IceServer(urls=[f"turn:127.0.0.1:{port}?transport={transport}"], username=username, credential=credential)]


async def run_pair(servers: list[IceServer], plan: Plan) -> tuple[Figures, BrowserPeer, str]:
    browser = BrowserPeer(msgspec.to_builtins(servers))
    peer = ProbePeer(servers, plan)
    try:
        offer = await browser.offer()
        stripped, relays = relay_candidates_only(offer)
        assert relays >= 1, "the browser's offer carries its relay candidate"
        answer = await peer.answer(stripped)
        await browser.accept(answer)
        figures = await peer.measure()
        return figures, browser, answer
    finally:
        await peer.close()
        await browser.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_probe_peer_measures_a_connection_through_the_relay(relay_port: int, transport: str) -> None:
    servers = relay_servers(relay_port, transport)
    figures, browser, answer = await run_pair(servers, Plan(probe_seconds=1.0, bulk_seconds=1.0, connect_timeout=10))
    assert figures.connected and figures.reason is None, figures
    assert " typ relay" in answer and " typ host" not in answer, "the service peer offers its relay only"
    assert figures.probes_sent >= 15 and figures.probes_answered >= figures.probes_sent * 0.9
    assert figures.rtt_ms is not None and 0 < figures.rtt_ms < 200
    assert figures.jitter_ms is not None and figures.jitter_ms >= 0
    assert figures.loss_percent is not None and figures.loss_percent <= 10
    assert figures.throughput_kbps is not None and figures.throughput_kbps > 100
    assert browser.sent_bytes > 0
    assert service.verdict_of(figures) in ("good", "may be unstable")


async def test_a_browser_that_never_connects_means_cannot_connect(relay_port: int) -> None:
    # The browser goes away after its offer: the service peer's relay has no one to reach.
    browser = BrowserPeer(msgspec.to_builtins(relay_servers(relay_port, "udp")))
    peer = ProbePeer(relay_servers(relay_port, "udp"), Plan(0.5, 0.5, connect_timeout=2))
    try:
        offer, _ = relay_candidates_only(await browser.offer())
        answer = await peer.answer(offer)
        assert " typ relay" in answer
        await browser.close()
        figures = await peer.measure()
    finally:
        await peer.close()
        await browser.close()
    assert not figures.connected and figures.reason == "no_connection"
    assert service.verdict_of(figures) == "cannot connect"
    assert service.advice_keys_for("udp", "cannot connect", figures) == ["usual_blocked", "ask_it_usual"]
    assert "UDP" not in " ".join(service.advice_for("udp", "cannot connect", figures)), "plain words"
