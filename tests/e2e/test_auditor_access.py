"""Auditor access (issue 13, item 6): owners let an auditor in until a set end, at most
a year ahead; the auditor reads what an audit needs, each read of personal data logged
as an audit; every route that could change something refuses them; and from the end of
the grant their login, sessions and tokens are refused with a message that says why.

Against the running stack (control plane and region processes, PostgreSQL). The walk
takes the region app's own routes (``app.routes``), so pages, sockets and routes left
out of the OpenAPI document count too, as in tests/e2e/test_authorization.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from litestar.routes import HTTPRoute, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from konsil.compliance.controls.catalog import load_catalogs
from konsil.platform.core.authz import AUDIT_WORK_KEY, OWN_SESSION_KEY, Rule
from konsil.regions.app import create_region_app
from tests.conftest import Stack, auditor_access_until, fetch, stored_network_test_result, wait_until

pytestmark = pytest.mark.e2e

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
PASSWORD = "correct horse battery"
GDPR_ATTESTED = next(c.id for c in load_catalogs()["gdpr"].controls if c.attestation is not None)
# Tables an auditor's refused calls may still write: the access log (the refusals) and the
# session's last-seen time; the login-index queue is emptied by the region's own retries.
MAY_CHANGE = {"access_log_entry", "access_log_head", "login_index_change"}


@dataclass
class Practice:
    stack: Stack
    slug: str
    org_id: str
    owner_id: str
    clients: dict[str, httpx.Client] = field(default_factory=dict)
    auditor: dict[str, Any] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.stack.region_url("eu")

    @property
    def api(self) -> str:
        return f"/api/v1/orgs/{self.slug}"

    def db(self, sql: str, *args: Any) -> list[Any]:
        return asyncio.run(fetch(self.stack.dsns["eu"], sql, *args))


@pytest.fixture(scope="module")
def practice(stack: Stack) -> Practice:
    """An organisation with something behind every route: members of every role, a room,
    a waiting visit and a call, a token, a data-subject request, a network-test result
    and an attestation; and an auditor let in for 30 days."""
    made = stack.signup("eu", slug=stack.unique("audited"))
    p = Practice(stack, made["slug"], made["organisation_id"], made["owner_id"])
    owner = p.clients["owner"] = stack.login(p.base, p.slug, made["owner"]["email"])
    for role in ("admin", "expert"):
        member = stack.add_member(owner, p.slug, role)
        p.clients[role] = stack.login(p.base, p.slug, member["email"])
        p.ids.setdefault("member_id", member["id"])
    p.auditor = stack.add_member(owner, p.slug, "auditor")
    p.clients["auditor"] = stack.login(p.base, p.slug, p.auditor["email"])
    room = owner.post(f"{p.api}/rooms", json={"slug": stack.unique("r"), "title": "Room"})
    assert room.status_code == 201, room.text
    p.ids |= {"room_id": room.json()["id"], "room_slug": room.json()["slug"]}
    visit_ids = []
    for _ in range(2):
        joined = httpx.post(
            f"{p.base}/{p.slug}/{p.ids['room_slug']}/visits",
            data={"name": "Visitor", "consent": "yes"},
            follow_redirects=False,
        )
        assert joined.status_code == 303, joined.text
        visit_ids.append(joined.headers["location"].rsplit("/", 1)[1])
    p.ids["visit_id"] = visit_ids[0]
    call = owner.post(f"{p.api}/visits/{visit_ids[1]}/admit")
    assert call.status_code == 200, call.text
    p.ids["call_id"] = call.json()["id"]
    token = owner.post(f"{p.api}/tokens", json={"label": "epr", "scopes": ["rooms:read"]})
    assert token.status_code == 201, token.text
    p.ids["token_id"] = token.json()["id"]
    dsr = owner.post(f"{p.api}/dsr", json={"kind": "access", "email": "subject@audited.example"})
    assert dsr.status_code == 201, dsr.text
    p.ids["dsr_id"] = dsr.json()["id"]
    p.ids["test_id"] = asyncio.run(stored_network_test_result(stack.dsns["eu"], p.slug))
    signed = owner.post(f"{p.api}/attestations", json={"framework": "gdpr", "control_id": GDPR_ATTESTED})
    assert signed.status_code == 201, signed.text
    p.ids["attestation_id"] = signed.json()["id"]
    p.ids |= {"slug": p.slug, "org_id": p.org_id, "node_id": "eu-relay-1", "file_path": "konsil.css"}
    return p


def fill(path: str, p: Practice) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: p.ids.get(m.group(1), str(uuid.uuid4())), path)


def routes(stack: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    """(method or "WS", path, opt) of every route of the region app."""
    app = create_region_app(stack.settings.for_region("eu"))
    found: list[tuple[str, str, dict[str, Any]]] = []
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path_format)
        if isinstance(route, HTTPRoute):
            found += [(method, path, handler.opt) for method, (handler, _) in route.route_handler_map.items()]
        elif isinstance(route, WebSocketRoute):
            found.append(("WS", path, route.route_handler.opt))
    return sorted(found, key=lambda r: (r[1], r[0]))


def snapshot(p: Practice) -> dict[str, list[str]]:
    """Every row of the organisation in every region table, as text (the access log and
    the login-index queue apart; sessions without their last-seen time)."""
    tables = [
        r["table_name"]
        for r in p.db(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'org_id'"
        )
        if r["table_name"] not in MAY_CHANGE
    ]
    org = uuid.UUID(p.org_id)
    rows = {"organisation": [str(dict(r)) for r in p.db("SELECT * FROM organisation WHERE id = $1", org)]}
    for table in sorted(tables):
        found = p.db(f'SELECT * FROM "{table}" WHERE org_id = $1', org)  # noqa: S608 - names from the catalog
        kept = [{k: v for k, v in dict(r).items() if k != "last_seen_at"} for r in found]
        rows[table] = sorted(str(r) for r in kept)
    assert rows["member"] and rows["room"] and rows["visit"] and rows["control_attestation"]
    return rows


def log_after(p: Practice, seq: int) -> list[Any]:
    return p.db(
        "SELECT seq, actor, actor_role, action, object_type, outcome, purpose FROM access_log_entry"
        " WHERE org_id = $1 AND seq > $2 ORDER BY seq",
        uuid.UUID(p.org_id),
        seq,
    )


def last_seq(p: Practice) -> int:
    rows = p.db("SELECT coalesce(max(seq), 0) AS seq FROM access_log_entry WHERE org_id = $1", uuid.UUID(p.org_id))
    return int(rows[0]["seq"])


async def socket_answer(base: str, path: str, cookie: str) -> str:
    """How a socket route answers the auditor's session: it must not open."""
    try:
        async with connect(
            base.replace("http://", "ws://", 1) + path, open_timeout=10, additional_headers={"cookie": cookie}
        ) as ws:
            message = await asyncio.wait_for(ws.recv(), 10)
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"
    except ConnectionClosed as exc:
        return f"close {exc.rcvd.code if exc.rcvd else None}"
    return f"opened and said {message!r}"


