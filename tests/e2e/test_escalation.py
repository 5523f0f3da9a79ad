"""Nothing may grant more than its holder has (issue 11, item 1).

An integration token with only ``members:write`` once created an admin with a password
of its choosing, logged in as it and minted an all-scope token. These tests walk every
write route of the region app (its routes, not the OpenAPI document, so pages and
unlisted routes count too) with every member role and every token scope, and for the
routes that create or change members every target role, with and without a password:
nothing is created or changed above the caller, and refusals are 403 (or 404).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from konsil.platform.core.authz import Rule
from konsil.regions.app import create_region_app
from konsil.tenants.api_tokens import ROLE_SCOPES
from konsil.tenants.schemas import SCOPES
from tests.conftest import Stack, auditor_access_until, fetch

pytestmark = pytest.mark.e2e

ROLES = ("owner", "admin", "expert", "auditor")
MANAGERS = frozenset({"owner", "admin"})
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
PASSWORD = "correct horse battery"
# Token callers: one per scope, and one holding every scope.
TOKEN_CALLERS = (*SCOPES, "all")


def grant_end(role: str) -> dict[str, str]:
    """An auditor's access always has an end (tests/e2e/test_auditor_access.py)."""
    return {"access_expires_at": auditor_access_until()} if role == "auditor" else {}


def write_routes(stack: Stack) -> list[tuple[str, str, Rule]]:
    """Every write route of the region app that has a member/token rule."""
    app = create_region_app(stack.settings.for_region("eu"))
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in set(getattr(handler, "http_methods", ())) & WRITE_METHODS:
                rule = handler.opt.get("auth")
                if isinstance(rule, Rule):
                    found.append((method, re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path_format), rule))
                else:
                    assert handler.opt.get("public") or handler.opt.get("internal"), (method, route.path_format)
    return sorted(found, key=lambda r: (r[1], r[0]))


@dataclass
class Org:
    stack: Stack
    slug: str
    org_id: str
    owner_id: str
    clients: dict[str, httpx.Client] = field(default_factory=dict)
    member_ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.stack.region_url("eu")

    def caller(self, who: str) -> httpx.Client:
        if who in ROLES:
            return self.clients[who]
        return httpx.Client(base_url=self.base, headers={"authorization": f"Bearer {self.tokens[who]}"}, timeout=30)

    def members(self) -> dict[str, tuple[str, str]]:
        """id → (role, sealed name) of every member, straight from the database (a changed
        name shows as a changed ciphertext)."""
        rows = asyncio.run(
            fetch(
                self.stack.dsns["eu"],
                "SELECT id, role, name FROM member WHERE org_id = $1",
                uuid.UUID(self.org_id),
            )
        )
        return {str(r["id"]): (r["role"], r["name"]) for r in rows}

    def add(self, role: str, password: bool = False) -> str:
        """A member added by the owner; its id."""
        tag = self.stack.unique(f"t-{role}")
        body: dict[str, Any] = {
            "name": f"Target {tag}",
            "email": f"{tag}@escalation.example",
            "role": role,
            **grant_end(role),
        }
        if password:
            body["password"] = PASSWORD
        made = self.clients["owner"].post(f"/api/v1/orgs/{self.slug}/members", json=body)
        assert made.status_code == 201, made.text
        return str(made.json()["id"])


@pytest.fixture(scope="module")
def org(stack: Stack) -> Org:
    made = stack.signup("eu", slug=stack.unique("escalate"))
    org = Org(stack, made["slug"], made["organisation_id"], made["owner_id"])
    org.clients["owner"] = stack.login(org.base, org.slug, made["owner"]["email"])
    for role in ("admin", "expert", "auditor"):
        member = stack.add_member(org.clients["owner"], org.slug, role)
        org.clients[role] = stack.login(org.base, org.slug, member["email"])
        org.member_ids[role] = member["id"]
    org.member_ids["owner"] = org.owner_id
    for who in TOKEN_CALLERS:
        scopes = list(SCOPES) if who == "all" else [who]
        made_token = org.clients["owner"].post(f"/api/v1/orgs/{org.slug}/tokens", json={"label": who, "scopes": scopes})
        assert made_token.status_code == 201, made_token.text
        org.tokens[who] = made_token.json()["token"]
    return org


def admitted(rule: Rule, who: str) -> bool:
    """Whether the route's rule lets this caller past the guard."""
    if who in ROLES:
        return who in rule.roles
    return rule.scope is not None and (who == "all" or who == rule.scope)


def may_write_members(who: str) -> bool:
    return who in MANAGERS or who in ("members:write", "all")


# --- the outside run's reproduction ----------------------------------------------------------


