"""``konsil up`` and the pre-call connection test as a visitor of the embedded default
meets it, in Chromium.

- Without ``turnserver`` on the PATH there is no relay: ``konsil up`` says once, in
  plain words, that calls go direct and how to install coturn; the visitor's test
  measures the direct path (what a call there uses) and the page shows no failure,
  in English and in German. Before, the page said "A call cannot connect from this
  network" in red because the relay endpoints answered 503.
- With ``turnserver`` installed, ``konsil up`` starts a local coturn relay per region
  (loopback, its own ports, a 0600 secret in the data directory); the visitor's test
  goes through it, relay-only; Ctrl-C stops it, and a relay left running by a killed
  ``konsil up`` is stopped at the next start.

Screenshots go to ``test-output/browser/``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import queue
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import free_port_run, wait_until
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, PHONE, SHOTS

pytestmark = pytest.mark.e2e

KONSIL_UP = [sys.executable, "-m", "konsil.platform.cli.main", "up", "--demo"]

# What the page must never say when nothing is wrong with the visitor's network.
ALARMS = {
    "en": ["cannot connect", "Cannot connect", "UDP", "TCP", "TURN", "relay", "region eu"],
    "de": ["Keine Verbindung möglich", "kann kein Gespräch", "UDP", "TCP", "TURN", "Relay", "region eu"],
}
WORDS = {  # the connection test's own words on the page, per language
    "en": {
        "button": "Test my connection",
        "ready": "Your connection is ready for a video call.",
        "head": "Your connection",
    },
    "de": {
        "button": "Meine Verbindung testen",
        "ready": "Ihre Verbindung ist bereit für ein Videogespräch.",
        "head": "Ihre Verbindung",
    },
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Up:
    """A ``konsil up --demo`` child process and what it printed."""

    def __init__(self, data: Path, port: int, path: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")}
        if path is not None:
            env["PATH"] = path
        self.port = port
        self.data = data
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*KONSIL_UP, "--data-dir", str(data), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put("")

    def read_until(self, done: str, within: float = 120) -> str:
        deadline = time.monotonic() + within
        assert self.proc.stdout is not None
        while not self.lines or done not in self.lines[-1]:
            # A line at a time, from a reader thread: if konsil up died, its children may
            # still hold the pipe open, and a plain readline here would wait for ever.
            try:
                line = self._queue.get(timeout=1.0)
            except queue.Empty:
                assert self.proc.poll() is None, "konsil up exited early:\n" + "".join(self.lines)
                assert time.monotonic() < deadline, "no output in time:\n" + "".join(self.lines)
                continue
            assert line, "konsil up closed its output:\n" + "".join(self.lines)
            self.lines.append(line)
            assert time.monotonic() < deadline, "no output in time:\n" + "".join(self.lines)
        return "".join(self.lines)

    def room(self, region: str) -> str:
        found = re.findall(rf"room:\s+(http://127\.0\.0\.1:\d+/demo-{region}/\S+)", "".join(self.lines))
        assert found, "".join(self.lines)
        return str(found[0])

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        tail: list[str] = []
        with contextlib.suppress(queue.Empty):  # what it printed last (the reader ends with "")
            while line := self._queue.get(timeout=10):
                tail.append(line)
        rest = "".join(tail)
        assert self.proc.returncode == 0, "".join(self.lines) + rest
        assert "Traceback" not in rest, rest
        return rest


@contextlib.contextmanager
def konsil_up(data: Path, path: str | None = None) -> Iterator[Up]:
    # The control plane, two regions, and each region's relay at the control port + 11, + 12.
    up = Up(data, free_port_run(13), path)
    try:
        yield up
    finally:
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGINT)
            try:
                up.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.proc.kill()
                up.proc.wait()


def visit_of(room_url: str) -> tuple[str, str, str]:
    """A visit to the room (the join form, as a browser posts it): base URL, visit path, cookie."""
    base = re.match(r"^http://[^/]+", room_url)
    assert base is not None
    joined = httpx.post(
        f"{room_url}/visits",
        data={"name": "Vera Visitor", "phone": "+47 40612345", "consent": "yes"},
        follow_redirects=False,
        timeout=30,
    )
    assert joined.status_code == 303, joined.text
    return base.group(0), joined.headers["location"], joined.cookies["konsil_visit"]


def visitor_page(browser: Browser, room_url: str, locale: str) -> tuple[Page, list[str]]:
    base, path, token = visit_of(room_url)
    context = browser.new_context(
        base_url=base, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale=locale
    )
    context.grant_permissions(["camera", "microphone"], origin=base)
    context.add_cookies([{"name": "konsil_visit", "value": token, "domain": "127.0.0.1", "path": path}])
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "/static/" in r.url else None,
    )
    page.goto(path)
    # Shorter phases than a visitor's (the API bounds them either way).
    page.evaluate(
        "() => { const t = document.getElementById('network-test'); t.dataset.probeSeconds = '1';"
        " t.dataset.bulkSeconds = '1'; }"
    )
    return page, errors


def run_connection_test(page: Page, lang: str) -> Any:
    test = page.locator("#network-test")
    expect(test).to_have_attribute("data-state", "idle")
    page.get_by_role("button", name=WORDS[lang]["button"]).click()
    expect(test).to_have_attribute("data-state", "done", timeout=90_000)
    return test


def shot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"network-test-{name}.png"
    page.locator("#network-test").scroll_into_view_if_needed()
    page.screenshot(path=str(path), full_page=True)
    return path


def relay_pids(data: Path) -> dict[str, int]:
    return {
        folder.name.removeprefix("relay-"): int((folder / "turnserver.pid").read_text().strip())
        for folder in sorted(data.glob("relay-*"))
        if (folder / "turnserver.pid").exists()
    }


def running(pid: int) -> bool:
    try:
        line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return bool(line.strip(b"\0"))


async def call_through_the_relay(up: Up, relay_port: int) -> None:
    """The demo expert admits a visitor; both ends (aiortc peers, relay-only as browsers
    are in the tests) get the local relay for the call, connect through it, and see video."""
    from tests.e2e.test_call_aiortc import Peer, arrive, frames_from, login, receive, socket

    output = "".join(up.lines)
    [(email, password)] = re.findall(r"expert:\s+(expert@demo-eu\.example) / (\S+)", output)
    base = up.room("eu").rsplit("/demo-eu/", 1)[0]
    expert = await login(base, "demo-eu", email, password)
    visitor_at = await arrive(base, "demo-eu", "consultation")
    peers: list[Peer] = []
    try:
        async with (
            socket(base, f"{visitor_at.path}/ws", konsil_visit=visitor_at.token) as visitor_ws,
            asyncio.timeout(90),
        ):
            assert await receive(visitor_ws) == {"type": "waiting"}
            visitor = Peer("visitor", visitor_ws)
            peers.append(visitor)
            admitted = await expert.http.post(f"/api/v1/orgs/demo-eu/visits/{visitor_at.visit_id}/admit")
            assert admitted.status_code == 200, admitted.text
            call_id = admitted.json()["id"]
            async with socket(base, f"/demo-eu/calls/{call_id}/ws", konsil_session=expert.session) as expert_ws:
                expert_peer = Peer("expert", expert_ws)
                peers.append(expert_peer)
                for peer in peers:
                    await peer.until(peer.joined)
                    joined = peer.joined.result()
                    assert joined["relay_only"] is True and joined["notice"] is None, joined
                    urls = [url for server in joined["ice_servers"] for url in server["urls"]]
                    assert f"turn:127.0.0.1:{relay_port}?transport=udp" in urls, urls
                for peer in peers:
                    await peer.until(peer.connected)
                for receiver in peers:
                    assert await frames_from(receiver)
                selected = visitor.ice_transport().iceGatherer.getLocalCandidates()
                assert selected and all(c.type == "relay" for c in selected), "relay candidates only"
    finally:
        for peer in peers:
            await peer.close()
        await expert.http.aclose()


def stopped(pid: int) -> bool | None:
    return None if running(pid) else True


def stored_transports(data: Path, region: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(data / f"region-{region}.db")
    try:
        return sorted(conn.execute("SELECT transport, verdict FROM network_test_result").fetchall())
    finally:
        conn.close()


def test_without_turnserver_the_test_measures_the_direct_path_and_shows_no_failure(
    tmp_path: Path, browser: Browser
) -> None:
    """The false alarm: the embedded default without a relay → the visitor's page shows no failure."""
    no_coturn = tmp_path / "bin"  # a PATH without turnserver (the launcher runs Python by its full path)
    no_coturn.mkdir()
    data = tmp_path / "data"
    with konsil_up(data, path=str(no_coturn)) as up:
        output = up.read_until("readable only by you")
        # Said once, in plain words, with how to install coturn.
        assert output.count("No relay") == 1, output
        assert "calls go directly between the browsers" in output and "apt-get install coturn" in output
        assert "relay eu" not in output and not list(data.glob("relay-*")), "no relay without coturn"
        room = up.room("eu")
        for lang, locale in (("en", "en-GB"), ("de", "de-DE")):
            page, errors = visitor_page(browser, room, locale)
            test = run_connection_test(page, lang)
            # One result: the direct path, which is what a call here uses.
            results = page.locator(".network-result")
            expect(results).to_have_count(1)
            assert results.first.get_attribute("data-transport") == "direct"
            verdict = test.get_attribute("data-verdict")
            assert verdict in ("good", "may be unstable"), (verdict, test.inner_text())
            status = page.locator("[data-network-test-status]")
            if verdict == "good":
                expect(status).to_have_text(WORDS[lang]["ready"])
            expect(results.first.locator("h3")).to_contain_text(WORDS[lang]["head"])
            assert page.locator("#network-test .bad").count() == 0, "nothing in red"
            text = test.inner_text()
            for alarm in ALARMS[lang]:
                assert alarm not in text, (lang, alarm, text)
            assert page.evaluate("document.documentElement.lang") == lang
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "fits a phone"
            shot(page, f"direct-{lang}")
            assert not errors, errors
            page.context.close()
        # Stored for support as a test of the direct path.
        assert {transport for transport, _ in stored_transports(data, "eu")} == {"direct"}
        up.stop()


