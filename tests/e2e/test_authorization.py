"""Every route of the region service (and of the control plane) has an authorization
rule, and it holds.

The tests walk the routes of the applications themselves (``app.routes``), not their
OpenAPI documents, so pages, internal routes, WebSocket routes and every other route
with ``include_in_schema=False`` count too. Every route declares who may call it: a
member/token rule (``opt["auth"]``), ``public``, or a guard of its own (internal
routes: a signature; visitor and WebSocket routes: a visit cookie, then the rule).
Then, against the running EU process: anonymous callers are refused on every route
but the listed public ones; members and tokens of organisation A get 403/404 on
organisation B; a role (or token scope) below the route's requirement gets 403.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.handlers.base import BaseRouteHandler
from litestar.routes import ASGIRoute, HTTPRoute, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from konsil.compliance.controls.catalog import load_catalogs
from konsil.platform.control.app import create_control_app
from konsil.platform.core.authz import Rule
from konsil.regions.app import create_region_app
from tests.conftest import Stack, stored_network_test_result

pytestmark = pytest.mark.e2e

ROLES = ("owner", "admin", "expert", "auditor")
SCOPES = ["org:read", "members:read", "members:write", "rooms:read", "rooms:write"]
# Open to anyone (besides the OpenAPI documents under /schema, Litestar's own routes).
PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),  # readiness: which dependency fails, never how to reach it (platform/core/readiness.py)
    ("POST", "/api/v1/orgs/{slug}/auth/login"),
    ("POST", "/api/v1/login"),
    ("GET", "/.well-known/konsil/keys"),  # the region's public signing keys, for auditors
    ("GET", "/schemas/konsil-report-v1.json"),  # the report document's JSON Schema, for auditors' tools
    ("GET", "/.well-known/konsil/receipt-key"),  # its current one alone
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/welcome/{token}"),  # a new owner's one-time sign-in link (tenants/welcome.py)
    ("GET", "/{slug}/{room_slug}"),  # a room's join link
    ("GET", "/{slug}/logo"),  # the organisation's logo on its visitors' pages
    ("POST", "/{slug}/{room_slug}/visits"),  # the join form
    ("GET", "/{slug}/{room_slug}/visits"),  # the join form's address opened as a page: to the join page
    ("GET", "/password-reset"),  # asking for a password-reset link by e-mail
    ("POST", "/password-reset"),
    ("GET", "/password-reset/{token}"),  # the link from the mail: choosing the new password
    ("POST", "/password-reset/{token}"),
    ("GET", "/invitations/{token}"),  # an invitation's link: the invited person joins
    ("POST", "/invitations/{token}"),
    ("GET", "/static/{file_path}"),
    ("HEAD", "/static/{file_path}"),
    ("OPTIONS", "/static/{file_path}"),  # Litestar's own, public with its router
    ("POST", "/webhooks/stripe"),  # Stripe's events: the signature with the region's webhook secret is the check
    ("GET", "/identity/callback"),  # back from the eID broker: the state (hashed, single use) and its cookie
    ("POST", "/{slug}/{room_slug}/consent"),  # a visitor device's consent choice: a random device id, rate-limited
}
# A visitor's own pages: only the visit's cookie opens them (checked by a guard or the
# handler); without it they answer as if there were no such visit.
VISITOR_ROUTES = {
    ("GET", "/{slug}/{room_slug}/visits/{visit_id}"),
    ("WS", "/{slug}/{room_slug}/visits/{visit_id}/ws"),
    # The visit's check-in steps (tenants/checkin.py): the eID check and the card fee.
    ("GET", "/{slug}/{room_slug}/visits/{visit_id}/identity"),
    ("GET", "/{slug}/{room_slug}/visits/{visit_id}/identity/start"),
    ("GET", "/{slug}/{room_slug}/visits/{visit_id}/payment"),
    ("POST", "/{slug}/{room_slug}/visits/{visit_id}/payment"),
    ("POST", "/{slug}/{room_slug}/visits/{visit_id}/payment/check"),
}
CONTROL_PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/readyz"),  # readiness: which dependency fails, never how to reach it (platform/core/readiness.py)
    ("POST", "/api/v1/signup"),
    ("POST", "/api/v1/login-discovery"),
    ("GET", "/api/v1/regions"),
    ("GET", "/"),  # the pages: landing, signup, finding where to log in (platform/control/pages.py)
    ("GET", "/signup"),
    ("POST", "/signup"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/static/{file_path}"),
    ("HEAD", "/static/{file_path}"),
    ("OPTIONS", "/static/{file_path}"),
    ("ASGI", "/api/v1/orgs"),  # the gateway: the region authorizes each forwarded call
    ("GET", "/{slug}"),  # browser paths: a redirect to the organisation's region
    ("GET", "/{slug}/{rest}"),
}
WS_REFUSALS = {"http 401", "http 403", "close 4401", "close 4403", "close 4404"}


@dataclass(frozen=True)
class Endpoint:
    method: str  # an HTTP method, "WS" or "ASGI"
    path: str
    handler: BaseRouteHandler

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def opt(self) -> dict[str, Any]:
        return self.handler.opt

    @property
    def rule(self) -> Rule | None:
        found = self.opt.get("auth")
        return found if isinstance(found, Rule) else None

    @property
    def guarded(self) -> bool:
        return bool(self.handler.resolve_guards())

    @property
    def generated(self) -> bool:
        """Litestar's own OPTIONS answer, which declares nothing (refused: fail closed)."""
        return self.method == "OPTIONS" and not self.opt

    @property
    def public(self) -> bool:
        return bool(self.opt.get("public"))


