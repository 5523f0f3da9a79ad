"""The call as both people see it, in real browsers (the system Chromium with fake camera
and microphone, through the EU region's coturn relay), in English and Norwegian: the
dashboard announces an arrival (tab title, sound, a notification that names no one),
the expert's call page and "Calls today" name the visitor, each side sees when the other
turns the camera off, mutes or shares, devices can be switched in the call, and the two
chat over the peer connection's data channel: messages arrive on the other side, a
message over 4 KB is refused in the page's language (and ignored if sent anyway), and
the server never sees a chat message: not in any request or socket frame of either
page, not in the region's database, not in the region process's output. When the call
ends the messages are gone from both pages, and nothing was kept in the browser.

Screenshots (desktop and phone, both sides) go to ``test-output/call/``."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import stat
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.conftest import Stack, fetch, wait_until
from tests.e2e.test_browser import DESKTOP, PHONE, browser, new_page, org_with_room, wait_for_frames

pytestmark = pytest.mark.e2e
__all__ = ["browser"]  # the module's Chromium, shared with test_browser.py

SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "call"

# Test-only: the data channels a page opens (to send what a tampered peer might), and
# the desktop notifications it shows; the dashboard's tab is in the background.
CHANNEL_SPY = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  window.__channels = [];
  const make = Native.prototype.createDataChannel;
  Native.prototype.createDataChannel = function (...args) {
    const channel = make.apply(this, args);
    window.__channels.push(channel);
    return channel;
  };
})();
"""
BACKGROUND_TAB = """
(() => {
  window.__notes = [];
  const Native = window.Notification;
  if (Native) {
    window.Notification = class extends Native {
      constructor(title, options) {
        super(title, options);
        window.__notes.push({ title, body: options && options.body });
      }
    };
  }
  document.hasFocus = () => false;
})();
"""

# What each language's page says (the catalogs' words: a wrong or missing translation fails).
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "call_with": "Call with {name}",
        "arrival_title": "(1) Someone is waiting · ",
        "camera_off": "Camera is off",
        "muted": "{name} is muted",
        "sharing": "{name} is sharing their screen",
        "too_long": "This message is too long (5 KB). A message can be at most 4 KB",
        "you": "You",
        "unread": "Chat (1 unread)",
        "notified": "Someone is waiting in {room}",
        "notify_on": "You get a desktop notification when someone arrives.",
        "full_screen": "Full screen",
        "exit_full_screen": "Exit full screen",
        "visitor_header": "Visitor",
    },
    "nb": {
        "call_with": "Samtale med {name}",
        "arrival_title": "(1) Noen venter · ",
        "camera_off": "Kameraet er av",
        "muted": "{name} er dempet",
        "sharing": "{name} deler skjermen sin",
        "too_long": "Denne meldingen er for lang (5 KB). En melding kan være på høyst 4 KB",
        "you": "Du",
        "unread": "Chat (1 uleste)",
        "notified": "Noen venter i {room}",
        "notify_on": "Du får et skrivebordsvarsel når noen kommer.",
        "full_screen": "Fullskjerm",
        "exit_full_screen": "Avslutt fullskjerm",
        "visitor_header": "Besøkende",
    },
}
VISITORS = {"en": ("Ada Lovelace", "AL"), "nb": ("Åse Øvrebø", "ÅØ")}
ROOM_TITLE = "Consultation with Dr. Berg"


@pytest.fixture(autouse=True)
def patient() -> Iterator[None]:
    """Two browsers in a call on a shared machine: give each expectation more time."""
    expect.set_options(timeout=15_000)
    try:
        yield
    finally:
        expect.set_options(timeout=5_000)


@pytest.fixture
def pages() -> Iterator[list[Page]]:
    """The pages a test opens; their browser contexts are closed after it (a call left
    running would slow the next test down)."""
    opened: list[Page] = []
    yield opened
    for page in opened:
        page.context.close()


