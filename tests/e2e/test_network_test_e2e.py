"""The pre-call network test against the running stack: a visitor's aiortc peer
(playing the browser, relay-only) reaches the EU region service's probe peer through
the region's coturn relay over UDP and over TCP; the result is stored without any
link to the visit (P10) and members of the organisation read it (P12). The US region
has a media-node registry with no node running: its answer is "unavailable" (the
service's trouble, not the visitor's network)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, fetch, stored_network_test_result, wait_until_async
from tests.e2e.test_network_test_relay import BrowserPeer

pytestmark = pytest.mark.e2e

SHORT = {"probe_seconds": 1.0, "bulk_seconds": 1.0}


class Visit:
    def __init__(self, stack: Stack, region: str = "eu") -> None:
        made = stack.signup(region)
        self.slug = made["slug"]
        self.base = stack.region_url(region)
        self.owner = stack.login(self.base, self.slug, made["owner"]["email"])
        room = self.owner.post(f"/api/v1/orgs/{self.slug}/rooms", json={"slug": stack.unique("r"), "title": "Room"})
        assert room.status_code == 201, room.text
        self.name = f"Vera {uuid.uuid4().hex[:8]}"
        joined = httpx.post(
            f"{self.base}/{self.slug}/{room.json()['slug']}/visits",
            data={"name": self.name, "phone": "+47 12345678", "consent": "yes"},
            follow_redirects=False,
        )
        assert joined.status_code == 303, joined.text
        self.path = joined.headers["location"]
        self.visit_id = self.path.rsplit("/", 1)[1]
        self.token = joined.cookies["konsil_visit"]
        self.test_path = f"{self.path}/network-test"

    def client(self, with_token: bool = True) -> httpx.AsyncClient:
        cookies = {"konsil_visit": self.token} if with_token else {}
        return httpx.AsyncClient(base_url=self.base, cookies=cookies, timeout=30)


@pytest.fixture(scope="module")
def visit(stack: Stack) -> Iterator[Visit]:
    yield Visit(stack)


async def run_test(http: httpx.AsyncClient, path: str, transport: str, **extra: Any) -> dict[str, Any]:
    relays = await http.get(f"{path}/relays", params={"transport": transport})
    assert relays.status_code == 200, relays.text
    servers = relays.json()["ice_servers"]
    assert servers and all(url.endswith(f"?transport={transport}") for s in servers for url in s["urls"])
    browser = BrowserPeer(servers)
    try:
        body = {"transport": transport, "sdp": await browser.offer(), **SHORT, **extra}
        if relays.json()["relay"]:  # a media node of the region's registry: the service's end uses it too
            body["relay"] = relays.json()["relay"]
        started = await http.post(path, json=body)
        assert started.status_code == 201, started.text
        await browser.accept(started.json()["sdp"])
        async with asyncio.timeout(30):
            result = await browser.result
        assert result["id"] == started.json()["id"]
        return result
    finally:
        await browser.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_visitor_tests_the_connection_through_the_relay(stack: Stack, visit: Visit, transport: str) -> None:
    async with visit.client() as http:
        result = await run_test(
            http, visit.test_path, transport, browser={"family": "chrome", "major": 131}, language="de-DE"
        )
    assert result["transport"] == transport and result["runner"] == "visitor"
    assert result["verdict"] in ("good", "may be unstable") and result["advice"]
    assert result["rtt_ms"] > 0 and result["throughput_kbps"] > 0
    assert result["probes_sent"] >= 10 and result["loss_percent"] <= 10
    # Stored as support metadata: nothing in the row leads back to the visit or the visitor.
    [row] = await fetch(stack.dsns["eu"], "SELECT * FROM network_test_result WHERE id = $1", uuid.UUID(result["id"]))
    assert row["browser"] == "chrome" and row["browser_version"] == 131 and row["language"] == "de-DE"
    stored = " ".join(str(value) for value in dict(row).values())
    for secret in (visit.visit_id, visit.token, visit.name, "12345678", "127.0.0.1"):
        assert secret not in stored
    # The organisation's members read it (P12).
    listed = visit.owner.get(f"/api/v1/orgs/{visit.slug}/network-tests")
    assert listed.status_code == 200 and result["id"] in [r["id"] for r in listed.json()]


async def test_a_member_runs_the_test_too(stack: Stack, visit: Visit) -> None:
    async with httpx.AsyncClient(
        base_url=visit.base, cookies=dict(visit.owner.cookies), headers=dict(visit.owner.headers), timeout=30
    ) as http:
        result = await run_test(http, f"/api/v1/orgs/{visit.slug}/network-tests", "udp")
    assert result["runner"] == "member" and result["rtt_ms"] > 0


def test_who_may_run_it(stack: Stack, visit: Visit) -> None:
    body = {"transport": "udp", "sdp": "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"}
    with httpx.Client(base_url=visit.base, timeout=30) as anonymous:
        assert anonymous.get(f"{visit.test_path}/relays?transport=udp").status_code == 401
        assert anonymous.post(visit.test_path, json=body).status_code == 401
        anonymous.cookies.set("konsil_visit", "not-the-token")
        assert anonymous.post(visit.test_path, json=body).status_code == 401
    other = Visit(stack)  # another visit's token does not open this visit's test
    with httpx.Client(base_url=visit.base, cookies={"konsil_visit": other.token}, timeout=30) as http:
        assert http.post(visit.test_path, json=body).status_code == 401
    owner = httpx.Client(base_url=visit.base, cookies=visit.owner.cookies, headers=visit.owner.headers)
    assert owner.post(visit.test_path, json=body).status_code == 403, "members use their own route"
    assert httpx.get(f"{visit.base}/api/v1/orgs/{visit.slug}/network-tests").status_code == 401
    # A member of another organisation sees nothing of this one's results.
    assert other.owner.get(f"/api/v1/orgs/{visit.slug}/network-tests").status_code == 404


async def test_a_result_is_deleted_on_request(stack: Stack, visit: Visit) -> None:
    """P10: support metadata goes after 9 months or on request: the visitor deletes the
    result their browser got, owners and admins any of the organisation's."""
    mine = await stored_network_test_result(stack.dsns["eu"], visit.slug)
    another = await stored_network_test_result(stack.dsns["eu"], visit.slug)
    other = Visit(stack)
    async with visit.client() as http:
        assert (await http.delete(f"{visit.test_path}/{mine}")).status_code == 204
        gone = await http.delete(f"{visit.test_path}/{mine}")
        assert gone.status_code == 404 and mine not in gone.text
        assert (await http.delete(f"{visit.test_path}/not-a-uuid")).status_code in (400, 404)
        members = await stored_network_test_result(stack.dsns["eu"], visit.slug, runner="member")
        assert (await http.delete(f"{visit.test_path}/{members}")).status_code == 404, "a member's result"
    async with other.client() as http:  # another organisation's visitor, with that result's id
        assert (await http.delete(f"{other.test_path}/{another}")).status_code == 404
    async with visit.client(with_token=False) as anonymous:
        assert (await anonymous.delete(f"{visit.test_path}/{another}")).status_code == 401
    assert other.owner.delete(f"/api/v1/orgs/{visit.slug}/network-tests/{another}").status_code == 404
    assert other.owner.delete(f"/api/v1/orgs/{other.slug}/network-tests/{another}").status_code == 404
    assert await fetch(stack.dsns["eu"], "SELECT id FROM network_test_result WHERE id = $1", uuid.UUID(another))

    assert visit.owner.delete(f"/api/v1/orgs/{visit.slug}/network-tests/{another}").status_code == 204
    assert not await fetch(
        stack.dsns["eu"],
        "SELECT id FROM network_test_result WHERE id = ANY($1::uuid[])",
        [uuid.UUID(mine), uuid.UUID(another)],
    )