def test_konsil_up_with_turnserver_starts_a_relay_the_visitors_test_goes_through(
    tmp_path: Path, browser: Browser
) -> None:
    data = tmp_path / "data"
    with konsil_up(data) as up:
        output = up.read_until("readable only by you")
        relays = dict(re.findall(r"relay (\w\w)\s+127\.0\.0\.1:(\d+)\s+TURN relay", output))
        assert relays == {"eu": str(up.port + 11), "us": str(up.port + 12)}, output
        assert "No relay" not in output
        # Its secret is made once and kept private; the region service was given the relay.
        for region in ("eu", "us"):
            folder = data / f"relay-{region}"
            secret = folder / "turn-secret"
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600
            assert re.fullmatch(r"[0-9a-f]{48}\n", secret.read_text())
            handed = (data / "run" / f"region-{region}.toml").read_text()
            assert f"turn:127.0.0.1:{relays[region]}?transport=udp" in handed
            assert secret.read_text().strip() in handed
            assert "turn_secret" not in (data / "konsil.toml").read_text(), "the operator's file is left as it was"
            conf = (folder / "turnserver.conf").read_text()
            assert "listening-ip=127.0.0.1" in conf and "relay-ip=127.0.0.1" in conf, "loopback only"
        pids = relay_pids(data)
        assert set(pids) == {"eu", "us"} and all(running(pid) for pid in pids.values())

        page, errors = visitor_page(browser, up.room("eu"), "de-DE")
        test = run_connection_test(page, "de")
        verdicts = page.locator(".network-result").evaluate_all(
            "els => els.map(e => [e.dataset.transport, e.dataset.verdict])"
        )
        assert [t for t, _ in verdicts] == ["udp", "tcp"], verdicts
        assert all(v in ("good", "may be unstable") for _, v in verdicts), (verdicts, test.inner_text())
        expect(page.locator(".network-result").first.locator("h3")).to_contain_text("Übliche Verbindung")
        for alarm in ALARMS["de"]:
            assert alarm not in test.inner_text()
        shot(page, "relay-de")
        assert not errors, errors
        # Through the relay: both ends are relay-only, and coturn logged the allocations.
        log = (data / "relay-eu" / "turn.log").read_text(errors="replace")
        assert re.search(r"session \d+: new,", log), log[-2000:]
        assert {t for t, _ in stored_transports(data, "eu")} == {"udp", "tcp"}

        # A call goes through it too (in a thread: Playwright's loop runs in this one).
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, call_through_the_relay(up, int(relays["eu"]))).result()

        # The relay hangs (its process stopped): the visitor is told, in plain words, that the
        # call may not connect and that it is not their network; nothing in red.
        os.kill(pids["eu"], signal.SIGSTOP)
        try:
            page.get_by_role("button", name="Erneut testen").click()
            expect(test).to_have_attribute("data-state", "done", timeout=90_000)
            assert test.get_attribute("data-verdict") == "unavailable", test.inner_text()
            expect(page.locator("[data-network-test-status]")).to_contain_text("Das liegt nicht an Ihrem Netzwerk.")
            assert page.locator("#network-test .bad").count() == 0
            shot(page, "relay-down-de")
        finally:
            os.kill(pids["eu"], signal.SIGCONT)
        page.context.close()

        # A relay that stops is started again by konsil up.
        os.kill(pids["eu"], signal.SIGKILL)
        up.read_until("the relay of region eu stopped; starting it again", within=90)
        restarted = wait_until(
            lambda: relay_pids(data).get("eu") if relay_pids(data).get("eu") != pids["eu"] else None,
            "a new relay pid",
            within=60,
        )
        assert running(restarted)
        pids["eu"] = restarted
        up.stop()
    # Ctrl-C stopped the relays too: no turnserver left, no pid file.
    for pid in pids.values():
        wait_until(functools.partial(stopped, pid), f"relay pid {pid} to stop", within=60)
    assert relay_pids(data) == {}


def test_a_relay_left_running_by_a_killed_konsil_up_is_stopped_at_the_next_start(tmp_path: Path) -> None:
    from konsil.media_nodes.local_relay import LocalRelay

    data = tmp_path / "data"
    port = free_port_run(13)
    # What a killed konsil up leaves: coturn in a session of its own, its pid file in the
    # region's relay folder, on the port the next start wants.
    leftover = LocalRelay("eu", data, port + 11)
    leftover.start()
    old_pid = leftover.pid
    assert old_pid is not None and relay_pids(data) == {"eu": old_pid}
    up = Up(data, port)
    try:
        output = up.read_until("readable only by you")
        assert f"stopped a relay left running earlier (pid {old_pid})" in output, output
        assert leftover.process._proc is not None and leftover.process._proc.poll() is not None
        new = relay_pids(data)
        assert new["eu"] != old_pid and running(new["eu"])
        up.stop()
    finally:
        leftover.stop()
        if up.proc.poll() is None:
            up.proc.kill()
            up.proc.wait()
    assert relay_pids(data) == {}
