"""Text fields refuse control characters, unpaired surrogates, trailing line feeds and
values of only spaces (issue 11, item 3), through the real API on PostgreSQL: a 400 that
names the field, never a 500 from the database (PostgreSQL cannot store a NUL)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e

BAD = ["\u0000", "Ana\u0000Lima", "Ana\u0085", "Ana Lima\n", "Ana\u001b[31m", "   ", "\ud800x"]


@pytest.fixture(scope="module")
def org(stack: Stack) -> dict[str, Any]:
    made = stack.signup("eu", slug=stack.unique("text"))
    made["client"] = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    made["expert"] = stack.add_member(made["client"], made["slug"], "expert")
    return made


def send(client: httpx.Client, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    """JSON with \\u escapes, so an unpaired surrogate travels as JSON allows it."""
    return client.request(method, path, content=json.dumps(body), headers={"content-type": "application/json"})


def refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, (field, response.status_code, response.text)
    if "body is not valid JSON" in response.text:
        return  # an unpaired surrogate: msgspec's decoder refuses the body before any field
    named = " ".join([response.json()["message"], *response.json().get("details", [])])
    assert f"$.{field}" in named or f"{field}: " in named, (field, response.text)


def test_tenant_api_text_fields_refuse_controls_and_blank_values(stack: Stack, org: dict[str, Any]) -> None:
    client, slug = org["client"], org["slug"]
    member_id = org["expert"]["id"]
    dsr = client.post(f"/api/v1/orgs/{slug}/dsr", json={"kind": "rectification", "email": "subject@text.example"})
    assert dsr.status_code == 201, dsr.text
    for bad in BAD:
        tag = stack.unique("m")
        new_member = {"name": "Ana", "email": f"{tag}@text.example", "role": "expert"}
        cases: list[tuple[str, str, str, dict[str, Any]]] = [
            ("PATCH", f"/api/v1/orgs/{slug}/", "name", {"name": bad}),
            ("POST", f"/api/v1/orgs/{slug}/members", "name", {**new_member, "name": bad}),
            ("PATCH", f"/api/v1/orgs/{slug}/members/{member_id}", "name", {"name": bad}),
            ("POST", f"/api/v1/orgs/{slug}/rooms", "title", {"slug": stack.unique("r"), "title": bad}),
            ("POST", f"/api/v1/orgs/{slug}/tokens", "label", {"label": bad, "scopes": ["rooms:read"]}),
            ("POST", f"/api/v1/orgs/{slug}/dsr/{dsr.json()['id']}/rectify", "name", {"name": bad}),
        ]
        for method, path, field, body in cases:
            refused(send(client, method, path, body), field)
    # Only spaces in a token label (once accepted), and controls inside e-mail addresses.
    refused(client.post(f"/api/v1/orgs/{slug}/tokens", json={"label": "  ", "scopes": ["rooms:read"]}), "label")
    for email in ["a\u0000b@text.example", "a\u0085@text.example", "ab@text.example\n"]:
        body = {"name": "Ana", "email": email, "role": "expert"}
        refused(client.post(f"/api/v1/orgs/{slug}/members", json=body), "email")
        refused(client.post(f"/api/v1/orgs/{slug}/dsr", json={"kind": "access", "email": email}), "email")
        login = httpx.post(f"{stack.region_url('eu')}/api/v1/login", json={"email": email, "password": "x"})
        refused(login, "email")
    refused(client.post(f"/api/v1/orgs/{slug}/dsr", json={"kind": "access", "phone": "+47\u0000123"}), "phone")
    password = {"name": "Ana", "email": f"{stack.unique('p')}@text.example", "role": "expert"}
    refused(
        client.post(f"/api/v1/orgs/{slug}/members", json={**password, "password": "long enough\u0000!"}), "password"
    )
    # Nothing reached the database.
    [row] = asyncio.run(
        fetch(stack.dsns["eu"], "SELECT count(*) AS n FROM room WHERE org_id = $1", uuid.UUID(org["organisation_id"]))
    )
    assert row["n"] == 0


def test_the_visitor_form_refuses_controls_with_a_human_message(stack: Stack, org: dict[str, Any]) -> None:
    client, slug = org["client"], org["slug"]
    room = client.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": stack.unique("join"), "title": "Join"})
    assert room.status_code == 201, room.text
    url = f"{stack.region_url('eu')}/{slug}/{room.json()['slug']}/visits"
    for bad in ["Ana\u0000", "Ana\u0085", "Ana\nLima", "Ana\u001b", "   "]:
        response = httpx.post(url, data={"name": bad, "consent": "yes"}, follow_redirects=False)
        assert response.status_code == 400, (bad, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert "Please enter your name" in response.text
    ok = httpx.post(url, data={"name": "  Ana Lima  ", "consent": "yes"}, follow_redirects=False)
    assert ok.status_code == 303, ok.text


def test_a_cordon_reason_is_one_clean_line(stack: Stack) -> None:
    ops = httpx.Client(
        base_url=stack.region_url("us"), headers={"authorization": f"Bearer {stack.ops_token}"}, timeout=30
    )
    for bad in ["maintenance\u0000", "maintenance\n", "a\u0085b", "   "]:
        refused(ops.post("/ops/v1/media-nodes/us-relay-text/cordon", json={"reason": bad}), "reason")
