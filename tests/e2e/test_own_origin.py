"""Nothing a page shows is loaded from another host (a privacy promise on an EU site,
and hospital networks block CDNs): for every page (tests/e2e/site_pages.py) and the API
documentation of both apps,

- by HTTP: the HTML's script, link, img, iframe, audio/video/source, embed/object and
  form targets, ``@import``/``url()`` of its stylesheets, and the ``import``/``fetch``/
  ``WebSocket``/``Worker`` targets of its scripts (followed through their imports) are
  all on the service's own origin; a link (``<a href>``) to another host is allowed,
  a link is not a load;
- in Chromium: every request the page makes, and every load its CSP refused, goes to
  the page's own origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx
import pytest
from playwright.sync_api import Browser

from tests.conftest import Stack
from tests.e2e.browser_kit import chromium, new_context, new_page, origin
from tests.e2e.site_pages import API_DOCS, SITE, SitePage, World, fill_path, make_world, open_site_page

pytestmark = pytest.mark.e2e

# Attributes that make the browser load (or send to) a URL, per element.
LOADING = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "frame": ("src",),
    "audio": ("src",),
    "video": ("src", "poster"),
    "source": ("src", "srcset"),
    "track": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "input": ("src",),
    "form": ("action",),
    "base": ("href",),
}
CSS_URL = re.compile(r"""@import\s+(?:url\()?\s*["']?([^"')\s;]+)|url\(\s*["']?([^"')]+?)["']?\s*\)""")
JS_TARGET = re.compile(
    r"""(?:\bimport\s*\(\s*|\bimport\s+(?:[\w*{}\s,]+\s+from\s+)?|\bfrom\s+|\bfetch\s*\(\s*|"""
    r"""\bnew\s+(?:WebSocket|EventSource|Worker|SharedWorker)\s*\(\s*|\bimportScripts\s*\(\s*|"""
    r"""\bsendBeacon\s*\(\s*)(["'`])([^"'`]+)\1"""
)


@dataclass
class Found:
    """Where a page makes the browser go: (URL, where it was seen)."""

    loads: list[tuple[str, str]] = field(default_factory=list)

    def add(self, base: str, target: str, where: str) -> None:
        target = target.strip()
        if not target or target.startswith(("data:", "blob:", "#", "javascript:", "about:")):
            return
        self.loads.append((urljoin(base, target), where))

    def foreign(self, own: str) -> list[str]:
        mine = origin(own)
        return sorted({f"{url} ({where})" for url, where in self.loads if origin(url) != mine})


class Targets(HTMLParser):
    def __init__(self, base: str, found: Found) -> None:
        super().__init__(convert_charrefs=True)
        self.base, self.found = base, found
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name in LOADING.get(tag, ()):
            if name not in values:
                continue
            if name == "srcset":
                for candidate in values[name].split(","):
                    self.found.add(self.base, candidate.strip().split(" ")[0], f"<{tag} srcset>")
            elif not (tag == "link" and values.get("rel", "").lower() in ("alternate", "canonical")):
                self.found.add(self.base, values[name], f"<{tag} {name}>")
        if "style" in values:
            css_targets(self.base, values["style"], self.found, f"<{tag} style>")
        self.in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self.in_style = False

    def handle_data(self, data: str) -> None:
        if self.in_style:
            css_targets(self.base, data, self.found, "<style>")


def css_targets(base: str, css: str, found: Found, where: str) -> None:
    for match in CSS_URL.finditer(css):
        found.add(base, match.group(1) or match.group(2), where)


def js_targets(base: str, js: str, found: Found, where: str) -> list[str]:
    """The script's targets; the same-origin scripts it imports, to follow."""
    follow = []
    for match in JS_TARGET.finditer(js):
        target = match.group(2)
        if "${" in target:  # a template: only its fixed start says the host
            target = target.split("${", 1)[0]
            if "://" not in target and not target.startswith("//"):
                continue
        found.add(base, target, where)
        if target.endswith((".js", ".mjs")):
            follow.append(urljoin(base, target))
    return follow


def crawl(client: httpx.Client, url: str) -> Found:
    """The page at ``url`` and the stylesheets and scripts of its own origin it loads."""
    found = Found()
    page = client.get(url, headers={"accept": "text/html"})
    Targets(url, found).feed(page.text)
    seen: set[str] = set()
    queue = [u for u, _ in found.loads if origin(u) == origin(url)]
    while queue:
        asset = queue.pop()
        if asset in seen or not asset.split("?", 1)[0].endswith((".css", ".js", ".mjs")):
            continue
        seen.add(asset)
        answer = client.get(asset)
        assert answer.status_code == 200, f"{asset} answered {answer.status_code} (linked from {url})"
        path = asset.split("?", 1)[0]
        if path.endswith(".css"):
            before = len(found.loads)
            css_targets(asset, answer.text, found, path.rsplit("/", 1)[-1])
            queue += [u for u, _ in found.loads[before:] if origin(u) == origin(url)]
        else:
            queue += [
                u for u in js_targets(asset, answer.text, found, path.rsplit("/", 1)[-1]) if origin(u) == origin(url)
            ]
    return found


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    return make_world(stack)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def http_client(site: SitePage, world: World) -> tuple[httpx.Client, str]:
    path, cookies = fill_path(site, world)
    client = httpx.Client(base_url=world.base(site.app), timeout=30)
    for cookie in cookies:
        client.cookies.set(cookie["name"], cookie["value"], domain=cookie["domain"], path=cookie["path"])
    return client, path


@pytest.mark.parametrize("site", SITE, ids=lambda s: s.key)
def test_a_page_loads_nothing_from_another_host(world: World, site: SitePage) -> None:
    client, path = http_client(site, world)
    with client:
        url = f"{world.base(site.app)}{path}"
        found = crawl(client, url)
    assert found.loads, f"{site.name}: found no stylesheet or script at all (the crawl is broken)"
    assert not found.foreign(url), f"{site.name} loads from other hosts: {found.foreign(url)}"


@pytest.mark.parametrize("site", SITE, ids=lambda s: s.key)
def test_a_page_in_chromium_asks_only_its_own_origin(browser: Browser, world: World, site: SitePage) -> None:
    opened = open_site_page(browser, site, world, "nl")
    try:
        opened.page.wait_for_load_state("networkidle")
        assert any(url.endswith("/static/konsil.css") for url in opened.watch.requests), opened.watch.requests
        opened.watch.assert_same_origin(opened.base)
        opened.watch.assert_no_script_errors(allow=["Failed to load resource"] if site.status >= 400 else [])
    finally:
        opened.context.close()


API_DOC_PAGES = [(app, path) for app in ("control", "region") for path in API_DOCS]


@pytest.mark.parametrize(("app", "path"), API_DOC_PAGES, ids=[f"{a}{p}" for a, p in API_DOC_PAGES])
def test_the_api_docs_load_nothing_from_another_host(browser: Browser, world: World, app: str, path: str) -> None:
    base = world.base("region" if app == "region" else "control")
    with httpx.Client(timeout=30) as client:
        answer = client.get(f"{base}{path}", headers={"accept": "text/html"})
        assert answer.status_code == 200, (path, answer.status_code)
        found = crawl(client, f"{base}{path}")
    assert not found.foreign(base), f"{app} {path} loads from other hosts: {found.foreign(base)}"
    context = new_context(browser, base, "en")
    try:
        page, watch = new_page(context)
        page.goto(path)
        page.wait_for_load_state("networkidle")
        watch.assert_same_origin(base)
    finally:
        context.close()


def test_the_crawl_sees_what_another_host_would_be() -> None:
    """The checks above can fail: a page of each kind of foreign load is caught."""
    own = "http://127.0.0.1:8000/p"
    html = (
        '<link rel="stylesheet" href="https://cdn.example/x.css"><script src="//cdn.example/x.js"></script>'
        '<img srcset="/a.png 1x, https://img.example/b.png 2x"><a href="https://elsewhere.example/">a link</a>'
        '<div style="background: url(https://img.example/c.png)"></div><form action="https://forms.example/"></form>'
    )
    found = Found()
    Targets(own, found).feed(html)
    css_targets(own, "@import 'https://fonts.example/f.css'; a { b: url(/own.png) }", found, "x.css")
    js_targets(
        own,
        "import { t } from '/static/i18n.js'; fetch(`https://api.example/${x}`); new WebSocket('/ws')",
        found,
        "x.js",
    )
    foreign = {url.split(" ", 1)[0] for url in found.foreign(own)}
    assert foreign == {
        "https://cdn.example/x.css",
        "http://cdn.example/x.js",
        "https://img.example/b.png",
        "https://img.example/c.png",
        "https://forms.example/",
        "https://fonts.example/f.css",
        "https://api.example/",
    }, foreign