# --- read-only on every route ------------------------------------------------------------------


def test_an_auditor_changes_nothing_on_any_route(stack: Stack, practice: Practice) -> None:
    p = practice
    auditor = p.clients["auditor"]  # a live session, sending its CSRF token
    before, seq = snapshot(p), last_seq(p)
    tried: dict[str, int] = {"member rule": 0, "own session": 0, "audit work": 0, "signed or visitor": 0, "socket": 0}
    for method, path, opt in routes(stack):
        if opt.get("public") or (method not in UNSAFE and method != "WS"):
            continue  # open to anyone (the login, a visitor's join form), or safe
        target = fill(path, p)
        if method == "WS":
            cookie = f"konsil_session={auditor.cookies['konsil_session']}"
            answer = asyncio.run(socket_answer(p.base, target, cookie))
            assert answer in {"http 403", "close 4403"}, (path, answer)
            tried["socket"] += 1
            continue
        if opt.get(OWN_SESSION_KEY):
            tried["own session"] += 1  # logging out: tried last, below
            continue
        if opt.get(AUDIT_WORK_KEY):
            tried["audit work"] += 1  # starting a report: tests/e2e/test_reports.py
            continue
        body = {"name": "Changed", "email": "x@audited.example", "role": "owner", "password": PASSWORD}
        response = auditor.request(method, target, json=body)
        if isinstance(opt.get("auth"), Rule):
            assert response.status_code == 403, (method, path, response.status_code, response.text)
            tried["member rule"] += 1
        else:  # internal (a signature of Konsil's own services) or a visitor's own route
            assert response.status_code in (401, 403, 404), (method, path, response.status_code, response.text)
            tried["signed or visitor"] += 1
    assert tried["member rule"] >= 25 and tried["socket"] >= 2 and tried["own session"] == 2, tried
    assert tried["audit work"] == 1, tried
    assert snapshot(p) == before, "an auditor's call changed a row"
    refusals = log_after(p, seq)
    assert refusals and {r["outcome"] for r in refusals} == {"denied"}, refusals
    assert {r["actor_role"] for r in refusals} == {"auditor"}
    for_auditors = auditor.post(f"/api/v1/orgs/{p.slug}/auth/logout")  # the one write they may make
    assert for_auditors.status_code == 200
    assert auditor.get(f"{p.api}/").status_code == 401, "logged out"
    p.clients["auditor"] = stack.login(p.base, p.slug, p.auditor["email"])


