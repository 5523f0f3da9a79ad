"""What browser tests share: the system Chromium driven by Playwright (never a
downloaded browser), a context per language, a watch on every request and script
error of a page, screenshots saved where ``KONSIL_SCREENSHOTS`` says, and axe-core
(npm, installed into tests/e2e/axe by ``make test``) run on a page with the WCAG 2.1
A/AA rules.

    with chromium() as browser:
        context = new_context(browser, base_url, "de")      # Accept-Language: de-DE
        page, watch = new_page(context)                      # every request recorded
        page.goto("/login")
        assert_accessible(page, "login [de]")               # axe: no serious/critical
        watch.assert_same_origin(base_url)                   # nothing from another host
        watch.assert_no_script_errors()
        Shots("errors")(page, "404-de")                      # $KONSIL_SCREENSHOTS/errors/404-de.png
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    ViewportSize,
    sync_playwright,
)

from tests.conftest import TEST_SETTINGS

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
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}

# The languages of the pages, and the browser locale that asks for each (Accept-Language).
LOCALES = ("en", "nb", "de", "nl")
BROWSER_LOCALE = {"en": "en-GB", "nb": "nb-NO", "de": "de-DE", "nl": "nl-NL"}

AXE_FOLDER = Path(__file__).resolve().parent / "axe"
AXE_JS = AXE_FOLDER / "node_modules" / "axe-core" / "axe.min.js"
WCAG_21_AA = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
BLOCKING_IMPACTS = ("serious", "critical")


# --- the browser ---------------------------------------------------------------------------------


@contextmanager
def chromium() -> Iterator[Browser]:
    """The system Chromium, headless, with a fake camera and microphone."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_context(
    browser: Browser,
    base_url: str | None,
    locale: str = "en",
    *,
    viewport: ViewportSize | None = None,
    media: bool = False,
    cookies: Sequence[tuple[str, str]] = (),
    timeout_ms: float = 15_000,
    **options: Any,
) -> BrowserContext:
    """A fresh browser profile whose language is ``locale`` (one of LOCALES; it sets
    ``navigator.language`` and the Accept-Language header), with ``cookies`` (name,
    value) for ``base_url``; ``media`` grants the camera and microphone there. Without
    a ``base_url`` pages are opened by full URL."""
    if base_url:
        options["base_url"] = base_url
    context = browser.new_context(locale=BROWSER_LOCALE.get(locale, locale), viewport=viewport or DESKTOP, **options)
    context.set_default_timeout(timeout_ms)
    if media:
        context.grant_permissions(["camera", "microphone"], **({"origin": origin(base_url)} if base_url else {}))
    if cookies:
        assert base_url, "cookies need the base_url they are for"
        context.add_cookies([{"name": name, "value": value, "url": base_url} for name, value in cookies])
    return context


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Watch:
    """What a page did: every request it made (including those the CSP blocked, which
    Chromium reports as failed requests), uncaught script errors, console errors and
    failed static files."""

    requests: list[str] = field(default_factory=list)  # what the page loaded or sent
    navigations: list[str] = field(default_factory=list)  # where its main frame went (redirects too)
    refused: list[str] = field(default_factory=list)  # loads the page's CSP refused (never sent)
    script_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    broken_static: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Page:
        def request(request: Request) -> None:
            # Going to a page (typed, linked, redirected) is not the page loading something.
            if request.is_navigation_request() and request.frame == page.main_frame:
                self.navigations.append(request.url)
            else:
                self.requests.append(request.url)

        page.on("request", request)
        page.on("pageerror", lambda exc: self.script_errors.append(f"{page.url}: {exc}"))
        page.on("console", self._console)
        page.on("response", self._response)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)
            # "Refused to load the script 'URL' because it violates …" (older Chromium),
            # "Loading the script 'URL' violates the following Content Security Policy …"
            refused = re.match(r"(?:Refused to|Loading the) [^']*'([^']+)'", message.text)
            if refused and "://" in refused.group(1) and "Content Security Policy" in message.text:
                self.refused.append(refused.group(1))

    def _response(self, response: Response) -> None:
        if response.status >= 400 and "/static/" in response.url:
            self.broken_static.append(f"{response.status} {response.url}")

    def foreign_requests(self, own: str) -> list[str]:
        """Requests to any origin other than ``own`` (data:/blob: URLs are the page's own),
        and loads from another host that the CSP refused before they were sent."""
        mine = origin(own)
        tried = [*self.requests, *self.refused]
        return [url for url in tried if not url.startswith(("data:", "blob:")) and origin(url) != mine]

    def assert_same_origin(self, own: str) -> None:
        foreign = self.foreign_requests(own)
        assert not foreign, f"the page asked other hosts than {origin(own)}: {foreign}"

    def assert_no_script_errors(self, allow: Sequence[str] = ()) -> None:
        """No uncaught error, no broken static file, and no console error except those
        containing one of ``allow`` (e.g. "Failed to load resource" where a test provokes a 4xx)."""
        console = [text for text in self.console_errors if not any(part in text for part in allow)]
        problems = self.script_errors + self.broken_static + console
        assert not problems, problems