def test_a_members_write_token_cannot_make_an_admin_with_a_password(stack: Stack, org: Org) -> None:
    token = org.caller("members:write")
    before = org.members()
    body = {"name": "X", "email": "x-admin@escalation.example", "role": "admin", "password": PASSWORD}
    response = token.post(f"/api/v1/orgs/{org.slug}/members", json=body)
    assert response.status_code == 403, response.text
    assert "password" in response.json()["message"]
    without_password = token.post(f"/api/v1/orgs/{org.slug}/members", json={**body, "password": None})
    assert without_password.status_code == 403 and "above expert" in without_password.json()["message"]
    assert org.members() == before, "no row was created"
    login = httpx.post(
        f"{org.base}/api/v1/orgs/{org.slug}/auth/login", json={"email": body["email"], "password": PASSWORD}
    )
    assert login.status_code == 401
    # And the token still cannot mint tokens at all.
    minted = token.post(f"/api/v1/orgs/{org.slug}/tokens", json={"label": "all", "scopes": list(SCOPES)})
    assert minted.status_code == 403


def test_a_member_added_without_a_password_cannot_log_in(stack: Stack, org: Org) -> None:
    token = org.caller("members:write")
    tag = stack.unique("nopw")
    email = f"{tag}@escalation.example"
    made = token.post(
        f"/api/v1/orgs/{org.slug}/members", json={"name": "No Password", "email": email, "role": "expert"}
    )
    assert made.status_code == 201, made.text
    [row] = asyncio.run(
        fetch(stack.dsns["eu"], "SELECT password_hash FROM member WHERE id = $1", uuid.UUID(made.json()["id"]))
    )
    assert not row["password_hash"].startswith("$argon2")
    for password in (PASSWORD, row["password_hash"], "konsil-dummy-password", "x"):
        login = httpx.post(f"{org.base}/api/v1/orgs/{org.slug}/auth/login", json={"email": email, "password": password})
        assert login.status_code == 401, (password, login.text)


# --- every write route and every caller ---------------------------------------------------------


def fill(path: str, org: Org) -> str:
    ids = {
        "slug": org.slug,
        "member_id": org.member_ids["expert"],
        "node_id": "eu-relay-1",
        "room_slug": "no-room",
    }
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)


def test_every_write_route_refuses_every_caller_outside_its_rule(stack: Stack, org: Org) -> None:
    routes = write_routes(stack)
    assert len(routes) >= 20, "the walk found the region's write routes"
    before = org.members()
    checked = 0
    for method, path, rule in routes:
        for who in (*ROLES, *TOKEN_CALLERS):
            if admitted(rule, who):
                continue
            # A body that would escalate, had the guard let it through.
            body = {"name": "Esc", "email": "esc@escalation.example", "role": "owner", "password": PASSWORD}
            response = org.caller(who).request(method, fill(path, org), json=body)
            assert response.status_code in (403, 404), (who, method, path, response.status_code, response.text)
            checked += 1
    assert checked > 100
    assert org.members() == before


def test_role_scopes_match_the_routes_rules(stack: Stack) -> None:
    """A member mints tokens with at most the scopes their role can use itself: the table
    the token service uses is the one the routes' rules imply."""
    app = create_region_app(stack.settings.for_region("eu"))
    derived: dict[str, set[str]] = {role: set() for role in ROLES}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            rule = handler.opt.get("auth")
            if isinstance(rule, Rule) and rule.scope is not None:
                for role in rule.roles:
                    derived[role].add(rule.scope)
    assert {role: set(scopes) for role, scopes in ROLE_SCOPES.items()} == derived


# --- routes that create or change members ----------------------------------------------------


def may_create(who: str, role: str, password: bool) -> bool:
    if not may_write_members(who):
        return False
    if role == "auditor":  # letting an outsider in is an owner's call
        return who == "owner"
    if who not in ROLES:  # an integration token: no password, nothing above expert
        return not password and role not in MANAGERS
    return who == "owner" or role not in MANAGERS


def test_creating_members_never_grants_more_than_the_caller_has(stack: Stack, org: Org) -> None:
    checked = 0
    for who in (*ROLES, *TOKEN_CALLERS):
        client = org.caller(who)
        for role in ROLES:
            for password in (False, True):
                tag = stack.unique(f"new-{role}")
                body: dict[str, Any] = {
                    "name": f"New {tag}",
                    "email": f"{tag}@escalation.example",
                    "role": role,
                    **grant_end(role),
                }
                if password:
                    body["password"] = PASSWORD
                before = org.members()
                response = client.post(f"/api/v1/orgs/{org.slug}/members", json=body)
                if may_create(who, role, password):
                    assert response.status_code == 201, (who, role, password, response.text)
                    assert org.members()[response.json()["id"]][0] == role
                else:
                    assert response.status_code == 403, (who, role, password, response.status_code, response.text)
                    assert org.members() == before, (who, role, password, "a row was created")
                checked += 1
    assert checked == (len(ROLES) + len(TOKEN_CALLERS)) * len(ROLES) * 2