def endpoints(app: Litestar) -> list[Endpoint]:
    """Every (method, path) the application answers, with the handler that answers it."""
    found: list[Endpoint] = []
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path_format)
        if isinstance(route, HTTPRoute):
            found += [Endpoint(method, path, handler) for method, (handler, _) in route.route_handler_map.items()]
        elif isinstance(route, WebSocketRoute):
            found.append(Endpoint("WS", path, route.route_handler))
        elif isinstance(route, ASGIRoute):
            found.append(Endpoint("ASGI", path, route.route_handler))
        else:
            raise AssertionError(f"a route of an unknown kind: {route!r}")
    return sorted(found, key=lambda e: (e.path, e.method))


def region_app(stack: Stack) -> Litestar:
    return create_region_app(stack.settings.for_region("eu"))


def control_app(stack: Stack) -> Litestar:
    return create_control_app(stack.settings.for_control())


def documents(endpoint: Endpoint) -> bool:
    return endpoint.path == "/schema" or endpoint.path.startswith("/schema/")


def member_routes(stack: Stack) -> list[Endpoint]:
    """The HTTP routes with a member/token rule (pages and visitor routes included)."""
    return [e for e in endpoints(region_app(stack)) if e.method not in ("WS", "ASGI") and e.rule is not None]


class Org:
    def __init__(self, stack: Stack, tag: str) -> None:
        made = stack.signup("eu", slug=stack.unique(tag))
        self.slug = made["slug"]
        base = stack.region_url("eu")
        self.clients: dict[str, httpx.Client] = {"owner": stack.login(base, self.slug, made["owner"]["email"])}
        owner = self.clients["owner"]
        # node_id: the media-node ops routes; org_id: the internal routes.
        # "token": a sign-in link's token (/welcome/{token}); Litestar's OPTIONS answer is refused.
        self.ids: dict[str, str] = {"node_id": "eu-relay-1", "org_id": made["organisation_id"], "token": "no-such"}
        for role in ("admin", "expert", "auditor"):
            member = stack.add_member(owner, self.slug, role)
            self.clients[role] = stack.login(base, self.slug, member["email"])
            self.ids.setdefault("member_id", member["id"])
        room = owner.post(f"/api/v1/orgs/{self.slug}/rooms", json={"slug": stack.unique("r"), "title": "Room"})
        assert room.status_code == 201, room.text
        self.ids["room_id"] = room.json()["id"]
        # Two visits: one stays waiting (visit_id), one is admitted (call_id).
        room_slug = room.json()["slug"]
        self.ids["room_slug"] = room_slug  # visitor routes live under the visit's own path
        visit_ids = []
        for _ in range(2):
            joined = httpx.post(
                f"{base}/{self.slug}/{room_slug}/visits",
                data={"name": "Visitor", "consent": "yes"},
                follow_redirects=False,
            )
            assert joined.status_code == 303, joined.text
            visit_ids.append(joined.headers["location"].rsplit("/", 1)[1])
        self.ids["visit_id"] = visit_ids[0]
        call = owner.post(f"/api/v1/orgs/{self.slug}/visits/{visit_ids[1]}/admit")
        assert call.status_code == 200, call.text
        self.ids["call_id"] = call.json()["id"]
        self.tokens: dict[str, str] = {}
        for scope in [*SCOPES, "none"]:
            scopes = SCOPES if scope == "none" else [scope]
            made_token = owner.post(f"/api/v1/orgs/{self.slug}/tokens", json={"label": scope, "scopes": scopes})
            assert made_token.status_code == 201, made_token.text
            self.tokens[scope] = made_token.json()["token"]
            self.ids["token_id"] = made_token.json()["id"]
        dsr = owner.post(f"/api/v1/orgs/{self.slug}/dsr", json={"kind": "access", "email": "subject@authz.example"})
        assert dsr.status_code == 201, dsr.text
        self.ids["dsr_id"] = dsr.json()["id"]
        invited = owner.post(
            f"/api/v1/orgs/{self.slug}/invitations", json={"email": "invitee@authz.example", "role": "expert"}
        )
        assert invited.status_code == 201, invited.text
        self.ids["invitation_id"] = invited.json()["id"]
        self.ids["test_id"] = asyncio.run(stored_network_test_result(stack.dsns["eu"], self.slug))
        control_id = next(c.id for c in load_catalogs()["gdpr"].controls if c.attestation is not None)
        signed = owner.post(
            f"/api/v1/orgs/{self.slug}/attestations", json={"framework": "gdpr", "control_id": control_id}
        )
        assert signed.status_code == 201, signed.text
        self.ids["attestation_id"] = signed.json()["id"]
        today = dt.date.today().isoformat()
        report = owner.post(f"/api/v1/orgs/{self.slug}/reports", json={"framework": "gdpr", "from": today, "to": today})
        assert report.status_code == 202, report.text
        self.ids["report_id"] = report.json()["id"]
        self.ids["file_format"] = "pdf"

    def token_client(self, base: str, scope: str) -> httpx.Client:
        return httpx.Client(base_url=base, headers={"authorization": f"Bearer {self.tokens[scope]}"}, timeout=30)