def test_no_rule_admits_an_auditor_to_an_unsafe_method_but_logging_out(stack: Stack) -> None:
    """The rules say what the guard enforces anyway (tests/tenants/test_guard_lookups.py:
    an auditor is refused every unsafe method whatever the rule)."""
    admitted = {
        (method, path)
        for method, path, opt in routes(stack)
        if method in UNSAFE | {"WS"} and isinstance(opt.get("auth"), Rule) and "auditor" in opt["auth"].roles
    }
    assert admitted == {
        ("POST", "/api/v1/orgs/{slug}/auth/logout"),
        ("POST", "/{slug}/logout"),
        ("POST", "/api/v1/orgs/{slug}/reports"),  # starting a compliance report changes no data
    }


# --- what an auditor reads ----------------------------------------------------------------------


def test_an_auditor_reads_what_an_audit_needs_and_each_personal_data_read_is_logged_as_an_audit(
    stack: Stack, practice: Practice
) -> None:
    p = practice
    auditor = p.clients["auditor"]
    seq = last_seq(p)
    for path in (
        "/",
        "/members",
        f"/members/{p.ids['member_id']}",
        "/access-log",
        "/dsr",
        "/retention/purge-runs",
        "/attestations?framework=gdpr",
        "/attestations/signatures",
    ):
        response = auditor.get(p.api + path)
        assert response.status_code == 200, (path, response.text)
    listed = auditor.get(f"{p.api}/members").json()
    me = next(m for m in listed if m["id"] == p.auditor["id"])
    assert me["role"] == "auditor" and me["access_expires_at"] and me["access_granted_by"] == p.owner_id
    assert {m["role"] for m in listed} == {"owner", "admin", "expert", "auditor"}
    dsr = auditor.get(f"{p.api}/dsr").json()
    assert dsr and "subject@audited.example" not in str(dsr)
    # Visitors' data, a request's subject and tokens are not an auditor's to read.
    for path in ("/visits/waiting", f"/visits/{p.ids['visit_id']}", f"/dsr/{p.ids['dsr_id']}", "/tokens"):
        assert auditor.get(p.api + path).status_code == 403, path

    me_ref = f"member:{p.auditor['id']}"
    reads = [r for r in log_after(p, seq) if r["actor"] == me_ref and r["outcome"] == "success"]
    members_read = [r for r in reads if r["object_type"] == "member"]
    assert members_read and {(r["actor_role"], r["purpose"]) for r in members_read} == {
        ("auditor", "compliance audit (auditor access)")
    }
    log_read = [r for r in reads if r["object_type"] == "access_log"]
    assert log_read and log_read[0]["purpose"] == "compliance audit: review the access log"


def test_login_discovery_finds_an_auditor(stack: Stack, practice: Practice) -> None:
    def found() -> list[Any] | None:
        answer = httpx.post(f"{stack.control_url}/api/v1/login-discovery", json={"email": practice.auditor["email"]})
        regions = answer.json()["regions"]
        return regions if any(r["region"] == "eu" for r in regions) else None

    assert wait_until(found, "the auditor in the login-discovery index") == [
        {"region": "eu", "login_url": f"{practice.base}/login"}
    ]


# --- granting -------------------------------------------------------------------------------------


