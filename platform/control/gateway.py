"""The API gateway: ``/api/v1/orgs/{slug}/…`` is forwarded to the organisation's
region service, signed, over pooled keep-alive connections, with the response
streamed back. Browser paths ``/{slug}/…`` answer 307 to the region's public URL.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from litestar import Request, Response, asgi, get
from litestar.response import Redirect
from litestar.types import Receive, Scope, Send

from konsil.platform.control.context import ControlContext
from konsil.platform.control.network import RegionUnavailable
from konsil.platform.control.signup import SLUG_PATTERN
from konsil.platform.control.tables import DELETED, DirectoryOrganisation
from konsil.platform.core import errors
from konsil.platform.core.signing import FORWARDED_FOR, SIGNED_HEADERS
from konsil.platform.core.telemetry import trace_header_line  # telemetry (wt2): trace context to the region
from konsil.platform.core.web import read_body, send_json_error

log = logging.getLogger("konsil.gateway")

API_PREFIX = "/api/v1/orgs/"
_PREFIX = API_PREFIX.encode()
FORWARDED_FOR_LINE = f"{FORWARDED_FOR}: ".encode()
_UNSAFE_TARGET = re.compile(rb"[\x00-\x20\x7f]")
# Not forwarded: hop-by-hop headers, and anything a client might use to pose as us.
# (``expect``: the gateway has read the whole body before it forwards it.)
_DROP_REQUEST = {
    name.encode()
    for name in (
        "host",
        "connection",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "te",
        "trailer",
        "expect",
        FORWARDED_FOR,
        *SIGNED_HEADERS,
        "traceparent",  # telemetry (wt2): only the gateway's own trace context goes on
        "tracestate",
    )
}
_SLUG = re.compile(SLUG_PATTERN)
_NO_CONTENT_METHODS = {"GET", "HEAD", "DELETE", "OPTIONS"}
_DROP_RESPONSE = {b"connection", b"keep-alive", b"transfer-encoding", b"server", b"date"}


# What ``Directory.region_of`` answers for an organisation its region deleted.
GONE = "(deleted)"
GONE_MESSAGE = "this organisation was deleted; its data no longer exists"


class Directory:
    """slug → region for active organisations (``GONE`` for deleted ones), cached
    briefly (ids never move silently)."""

    def __init__(self, ttl_seconds: float = 15.0) -> None:
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, str | None]] = {}

    def forget(self) -> None:
        """Drop what is cached (an organisation was deleted: it answers 410 from now on
        here; other replicas of the control plane within their ``ttl``)."""
        self._cache.clear()

    async def region_of(self, slug: str) -> str | None:
        if _SLUG.match(slug) is None:  # not an organisation address (and never sent to the database)
            return None
        now = time.monotonic()
        hit = self._cache.get(slug)
        if hit and hit[0] > now:
            return hit[1]
        row = (
            await DirectoryOrganisation.select(DirectoryOrganisation.region, DirectoryOrganisation.status)
            .where((DirectoryOrganisation.slug == slug) & DirectoryOrganisation.status.is_in(["active", DELETED]))
            .first()
            .run()
        )
        region = (GONE if row["status"] == DELETED else row["region"]) if row else None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[slug] = (now + (self.ttl if region and region != GONE else 2.0), region)
        return region


@asgi(API_PREFIX.rstrip("/"), is_mount=True, opt={"public": True}, copy_scope=True)
async def forward(scope: Scope, receive: Receive, send: Send) -> None:
    app = scope["app"]
    ctx: ControlContext = app.state.control
    directory: Directory = app.state.directory
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    rest = raw_path[len(_PREFIX) :] if raw_path.startswith(_PREFIX) else b""
    slug = rest.split(b"/", 1)[0].decode("latin-1")
    region_id = await directory.region_of(slug) if slug else None
    if region_id == GONE:
        await send_json_error(send, 410, "gone", GONE_MESSAGE)
        return
    if region_id is None or region_id not in ctx.regions:
        await send_json_error(send, 404, "not_found", "no such organisation")
        return
    body = await read_body(receive, send, ctx.settings.max_body_bytes)
    if body is None:
        return
    query: bytes = scope.get("query_string", b"")
    target = raw_path + b"?" + query if query else raw_path
    if _UNSAFE_TARGET.search(target):  # never from uvicorn's parser; refused rather than sent on
        await send_json_error(send, 400, "bad_request", "the request target is malformed")
        return
    method = str(scope.get("method", "GET"))
    route = ctx.route(region_id)
    client = scope.get("client")
    parts = [method.encode("ascii"), b" ", route.origin.prefix, target, b" HTTP/1.1\r\nhost: ", route.host_header]
    for name, value in scope["headers"]:
        if name.lower() not in _DROP_REQUEST:
            parts += (b"\r\n", name, b": ", value)
    parts += (b"\r\n" + FORWARDED_FOR_LINE, (client[0] if client else "unknown").encode("latin-1"), b"\r\n")
    if body or method not in _NO_CONTENT_METHODS:  # RFC 9110 §8.6: none where no content is expected
        parts += (b"content-length: ", str(len(body)).encode(), b"\r\n")
    parts += (route.signer.header_lines(method, target.decode("latin-1"), body), trace_header_line(), b"\r\n")
    pool = ctx.pool
    try:
        answer = await pool.request(route.origin, b"".join(parts), body, method == "HEAD")
    except RegionUnavailable as exc:
        await _unavailable(send, region_id, exc)
        return
    try:
        out_headers = [(k, v) for k, v in answer.headers if k.lower() not in _DROP_RESPONSE]
        start: Any = {"type": "http.response.start", "status": answer.status, "headers": out_headers}
        await send(start)
        while True:
            chunk = await answer.read_body()
            # Usually the whole body came with the head: one message, then done.
            more = bool(chunk) and not (answer.complete and not answer.chunks)
            part: Any = {"type": "http.response.body", "body": chunk, "more_body": more}
            await send(part)
            if not more:
                break
    except RegionUnavailable as exc:
        await _unavailable(send, region_id, exc)
    finally:
        pool.release(answer)


async def _unavailable(send: Send, region_id: str, exc: RegionUnavailable) -> None:
    log.warning("region %s unavailable: %s", region_id, exc)
    try:
        await send_json_error(send, 503, "unavailable", f"region {region_id} is not reachable; try again shortly")
    except RuntimeError:  # the response had already started: nothing more can be said
        pass


def _redirect(request: Request[Any, Any, Any], region_id: str | None) -> Response[Any]:
    ctx: ControlContext = request.app.state.control
    if region_id == GONE:
        raise errors.AppError(410, "gone", GONE_MESSAGE)
    if region_id is None or region_id not in ctx.regions:
        raise errors.not_found("no such organisation")
    query = request.scope.get("query_string", b"").decode("latin-1")
    target = ctx.regions[region_id].public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")
    return Redirect(target, status_code=307)


@get(["/{slug:str}", "/{slug:str}/{rest:path}"], opt={"public": True}, include_in_schema=False)
async def browser_redirect(request: Request[Any, Any, Any], slug: str) -> Response[Any]:
    return _redirect(request, await request.app.state.directory.region_of(slug))