@pytest.fixture(scope="module")
def orgs(stack: Stack) -> tuple[Org, Org]:
    return Org(stack, "authz-a"), Org(stack, "authz-b")


def fill(path: str, org: Org) -> str:
    return path.replace("{slug}", org.slug).format(**org.ids)


def call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    return client.request(method, path, json={} if method in {"POST", "PATCH", "PUT"} else None)


async def socket_refusal(base: str, path: str) -> str:
    """How a WebSocket route answers an anonymous caller (it must not open)."""
    try:
        async with connect(base.replace("http://", "ws://", 1) + path, open_timeout=10) as ws:
            message = await asyncio.wait_for(ws.recv(), 10)
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"
    except ConnectionClosed as exc:
        return f"close {exc.rcvd.code if exc.rcvd else None}"
    raise AssertionError(f"the socket {path} opened to an anonymous caller and said {message!r}")


def test_every_route_declares_who_may_call_it(stack: Stack) -> None:
    for name, app in (("region", region_app(stack)), ("control plane", control_app(stack))):
        found = endpoints(app)
        assert len(found) >= (60 if name == "region" else 15), name
        for e in found:
            if e.generated:
                continue
            assert e.public or e.rule is not None or e.guarded, f"{name}: {e.key} declares no rule"
            # An internal route is passed by the app-level check: its guard is all there is.
            if e.opt.get("internal"):
                assert e.guarded, f"{name}: internal route {e.key} has no guard"
            if e.method == "WS":  # the app-level check covers HTTP only
                assert e.guarded or e.key in VISITOR_ROUTES, f"{name}: WebSocket route {e.key} has no guard"


def test_public_routes_are_exactly_the_listed_ones(stack: Stack) -> None:
    region = {e.key for e in endpoints(region_app(stack)) if e.public and not documents(e)}
    assert region - VISITOR_ROUTES == PUBLIC_ROUTES
    control = {e.key for e in endpoints(control_app(stack)) if e.public and not documents(e)}
    assert control == CONTROL_PUBLIC_ROUTES
    for e in endpoints(region_app(stack)):
        if e.key in VISITOR_ROUTES:
            assert e.public or e.guarded, e.key