async def test_bad_input_is_refused_with_400(visit: Visit) -> None:
    offer_ok = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    async with visit.client() as http:
        assert (await http.get(f"{visit.test_path}/relays?transport=sctp")).status_code == 400
        bad_bodies = [
            {"transport": "sctp", "sdp": offer_ok},
            {"transport": "udp", "sdp": "x" * 20_000},
            {"transport": "udp", "sdp": "not an sdp at all"},
            {
                "transport": "udp",
                "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 1 1.2.3.4 5 typ relay",
            },
            {"transport": "udp", "sdp": offer_ok + "a=candidate:1 1 udp 1 198.51.100.1 5 typ relay\r\na=fingerprint:x"},
            {"transport": "udp", "sdp": offer_ok, "visit_id": visit.visit_id},
            {"transport": "udp", "sdp": offer_ok, "probe_seconds": 60},
            {"transport": "udp", "sdp": offer_ok, "language": "Vera Visitor"},
        ]
        for body in bad_bodies:
            response = await http.post(visit.test_path, json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"] in ("invalid_input", "invalid_offer")


async def test_no_healthy_relay_in_the_region_means_unavailable(stack: Stack) -> None:
    us = Visit(stack, "us")  # a media-node registry, and no node running
    offer = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    async with us.client() as http:
        relays = await http.get(f"{us.test_path}/relays?transport=udp")
        started = await http.post(us.test_path, json={"transport": "udp", "sdp": offer})
    for response in (relays, started):
        assert response.status_code == 503, response.text
        body = response.json()
        # The service's relay is down: not "cannot connect", which would blame the visitor's network.
        assert body["verdict"] == "unavailable" and body["advice_keys"] == ["unavailable"]
        assert "not a problem with your network" in body["advice"][0]
        assert "region us" in body["message"], "the message is for support"


async def test_an_offer_without_a_relay_candidate_is_a_cannot_connect_result(visit: Visit) -> None:
    # What a browser sends when its network blocked the relay over this transport.
    offer = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=candidate:1 1 udp 1 10.0.0.2 5 typ host\r\n"
    async with visit.client() as http:
        started = await http.post(visit.test_path, json={"transport": "udp", "sdp": offer})
    assert started.status_code == 201, started.text
    assert started.json()["sdp"] is None
    result = started.json()["result"]
    assert result["verdict"] == "cannot connect" and result["reason"] == "no_relay_candidate"
    assert result["advice_keys"] == ["usual_blocked", "ask_it_usual"]
    assert "UDP" not in " ".join(result["advice"]), "plain words, no protocol names"


async def test_concurrent_tests_are_bounded_with_429(stack: Stack, visit: Visit) -> None:
    async with visit.client() as http:
        relays = (await http.get(f"{visit.test_path}/relays", params={"transport": "udp"})).json()["ice_servers"]
        browsers = [BrowserPeer(relays) for _ in range(5)]
        try:
            offers = [await browser.offer() for browser in browsers]

            async def started_with(offer: str) -> httpx.Response | None:
                """The test started (or refused otherwise), unless all places are taken."""
                started = await http.post(visit.test_path, json={"transport": "udp", "sdp": offer, **SHORT})
                return None if started.status_code == 429 else started

            answers = []
            for offer in offers[:4]:
                # An earlier test's peers may still be closing.
                started = await wait_until_async(
                    functools.partial(started_with, offer), "a free place for a test", within=60, every=0.3
                )
                assert started.status_code == 201, started.text
                answers.append(started.json()["sdp"])
            refused = await http.post(visit.test_path, json={"transport": "udp", "sdp": offers[4], **SHORT})
            assert refused.status_code == 429 and refused.headers["retry-after"]
            # The running tests finish and give their places back.
            for browser, answer in zip(browsers, answers, strict=False):
                await browser.accept(answer)
            async with asyncio.timeout(40):
                results = await asyncio.gather(*(browser.result for browser in browsers[:4]))
            assert all(result["rtt_ms"] for result in results)
            again = await wait_until_async(
                functools.partial(started_with, offers[4]), "a place given back", within=60, every=0.3
            )
            assert again.status_code == 201, again.text
        finally:
            for browser in browsers:
                await browser.close()


def test_the_visitor_page_runs_the_test_in_chromium(stack: Stack) -> None:
    """The device-check step's "Test my connection" in a real browser at phone size."""
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, PHONE, SHOTS

    made = stack.signup("eu")
    base = stack.region_url("eu")
    owner = stack.login(base, made["slug"], made["owner"]["email"])
    room = owner.post(f"/api/v1/orgs/{made['slug']}/rooms", json={"slug": stack.unique("r"), "title": "Room"}).json()
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(
                base_url=base, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="nb-NO"
            )
            context.grant_permissions(["camera", "microphone"], origin=base)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"/{made['slug']}/{room['slug']}?lang=en")  # the browser's own language is nb
            page.locator("#name").fill("Vera Visitor")
            page.locator("#consent").check()
            page.locator("form button[type=submit]").click()
            test = page.locator("#network-test")
            expect(test).to_have_attribute("data-state", "idle")
            # Shorter phases than a visitor's (the API bounds them either way).
            page.evaluate(
                "() => { const t = document.getElementById('network-test');"
                " t.dataset.probeSeconds = '1'; t.dataset.bulkSeconds = '1'; }"
            )
            page.get_by_role("button", name="Test my connection").click()
            expect(test).to_have_attribute("data-state", "done", timeout=60_000)
            verdicts = page.locator(".network-result").evaluate_all("els => els.map(e => e.dataset.verdict)")
            assert len(verdicts) == 2 and all(v in ("good", "may be unstable") for v in verdicts), verdicts
            assert test.get_attribute("data-verdict") in ("good", "may be unstable")
            expect(page.locator(".network-result[data-transport=udp] .figures")).to_contain_text("Delay")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "fits a phone"
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "network-test-phone.png"), full_page=True)
            stored = stored_rows(stack, made["slug"])
            assert [(r["transport"], r["browser"], r["language"]) for r in stored] == [
                ("tcp", "chrome", "nb-NO"),
                ("udp", "chrome", "nb-NO"),
            ]
            # P10: deleted on request, from the same page.
            page.get_by_role("button", name="Delete my test results").click()
            expect(page.locator("[data-network-test-status]")).to_have_text("Your test results were deleted.")
        finally:
            browser.close()
    assert not [e for e in errors if "network-test" in e or "RTCPeerConnection" in e], errors
    assert stored_rows(stack, made["slug"]) == []


def stored_rows(stack: Stack, slug: str) -> list[Any]:
    """The organisation's stored results (read in a thread: Playwright's loop runs here)."""
    query = fetch(
        stack.dsns["eu"],
        "SELECT transport, browser, language FROM network_test_result WHERE org_id = "
        "(SELECT id FROM organisation WHERE slug = $1) ORDER BY transport",
        slug,
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, query).result()