def test_only_an_owner_grants_auditor_access_and_always_with_an_end_within_a_year(
    stack: Stack, practice: Practice
) -> None:
    p = practice
    owner, admin = p.clients["owner"], p.clients["admin"]
    now = dt.datetime.now(dt.UTC)
    token = owner.post(f"{p.api}/tokens", json={"label": "members", "scopes": ["members:write"]}).json()["token"]
    as_token = httpx.Client(base_url=p.base, headers={"authorization": f"Bearer {token}"}, timeout=30)
    members_before = snapshot(p)["member"]

    def grant(client: httpx.Client, **extra: Any) -> httpx.Response:
        tag = stack.unique("grant")
        body = {"name": "Ext Auditor", "email": f"{tag}@audit-firm.example", "role": "auditor", **extra}
        return client.post(f"{p.api}/members", json=body)

    for extra, named in (
        ({}, "access_expires_at: an auditor's access needs an end date"),
        ({"access_expires_at": (now - dt.timedelta(minutes=1)).isoformat()}, "access_expires_at: the end"),
        ({"access_expires_at": (now + dt.timedelta(days=366)).isoformat()}, "access_expires_at: an auditor's access"),
    ):
        refused = grant(owner, **extra)
        assert refused.status_code == 400 and refused.json()["message"].startswith(named), refused.text
    naive = grant(owner, access_expires_at="2030-01-01T00:00:00")
    assert naive.status_code == 400 and "access_expires_at" in str(naive.json()["details"]), naive.text
    expert = owner.post(
        f"{p.api}/members",
        json={"name": "E", "email": "e@audited.example", "role": "expert", "access_expires_at": auditor_access_until()},
    )
    assert expert.status_code == 400 and "only an auditor's access has an end date" in expert.json()["message"]
    by_admin = grant(admin, access_expires_at=auditor_access_until())
    assert by_admin.status_code == 403 and "only an owner" in by_admin.json()["message"]
    by_token = grant(as_token, access_expires_at=auditor_access_until())
    assert by_token.status_code == 403 and "integration token" in by_token.json()["message"]
    assert snapshot(p)["member"] == members_before, "no refused grant left a member"

    until = auditor_access_until(days=365 - 1 / 24)
    granted = grant(owner, access_expires_at=until, password=PASSWORD)
    assert granted.status_code == 201, granted.text
    body = granted.json()
    assert body["access_granted_by"] == p.owner_id
    assert dt.datetime.fromisoformat(body["access_expires_at"]) == dt.datetime.fromisoformat(until)

    # Extending it: the owner only; an admin may still correct the auditor's name.
    later = auditor_access_until(days=200)
    path = f"{p.api}/members/{body['id']}"
    assert admin.patch(path, json={"access_expires_at": later}).status_code == 403
    assert admin.patch(path, json={"name": "Ext Auditor B.V."}).status_code == 200
    extended = owner.patch(path, json={"access_expires_at": later})
    assert extended.status_code == 200 and extended.json()["access_expires_at"] is not None
    # Another role has no end; becoming an auditor again needs one.
    as_expert = owner.patch(path, json={"role": "expert"})
    assert as_expert.status_code == 200 and as_expert.json()["access_expires_at"] is None
    again = owner.patch(path, json={"role": "auditor"})
    assert again.status_code == 400 and again.json()["message"].startswith("access_expires_at:")
    assert owner.patch(path, json={"role": "auditor", "access_expires_at": later}).status_code == 200


def test_a_member_made_an_auditor_keeps_no_token(stack: Stack, practice: Practice) -> None:
    p = practice
    owner = p.clients["owner"]
    admin_member = stack.add_member(owner, p.slug, "admin")
    as_admin = stack.login(p.base, p.slug, admin_member["email"])
    made = as_admin.post(f"{p.api}/tokens", json={"label": "theirs", "scopes": ["members:write", "rooms:read"]})
    assert made.status_code == 201, made.text
    token = httpx.Client(base_url=p.base, headers={"authorization": f"Bearer {made.json()['token']}"}, timeout=30)
    assert token.get(f"{p.api}/rooms").status_code == 200
    changed = owner.patch(
        f"{p.api}/members/{admin_member['id']}", json={"role": "auditor", "access_expires_at": auditor_access_until()}
    )
    assert changed.status_code == 200, changed.text
    refused = token.get(f"{p.api}/rooms")
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]
    [revoked] = p.db("SELECT revoked_at FROM api_token WHERE id = $1", uuid.UUID(made.json()["id"]))
    assert revoked["revoked_at"] is not None
    # Their session stays, read-only now.
    assert as_admin.get(f"{p.api}/members").status_code == 200
    assert as_admin.post(f"{p.api}/rooms", json={"slug": stack.unique("t"), "title": "T"}).status_code == 403


