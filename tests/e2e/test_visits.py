"""Visits and calls through the HTTP API: the join form, the waiting list, admission,
end, calls today, retention, what a call is offered (relay only or not), and the access
log they leave."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect

from konsil.platform.core import errors
from konsil.regions import container
from konsil.regions.container import build_region, region_relays
from konsil.regions.tables import REGION_TABLES
from konsil.tenants import organisations, visits
from konsil.tenants.actors import Actor
from konsil.tenants.tables import Visit
from tests.conftest import Stack, bindings_restored, fetch, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def practice(stack: Stack) -> dict:  # type: ignore[type-arg]
    made = stack.signup("eu")
    owner = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    expert = stack.add_member(owner, made["slug"], "expert")
    as_expert = stack.login(stack.region_url("eu"), made["slug"], expert["email"])
    room = as_expert.post(f"/api/v1/orgs/{made['slug']}/rooms", json={"slug": "sprechstunde", "title": "Sprechstunde"})
    assert room.status_code == 201, room.text
    return {**made, "owner_client": owner, "expert": expert, "client": as_expert, "room": room.json()}


def join(stack: Stack, slug: str, room: str, **form: str) -> httpx.Response:
    data = {"name": "Kari Nordmann", "phone": "+47 123 45 678", "consent": "yes", **form}
    return httpx.post(f"{stack.region_url('eu')}/{slug}/{room}/visits", data=data, follow_redirects=False)


def test_a_visit_from_join_to_end(stack: Stack, practice: dict) -> None:  # type: ignore[type-arg]
    slug, client = practice["slug"], practice["client"]
    page = httpx.get(f"{stack.region_url('eu')}/{slug}/sprechstunde")
    assert page.status_code == 200 and "30 days" in page.text
    arrived = join(stack, slug, "sprechstunde")
    assert arrived.status_code == 303
    visit_id = arrived.headers["location"].rsplit("/", 1)[1]
    cookie = arrived.headers["set-cookie"].lower()
    assert "httponly" in cookie and f"path=/{slug}/sprechstunde/visits/{visit_id}" in cookie
    assert "kari" not in arrived.headers["location"].lower(), "no personal data in URLs"

    waiting = client.get(f"/api/v1/orgs/{slug}/visits/waiting").json()
    assert [(w["name"], w["phone"], w["room"]) for w in waiting] == [("Kari Nordmann", "+4712345678", "sprechstunde")]
    assert waiting[0]["phone_display"] == "+47 12345678"  # formatted for people (phonenumbers)
    opened = client.get(f"/api/v1/orgs/{slug}/visits/{visit_id}")
    assert opened.status_code == 200 and opened.json()["status"] == "waiting"

    call = client.post(f"/api/v1/orgs/{slug}/visits/{visit_id}/admit")
    assert call.status_code == 200, call.text
    call_id = call.json()["id"]
    assert client.post(f"/api/v1/orgs/{slug}/visits/{visit_id}/admit").status_code == 409
    assert client.get(f"/api/v1/orgs/{slug}/visits/waiting").json() == []
    ended = client.post(f"/api/v1/orgs/{slug}/calls/{call_id}/end")
    assert ended.status_code == 200 and ended.json()["duration_seconds"] >= 0
    today = client.get(f"/api/v1/orgs/{slug}/calls/today").json()
    assert today[0]["id"] == call_id and today[0]["ended_at"] and today[0]["duration_seconds"] is not None
    assert today[0]["visitor_name"] == "Kari Nordmann"
    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    assert client.get(f"/api/v1/orgs/{slug}/calls/today", params={"since": recent}).json()[0]["id"] == call_id
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert client.get(f"/api/v1/orgs/{slug}/calls/today", params={"since": later}).status_code == 400
    naive = dt.datetime.now().replace(microsecond=0).isoformat()
    assert client.get(f"/api/v1/orgs/{slug}/calls/today", params={"since": naive}).status_code == 400

    rows = asyncio.run(fetch(stack.dsns["eu"], "SELECT * FROM visit WHERE id = $1", uuid.UUID(visit_id)))
    visit = dict(rows[0])
    assert visit["name"].startswith("kf1:") and visit["status"] == "ended"
    assert visit["expires_at"] - visit["arrived_at"] == dt.timedelta(days=30)
    log = asyncio.run(
        fetch(
            stack.dsns["eu"],
            "SELECT actor, action, object_type FROM access_log_entry WHERE subject_ref = $1 ORDER BY seq",
            f"visit:{visit_id}",
        )
    )
    assert [(r["action"], r["object_type"]) for r in log] == [
        ("create", "visit"),
        ("read", "visit"),
        ("read", "visit"),
        ("create", "call"),
        ("update", "call"),
        ("read", "visit"),  # "calls today" shows the visitor's name: each listing is a logged read
        ("read", "visit"),
    ]
    assert log[0]["actor"] == f"visitor:{visit_id}"
    assert log[1]["actor"] == f"member:{practice['expert']['id']}"
    assert log[-1]["actor"] == f"member:{practice['expert']['id']}"


def test_retention_sets_the_visits_expiry(stack: Stack, practice: dict) -> None:  # type: ignore[type-arg]
    slug = practice["slug"]
    assert practice["owner_client"].patch(f"/api/v1/orgs/{slug}/", json={"retention_days": 7}).status_code == 200
    visit_id = join(stack, slug, "sprechstunde").headers["location"].rsplit("/", 1)[1]
    visit = asyncio.run(
        fetch(stack.dsns["eu"], "SELECT arrived_at, expires_at FROM visit WHERE id = $1", uuid.UUID(visit_id))
    )[0]
    assert visit["expires_at"] - visit["arrived_at"] == dt.timedelta(days=7)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": ""}, "Please enter your name"),
        ({"name": "x" * 201}, "Please enter your name"),
        ({"phone": "12345"}, "country code"),
        ({"consent": ""}, "Please agree"),
    ],
)
def test_bad_join_input_shows_a_clear_message_and_writes_nothing(
    stack: Stack,
    practice: dict[str, Any],
    form: dict[str, str],
    message: str,
) -> None:
    before = asyncio.run(fetch(stack.dsns["eu"], "SELECT count(*) AS n FROM visit"))[0]["n"]
    response = join(stack, practice["slug"], "sprechstunde", **form)
    assert response.status_code == 400 and message in response.text
    assert asyncio.run(fetch(stack.dsns["eu"], "SELECT count(*) AS n FROM visit"))[0]["n"] == before


def test_experts_see_only_their_rooms_and_auditors_nothing(stack: Stack, practice: dict) -> None:  # type: ignore[type-arg]
    slug, owner = practice["slug"], practice["owner_client"]
    join(stack, slug, "sprechstunde")
    other = stack.add_member(owner, slug, "expert")
    as_other = stack.login(stack.region_url("eu"), slug, other["email"])
    assert as_other.get(f"/api/v1/orgs/{slug}/visits/waiting").json() == []
    assert len(owner.get(f"/api/v1/orgs/{slug}/visits/waiting").json()) >= 1, "owners see every room"
    auditor = stack.add_member(owner, slug, "auditor")
    as_auditor = stack.login(stack.region_url("eu"), slug, auditor["email"])
    assert as_auditor.get(f"/api/v1/orgs/{slug}/visits/waiting").status_code == 403


def test_a_visit_page_needs_its_own_token(stack: Stack, practice: dict) -> None:  # type: ignore[type-arg]
    slug = practice["slug"]
    first = join(stack, slug, "sprechstunde")
    second = join(stack, slug, "sprechstunde")
    second_path = second.headers["location"]
    token = first.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    stolen = httpx.get(f"{stack.region_url('eu')}{second_path}", cookies={"konsil_visit": token})
    assert stolen.status_code == 404
    assert httpx.get(f"{stack.region_url('eu')}/{slug}/no-such-room").status_code == 404


def test_relay_only_is_on_by_default(stack: Stack, practice: dict) -> None:  # type: ignore[type-arg]
    assert practice["client"].get(f"/api/v1/orgs/{practice['slug']}/").json()["relay_only"] is True


def waiting_visit(stack: Stack, region: str) -> tuple[dict, uuid.UUID]:  # type: ignore[type-arg]
    """A new organisation of ``region`` with a room, and a visitor waiting in it."""
    made = stack.signup(region)
    owner = stack.login(stack.region_url(region), made["slug"], made["owner"]["email"])
    room = owner.post(f"/api/v1/orgs/{made['slug']}/rooms", json={"slug": "room", "title": "Room"})
    assert room.status_code == 201, room.text
    base = stack.region_url(region)
    arrived = httpx.post(f"{base}/{made['slug']}/room/visits", data={"name": "Visitor", "consent": "yes"})
    return made, uuid.UUID(arrived.headers["location"].rsplit("/", 1)[1])


async def test_admission_waits_for_a_relay_whoever_admits(stack: Stack) -> None:
    """The relay check is part of admitting, not of one route: the action itself (as a
    command or a benchmark calls it) refuses a relay-only call while the region has no
    healthy relay, and the visitor keeps waiting."""
    made, visit_id = await asyncio.to_thread(waiting_visit, stack, "us")
    region = stack.settings.for_region("us").region("us")
    with bindings_restored(REGION_TABLES):
        # The US region's relays come from its media-node registry, which has no node here.
        ctx = build_region(stack.settings, region, service_name="cli", relays=region_relays(region))
        await container.start(ctx)
        try:
            org = await organisations.get(made["slug"])
            assert org is not None and org.relay_only
            owner_id = uuid.UUID(made["owner_id"])
            actor = Actor(f"member:{owner_id}", "owner", f"member:{owner_id}", "local")
            with pytest.raises(errors.AppError) as refused:
                await visits.admit(ctx, actor, org, visit_id, owner_id, "owner")
            assert refused.value.status == 503 and "keeps waiting" in refused.value.message
            status = await Visit.select(Visit.status).where(Visit.id == visit_id).first().run()
            assert status == {"status": "waiting"}
            # Without relay only, the same call starts (peers connect directly).
            direct = msgspec.structs.replace(org, relay_only=False)
            call = await visits.admit(ctx, actor, direct, visit_id, owner_id, "owner")
            assert call.visit_id == visit_id and call.room == "room"
        finally:
            await container.stop(ctx)


def arrive(stack: Stack, region: str, slug: str, room: str) -> tuple[str, str, dict[str, str]]:
    """A visitor posts the join form: the visit's id, its page's socket and cookie header."""
    base = stack.region_url(region)
    arrived = httpx.post(f"{base}/{slug}/{room}/visits", data={"name": "Kari Nordmann", "consent": "yes"})
    assert arrived.status_code == 303, arrived.text
    path = arrived.headers["location"]
    socket = base.replace("http", "ws", 1) + path + "/ws"
    return path.rsplit("/", 1)[1], socket, {"cookie": f"konsil_visit={arrived.cookies['konsil_visit']}"}


async def offered(stack: Stack, region: str, slug: str, room: str, member: httpx.Client) -> dict[str, Any]:
    """What a call is offered: a new visitor is admitted; its page's ``joined`` message."""
    visit_id, socket, cookie = arrive(stack, region, slug, room)
    async with connect(socket, additional_headers=cookie) as page, asyncio.timeout(20):
        while json.loads(await page.recv())["type"] != "waiting":
            pass
        admitted = await asyncio.to_thread(member.post, f"/api/v1/orgs/{slug}/visits/{visit_id}/admit")
        assert admitted.status_code == 200, admitted.text
        while (event := json.loads(await page.recv()))["type"] != "joined":
            pass
    return dict(event)


