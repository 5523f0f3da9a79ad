"""Every route of the region service has an authorization rule, and it holds.

The test walks every operation in the region's OpenAPI schema (fetched from the
running EU process) and proves, except for an explicit list of public routes:
anonymous callers get 401; members and tokens of organisation A get 403/404 on
organisation B; a role (or token scope) below the route's requirement gets 403.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from konsil.regions.app import create_region_app
from konsil.tenants.auth import Rule
from tests.conftest import Stack, stored_network_test_result

pytestmark = pytest.mark.e2e

ROLES = ("owner", "admin", "expert", "auditor")
SCOPES = ["org:read", "members:read", "members:write", "rooms:read", "rooms:write"]
PUBLIC_ROUTES = {
    ("POST", "/api/v1/orgs/{slug}/auth/login"),
    ("POST", "/api/v1/login"),
    ("GET", "/.well-known/konsil/receipt-key"),  # a public key, for auditors
}


def rules_by_route(stack: Stack) -> dict[tuple[str, str], dict[str, Any]]:
    app = create_region_app(stack.settings.for_region("eu"))
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in getattr(handler, "http_methods", ()):
                path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path_format)
                found[(method, path)] = handler.opt
    return found


class Org:
    def __init__(self, stack: Stack, tag: str) -> None:
        made = stack.signup("eu", slug=stack.unique(tag))
        self.slug = made["slug"]
        base = stack.region_url("eu")
        self.clients: dict[str, httpx.Client] = {"owner": stack.login(base, self.slug, made["owner"]["email"])}
        owner = self.clients["owner"]
        self.ids: dict[str, str] = {"node_id": "eu-relay-1"}  # media-node ops routes
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
        self.ids["test_id"] = asyncio.run(stored_network_test_result(stack.dsns["eu"], self.slug))

    def token_client(self, base: str, scope: str) -> httpx.Client:
        return httpx.Client(base_url=base, headers={"authorization": f"Bearer {self.tokens[scope]}"}, timeout=30)


@pytest.fixture(scope="module")
def orgs(stack: Stack) -> tuple[Org, Org]:
    return Org(stack, "authz-a"), Org(stack, "authz-b")


def operations(stack: Stack) -> list[tuple[str, str]]:
    schema = httpx.get(f"{stack.region_url('eu')}/schema/openapi.json").json()
    ops = [
        (m.upper(), p)
        for p, item in schema["paths"].items()
        for m in item
        if m in {"get", "post", "patch", "put", "delete"}
    ]
    assert len(ops) >= 15, "the schema lists the tenant API"
    return ops


def fill(path: str, org: Org) -> str:
    return path.replace("{slug}", org.slug).format(**org.ids)


def call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    return client.request(method, path, json={} if method in {"POST", "PATCH", "PUT"} else None)


def test_public_routes_are_exactly_the_listed_ones(stack: Stack) -> None:
    rules = rules_by_route(stack)
    public = {key for key, opt in rules.items() if opt.get("public") and key in set(operations(stack))}
    assert public == PUBLIC_ROUTES
    for key in operations(stack):
        assert key in PUBLIC_ROUTES or isinstance(rules[key].get("auth"), Rule), f"{key} has no rule"


def test_anonymous_callers_get_401(stack: Stack, orgs: tuple[Org, Org]) -> None:
    _, b = orgs
    anonymous = httpx.Client(base_url=stack.region_url("eu"), timeout=30)
    for method, path in operations(stack):
        if (method, path) in PUBLIC_ROUTES:
            continue
        response = call(anonymous, method, fill(path, b))
        assert response.status_code == 401, (method, path, response.text)


def test_members_and_tokens_of_another_organisation_get_nothing(stack: Stack, orgs: tuple[Org, Org]) -> None:
    a, b = orgs
    base = stack.region_url("eu")
    callers = [*a.clients.values(), a.token_client(base, "none")]
    for method, path in operations(stack):
        if (method, path) in PUBLIC_ROUTES:
            continue
        for client in callers:
            response = call(client, method, fill(path, b))
            assert response.status_code in (403, 404), (method, path, response.status_code, response.text)
            assert b.slug not in response.text or response.status_code == 404


def test_roles_and_scopes_below_the_requirement_get_403(stack: Stack, orgs: tuple[Org, Org]) -> None:
    _, b = orgs
    rules = rules_by_route(stack)
    base = stack.region_url("eu")
    checked = 0
    for method, path in operations(stack):
        if (method, path) in PUBLIC_ROUTES:
            continue
        rule: Rule = rules[(method, path)]["auth"]
        for role in ROLES:
            if role not in rule.roles:
                response = call(b.clients[role], method, fill(path, b))
                assert response.status_code == 403, (role, method, path, response.text)
                checked += 1
        for scope in SCOPES:
            if scope != rule.scope:
                response = call(b.token_client(base, scope), method, fill(path, b))
                assert response.status_code == 403, (scope, method, path, response.text)
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
