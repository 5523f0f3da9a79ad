"""Signup, gateway, login discovery and bad input, against running processes."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from konsil.platform.core.signing import sign
from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e


def directory_rows(stack: Stack, slug: str) -> list[object]:
    return asyncio.run(fetch(stack.dsns["control"], "SELECT * FROM directory_organisation WHERE slug = $1", slug))


def region_orgs(stack: Stack, region: str, slug: str) -> list[object]:
    return asyncio.run(fetch(stack.dsns[region], "SELECT * FROM organisation WHERE slug = $1", slug))


def signup_body(slug: str, region: str = "eu", **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "region": region,
        "organisation": {"name": "Praxis Nord", "slug": slug},
        "owner": {"name": "Ada Owner", "email": f"ada@{slug}.example", "password": "correct horse battery"},
    }
    body.update(overrides)
    return body


def test_signup_creates_the_organisation_in_the_chosen_region(stack: Stack) -> None:
    made = stack.signup("us")
    assert made["region"] == "us"
    assert made["login_url"] == f"{stack.region_url('us')}/login"
    assert region_orgs(stack, "us", made["slug"]) and not region_orgs(stack, "eu", made["slug"])
    [row] = directory_rows(stack, made["slug"])
    assert row["region"] == "us" and row["status"] == "active"  # type: ignore[index]


def test_gateway_forwards_to_the_organisations_region(stack: Stack) -> None:
    made = stack.signup("eu")
    slug, owner = made["slug"], made["owner"]
    via_gateway = stack.login(stack.control_url, slug, owner["email"])
    response = via_gateway.get(f"/api/v1/orgs/{slug}/")
    assert response.status_code == 200
    assert response.json()["region"] == "eu" and response.json()["slug"] == slug
    room = via_gateway.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": stack.unique("room"), "title": "Sprechstunde"})
    assert room.status_code == 201, room.text
    assert via_gateway.get(f"/api/v1/orgs/{slug}/rooms").json()[0]["id"] == room.json()["id"]


def test_gateway_answers_404_for_an_unknown_organisation(stack: Stack) -> None:
    response = httpx.get(f"{stack.control_url}/api/v1/orgs/no-such-org/rooms")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_browser_paths_redirect_to_the_region(stack: Stack) -> None:
    made = stack.signup("us")
    response = httpx.get(f"{stack.control_url}/{made['slug']}/consultation?lang=de", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == f"{stack.region_url('us')}/{made['slug']}/consultation?lang=de"
    assert httpx.get(f"{stack.control_url}/no-such-org/portal").status_code == 404


def test_region_refuses_unsigned_and_stale_internal_calls(stack: Stack) -> None:
    eu = stack.settings.region("eu")
    body = b'{"id": "00000000-0000-0000-0000-000000000001"}'
    unsigned = httpx.post(f"{eu.public_url}/internal/v1/orgs", content=body)
    assert unsigned.status_code == 401
    stale = sign(eu.internal_secret, "POST", "/internal/v1/orgs", body, "control", now=time.time() - 3600)
    assert httpx.post(f"{eu.public_url}/internal/v1/orgs", content=body, headers=stale).status_code == 401
    wrong_region = sign(stack.settings.region("us").internal_secret, "POST", "/internal/v1/orgs", body, "control")
    assert httpx.post(f"{eu.public_url}/internal/v1/orgs", content=body, headers=wrong_region).status_code == 401
    good = sign(eu.internal_secret, "DELETE", "/internal/v1/orgs/00000000-0000-0000-0000-000000000001", b"", "control")
    url = f"{eu.public_url}/internal/v1/orgs/00000000-0000-0000-0000-000000000001"
    assert httpx.delete(url, headers=good).status_code == 200
    assert httpx.delete(url, headers=good).status_code == 401, "a replayed call must be refused"


def test_unreachable_region_leaves_no_half_created_organisation(stack: Stack) -> None:
    slug = stack.unique("down")
    response = httpx.post(f"{stack.control_url}/api/v1/signup", json=signup_body(slug, region="zz"), timeout=30)
    assert response.status_code == 503
    assert "nothing was created" in response.json()["message"]
    assert directory_rows(stack, slug) == []
    # The slug is free again once the region is back.
    stack.signup("eu", slug=slug)


def test_region_refusal_rolls_back_the_directory_entry(stack: Stack) -> None:
    made = stack.signup("eu")
    # Same owner e-mail twice in one organisation is refused by the region; here the
    # region refuses a slug it already holds although the directory does not know it.
    asyncio.run(fetch(stack.dsns["control"], "DELETE FROM directory_organisation WHERE slug = $1", made["slug"]))
    response = httpx.post(f"{stack.control_url}/api/v1/signup", json=signup_body(made["slug"]), timeout=30)
    assert response.status_code == 409
    assert directory_rows(stack, made["slug"]) == []


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda b: b | {"region": "mars"}, 400),
        (lambda b: b | {"region": "xx"}, 400),
        (lambda b: {k: v for k, v in b.items() if k != "region"}, 400),
        (lambda b: b | {"organisation": b["organisation"] | {"retention_days": 0}}, 400),
        (lambda b: b | {"organisation": b["organisation"] | {"retention_days": 91}}, 400),
        (lambda b: b | {"organisation": b["organisation"] | {"retention_days": "30"}}, 400),
        (lambda b: b | {"owner": b["owner"] | {"email": "not-an-email"}}, 400),
        (lambda b: b | {"owner": b["owner"] | {"email": "a@b"}}, 400),
        (lambda b: b | {"owner": b["owner"] | {"password": "short"}}, 400),
        (lambda b: b | {"owner": b["owner"] | {"phone": "12345"}}, 400),
        (lambda b: b | {"owner": b["owner"] | {"name": 42}}, 400),
        (lambda b: b | {"organisation": b["organisation"] | {"slug": "Bad Slug!"}}, 400),
        (lambda b: b | {"organisation": b["organisation"] | {"slug": b["organisation"]["slug"] + "\n"}}, 400),
        (lambda b: b | {"owner": b["owner"] | {"phone": "+4712345678\n"}}, 400),
        (lambda b: b | {"organisation": b["organisation"] | {"slug": "api"}}, 409),
        (lambda b: b | {"unexpected": True}, 400),
    ],
)
def test_bad_signup_input_gets_a_clear_error_and_writes_nothing(stack: Stack, mutate, status: int) -> None:  # type: ignore[no-untyped-def]
    slug = stack.unique("bad")
    body = mutate(signup_body(slug))
    response = httpx.post(f"{stack.control_url}/api/v1/signup", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["message"]
    assert directory_rows(stack, slug) == [] and region_orgs(stack, "eu", slug) == []
    assert "ada@" not in response.text, "error messages never echo personal data"


def test_malformed_json_and_oversize_bodies(stack: Stack) -> None:
    url = f"{stack.control_url}/api/v1/signup"
    broken = httpx.post(url, content=b'{"region": "eu", ', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"] == "invalid_input"
    huge = httpx.post(
        url, content=b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}', headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413
    made = stack.signup("eu")
    client = stack.login(stack.control_url, made["slug"], made["owner"]["email"])
    oversize = client.post(
        f"/api/v1/orgs/{made['slug']}/rooms",
        content=b"x" * (2 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert oversize.status_code == 413


def test_duplicate_slug_is_refused_and_the_first_organisation_is_untouched(stack: Stack) -> None:
    made = stack.signup("eu")
    again = httpx.post(f"{stack.control_url}/api/v1/signup", json=signup_body(made["slug"], region="us"), timeout=30)
    assert again.status_code == 409
    assert region_orgs(stack, "us", made["slug"]) == []
    [row] = directory_rows(stack, made["slug"])
    assert row["region"] == "eu"  # type: ignore[index]


def test_login_discovery_names_the_region_without_revealing_unknown_addresses(stack: Stack) -> None:
    email = f"{stack.unique('disc')}@example.org"
    stack.signup("us", email=email)
    url = f"{stack.control_url}/api/v1/login-discovery"
    known = httpx.post(url, json={"email": email.upper()}).json()
    assert known == {"regions": [{"region": "us", "login_url": f"{stack.region_url('us')}/login"}]}
    unknown = [httpx.post(url, json={"email": f"nobody-{i}@example.org"}).json() for i in range(12)]
    for answer in unknown:
        assert len(answer["regions"]) == 1 and set(answer["regions"][0]) == {"region", "login_url"}
    assert {a["regions"][0]["region"] for a in unknown} <= {"eu", "us", "zz"}
    assert httpx.post(url, json={"email": "nobody-0@example.org"}).json() == unknown[0], "stable answers"
    assert httpx.post(url, json={"email": "no-at-sign"}).status_code == 400


def test_login_discovery_follows_members_added_and_removed(stack: Stack) -> None:
    made = stack.signup("eu")
    owner = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    member = stack.add_member(owner, made["slug"], "expert")
    url = f"{stack.control_url}/api/v1/login-discovery"
    assert httpx.post(url, json={"email": member["email"]}).json()["regions"][0]["region"] == "eu"
    rows = asyncio.run(
        fetch(
            stack.dsns["control"],
            "SELECT count(*) AS n FROM login_index WHERE org_id = $1",
            __import__("uuid").UUID(made["organisation_id"]),
        )
    )
    assert rows[0]["n"] == 2
    assert owner.delete(f"/api/v1/orgs/{made['slug']}/members/{member['id']}").status_code == 204
    rows = asyncio.run(
        fetch(
            stack.dsns["control"],
            "SELECT count(*) AS n FROM login_index WHERE org_id = $1",
            __import__("uuid").UUID(made["organisation_id"]),
        )
    )
    assert rows[0]["n"] == 1


def test_the_gateway_never_carries_one_users_session_to_another(stack: Stack) -> None:
    made = stack.signup("eu")
    owner = stack.login(stack.control_url, made["slug"], made["owner"]["email"])
    assert owner.get(f"/api/v1/orgs/{made['slug']}/members").status_code == 200
    for _ in range(5):  # several pooled connections
        anonymous = httpx.get(f"{stack.control_url}/api/v1/orgs/{made['slug']}/members")
        assert anonymous.status_code == 401, anonymous.text
        assert made["owner"]["email"] not in anonymous.text


def test_the_gateway_answers_503_when_the_region_is_down(stack: Stack) -> None:
    slug = stack.unique("zz")
    asyncio.run(
        fetch(
            stack.dsns["control"],
            "INSERT INTO directory_organisation (id, slug, region, status, created_at) "
            "VALUES (gen_random_uuid(), $1, 'zz', 'active', now())",
            slug,
        )
    )
    response = httpx.get(f"{stack.control_url}/api/v1/orgs/{slug}/rooms")
    assert response.status_code == 503 and "region zz" in response.json()["message"]
    asyncio.run(fetch(stack.dsns["control"], "DELETE FROM directory_organisation WHERE slug = $1", slug))


def test_the_gateway_passes_status_headers_and_body_through(stack: Stack) -> None:
    made = stack.signup("eu")
    url = f"{stack.control_url}/api/v1/orgs/{made['slug']}/auth/login"
    response = httpx.post(url, json={"email": made["owner"]["email"], "password": made["owner"]["password"]})
    assert response.status_code == 200 and response.json()["organisation"] == made["slug"]
    assert "konsil_session=" in response.headers["set-cookie"]
    assert int(response.headers["content-length"]) == len(response.content)
    forged = httpx.get(
        f"{stack.control_url}/api/v1/orgs/{made['slug']}/rooms",
        headers={"x-konsil-signature": "00", "x-konsil-signer": "control"},
    )
    assert forged.status_code == 401, "clients cannot pose as the control plane"