def relay_urls(joined: dict[str, Any]) -> list[str]:
    return [url for server in joined["ice_servers"] for url in server["urls"] if url.startswith("turn")]


def set_relay_only(owner: httpx.Client, slug: str, value: bool) -> None:
    changed = owner.patch(f"/api/v1/orgs/{slug}/", json={"relay_only": value})
    assert changed.status_code == 200 and changed.json()["relay_only"] is value, changed.text


def test_relay_only_decides_whether_a_call_must_go_through_the_relay(stack: Stack, practice: dict) -> None:  # type: ignore[type-arg]
    """The EU region has a relay of its own: a call is offered it either way, and
    relay_only tells the browser whether it may connect directly too."""
    slug, owner, expert = practice["slug"], practice["owner_client"], practice["client"]
    forced = asyncio.run(offered(stack, "eu", slug, "sprechstunde", expert))
    assert forced["relay_only"] is True and forced["notice"] is None
    assert relay_urls(forced), "the region's relay is offered"

    set_relay_only(owner, slug, False)
    direct = asyncio.run(offered(stack, "eu", slug, "sprechstunde", expert))
    assert direct["relay_only"] is False and direct["notice"] is None
    assert relay_urls(direct) == relay_urls(forced), "the relay is still offered, only not forced"

    set_relay_only(owner, slug, True)
    assert asyncio.run(offered(stack, "eu", slug, "sprechstunde", expert))["relay_only"] is True