@dataclass
class Shots:
    lang: str
    count: int = 0

    def __call__(self, page: Page, step: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.count += 1
        page.screenshot(path=SHOTS / f"{self.lang}-{self.count:02d}-{step}.png", full_page=True)


class Wire:
    """Everything a page sends to the server: request URLs and bodies, socket frames."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def watch(self, page: Page) -> None:
        page.on("request", lambda request: self.sent.append(f"{request.url} {request.post_data or ''}"))
        page.on("websocket", lambda ws: ws.on("framesent", lambda frame: self.sent.append(str(frame))))

    def holds(self, text: str) -> bool:
        return any(text in item for item in self.sent)


def in_thread(coro: Any) -> Any:
    # Playwright's sync API runs an event loop in this thread: query from another one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def database_holds(stack: Stack, text: str) -> list[str]:
    """The tables of the EU region's database with a row whose text holds ``text``."""

    async def search() -> list[str]:
        tables = await fetch(
            stack.dsns["eu"],
            "SELECT quote_ident(table_name) AS name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
        found = []
        for row in tables:
            # Each row as text (every column of every table), searched for the text.
            query = f"SELECT count(*) AS n FROM {row['name']} t WHERE t::text LIKE $1"  # noqa: S608 (names from the catalog)
            if (await fetch(stack.dsns["eu"], query, f"%{text}%"))[0]["n"]:
                found.append(row["name"])
        return found

    return list(in_thread(search()))


def process_output(pid: int) -> bytes | None:
    """What the region process wrote to its stdout and stderr so far, when they are
    files (pytest's capture, or a redirect); None for a terminal or a pipe."""
    written = b""
    for fd in (1, 2):
        path = f"/proc/{pid}/fd/{fd}"
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            written += handle.read()
    return written


def member_page(browser: Browser, base: str, lang: str, slug: str, member: dict[str, Any], errors: list[str]) -> Page:
    """A logged-in member's page on the dashboard, in ``lang`` (logged in through the API:
    the session cookie lands in the browser context)."""
    page = new_page(browser, base, errors, viewport=DESKTOP)
    page.context.set_default_timeout(30_000)  # a shared machine may be slow
    page.context.add_init_script(BACKGROUND_TAB)
    page.context.grant_permissions(["camera", "microphone", "notifications"], origin=base)
    login = page.context.request.post(
        f"{base}/api/v1/orgs/{slug}/auth/login", data={"email": member["email"], "password": member["password"]}
    )
    assert login.ok, login.text()
    page.goto(f"/{slug}/portal?lang={lang}")
    expect(page.locator("main")).to_have_attribute("data-live", "true", timeout=30_000)
    return page


def visitor_page(browser: Browser, base: str, lang: str, join_path: str, name: str, errors: list[str]) -> Page:
    """A visitor who filled the join form and went through the device check (by the form's
    field names: the words are the visitor pages' own)."""
    page = new_page(browser, base, errors, viewport=DESKTOP)
    page.context.set_default_timeout(30_000)  # a shared machine may be slow
    page.context.add_init_script(CHANNEL_SPY)
    page.goto(f"{join_path}?lang={lang}")
    page.locator("input[name=name]").fill(name)
    page.locator("input[name=consent]").check()
    page.locator("form[method=post] button[type=submit]").click()
    page.wait_for_url(re.compile(r"/visits/[0-9a-f-]{36}$"))
    expect(page.locator("main")).to_have_attribute("data-state", "check")
    page.locator("#continue").click()
    expect(page.locator("main")).to_have_attribute("data-state", "waiting")
    return page


def chat(page: Page, text: str) -> None:
    if page.locator("#chat").is_hidden():
        page.locator("#chat-toggle").click()
    page.locator("#chat-input").fill(text)
    page.locator("#chat-input").press("Enter")


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def stored_in_browser(context: BrowserContext) -> str:
    """Everything the pages of a context keep in the browser's storage."""
    state = context.storage_state()
    return str(state.get("origins", [])) + "".join(
        str(page.evaluate("JSON.stringify(Object.assign({}, sessionStorage))")) for page in context.pages
    )


def initials(name: str) -> str:
    words = name.split()
    return (words[0][0] + words[-1][0]).upper()


@pytest.mark.parametrize("lang", ["en", "nb"])
def test_a_call_with_chat_and_indicators(stack: Stack, browser: Browser, pages: list[Page], lang: str) -> None:
    words = TEXTS[lang]
    base = stack.region_url("eu")
    slug, expert, join_path = org_with_room(stack)
    shot = Shots(lang)
    errors: list[str] = []
    wire = Wire()
    secret = f"kaffe-{secrets.token_hex(6)}"  # a word that appears nowhere but in the chat

    # The expert's dashboard, with the arrival sound switched on (a preference of this browser).
    doctor = member_page(browser, base, lang, slug, expert, errors)
    pages.append(doctor)
    wire.watch(doctor)
    expect(doctor.locator("#waiting-empty")).to_be_visible()
    expect(doctor.locator("#notify")).to_be_hidden()  # notifications were allowed already
    expect(doctor.locator("#alerts-status")).to_have_text(words["notify_on"])
    doctor.locator("#sound-toggle").check()
    expect(doctor.locator("main")).to_have_attribute("data-chimes", "1")  # a preview of the sound
    assert doctor.evaluate("localStorage.getItem('konsil.arrival-sound')") == "on"
    doctor.reload()
    expect(doctor.locator("#sound-toggle")).to_be_checked()
    expect(doctor.locator("main")).to_have_attribute("data-live", "true", timeout=30_000)
    title = doctor.title()
    shot(doctor, "dashboard")

    # A visitor arrives: the tab's title says so, the sound plays once the page was
    # clicked (the browser's rule), and the notification names the room, not the person.
    visitor_name, visitor_initials = VISITORS[lang]
    doctor.locator("h1").click()  # the expert used the page: the browser lets it play sounds
    visitor = visitor_page(browser, base, lang, join_path, visitor_name, errors)
    pages.append(visitor)
    wire.watch(visitor)
    waiting = doctor.locator("#waiting li", has_text=visitor_name)
    expect(waiting).to_be_visible()
    expect(doctor).to_have_title(words["arrival_title"] + title)
    expect(doctor.locator("main")).to_have_attribute("data-chimes", "1")
    notes = doctor.evaluate("window.__notes")
    assert notes == [{"title": words["notified"].format(room=ROOM_TITLE), "body": notes[0]["body"]}], notes
    assert visitor_name not in str(notes), "a notification names no one"
    shot(doctor, "dashboard-arrival")
    doctor.locator("h1").click()  # back on the page: the title is the page's again
    expect(doctor).to_have_title(title)

    # The expert lets the visitor in; the call page is headed with the visitor's name.
    waiting.locator("button").click()
    doctor.wait_for_url(re.compile(rf"/{slug}/calls/[0-9a-f-]{{36}}$"))
    call_id = doctor.url.rsplit("/", 1)[1]
    expect(doctor.locator("#call-title")).to_have_text(words["call_with"].format(name=visitor_name))
    for page in (visitor, doctor):
        expect(page.locator("main")).to_have_attribute("data-state", "call")
        expect(page.locator("main")).to_have_attribute("data-connection", "connected", timeout=20_000)
    wait_for_frames({"visitor": visitor, "expert": doctor})
    assert doctor.locator("#notice").inner_text() == "" and visitor.locator("#notice").inner_text() == ""

    # Chat, expert → visitor: the visitor's chat is closed, so it counts the message as unread.
    chat(doctor, f"Hello {secret}")
    expect(doctor.locator("#chat-messages li.mine")).to_contain_text(f"Hello {secret}")
    expect(visitor.locator("#chat-unread")).to_have_text("1")
    expect(visitor.locator("#chat-toggle")).to_have_attribute("aria-label", words["unread"])
    expect(visitor.locator("#call-announce")).not_to_be_empty()
    visitor.locator("#chat-toggle").click()
    received = visitor.locator("#chat-messages li.theirs")
    expect(received).to_have_count(1)
    expect(received.locator(".chat-text")).to_have_text(f"Hello {secret}")
    expect(received.locator(".chat-sender")).to_have_text(expert["name"])  # told over the data channel
    expect(received.locator("time")).to_have_text(re.compile(r"^\d\d[:.]\d\d( [AP]M)?$"))  # the locale's clock
    expect(visitor.locator("#chat-unread")).to_be_hidden()
    expect(visitor.locator("#chat-messages")).to_have_attribute("aria-live", "polite")

    # Chat, visitor → expert (the expert's panel is open).
    chat(visitor, f"Hei tilbake {secret} 😊 æøå")
    mine = visitor.locator("#chat-messages li.mine")
    expect(mine.locator(".chat-sender")).to_have_text(words["you"])
    answer = doctor.locator("#chat-messages li.theirs")
    expect(answer.locator(".chat-text")).to_have_text(f"Hei tilbake {secret} 😊 æøå")
    expect(answer.locator(".chat-sender")).to_have_text(visitor_name)
    shot(visitor, "chat-visitor")
    shot(doctor, "chat-expert")

    # A 5 KB message is refused, in the page's language, and not sent; 4 KB of two-byte
    # letters is 2,048 of them, so 2,100 are refused too.
    visitor.locator("#chat-input").fill("x" * 5 * 1024)
    visitor.locator("#chat-send").click()
    expect(visitor.locator("#chat-error")).to_contain_text(words["too_long"])
    expect(visitor.locator("#chat-input")).to_have_attribute("aria-invalid", "true")
    assert "chat-error" in (visitor.locator("#chat-input").get_attribute("aria-describedby") or "")
    shot(visitor, "chat-too-long")
    visitor.locator("#chat-input").fill("ø" * 2100)
    visitor.locator("#chat-input").press("Enter")
    expect(visitor.locator("#chat-error")).to_contain_text("(5 KB)")
    visitor.locator("#chat-input").fill("ø" * 2048)  # exactly 4 KB: fine
    expect(visitor.locator("#chat-error")).to_be_hidden()
    visitor.locator("#chat-input").press("Enter")
    expect(doctor.locator("#chat-messages li.theirs")).to_have_count(2)
    # A page that sends a bigger one anyway (not this page's code): the receiver ignores it.
    visitor.evaluate(
        """() => {
          const channel = window.__channels.filter((c) => c.readyState === 'open').pop();
          channel.send(JSON.stringify({ type: 'chat', text: 'y'.repeat(5000) }));
          channel.send(JSON.stringify({ type: 'chat', text: 'after the big one' }));
        }"""
    )
    expect(doctor.locator("#chat-messages li.theirs").last).to_have_text(re.compile("after the big one"))
    expect(doctor.locator("#chat-messages li.theirs")).to_have_count(3)

    # Camera off: the other side shows the person's initials and "camera is off", not a black box.
    visitor.locator("#camera").click()
    placeholder = doctor.locator("#remote-off")
    expect(placeholder).to_be_visible()
    expect(placeholder.locator("#remote-avatar")).to_have_text(visitor_initials)
    expect(placeholder).to_contain_text(words["camera_off"])
    expect(visitor.locator("#local-off")).to_be_visible()
    visitor.locator("#mute").click()
    expect(doctor.locator("#peer-muted")).to_have_text(words["muted"].format(name=visitor_name))
    shot(doctor, "visitor-camera-off-muted")
    doctor.set_viewport_size(PHONE)
    shot(doctor, "visitor-camera-off-phone")
    assert no_horizontal_scroll(doctor)
    doctor.set_viewport_size(DESKTOP)
    visitor.locator("#camera").click()
    visitor.locator("#mute").click()
    expect(placeholder).to_be_hidden()
    expect(doctor.locator("#peer-muted")).to_be_hidden()

    # And the other way: the visitor sees the expert's initials (the name came over the data channel).
    doctor.locator("#camera").click()
    doctor.locator("#mute").click()
    expect(visitor.locator("#remote-off")).to_be_visible()
    expect(visitor.locator("#remote-avatar")).to_have_text(initials(expert["name"]))
    expect(visitor.locator("#peer-muted")).to_have_text(words["muted"].format(name=expert["name"]))
    shot(visitor, "expert-camera-off")
    visitor.set_viewport_size(PHONE)
    shot(visitor, "expert-camera-off-phone")
    assert no_horizontal_scroll(visitor)
    visitor.set_viewport_size(DESKTOP)
    doctor.locator("#camera").click()
    doctor.locator("#mute").click()
    expect(visitor.locator("#remote-off")).to_be_hidden()

    # Screen sharing: the other side is told who shares, and sees the screen, not the placeholder.
    visitor.locator("#camera").click()
    visitor.locator("#share").click()
    expect(visitor.locator("#share")).to_have_attribute("aria-pressed", "true")
    expect(doctor.locator("#peer-sharing")).to_have_text(words["sharing"].format(name=visitor_name))
    expect(placeholder).to_be_hidden()
    shot(doctor, "visitor-sharing")
    visitor.locator("#share").click()
    expect(doctor.locator("#peer-sharing")).to_be_hidden()
    expect(placeholder).to_be_visible()  # the camera is still off
    visitor.locator("#camera").click()
    expect(placeholder).to_be_hidden()

    # Another microphone, picked in the call: the call sends the new one (no renegotiation).
    visitor.locator("#devices summary").click()
    microphones = visitor.locator("#microphone-select option")
    assert microphones.count() >= 2, "Chromium's fake devices offer several microphones"
    other = microphones.nth(1)
    other_label = other.inner_text()
    visitor.locator("#microphone-select").select_option(other.get_attribute("value"))
    expect(visitor.locator("#devices-error")).to_be_hidden()
    sending = (
        "() => window.__peers.filter((p) => p.connectionState === 'connected').pop()"
        ".getSenders().find((s) => s.track && s.track.kind === 'audio').track.label"
    )
    # Polled from here: the page's CSP refuses the string evaluation wait_for_function uses.
    wait_until(lambda: visitor.evaluate(f"({sending})()") == other_label or None, "the other microphone sent")
    expect(visitor.locator("#camera-select option")).not_to_have_count(0)
    shot(visitor, "devices")

    # Full screen: the call area fills the screen, and the button says how to leave it.
    fullscreen = doctor.locator("#fullscreen")
    fullscreen.click()
    wait_until(
        lambda: doctor.evaluate("document.fullscreenElement && document.fullscreenElement.id === 'call-area'") or None,
        "the call area in full screen",
    )
    expect(fullscreen).to_have_text(words["exit_full_screen"])
    shot(doctor, "full-screen")
    fullscreen.click()
    wait_until(lambda: doctor.evaluate("document.fullscreenElement === null") or None, "full screen left")
    expect(fullscreen).to_have_text(words["full_screen"])

    # The expert ends the call: the messages are gone from both pages, nothing was kept.
    doctor.locator("#end").click()
    for page in (visitor, doctor):
        expect(page.locator("main")).to_have_attribute("data-state", "ended")
        expect(page.locator("#chat-messages li")).to_have_count(0)
        assert secret not in page.content()
        assert secret not in stored_in_browser(page.context)
    shot(visitor, "ended-visitor")

    # "Calls today" names the visitor (read through the API, access-logged).
    doctor.goto(f"/{slug}/portal")
    row = doctor.locator(f'#calls tr[data-call-id="{call_id}"]')
    expect(row.locator("td.visitor")).to_have_text(visitor_name)
    expect(doctor.locator("#calls th").first).to_have_text(words["visitor_header"])
    shot(doctor, "calls-today")
    doctor.set_viewport_size(PHONE)
    shot(doctor, "calls-today-phone")
    assert no_horizontal_scroll(doctor)

    # The server never saw a chat message: not on the wire, not stored, not in its output.
    assert wire.sent and not wire.holds(secret)
    assert database_holds(stack, secret) == []
    output = process_output(stack.procs["region eu"].pid)
    if output is None:
        warnings.warn("the region's output goes to a terminal or a pipe: not searched for the chat text", stacklevel=1)
    else:
        assert secret.encode() not in output
    [call] = in_thread(fetch(stack.dsns["eu"], 'SELECT visit_id FROM "call" WHERE id = $1', uuid.UUID(call_id)))
    visit_id = call["visit_id"]
    reads = in_thread(
        fetch(
            stack.dsns["eu"],
            "SELECT actor FROM access_log_entry WHERE subject_ref = $1 AND action = 'read' AND object_type = 'visit'",
            f"visit:{visit_id}",
        )
    )
    # The waiting list, the call page's heading and "Calls today": each a logged read by the expert.
    assert len(reads) >= 3 and {r["actor"] for r in reads} == {f"member:{expert['id']}"}, reads
    assert not errors, errors
