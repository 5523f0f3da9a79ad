"""A whole consultation in real browsers (Debian Chromium driven by Playwright, with
fake camera and microphone) against the running EU region: a visitor reads the
notice, fills the form, checks their devices and waits; the expert logs in, sees
them on the dashboard, admits them, and both talk through the region's coturn
relay; the expert ends the call; the dashboard shows its duration and the call's
telemetry is stored (P1, P2, P3, P4, P5, P14).

Screenshots of every step go to ``test-output/browser/``."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Response, ViewportSize, expect, sync_playwright

from tests.conftest import Stack, fetch, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}

# Test-only: keep a handle on every RTCPeerConnection a page makes, to read its stats.
PEER_SPY = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  window.__peers = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__peers.push(this); }
  };
})();
"""

# Frames decoded from the peer's video, and the selected candidate pair's types.
MEDIA_STATS = """
async () => {
  const pc = (window.__peers || []).filter((p) => p.connectionState === 'connected').pop();
  if (!pc) return null;
  const stats = await pc.getStats();
  const byId = new Map();
  let pairId = null;
  stats.forEach((s) => {
    byId.set(s.id, s);
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  let frames = 0;
  stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0; });
  const pair = pairId ? byId.get(pairId) : null;
  const local = pair ? byId.get(pair.localCandidateId) : null;
  const remote = pair ? byId.get(pair.remoteCandidateId) : null;
  return {
    frames,
    local: local ? local.candidateType : null,
    remote: remote ? remote.candidateType : null,
    policy: pc.getConfiguration().iceTransportPolicy,
  };
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Shots:
    def __init__(self) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        for old in SHOTS.glob("*.png"):
            old.unlink()
        self.count = 0

    def __call__(self, page: Page, step: str) -> None:
        self.count += 1
        page.screenshot(path=SHOTS / f"{self.count:02d}-{step}.png", full_page=True)


def new_page(browser: Browser, base: str, errors: list[str], **options: Any) -> Page:
    context = browser.new_context(base_url=base, **options)
    context.grant_permissions(["camera", "microphone"], origin=base)
    context.add_init_script(PEER_SPY)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))

    def broken_asset(response: Response) -> None:
        if response.status >= 400 and "/static/" in response.url:
            errors.append(f"{response.status} {response.url}")

    page.on("response", broken_asset)
    return page


def media_stats(page: Page) -> dict[str, Any]:
    found = page.evaluate(MEDIA_STATS)
    assert found is not None, "no connected peer connection"
    return dict(found)


def wait_for_frames(pages: dict[str, Page], more_than: int = 15, timeout: float = 20) -> dict[str, dict[str, Any]]:
    """Poll until each page decoded more video frames from its peer than at the start."""
    start = {name: media_stats(page)["frames"] for name, page in pages.items()}

    def flowing() -> dict[str, dict[str, Any]] | None:
        now = {name: media_stats(page) for name, page in pages.items()}
        return now if all(now[name]["frames"] > start[name] + more_than for name in pages) else None

    found: dict[str, dict[str, Any]] = wait_until(
        flowing, f"video frames to flow both ways (from {start})", within=timeout, every=0.25
    )
    return found


def telemetry(stack: Stack, call_id: str) -> list[dict[str, Any]]:
    query = fetch(
        stack.dsns["eu"],
        "SELECT participant, kind, data FROM call_telemetry WHERE call_id = $1 ORDER BY at",
        uuid.UUID(call_id),
    )
    # Playwright's sync API runs an event loop in this thread: query from another one.
    with ThreadPoolExecutor(1) as pool:
        rows = pool.submit(asyncio.run, query).result()
    return [{"participant": r["participant"], "kind": r["kind"], **json.loads(r["data"])} for r in rows]


def org_with_room(stack: Stack) -> tuple[str, dict[str, Any], str]:
    """A new EU organisation with an expert who opened a room: (slug, expert, join path)."""
    base = stack.region_url("eu")
    made = stack.signup("eu")
    slug = made["slug"]
    owner = stack.login(base, slug, made["owner"]["email"])
    expert = stack.add_member(owner, slug, "expert")
    as_expert = stack.login(base, slug, expert["email"])
    created = as_expert.post(
        f"/api/v1/orgs/{slug}/rooms", json={"slug": "consultation", "title": "Consultation with Dr. Berg"}
    )
    assert created.status_code == 201, created.text
    return slug, expert, created.json()["join_path"]


def log_in(page: Page, slug: str, member: dict[str, Any], shot: Shots | None = None) -> None:
    page.goto("/login")
    page.get_by_label("E-mail address").fill(member["email"])
    page.get_by_label("Password").fill(member["password"])
    if shot:
        shot(page, "login")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**/{slug}/portal")
    expect(page.locator("#live")).to_have_text("live")


def arrive(page: Page, join_path: str, name: str) -> None:
    """Fill the join form and go through the device check into the waiting room."""
    page.goto(join_path)
    page.get_by_label("Your name").fill(name)
    page.get_by_label("I agree").check()
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#check-connection")).to_contain_text("Connected")
    page.get_by_role("button", name="Continue to the waiting room").click()
    expect(page.locator("main")).to_have_attribute("data-state", "waiting")


def test_a_consultation_in_two_browsers_through_the_relay(stack: Stack, browser: Browser) -> None:
    base = stack.region_url("eu")
    slug, expert, join_path = org_with_room(stack)
    shot = Shots()
    errors: list[str] = []

    # The join page fits a phone.
    phone = new_page(browser, base, errors, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    phone.goto(join_path)
    expect(phone.get_by_role("button", name="Continue")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(phone, "join-phone")
    phone.context.close()

    # The expert logs in through the login page and sees the empty dashboard.
    doctor = new_page(browser, base, errors, viewport=DESKTOP)
    log_in(doctor, slug, expert, shot)
    expect(doctor.locator("#waiting-empty")).to_be_visible()

    # The visitor: the notice, then the form.
    visitor = new_page(browser, base, errors, viewport=DESKTOP)
    visitor.goto(join_path)
    notice = visitor.locator("section.notice-card")
    expect(notice).to_contain_text("your name, your phone number if you give it, the time and duration of the call")
    expect(notice).to_contain_text("technical troubleshooting data")
    expect(notice).to_contain_text("30 days")
    expect(notice).to_contain_text("Your consent")
    expect(notice).to_contain_text("end-to-end encrypted")
    expect(notice).to_contain_text("never recorded")
    shot(visitor, "join")

    visitor.get_by_label("Your name").fill("Ada Lovelace")
    visitor.get_by_role("textbox", name="Phone number").fill("12345")
    visitor.get_by_label("I agree").check()
    visitor.get_by_role("button", name="Continue").click()
    expect(visitor.locator("#error-summary")).to_contain_text("country code")
    expect(visitor.get_by_label("Your name")).to_have_value("Ada Lovelace")
    expect(visitor.get_by_role("textbox", name="Phone number")).to_have_value("12345")
    expect(visitor.get_by_label("I agree")).to_be_checked()
    shot(visitor, "join-invalid-phone")

    visitor.get_by_role("textbox", name="Phone number").fill("+47 123 45 678")
    visitor.get_by_role("button", name="Continue").click()
    visitor.wait_for_url(re.compile(r"/visits/[0-9a-f-]{36}$"))
    main = visitor.locator("main")
    expect(main).to_have_attribute("data-state", "check")
    expect(visitor.locator("#check-camera")).to_contain_text("Working")
    expect(visitor.locator("#check-microphone")).to_contain_text("Working")
    expect(visitor.locator("#check-connection")).to_contain_text("Connected")
    visitor.get_by_role("button", name="Play a test sound").click()
    expect(visitor.locator("#check-speakers")).to_contain_text("two tones")
    shot(visitor, "device-check")
    visitor.get_by_role("button", name="Continue to the waiting room").click()
    expect(main).to_have_attribute("data-state", "waiting")
    expect(visitor.get_by_role("heading", name="You are in the waiting room")).to_be_visible()
    shot(visitor, "waiting-room")

    # The dashboard shows the visitor live; the expert admits them.
    waiting = doctor.locator("#waiting li", has_text="Ada Lovelace")
    expect(waiting).to_contain_text("+47 12345678")  # formatted for people (phonenumbers)
    expect(waiting.get_by_role("link", name="+47 12345678")).to_have_attribute("href", "tel:+4712345678")
    expect(waiting).to_contain_text("Consultation with Dr. Berg")  # the room's title
    shot(doctor, "dashboard-waiting")
    waiting.get_by_role("button", name="Admit Ada Lovelace").click()
    doctor.wait_for_url(re.compile(rf"/{slug}/calls/[0-9a-f-]{{36}}$"))
    call_id = doctor.url.rsplit("/", 1)[1]

    # Both connect through the relay, and video flows both ways.
    for page in (visitor, doctor):
        expect(page.locator("main")).to_have_attribute("data-state", "call")
        expect(page.locator("main")).to_have_attribute("data-connection", "connected", timeout=20_000)
    flowing = wait_for_frames({"visitor": visitor, "expert": doctor})
    for side, found in flowing.items():
        assert found["policy"] == "relay", (side, found)
        assert found["local"] == "relay", (side, found)
        assert found["remote"] in ("relay", "prflx"), (side, found)

    expect(visitor.locator("#call-status")).to_contain_text("end-to-end encrypted")
    shot(visitor, "call-visitor")
    shot(doctor, "call-expert")
    visitor.set_viewport_size(PHONE)
    shot(visitor, "call-visitor-phone")
    assert visitor.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    visitor.set_viewport_size(DESKTOP)

    # In-call actions are recorded as troubleshooting data.
    visitor.get_by_role("button", name="Mute", exact=True).click()
    expect(visitor.get_by_role("button", name="Unmute", exact=True)).to_have_attribute("aria-pressed", "true")
    visitor.get_by_role("button", name="Unmute", exact=True).click()
    doctor.get_by_role("button", name="Camera off").click()
    doctor.get_by_role("button", name="Camera on").click()

    # A visitor who reloads the page is back in the same call, with a new connection.
    visitor.reload()
    expect(visitor.locator("main")).to_have_attribute("data-state", "call")
    for page in (visitor, doctor):
        expect(page.locator("main")).to_have_attribute("data-connection", "connected", timeout=20_000)
    wait_for_frames({"visitor": visitor, "expert": doctor})
    assert doctor.evaluate("window.__peers.length") >= 2, "the expert's side did not start a new connection"

    # A quality sample with a bitrate needs two of the browser's periodic samples: wait
    # for one before ending (a slow machine may not have reached it yet).
    wait_until(
        lambda: any(
            r["kind"] == "quality" and r["rtt_ms"] is not None and r["bitrate_kbps"] is not None
            for r in telemetry(stack, call_id)
        ),
        "a quality sample with a bitrate",
        within=30,
        every=0.5,
    )

    # The expert ends the call; the visitor sees it end.
    doctor.get_by_role("button", name="End call").click()
    expect(doctor.locator("main")).to_have_attribute("data-state", "ended")
    expect(visitor.locator("main")).to_have_attribute("data-state", "ended")
    expect(visitor.get_by_role("heading", name="The call has ended")).to_be_visible()
    shot(visitor, "ended-visitor")
    shot(doctor, "ended-expert")

    doctor.get_by_role("link", name="Back to the dashboard").click()
    doctor.wait_for_url(f"**/{slug}/portal")
    row = doctor.locator(f'#calls tr[data-call-id="{call_id}"]')
    expect(row.locator("td.duration")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    expect(doctor.locator("#waiting-empty")).to_be_visible()
    shot(doctor, "dashboard-calls-today")

    # Telemetry of both sides is stored for the call.
    rows = telemetry(stack, call_id)
    quality = [r for r in rows if r["kind"] == "quality"]
    actions = {(r["participant"], r["action"], r.get("state")) for r in rows if r["kind"] == "action"}
    assert {r["participant"] for r in quality} == {"visitor", "expert"}, rows
    assert any(r["rtt_ms"] is not None and r["bitrate_kbps"] is not None for r in quality), quality
    assert {
        ("visitor", "camera_permission", "granted"),
        ("visitor", "microphone_permission", "granted"),
        ("visitor", "mute", None),
        ("visitor", "unmute", None),
        ("expert", "camera_permission", "granted"),
        ("expert", "camera_off", None),
        ("expert", "camera_on", None),
    } <= actions, actions

    assert not errors, errors


def test_a_visitor_leaves_the_waiting_room_or_hangs_up(stack: Stack, browser: Browser) -> None:
    base = stack.region_url("eu")
    slug, expert, join_path = org_with_room(stack)
    errors: list[str] = []
    doctor = new_page(browser, base, errors, viewport=DESKTOP)
    log_in(doctor, slug, expert)

    # One visitor changes their mind in the waiting room: they leave the list.
    first = new_page(browser, base, errors, viewport=PHONE)
    arrive(first, join_path, "Grace Hopper")
    expect(doctor.locator("#waiting li", has_text="Grace Hopper")).to_be_visible()
    first.get_by_role("button", name="Leave the waiting room").click()
    expect(first.locator("main")).to_have_attribute("data-state", "ended")
    expect(first.locator("#ended-text")).to_contain_text("You left the waiting room")
    expect(doctor.locator("#waiting-empty")).to_be_visible()

    # Another one is let in and hangs up: the call ends for the expert too.
    second = new_page(browser, base, errors, viewport=PHONE)
    arrive(second, join_path, "Alan Turing")
    doctor.locator("#waiting li", has_text="Alan Turing").get_by_role("button", name="Admit Alan Turing").click()
    doctor.wait_for_url(re.compile(rf"/{slug}/calls/[0-9a-f-]{{36}}$"))
    call_id = doctor.url.rsplit("/", 1)[1]
    for page in (second, doctor):
        expect(page.locator("main")).to_have_attribute("data-connection", "connected", timeout=20_000)
    second.get_by_role("button", name="Hang up").click()
    expect(second.locator("main")).to_have_attribute("data-state", "ended")
    expect(doctor.locator("main")).to_have_attribute("data-state", "ended")
    doctor.get_by_role("link", name="Back to the dashboard").click()
    expect(doctor.locator(f'#calls tr[data-call-id="{call_id}"] td.duration')).to_have_text(
        re.compile(r"^\d\d:\d\d:\d\d$")
    )
    assert not errors, errors


def test_an_auditor_sees_only_their_role_on_the_portal(stack: Stack) -> None:
    base = stack.region_url("eu")
    made = stack.signup("eu")
    owner = stack.login(base, made["slug"], made["owner"]["email"])
    auditor = stack.add_member(owner, made["slug"], "auditor")
    page = stack.login(base, made["slug"], auditor["email"]).get(f"/{made['slug']}/portal")
    assert page.status_code == 200
    assert "Your role: Auditor" in page.text
    assert "dashboard.js" not in page.text and "Waiting room" not in page.text
    assert 'action="/' + made["slug"] + '/logout"' in page.text