# --- the end of a grant ---------------------------------------------------------------------------


def test_an_expired_grant_stops_working_everywhere(stack: Stack, practice: Practice) -> None:
    p = practice
    owner = p.clients["owner"]
    auditor = stack.add_member(owner, p.slug, "auditor", access_expires_at=auditor_access_until(days=5 / 86400))
    [row] = p.db("SELECT access_expires_at FROM member WHERE id = $1", uuid.UUID(auditor["id"]))
    ends: dt.datetime = row["access_expires_at"]
    session = httpx.Client(base_url=p.base, timeout=30)
    logged_in = session.post(
        f"/api/v1/orgs/{p.slug}/auth/login", json={"email": auditor["email"], "password": PASSWORD}
    )
    assert logged_in.status_code == 200, "the grant holds for five seconds"
    # Its session works until the end, and is refused from then on (same machine, same clock).
    served: list[tuple[dt.datetime, dt.datetime, int]] = []

    def refused() -> httpx.Response | None:
        asked = dt.datetime.now(dt.UTC)
        response = session.get(f"{p.api}/")
        served.append((asked, dt.datetime.now(dt.UTC), response.status_code))
        return response if response.status_code != 200 else None

    first_refusal = wait_until(refused, "the auditor's session to be refused", within=20, every=0.05)
    assert first_refusal.status_code == 401 and first_refusal.json()["error"] == "access_expired"
    assert "your auditor access to this organisation ended on" in first_refusal.json()["message"]
    assert any(status == 200 for _, _, status in served), "the session worked before the end"
    assert all(asked < ends for asked, _, status in served if status == 200), "served after the end"
    assert served[-1][1] >= ends, "refused before the end"

    again = httpx.post(
        f"{p.base}/api/v1/orgs/{p.slug}/auth/login", json={"email": auditor["email"], "password": PASSWORD}
    )
    assert again.status_code == 403 and again.json()["error"] == "access_expired", again.text
    assert "ask one of its owners for a new grant" in again.json()["message"]
    wrong = httpx.post(f"{p.base}/api/v1/orgs/{p.slug}/auth/login", json={"email": auditor["email"], "password": "x"})
    assert wrong.status_code == 401, "a wrong password says nothing about the grant"

    # The login page says why, and an old page session is sent to it.
    page = httpx.Client(base_url=p.base, timeout=30)
    form = page.get("/login")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    shown = page.post("/login", data={"email": auditor["email"], "password": PASSWORD, "_csrf": csrf.group(1)})
    assert shown.status_code == 403 and "Your auditor access to this organisation ended on" in shown.text

    denied = p.db(
        "SELECT actor, actor_role, purpose FROM access_log_entry WHERE org_id = $1 AND outcome = 'denied'"
        " AND subject_ref = $2",
        uuid.UUID(p.org_id),
        f"member:{auditor['id']}",
    )
    assert {(r["actor_role"], r["purpose"]) for r in denied} == {("auditor", "log in: auditor access ended")}
    # The owner still sees the grant, ended, in the members list.
    listed = next(m for m in owner.get(f"{p.api}/members").json() if m["id"] == auditor["id"])
    assert dt.datetime.fromisoformat(listed["access_expires_at"]) == ends


def test_a_live_page_session_is_sent_to_the_login_page_when_the_grant_ends(stack: Stack, practice: Practice) -> None:
    p = practice
    auditor = stack.add_member(p.clients["owner"], p.slug, "auditor")
    browser = httpx.Client(base_url=p.base, timeout=30)
    form = browser.get("/login")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    opened = browser.post("/login", data={"email": auditor["email"], "password": PASSWORD, "_csrf": csrf.group(1)})
    assert opened.status_code == 303 and browser.get(f"/{p.slug}/portal").status_code == 200
    p.db("UPDATE member SET access_expires_at = now() WHERE id = $1", uuid.UUID(auditor["id"]))  # it ends now
    portal = browser.get(f"/{p.slug}/portal")
    assert portal.status_code == 303 and portal.headers["location"] == "/login"
