"""The tenant API as its users meet it: members, roles, sessions, tokens, rooms,
settings, and the access-log entries personal-data reads leave behind."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e


@pytest.fixture
def org(stack: Stack) -> dict[str, object]:
    made = stack.signup("eu")
    made["client"] = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    return made


def log_entries(stack: Stack, org_id: str) -> list[dict[str, Any]]:
    rows = asyncio.run(
        fetch(stack.dsns["eu"], "SELECT * FROM access_log_entry WHERE org_id = $1 ORDER BY seq", uuid.UUID(org_id))
    )
    return [dict(r) for r in rows]


def test_invite_read_change_and_remove_a_member(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    client, slug = org["client"], org["slug"]
    member = stack.add_member(client, slug, "expert", phone="+4712345678")
    assert member["role"] == "expert" and member["phone"] == "+4712345678"
    listed = client.get(f"/api/v1/orgs/{slug}/members").json()
    assert {m["role"] for m in listed} == {"owner", "expert"}
    changed = client.patch(f"/api/v1/orgs/{slug}/members/{member['id']}", json={"role": "admin"})
    assert changed.status_code == 200 and changed.json()["role"] == "admin"
    assert client.delete(f"/api/v1/orgs/{slug}/members/{member['id']}").status_code == 204
    assert client.get(f"/api/v1/orgs/{slug}/members/{member['id']}").status_code == 404
    # Every create, read, update and delete of the member's personal data is in the log.
    actions = [
        (e["action"], e["object_type"])
        for e in log_entries(stack, org["organisation_id"])
        if e["subject_ref"] == f"member:{member['id']}"
    ]
    assert actions[0] == ("create", "member") and ("read", "member") in actions
    assert ("update", "member") in actions and actions[-1] == ("delete", "member")
    entry = log_entries(stack, org["organisation_id"])[-1]
    assert entry["actor"].startswith("member:") and entry["outcome"] == "success"
    assert entry["source"] == "region:eu/region-service" and entry["source_address"] == "127.0.0.1"
    assert member["email"] not in str(log_entries(stack, org["organisation_id"])), "the log holds no personal data"


def test_the_last_owner_cannot_be_demoted_or_removed(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    client, slug = org["client"], org["slug"]
    owner_id = org["owner_id"]
    assert client.patch(f"/api/v1/orgs/{slug}/members/{owner_id}", json={"role": "expert"}).status_code == 409
    assert client.delete(f"/api/v1/orgs/{slug}/members/{owner_id}").status_code == 409


def test_an_admin_cannot_create_or_demote_owners(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    client, slug = org["client"], org["slug"]
    admin = stack.add_member(client, slug, "admin")
    as_admin = stack.login(stack.region_url("eu"), slug, admin["email"])
    body = {
        "name": "X",
        "email": f"{stack.unique('x')}@e.example",
        "role": "owner",
        "password": "correct horse battery",
    }
    assert as_admin.post(f"/api/v1/orgs/{slug}/members", json=body).status_code == 403
    assert as_admin.patch(f"/api/v1/orgs/{slug}/members/{org['owner_id']}", json={"role": "expert"}).status_code == 403


def test_duplicate_member_email_and_bad_member_input(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    client, slug = org["client"], org["slug"]
    member = stack.add_member(client, slug, "expert")
    again = {"name": "Y", "email": member["email"].upper(), "role": "expert", "password": "correct horse battery"}
    assert client.post(f"/api/v1/orgs/{slug}/members", json=again).status_code == 409
    for bad in (
        {**again, "email": "x"},
        {**again, "role": "boss"},
        {**again, "phone": "0049 123"},
        {**again, "name": ""},
        {**again, "password": "short"},
        {"name": "only"},
    ):
        response = client.post(f"/api/v1/orgs/{slug}/members", json=bad)
        assert response.status_code == 400, (bad, response.text)
    count = asyncio.run(
        fetch(stack.dsns["eu"], "SELECT count(*) AS n FROM member WHERE org_id = $1", uuid.UUID(org["organisation_id"]))
    )[0]["n"]
    assert count == 2


def test_retention_setting_is_validated(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    client, slug = org["client"], org["slug"]
    for bad in (0, 91, -1, "30", None):
        assert client.patch(f"/api/v1/orgs/{slug}/", json={"retention_days": bad}).status_code == 400
    assert client.get(f"/api/v1/orgs/{slug}/").json()["retention_days"] == 30
    for good in (1, 90):
        assert client.patch(f"/api/v1/orgs/{slug}/", json={"retention_days": good}).json()["retention_days"] == good
    assert (
        client.patch(f"/api/v1/orgs/{slug}/", json={"contract_end": "2027-06-30"}).json()["contract_end"]
        == "2027-06-30"
    )


def test_logout_ends_the_session(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    client, slug = org["client"], org["slug"]
    assert client.get(f"/api/v1/orgs/{slug}/auth/me").status_code == 200
    assert client.post(f"/api/v1/orgs/{slug}/auth/logout").status_code == 200
    stale = httpx.Client(base_url=stack.region_url("eu"))
    stale.cookies.set("konsil_session", "made-up-session")
    assert stale.get(f"/api/v1/orgs/{slug}/auth/me").status_code == 401


def test_the_session_cookie_is_httponly_and_samesite(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    response = httpx.post(
        f"{stack.region_url('eu')}/api/v1/orgs/{org['slug']}/auth/login",
        json={"email": org["owner"]["email"], "password": org["owner"]["password"]},
    )
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "secure" not in cookie, "plain HTTP on localhost; Secure is set behind HTTPS"


def test_an_idle_session_expires(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    client, slug = org["client"], org["slug"]
    asyncio.run(
        fetch(
            stack.dsns["eu"],
            "UPDATE member_session SET last_seen_at = now() - interval '31 minutes' WHERE org_id = $1",
            uuid.UUID(org["organisation_id"]),
        )
    )
    assert client.get(f"/api/v1/orgs/{slug}/auth/me").status_code == 401


def test_wrong_password_and_unknown_email_look_the_same(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    url = f"{stack.region_url('eu')}/api/v1/orgs/{org['slug']}/auth/login"
    wrong = httpx.post(url, json={"email": org["owner"]["email"], "password": "wrong password!"})
    unknown = httpx.post(url, json={"email": "nobody@nowhere.example", "password": "wrong password!"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_region_login_asks_which_organisation_when_one_login_opens_several(stack: Stack) -> None:
    email = f"{stack.unique('multi')}@example.org"
    first = stack.signup("eu", email=email)
    second = stack.signup("eu", email=email)
    url = f"{stack.region_url('eu')}/api/v1/login"
    choose = httpx.post(url, json={"email": email, "password": "correct horse battery"})
    assert choose.status_code == 409
    assert sorted(choose.json()["organisations"]) == sorted([first["slug"], second["slug"]])
    picked = httpx.post(url, json={"email": email, "password": "correct horse battery", "organisation": second["slug"]})
    assert picked.status_code == 200 and picked.json()["organisation"] == second["slug"]


def test_integration_tokens_are_scoped_hashed_and_revocable(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    client, slug = org["client"], org["slug"]
    made = client.post(f"/api/v1/orgs/{slug}/tokens", json={"label": "EPR", "scopes": ["rooms:read"]}).json()
    token = made["token"]
    stored = asyncio.run(
        fetch(stack.dsns["eu"], "SELECT token_hash FROM api_token WHERE id = $1", uuid.UUID(made["id"]))
    )[0]["token_hash"]
    assert token not in stored and len(stored) == 64
    bearer = httpx.Client(base_url=stack.region_url("eu"), headers={"authorization": f"Bearer {token}"})
    assert bearer.get(f"/api/v1/orgs/{slug}/rooms").status_code == 200
    assert bearer.get(f"/api/v1/orgs/{slug}/members").status_code == 403
    assert bearer.post(f"/api/v1/orgs/{slug}/tokens", json={"label": "x", "scopes": ["rooms:read"]}).status_code == 403
    listed = client.get(f"/api/v1/orgs/{slug}/tokens").json()
    assert [t["label"] for t in listed] == ["EPR"] and "token" not in listed[0]
    assert client.delete(f"/api/v1/orgs/{slug}/tokens/{made['id']}").status_code == 204
    assert bearer.get(f"/api/v1/orgs/{slug}/rooms").status_code == 401
    assert (
        httpx.get(
            f"{stack.region_url('eu')}/api/v1/orgs/{slug}/rooms", headers={"authorization": "Basic abc"}
        ).status_code
        == 401
    )
    assert client.post(f"/api/v1/orgs/{slug}/tokens", json={"label": "x", "scopes": ["everything"]}).status_code == 400


def test_rooms_belong_to_experts(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    client, slug = org["client"], org["slug"]
    expert = stack.add_member(client, slug, "expert")
    auditor = stack.add_member(client, slug, "auditor")
    as_expert = stack.login(stack.region_url("eu"), slug, expert["email"])
    room_slug = stack.unique("room")
    room = as_expert.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": room_slug, "title": "Sprechzimmer 1"})
    assert room.status_code == 201 and room.json()["expert_id"] == expert["id"]
    assert room.json()["join_path"] == f"/{slug}/{room_slug}"
    assert as_expert.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": room_slug, "title": "again"}).status_code == 409
    assert (
        as_expert.post(
            f"/api/v1/orgs/{slug}/rooms", json={"slug": stack.unique("r"), "title": "t", "expert_id": org["owner_id"]}
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"/api/v1/orgs/{slug}/rooms", json={"slug": stack.unique("r"), "title": "t", "expert_id": auditor["id"]}
        ).status_code
        == 400
    )
    assert as_expert.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "portal", "title": "t"}).status_code == 409
    # Another organisation may use the same room address.
    other = stack.signup("eu")
    other_client = stack.login(stack.region_url("eu"), other["slug"], other["owner"]["email"])
    assert (
        other_client.post(f"/api/v1/orgs/{other['slug']}/rooms", json={"slug": room_slug, "title": "t"}).status_code
        == 201
    )
    # A member who still owns rooms is not removed silently.
    assert client.delete(f"/api/v1/orgs/{slug}/members/{expert['id']}").status_code == 409
    assert as_expert.delete(f"/api/v1/orgs/{slug}/rooms/{room.json()['id']}").status_code == 204
    assert client.delete(f"/api/v1/orgs/{slug}/members/{expert['id']}").status_code == 204


def test_login_page_form_has_csrf_protection(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    base = stack.region_url("eu")
    browser = httpx.Client(base_url=base)
    page = browser.get("/login")
    assert page.status_code == 200 and 'name="_csrf"' in page.text
    token = page.text.split('name="_csrf" value="')[1].split('"')[0]
    form = {"email": org["owner"]["email"], "password": org["owner"]["password"]}
    forged = httpx.post(f"{base}/login", data={**form, "_csrf": "forged"})
    assert forged.status_code == 403
    ok = browser.post("/login", data={**form, "_csrf": token})
    assert ok.status_code == 303 and ok.headers["location"] == f"/{org['slug']}/portal"
    portal = browser.get(ok.headers["location"])
    assert portal.status_code == 200 and "owner" in portal.text
    bad = httpx.Client(base_url=base)
    page = bad.get("/login")
    token = page.text.split('name="_csrf" value="')[1].split('"')[0]
    wrong = bad.post("/login", data={"email": "not-an-email", "password": "x", "_csrf": token})
    assert wrong.status_code == 400 and "not a valid e-mail" in wrong.text
    assert httpx.get(f"{base}/{org['slug']}/portal").status_code == 303


def test_room_and_token_changes_are_access_logged_without_names(stack: Stack, org: dict) -> None:  # type: ignore[type-arg]
    client, slug = org["client"], org["slug"]
    expert = stack.add_member(client, slug, "expert")
    title, label = "Sprechzimmer Dr. Hansen", "EPR of Dr. Hansen"
    room = client.post(
        f"/api/v1/orgs/{slug}/rooms", json={"slug": stack.unique("r"), "title": title, "expert_id": expert["id"]}
    )
    assert room.status_code == 201, room.text
    assert client.delete(f"/api/v1/orgs/{slug}/rooms/{room.json()['id']}").status_code == 204
    token = client.post(f"/api/v1/orgs/{slug}/tokens", json={"label": label, "scopes": ["rooms:read"]}).json()
    assert client.delete(f"/api/v1/orgs/{slug}/tokens/{token['id']}").status_code == 204
    entries = [e for e in log_entries(stack, org["organisation_id"]) if e["object_type"] in ("room", "api_token")]
    owner = f"member:{org['owner_id']}"
    assert [(e["action"], e["object_type"], e["object_id"], e["subject_ref"], e["actor"]) for e in entries] == [
        ("create", "room", room.json()["id"], f"member:{expert['id']}", owner),
        ("delete", "room", room.json()["id"], f"member:{expert['id']}", owner),
        ("create", "api_token", token["id"], f"org:{org['organisation_id']}", owner),
        ("delete", "api_token", token["id"], f"org:{org['organisation_id']}", owner),
    ]
    assert all(e["outcome"] == "success" for e in entries)
    logged = str(log_entries(stack, org["organisation_id"]))
    assert title not in logged and label not in logged and "Hansen" not in logged
    # A refused change leaves no success entry (an expert cannot remove another's room).
    other = client.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": stack.unique("r"), "title": "t"}).json()
    as_expert = stack.login(stack.region_url("eu"), slug, expert["email"])
    assert as_expert.delete(f"/api/v1/orgs/{slug}/rooms/{other['id']}").status_code == 403
    deletes = [e for e in log_entries(stack, org["organisation_id"]) if e["object_id"] == other["id"]]
    assert [e["action"] for e in deletes] == ["create"]


def test_each_login_writes_its_session_with_its_log_entry(stack: Stack) -> None:
    """The API and the login page start a session the same way: the session row and
    the login's access-log entry together."""
    made = stack.signup("eu")
    owner = made["owner"]
    base = stack.region_url("eu")
    assert (
        httpx.post(f"{base}/api/v1/login", json={"email": owner["email"], "password": owner["password"]}).status_code
        == 200
    )
    browser = httpx.Client(base_url=base)
    token = browser.get("/login").text.split('name="_csrf" value="')[1].split('"')[0]
    page = browser.post("/login", data={"email": owner["email"], "password": owner["password"], "_csrf": token})
    assert page.status_code == 303
    org_id = uuid.UUID(made["organisation_id"])
    sessions = asyncio.run(fetch(stack.dsns["eu"], "SELECT member_id FROM member_session WHERE org_id = $1", org_id))
    assert [str(s["member_id"]) for s in sessions] == [made["owner_id"]] * 2
    logins = [e for e in log_entries(stack, made["organisation_id"]) if e["purpose"] == "log in"]
    assert [(e["actor"], e["action"], e["object_type"], e["subject_ref"], e["outcome"]) for e in logins] == [
        (f"member:{made['owner_id']}", "read", "member", f"member:{made['owner_id']}", "success")
    ] * 2