def may_change(who: str, target_role: str, new_role: str | None) -> bool:
    """new_role None: a change of name only."""
    if not may_write_members(who):
        return False
    if target_role in MANAGERS or new_role in MANAGERS or new_role == "auditor":
        return who == "owner"
    return True


def test_changing_members_never_grants_or_takes_more_than_the_caller_has(stack: Stack, org: Org) -> None:
    owner = org.clients["owner"]
    targets = {role: org.add(role) for role in ROLES}
    checked = 0
    for who in (*ROLES, *TOKEN_CALLERS):
        client = org.caller(who)
        for target_role, target_id in targets.items():
            for new_role in (*ROLES, None):
                if new_role == target_role:
                    continue
                change = {"name": "Renamed"} if new_role is None else {"role": new_role, **grant_end(new_role)}
                before = org.members()
                response = client.patch(f"/api/v1/orgs/{org.slug}/members/{target_id}", json=change)
                if may_change(who, target_role, new_role):
                    assert response.status_code == 200, (who, target_role, new_role, response.text)
                    if new_role is not None:  # put the role back (the owner may)
                        restore = {"role": target_role, **grant_end(target_role)}
                        assert (
                            owner.patch(f"/api/v1/orgs/{org.slug}/members/{target_id}", json=restore).status_code == 200
                        )
                else:
                    assert response.status_code == 403, (
                        who,
                        target_role,
                        new_role,
                        response.status_code,
                        response.text,
                    )
                    assert org.members() == before, (who, target_role, new_role, "the member changed")
                checked += 1
    assert checked > 150


def test_an_admin_may_correct_their_own_name_but_not_their_role(stack: Stack, org: Org) -> None:
    admin, admin_id = org.clients["admin"], org.member_ids["admin"]
    renamed = admin.patch(f"/api/v1/orgs/{org.slug}/members/{admin_id}", json={"name": "Admin Renamed"})
    assert renamed.status_code == 200, renamed.text
    for role in ("owner", "expert"):
        response = admin.patch(f"/api/v1/orgs/{org.slug}/members/{admin_id}", json={"role": role})
        assert response.status_code == 403, response.text
    assert org.members()[admin_id][0] == "admin"


def test_removing_members_never_reaches_above_the_caller(stack: Stack, org: Org) -> None:
    # One target per role, replaced only when a removal succeeded (invitations are
    # rate-limited per organisation).
    targets = {role: org.add(role) for role in ROLES}
    checked = 0
    for who in (*ROLES, *TOKEN_CALLERS):
        client = org.caller(who)
        for target_role in ROLES:
            target_id = targets[target_role]
            response = client.delete(f"/api/v1/orgs/{org.slug}/members/{target_id}")
            allowed = may_write_members(who) and (target_role not in MANAGERS or who == "owner")
            if allowed:
                assert response.status_code == 204, (who, target_role, response.text)
                assert target_id not in org.members()
                targets[target_role] = org.add(target_role)
            else:
                assert response.status_code == 403, (who, target_role, response.status_code, response.text)
                assert org.members()[target_id][0] == target_role
            checked += 1
    assert checked == (len(ROLES) + len(TOKEN_CALLERS)) * len(ROLES)


def test_tokens_carry_no_scope_their_maker_lacks(stack: Stack, org: Org) -> None:
    for who in (*ROLES, *TOKEN_CALLERS):
        client = org.caller(who)
        for scope in SCOPES:
            response = client.post(f"/api/v1/orgs/{org.slug}/tokens", json={"label": f"by {who}", "scopes": [scope]})
            if who in MANAGERS and scope in ROLE_SCOPES[who]:
                assert response.status_code == 201, (who, scope, response.text)
            else:
                assert response.status_code == 403, (who, scope, response.status_code, response.text)


def test_no_caller_sets_a_password_by_changing_a_member(stack: Stack, org: Org) -> None:
    target = org.member_ids["expert"]

    def stored_hash() -> str:
        rows = asyncio.run(fetch(stack.dsns["eu"], "SELECT password_hash FROM member WHERE id = $1", uuid.UUID(target)))
        return str(rows[0]["password_hash"])

    before = stored_hash()
    for who in (*ROLES, *TOKEN_CALLERS):
        response = org.caller(who).patch(f"/api/v1/orgs/{org.slug}/members/{target}", json={"password": PASSWORD + "!"})
        assert response.status_code == (400 if may_write_members(who) else 403), (who, response.text)
    assert stored_hash() == before
