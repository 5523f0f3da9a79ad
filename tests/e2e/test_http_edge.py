"""The HTTP edge of both apps, against running processes: bad bytes, wrong content
types, duplicate keys and unknown methods get a clear 4xx in the documented error
shape, and every answer, errors included, carries the security headers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from konsil.platform.core.web import SECURITY_HEADERS
from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e

JSON = {"content-type": "application/json"}
BAD_UTF8 = b'{"email": "\xff@x.example"}'


@pytest.fixture(scope="module")
def org(stack: Stack) -> dict[str, Any]:
    made = stack.signup("eu")
    owner = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    expert = stack.add_member(owner, made["slug"], "expert")
    return {**made, "owner_client": owner, "expert": expert}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    assert set(body) <= {"error", "message", "details", "verdict", "advice", "advice_keys"}, body
    if code is not None:
        assert body["error"] == code, body
    checked: dict[str, Any] = body
    return checked


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, f"{response.request.method} {response.url} → {name} missing"


def test_invalid_utf8_inside_a_json_string_is_400_naming_the_body(stack: Stack, org: dict[str, Any]) -> None:
    eu, slug = stack.region_url("eu"), org["slug"]
    targets = [
        f"{stack.control_url}/api/v1/login-discovery",
        f"{eu}/api/v1/login",
        f"{eu}/api/v1/orgs/{slug}/auth/login",
        f"{stack.control_url}/api/v1/orgs/{slug}/auth/login",  # through the gateway
    ]
    for url in targets:
        body = assert_error(httpx.post(url, content=BAD_UTF8, headers=JSON), 400, "invalid_input")
        assert "body" in body["message"] and "UTF-8" in body["message"], (url, body)
    signup = (
        b'{"region": "eu", "organisation": {"name": "Praxis \xc3\x28", "slug": "utf8-bad"}, '
        b'"owner": {"name": "A", "email": "a@b.example", "password": "correct horse battery"}}'
    )
    body = assert_error(httpx.post(f"{stack.control_url}/api/v1/signup", content=signup, headers=JSON), 400)
    assert "UTF-8" in body["message"]
    room = org["owner_client"].post(
        f"/api/v1/orgs/{slug}/rooms", content=b'{"slug": "r1", "title": "\xed\xa0\x80"}', headers=JSON
    )
    assert_error(room, 400, "invalid_input")


def test_a_json_body_sent_as_another_type_is_415(stack: Stack, org: dict[str, Any]) -> None:
    body = b'{"email": "someone@x.example"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
        response = httpx.post(
            f"{stack.control_url}/api/v1/login-discovery", content=body, headers={"content-type": content_type}
        )
        assert_error(response, 415, "unsupported_media_type")
    room = org["owner_client"].post(
        f"/api/v1/orgs/{org['slug']}/rooms",
        content=b'{"slug": "r2", "title": "Room"}',
        headers={"content-type": "text/plain"},
    )
    assert_error(room, 415)
    assert org["owner_client"].get(f"/api/v1/orgs/{org['slug']}/rooms").json() == [], "nothing was created"
    charset = httpx.post(
        f"{stack.control_url}/api/v1/login-discovery",
        content=body,
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert charset.status_code == 200, charset.text


def test_a_key_given_twice_is_refused(stack: Stack, org: dict[str, Any]) -> None:
    twice = b'{"email": "a@x.example", "email": "b@x.example"}'
    body = assert_error(
        httpx.post(f"{stack.control_url}/api/v1/login-discovery", content=twice, headers=JSON), 400, "invalid_input"
    )
    assert "twice" in body["message"]
    nested = (
        b'{"region": "eu", "organisation": {"name": "Praxis", "slug": "dup-keys", "slug": "dup-keys-2"}, '
        b'"owner": {"name": "A", "email": "a@b.example", "password": "correct horse battery"}}'
    )
    assert_error(httpx.post(f"{stack.control_url}/api/v1/signup", content=nested, headers=JSON), 400)
    room = org["owner_client"].post(
        f"/api/v1/orgs/{org['slug']}/rooms", content=b'{"slug": "r3", "title": "A", "title": "B"}', headers=JSON
    )
    assert_error(room, 400)


def test_bad_percent_encoded_bytes_in_paths_and_queries(stack: Stack, org: dict[str, Any]) -> None:
    eu, slug = stack.region_url("eu"), org["slug"]
    owner = org["owner_client"]
    for url in (
        f"{stack.control_url}/api/v1/orgs/%ff%fe/rooms",
        f"{eu}/api/v1/orgs/%ff%fe/rooms",
        f"{stack.control_url}/%ff%00",
    ):
        response = httpx.get(url)
        assert response.status_code in (400, 404), (url, response.status_code, response.text)
        assert_error(response, response.status_code)
    for path in (
        f"/api/v1/orgs/{slug}/rooms/%ff",
        f"/api/v1/orgs/{slug}/network-tests/relays?transport=%ff",
        f"/api/v1/orgs/{slug}/rooms?x=%ff%00",
    ):
        for base in (eu, stack.control_url):
            response = owner.get(base + path)
            assert response.status_code < 500, (base + path, response.text)
            if response.status_code >= 400:
                assert_error(response, response.status_code)


def test_trace_and_unknown_methods_answer_405_with_allow(stack: Stack, org: dict[str, Any]) -> None:
    for url in (f"{stack.control_url}/api/v1/signup", f"{stack.region_url('eu')}/api/v1/orgs/{org['slug']}/rooms"):
        for method in ("TRACE", "PUT"):
            response = httpx.request(method, url)
            assert_error(response, 405, "method_not_allowed")
            assert "POST" in response.headers["allow"], response.headers


def test_nul_and_controls_in_signup_are_400_and_nothing_is_created(stack: Stack) -> None:
    for where, value in (
        ("organisation", {"name": "Praxis\u0000Nord"}),
        ("organisation", {"name": "Praxis\u0085Nord"}),
        ("organisation", {"name": "   "}),
        ("owner", {"name": "Ada\u0000"}),
        ("owner", {"email": "ad\u0000a@x.example"}),
        ("owner", {"email": "ad\u007fa@x.example"}),
    ):
        slug = stack.unique("nul")
        body: dict[str, Any] = {
            "region": "eu",
            "organisation": {"name": "Praxis Nord", "slug": slug},
            "owner": {"name": "Ada Owner", "email": f"ada@{slug}.example", "password": "correct horse battery"},
        }
        body[where] = body[where] | value
        response = httpx.post(f"{stack.control_url}/api/v1/signup", json=body, timeout=30)
        assert_error(response, 400, "invalid_input")
        rows = asyncio.run(fetch(stack.dsns["control"], "SELECT 1 FROM directory_organisation WHERE slug = $1", slug))
        assert rows == []
    discovery = httpx.post(f"{stack.control_url}/api/v1/login-discovery", json={"email": "a\u0000b@x.example"})
    assert_error(discovery, 400, "invalid_input")


def test_every_answer_carries_the_security_headers(stack: Stack, org: dict[str, Any]) -> None:
    control, eu, us, slug = stack.control_url, stack.region_url("eu"), stack.region_url("us"), org["slug"]
    expert = stack.login(eu, slug, org["expert"]["email"])
    big = b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    us_org = stack.signup("us")
    us_owner = stack.login(us, us_org["slug"], us_org["owner"]["email"])
    zz_slug = stack.unique("zz")
    asyncio.run(
        fetch(
            stack.dsns["control"],
            "INSERT INTO directory_organisation (id, slug, region, status, created_at) "
            "VALUES (gen_random_uuid(), $1, 'zz', 'active', now())",
            zz_slug,
        )
    )
    try:
        answers: list[tuple[int, httpx.Response]] = [
            (200, httpx.get(f"{control}/api/v1/regions")),
            (200, httpx.get(f"{eu}/healthz")),
            (400, httpx.post(f"{control}/api/v1/login-discovery", json={"email": "nope"})),
            (400, httpx.post(f"{eu}/api/v1/login", json={"email": 1})),
            (401, httpx.get(f"{eu}/api/v1/orgs/{slug}/members")),
            (401, httpx.get(f"{control}/api/v1/orgs/{slug}/members")),  # forwarded from the region
            (401, httpx.post(f"{eu}/internal/v1/orgs", content=b"{}")),  # refused by the signature check
            (401, httpx.post(f"{control}/internal/v1/login-index", content=b"{}")),
            (403, expert.get(f"/api/v1/orgs/{slug}/tokens")),
            (404, httpx.get(f"{control}/api/v1/orgs/no-such-org/rooms")),  # answered by the gateway
            (404, httpx.get(f"{control}/no-such-org/portal")),
            (404, httpx.get(f"{eu}/api/v1/no-such-route")),
            (405, httpx.request("TRACE", f"{control}/api/v1/signup")),
            (405, httpx.request("TRACE", f"{eu}/api/v1/login")),
            (413, httpx.post(f"{control}/api/v1/signup", content=big, headers=JSON)),
            (413, httpx.post(f"{control}/api/v1/orgs/{slug}/rooms", content=big, headers=JSON)),
            (413, httpx.post(f"{eu}/api/v1/login", content=big, headers=JSON)),
            (415, httpx.post(f"{control}/api/v1/signup", content=b"{}", headers={"content-type": "text/plain"})),
            (415, httpx.post(f"{eu}/api/v1/login", content=b"{}", headers={"content-type": "text/plain"})),
            (503, httpx.get(f"{control}/api/v1/orgs/{zz_slug}/rooms")),  # region down
            (503, us_owner.get(f"/api/v1/orgs/{us_org['slug']}/network-tests/relays?transport=udp")),
        ]
    finally:
        asyncio.run(fetch(stack.dsns["control"], "DELETE FROM directory_organisation WHERE slug = $1", zz_slug))
    email = f"{stack.unique('flood')}@x.example"
    for _ in range(stack.settings.require_control().discoveries_per_email_minute):
        assert httpx.post(f"{control}/api/v1/login-discovery", json={"email": email}).status_code == 200
    answers.append((429, httpx.post(f"{control}/api/v1/login-discovery", json={"email": email})))
    for status, response in answers:
        assert response.status_code == status, (response.request.url, response.text)
        assert_security_headers(response)
        if status >= 400:
            assert_error(response, status)
    assert int(answers[-1][1].headers["retry-after"]) >= 1


def test_bad_bytes_in_forms_are_a_4xx(stack: Stack, org: dict[str, Any]) -> None:
    eu, slug = stack.region_url("eu"), org["slug"]
    room = org["owner_client"].post(f"/api/v1/orgs/{slug}/rooms", json={"slug": stack.unique("form"), "title": "Room"})
    assert room.status_code == 201, room.text
    form = {"content-type": "application/x-www-form-urlencoded"}
    join = f"{eu}/{slug}/{room.json()['slug']}/visits"
    for body in (b"name=%ff%fe&consent=yes", b"name=\xff\xfe&consent=yes", b"%ff=1"):
        response = httpx.post(join, content=body, headers=form, follow_redirects=False)
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text[:300])
        assert_security_headers(response)
    for body in (b"email=%ff%40x.example&password=x&csrf=y", b"email=\xff@x.example&password=x&csrf=y"):
        response = httpx.post(f"{eu}/login", content=body, headers=form, follow_redirects=False)
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text[:300])


def test_the_data_subject_overview_names_its_charset_once(org: dict[str, Any]) -> None:
    owner, slug = org["owner_client"], org["slug"]
    made = owner.post(f"/api/v1/orgs/{slug}/dsr", json={"kind": "access", "email": "subject@x.example"})
    assert made.status_code == 201, made.text
    overview = owner.post(f"/api/v1/orgs/{slug}/dsr/{made.json()['id']}/overview")
    assert overview.status_code == 200, overview.text
    assert overview.headers["content-type"] == "text/plain; charset=utf-8"
    assert_security_headers(overview)
    assert overview.headers["cache-control"] == "no-store"


def raw_request(base: str, request: bytes) -> tuple[int, bytes]:
    """Send bytes no HTTP client library would send; the status and the whole answer."""
    import socket

    host, port = base.split("://", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def test_odd_bytes_in_the_request_line_and_headers_are_never_a_5xx(stack: Stack, org: dict[str, Any]) -> None:
    slug = org["slug"]
    for base in (stack.control_url, stack.region_url("eu")):
        for request in (
            f"GET /api/v1/orgs/{slug}/rooms/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(
                "latin-1"
            ),
            f"GET /api/v1/orgs/{slug}/rooms?q=\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1"),
            f"GET /api/v1/orgs/{slug}/rooms HTTP/1.1\r\nHost: x\r\nX-Odd: a\x01b\xff\r\n"
            "Connection: close\r\n\r\n".encode("latin-1"),
            f"GET /api/v1/orgs/{slug}/rooms HTTP/1.1\r\nHost: x\r\nCookie: konsil_session=\xff\x00\r\n"
            "Connection: close\r\n\r\n".encode("latin-1"),
        ):
            status, answer = raw_request(base, request)
            assert 400 <= status < 500, (base, request, answer[:500])


def test_a_date_time_in_the_query_must_be_iso_text(org: dict[str, Any]) -> None:
    """Found by the conformance run: ``until=0.5`` was taken as seconds since 1970."""
    owner, slug = org["owner_client"], org["slug"]
    for name, value in (("until", "0.5"), ("since", "12"), ("until", "tomorrow")):
        body = assert_error(owner.get(f"/api/v1/orgs/{slug}/access-log", params={name: value}), 400, "invalid_input")
        assert name in body["message"]
    assert (
        owner.get(f"/api/v1/orgs/{slug}/access-log", params={"since": "2026-01-01T00:00:00+00:00"}).status_code == 200
    )
    assert_error(owner.get(f"/api/v1/orgs/{slug}/calls/today", params={"since": "1"}), 400, "invalid_input")