def new_page(context: BrowserContext) -> tuple[Page, Watch]:
    """A page of ``context`` and the Watch recording what it does."""
    page = context.new_page()
    watch = Watch()
    watch.attach(page)
    return page, watch


_POST_FORM = """
(args) => {
  const form = document.createElement('form');
  form.method = 'post';
  form.action = args.action;
  for (const [name, value] of Object.entries(args.fields)) {
    const input = document.createElement('input');
    input.type = 'hidden';
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }
  document.body.appendChild(form);
  form.submit();
}
"""


def post_form(page: Page, action: str, fields: dict[str, str]) -> Response | None:
    """Send a form to ``action`` from the page as a person's browser would (a real form
    submission and navigation, whatever the page's own forms look like); the answer."""
    with page.expect_navigation() as navigation:
        page.evaluate(_POST_FORM, {"action": action, "fields": fields})
    return navigation.value


# --- screenshots ---------------------------------------------------------------------------------


def screenshots_dir() -> Path:
    """``$KONSIL_SCREENSHOTS`` (taken out of the environment by tests/conftest.py), else
    a folder under the system's temporary folder."""
    chosen = TEST_SETTINGS.get("KONSIL_SCREENSHOTS")
    return Path(chosen) if chosen else Path(tempfile.gettempdir()) / "konsil-screenshots"


class Shots:
    """Full-page PNGs of one series in ``screenshots_dir()/series``, numbered in order:
    ``shot(page, "404-de")`` → ``…/series/01-404-de.png`` (the path is returned)."""

    def __init__(self, series: str, *, clear: bool = True) -> None:
        self.folder = screenshots_dir() / series
        self.folder.mkdir(parents=True, exist_ok=True)
        if clear:
            for old in self.folder.glob("*.png"):
                old.unlink()
        self.count = 0

    def __call__(self, page: Page, step: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{re.sub(r'[^A-Za-z0-9._-]+', '-', step)}.png"
        page.screenshot(path=path, full_page=True)
        return path


# --- accessibility (axe-core) --------------------------------------------------------------------


def axe_source() -> str:
    if not AXE_JS.exists():
        raise AssertionError(
            f"axe-core is not installed ({AXE_JS} is missing): run `make test`, or `npm ci` in {AXE_FOLDER}"
        )
    return AXE_JS.read_text(encoding="utf-8")


_RUN_AXE = """
async (tags) => {
  const result = await window.axe.run(document, {
    runOnly: { type: 'tag', values: tags },
    resultTypes: ['violations'],
  });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => ({
      target: n.target.join(' '), html: n.html.slice(0, 200), summary: n.failureSummary || '',
    })),
  }));
}
"""


def axe_violations(page: Page, impacts: Sequence[str] = BLOCKING_IMPACTS) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now, those of ``impacts``.
    axe is evaluated through the DevTools protocol, so the page's CSP (no inline
    script) stays in force for the page itself."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source())
    found: list[dict[str, Any]] = page.evaluate(_RUN_AXE, list(WCAG_21_AA))
    return [v for v in found if v["impact"] in impacts]


def describe(violations: Sequence[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"  {v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"]:
            summary = " ".join(node["summary"].split())
            lines.append(f"    - {node['target']}: {node['html']}\n      {summary}")
    return "\n".join(lines)


def assert_accessible(page: Page, label: str) -> None:
    """Fails with a readable list when axe finds a serious or critical WCAG 2.1 A/AA violation."""
    violations = axe_violations(page)
    assert not violations, f"{label}: {len(violations)} serious/critical accessibility violation(s)\n" + describe(
        violations
    )