def test_anonymous_callers_are_refused_on_every_other_route(stack: Stack, orgs: tuple[Org, Org]) -> None:
    _, b = orgs
    base = stack.region_url("eu")
    anonymous = httpx.Client(base_url=base, timeout=30)
    checked: set[str] = set()
    for e in endpoints(region_app(stack)):
        if e.key in PUBLIC_ROUTES or documents(e):
            continue
        path = fill(e.path, b)
        if e.method == "WS":
            assert asyncio.run(socket_refusal(base, path)) in WS_REFUSALS, e.key
            checked.add("socket")
            continue
        response = call(anonymous, e.method, path)
        if e.generated:
            expected, kind = {401, 403}, "generated"  # 401: the internal paths refuse unsigned calls first
        elif e.key in VISITOR_ROUTES:
            expected, kind = {401, 403, 404}, "visitor"  # 404: as if there were no such visit
        elif e.opt.get("page"):
            expected, kind = {303}, "page"
            assert response.headers["location"] == "/login", (e.key, response.headers)
        else:
            expected, kind = {401}, "internal" if e.opt.get("internal") else "api"
        assert response.status_code in expected, (e.key, response.status_code, response.text)
        checked.add(kind)
    # Every kind of route was met, those outside the OpenAPI document included.
    assert checked == {"socket", "generated", "visitor", "page", "internal", "api"}


def test_anonymous_callers_are_refused_by_the_control_plane(stack: Stack) -> None:
    anonymous = httpx.Client(base_url=stack.control_url, timeout=30)
    internal = no_rule = 0
    for e in endpoints(control_app(stack)):
        if e.public or documents(e):
            continue
        response = call(anonymous, e.method, e.path.replace("{slug}", "no-such-org").replace("{rest}", "x"))
        if e.generated:  # no rule: refused by the app-level check (or unsigned, on internal paths)
            assert response.status_code in (401, 403), (e.key, response.text)
            no_rule += response.status_code == 403
        else:
            assert e.opt.get("internal"), e.key
            assert response.status_code == 401, (e.key, response.text)
            internal += 1
    assert internal >= 2 and no_rule >= 1


def test_members_and_tokens_of_another_organisation_get_nothing(stack: Stack, orgs: tuple[Org, Org]) -> None:
    a, b = orgs
    base = stack.region_url("eu")
    callers = [*a.clients.values(), a.token_client(base, "none")]
    for e in member_routes(stack):
        for client in callers:
            response = call(client, e.method, fill(e.path, b))
            assert response.status_code in (403, 404), (e.key, response.status_code, response.text)
            assert b.slug not in response.text or response.status_code == 404


def test_roles_and_scopes_below_the_requirement_get_403(stack: Stack, orgs: tuple[Org, Org]) -> None:
    _, b = orgs
    base = stack.region_url("eu")
    checked = 0
    for e in member_routes(stack):
        rule = e.rule
        assert rule is not None
        for role in ROLES:
            if role not in rule.roles:
                response = call(b.clients[role], e.method, fill(e.path, b))
                assert response.status_code == 403, (role, e.key, response.text)
                checked += 1
        for scope in SCOPES:
            if scope != rule.scope:
                response = call(b.token_client(base, scope), e.method, fill(e.path, b))
                assert response.status_code == 403, (scope, e.key, response.text)
                checked += 1
    assert checked > 30


def test_a_region_refuses_an_organisation_of_another_region(stack: Stack) -> None:
    made = stack.signup("us")
    us_client = stack.login(stack.region_url("us"), made["slug"], made["owner"]["email"])
    assert us_client.get(f"/api/v1/orgs/{made['slug']}/").status_code == 200
    # The same session and slug, asked directly at the EU region service.
    eu = httpx.Client(base_url=stack.region_url("eu"), cookies=us_client.cookies, headers=us_client.headers)
    assert eu.get(f"/api/v1/orgs/{made['slug']}/").status_code == 404
    assert eu.get(f"/api/v1/orgs/{made['slug']}/rooms").status_code == 404


def test_unsafe_calls_with_a_session_need_the_csrf_header(stack: Stack, orgs: tuple[Org, Org]) -> None:
    _, b = orgs
    owner = b.clients["owner"]
    no_header = httpx.Client(base_url=stack.region_url("eu"), cookies=owner.cookies)
    response = no_header.post(f"/api/v1/orgs/{b.slug}/rooms", json={"slug": "csrf-room", "title": "x"})
    assert response.status_code == 403 and response.json()["error"] == "csrf"
    assert no_header.get(f"/api/v1/orgs/{b.slug}/rooms").status_code == 200, "safe methods need no token"
