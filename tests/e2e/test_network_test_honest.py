"""The connection test says what is true, and says it to the right person.

- A region without relays, whose calls go direct: the test measures that direct path
  (an aiortc peer playing the browser, every candidate), and a failure there is "not
  measured", never "cannot connect".
- A relay that exists but is down: the region service asks it itself (a STUN Binding
  over UDP, TCP); when it does not answer the service either, the result is
  "unavailable" (the service's trouble), not "your network blocks it".
- In Chromium, a visitor of a region whose relays are all down (the US region: media
  nodes, none running) reads plain words with the organisation's name, no region id,
  no protocol names; in English and in Dutch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from piccolo.engine.base import Engine

from konsil.media_nodes.coturn import CoturnConfig, CoturnProcess
from konsil.media_nodes.ice import turn_credentials
from konsil.media_nodes.network_test import reach, service
from konsil.media_nodes.network_test.tables import NetworkTestResult
from konsil.media_nodes.relays import RegionRelays
from konsil.platform.core.region import IceServer, NetworkTests, RegionContext
from konsil.platform.core.settings import RegionSettings, Settings
from tests.conftest import Stack, bare_region, free_port
from tests.e2e.test_network_test_relay import BrowserPeer

pytestmark = pytest.mark.e2e

SECRET = "honest-network-test-secret"


@pytest.fixture(scope="module")
def coturn() -> Iterator[CoturnProcess]:
    relay = CoturnProcess(CoturnConfig.loopback(free_port(), SECRET))
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


@contextlib.contextmanager
def paused(relay: CoturnProcess) -> Iterator[None]:
    """coturn hangs (its process stopped): the kernel still accepts TCP, nobody answers."""
    assert relay.pid is not None
    os.kill(relay.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(relay.pid, signal.SIGCONT)


def turn(port: int, transport: str) -> IceServer:
    username, credential = turn_credentials(SECRET, "nt-honest", 600)
    return IceServer(urls=[f"turn:127.0.0.1:{port}?transport={transport}"], username=username, credential=credential)


def context(region: RegionSettings, mode: str = "services") -> RegionContext:
    ctx = RegionContext.__new__(RegionContext)  # only what the test service reads
    ctx.settings = Settings(mode=mode)  # type: ignore[arg-type]
    ctx.region = region
    ctx.relays = RegionRelays(region, None, region.turn_secret)
    ctx.network_tests = NetworkTests()
    return ctx


def with_relay(port: int) -> RegionSettings:
    urls = [f"turn:127.0.0.1:{port}?transport=udp", f"turn:127.0.0.1:{port}?transport=tcp"]
    return bare_region(ice_servers=urls, turn_secret=SECRET)


OFFER_WITHOUT_RELAY = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "a=candidate:1 1 udp 2130706431 10.0.0.2 50000 typ host\r\n"
)


@pytest.fixture
async def org(region_engine: Engine[Any]) -> AsyncIterator[uuid.UUID]:
    org_id = uuid.uuid4()
    yield org_id
    await NetworkTestResult.delete().where(NetworkTestResult.org_id == org_id).run()


async def test_the_service_asks_the_relay_itself(coturn: CoturnProcess) -> None:
    port = coturn.config.listening_port
    assert await reach.any_answers([turn(port, "udp")])
    assert await reach.any_answers([turn(port, "tcp")])
    closed = free_port()
    assert not await reach.any_answers([turn(closed, "udp")])
    assert not await reach.any_answers([turn(closed, "tcp")])
    with paused(coturn):
        assert not await reach.any_answers([turn(port, "udp")])
        assert not await reach.any_answers([turn(port, "tcp")]), "an accepted connection alone is no answer"
    assert await reach.any_answers([turn(port, "udp"), turn(closed, "udp")]), "one relay answering is enough"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_relay_that_is_down_is_unavailable_not_the_visitors_network(
    coturn: CoturnProcess, org: uuid.UUID, transport: str
) -> None:
    data = service.NetworkTestIn(transport=transport, sdp=OFFER_WITHOUT_RELAY)  # type: ignore[arg-type]
    # The relay answers the service: the visitor's network kept the browser from it.
    up = await service.start(context(with_relay(coturn.config.listening_port)), org, "visitor", data)
    assert up.result is not None and up.result.verdict == "cannot connect"
    assert up.result.reason == "no_relay_candidate"
    # The relay answers nobody: the service says so, and does not blame the network.
    with paused(coturn):
        down = await service.start(context(with_relay(coturn.config.listening_port)), org, "visitor", data)
    assert down.result is not None and down.result.verdict == "unavailable" and down.result.reason == "relay_down"
    assert down.result.advice_keys == ["unavailable"]
    assert down.result.advice == [service.ADVICE["unavailable"]]
    assert "not a problem with your network" in service.ADVICE["unavailable"]
    [row] = await NetworkTestResult.select().where(NetworkTestResult.id == down.id).run()
    assert row["verdict"] == "unavailable" and row["transport"] == transport


@pytest.mark.parametrize("mode,relay_only", [("embedded", True), ("services", False)])
async def test_without_relays_the_test_measures_the_direct_path(org: uuid.UUID, mode: str, relay_only: bool) -> None:
    ctx = context(bare_region(), mode)
    assert service.goes_direct(ctx, relay_only), "calls here go direct, so does the test"
    assert "direct" in (service.no_relay_notice(ctx) or ""), "the operator's log says so"
    browser = BrowserPeer([], relay_only=False)  # every candidate, as a direct call's browser
    try:
        data = service.NetworkTestIn(transport="udp", sdp=await browser.offer(), probe_seconds=1.0, bulk_seconds=1.0)
        started = await service.start(ctx, org, "visitor", data, "direct")
        assert started.sdp is not None and " typ relay" not in started.sdp
        await browser.accept(started.sdp)
        async with asyncio.timeout(30):
            result = await browser.result
    finally:
        await browser.close()
        async with asyncio.timeout(15):  # the service's end closes its peer by itself
            await asyncio.gather(*ctx.network_tests.tasks)
    assert ctx.network_tests.active == 0
    assert result["transport"] == "direct" and result["verdict"] in ("good", "may be unstable"), result
    assert result["rtt_ms"] > 0 and result["throughput_kbps"] > 0
    # No way out at all on the direct path: not measured, never "cannot connect".
    nothing = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    none = await service.start(ctx, org, "visitor", service.NetworkTestIn(transport="udp", sdp=nothing), "direct")
    assert none.result is not None and none.result.verdict == "not measured"
    assert none.result.advice_keys == ["not_measured"] and none.result.transport == "direct"


def test_a_relay_only_organisation_in_services_mode_without_relays_is_not_told_to_go_direct() -> None:
    ctx = context(bare_region(), "services")
    assert not service.goes_direct(ctx, relay_only=True), "its calls cannot go direct"
    assert "cannot connect" in (service.no_relay_notice(ctx) or "")
    assert service.no_relay_notice(context(with_relay(3478))) is None


@pytest.mark.parametrize("lang,locale", [("en", "en-GB"), ("nl", "nl-NL")])
def test_a_visitor_whose_region_has_no_relay_up_reads_plain_words(stack: Stack, lang: str, locale: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, PHONE, SHOTS
    from tests.e2e.test_konsil_up_relay import visit_of

    made = stack.signup("us")  # the US region: media nodes, none running
    base = stack.region_url("us")
    owner = stack.login(base, made["slug"], made["owner"]["email"])
    room = owner.post(f"/api/v1/orgs/{made['slug']}/rooms", json={"slug": stack.unique("r"), "title": "Room"}).json()
    org_name = f"Praxis {made['slug']}"
    _, path, token = visit_of(f"{base}/{made['slug']}/{room['slug']}")
    expected = {
        "en": f"Your video call may not connect right now. This is not a problem with your network. Please keep "
        f"this page open: if the call cannot start, {org_name} will contact you another way, for example by "
        "phone if you gave your number.",
        "nl": f"Uw videogesprek maakt nu mogelijk geen verbinding. Dit ligt niet aan uw netwerk. Houd deze pagina "
        f"open: als het gesprek niet kan beginnen, neemt {org_name} op een andere manier contact met u op, "
        "bijvoorbeeld telefonisch als u uw nummer hebt opgegeven.",
    }[lang]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=base, viewport=PHONE, device_scale_factor=2, locale=locale)
            context.grant_permissions(["camera", "microphone"], origin=base)
            context.add_cookies([{"name": "konsil_visit", "value": token, "domain": "127.0.0.1", "path": path}])
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(path)
            test = page.locator("#network-test")
            page.locator("[data-network-test-run]").click()
            expect(test).to_have_attribute("data-state", "done", timeout=60_000)
            assert test.get_attribute("data-verdict") == "unavailable"
            expect(page.locator("[data-network-test-status]")).to_have_text(expected)
            results = page.locator(".network-result")
            expect(results).to_have_count(1)  # nothing more to measure without a relay
            expect(results.first.locator("h3")).to_contain_text({"en": "Video calls", "nl": "Videogesprekken"}[lang])
            assert page.locator("#network-test .bad").count() == 0, "an amber notice, not a red alarm"
            text = test.inner_text()
            for jargon in ("UDP", "TCP", "TURN", "relay", "region us", "cannot connect", "Cannot connect", "503"):
                assert jargon not in text, (jargon, text)
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.locator("#network-test").scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / f"network-test-unavailable-{lang}.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