def test_relay_only_without_a_relay_keeps_the_visitor_waiting_and_without_it_the_call_starts(stack: Stack) -> None:
    """The US region's relays come from its media-node registry, which has none here:
    relay-only calls are refused (the visitor keeps waiting); others start without a relay."""
    ops = httpx.Client(base_url=stack.region_url("us"), headers={"authorization": f"Bearer {stack.ops_token}"})

    def no_active_relay() -> bool:
        listed = ops.get("/ops/v1/media-nodes/")
        assert listed.status_code == 200, listed.text
        return not [n for n in listed.json()["nodes"] if n["status"] == "active"]

    wait_until(no_active_relay, "no US relay to be active (another test's node to leave)")
    made = stack.signup("us")
    slug = made["slug"]
    owner = stack.login(stack.region_url("us"), slug, made["owner"]["email"])
    assert owner.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "room", "title": "Room"}).status_code == 201

    visit_id, _, _ = arrive(stack, "us", slug, "room")
    refused = owner.post(f"/api/v1/orgs/{slug}/visits/{visit_id}/admit")
    assert refused.status_code == 503 and "no media relay is available in region us" in refused.text.lower()
    assert visit_id in {v["id"] for v in owner.get(f"/api/v1/orgs/{slug}/visits/waiting").json()}

    set_relay_only(owner, slug, False)
    direct = asyncio.run(offered(stack, "us", slug, "room", owner))
    assert direct["relay_only"] is False and direct["notice"] is None and relay_urls(direct) == []
    assert owner.post(f"/api/v1/orgs/{slug}/visits/{visit_id}/admit").status_code == 200, "the waiting one too"

    set_relay_only(owner, slug, True)
    other, _, _ = arrive(stack, "us", slug, "room")
    assert owner.post(f"/api/v1/orgs/{slug}/visits/{other}/admit").status_code == 503
