"""Refused access is logged (issue 11, item 6), bounded per actor and minute, and shown
in the organisation's access-log view (GET /api/v1/orgs/{slug}/access-log)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from konsil.compliance.access_log.api import MAX_PAGE
from konsil.regions.app import create_region_app
from konsil.regions.tables import REGION_TABLES
from konsil.tenants import actors
from konsil.tenants.actors import DENIALS_PER_MINUTE, DenialBound
from tests.conftest import Stack, bindings_restored


class Org:
    def __init__(self, stack: Stack, tag: str) -> None:
        made = stack.signup("eu", slug=stack.unique(tag))
        self.slug: str = made["slug"]
        self.id: str = made["organisation_id"]
        self.base = stack.region_url("eu")
        self.owner = stack.login(self.base, self.slug, made["owner"]["email"])
        self.members: dict[str, dict[str, Any]] = {}
        self.clients: dict[str, httpx.Client] = {}
        for role in ("admin", "expert", "auditor"):
            self.members[role] = stack.add_member(self.owner, self.slug, role)
            self.clients[role] = stack.login(self.base, self.slug, self.members[role]["email"])
        token = self.owner.post(f"/api/v1/orgs/{self.slug}/tokens", json={"label": "rooms", "scopes": ["rooms:read"]})
        assert token.status_code == 201, token.text
        self.token = httpx.Client(base_url=self.base, headers={"authorization": f"Bearer {token.json()['token']}"})

    def log(self, client: httpx.Client | None = None, **params: Any) -> dict[str, Any]:
        response = (client or self.owner).get(f"/api/v1/orgs/{self.slug}/access-log", params=params)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page


@pytest.fixture(scope="module")
def orgs(stack: Stack) -> tuple[Org, Org]:
    return Org(stack, "log-a"), Org(stack, "log-b")


@pytest.mark.e2e
def test_refused_calls_of_personal_data_routes_are_logged_as_denied(stack: Stack, orgs: tuple[Org, Org]) -> None:
    a, b = orgs
    members = f"/api/v1/orgs/{a.slug}/members"
    visit_id = uuid.uuid4()
    anonymous = httpx.Client(base_url=a.base)
    forged = httpx.Client(base_url=a.base, headers={"authorization": "Bearer ksl_eu_not-a-token"})
    refused = [
        (anonymous.get(members), 401),
        (forged.get(f"/api/v1/orgs/{a.slug}/visits/waiting"), 401),
        (a.clients["expert"].get(members), 403),
        (a.token.get(members), 403),
        (b.owner.get(f"{members}/{a.members['expert']['id']}"), 404),
        (a.clients["auditor"].get(f"/api/v1/orgs/{a.slug}/visits/{visit_id}"), 403),
        (a.clients["expert"].patch(f"/api/v1/orgs/{a.slug}/", json={"name": "Renamed"}), 403),  # no personal data
    ]
    for response, status in refused:
        assert response.status_code == status, response.text
    page = a.log(outcome="denied")
    denied = [(e["actor"], e["action"], e["object_type"], e["subject_ref"], e["purpose"]) for e in page["entries"]]
    expert, auditor = (f"member:{a.members[r]['id']}" for r in ("expert", "auditor"))
    assert ("anonymous", "read", "member", "*", "refused: not logged in") in denied
    assert ("anonymous", "read", "visit", "*", "refused: invalid credentials") in denied
    assert (expert, "read", "member", "*", "refused: role") in denied
    assert any(d[0].startswith("token:") and d[4] == "refused: token scope" for d in denied)
    assert any(
        d[4] == "refused: another organisation" and d[3] == f"member:{a.members['expert']['id']}" for d in denied
    )
    assert (auditor, "read", "visit", f"visit:{visit_id}", "refused: role") in denied
    assert not any(d[2] == "organisation" or "Renamed" in str(d) for d in denied), "only personal-data routes"
    assert len(denied) == 6 and page["denied"] == 6
    entry = page["entries"][0]
    assert entry["outcome"] == "denied" and entry["source_address"] == "127.0.0.1"
    assert entry["source"] == "region:eu/region-service"
    # Nothing personal: the members' names and addresses appear nowhere in the view.
    for member in a.members.values():
        assert member["email"] not in str(page) and member["name"] not in str(page)
    # The other organisation's log holds none of it.
    assert b.log(outcome="denied")["denied"] == 0


@pytest.mark.e2e
def test_a_flood_of_refusals_is_logged_only_up_to_the_bound(stack: Stack) -> None:
    org = Org(stack, "log-flood")
    expert = org.clients["expert"]
    sent = 3 * (DENIALS_PER_MINUTE + 1)
    for _ in range(sent):
        assert expert.get(f"/api/v1/orgs/{org.slug}/members").status_code == 403
    actor = f"member:{org.members['expert']['id']}"
    entries = [e for e in org.log(outcome="denied", limit=MAX_PAGE)["entries"] if e["actor"] == actor]
    # Within one minute: the bound, then one entry saying more were refused. The run may
    # straddle a minute's end, so at most twice that.
    assert DENIALS_PER_MINUTE + 1 <= len(entries) <= 2 * (DENIALS_PER_MINUTE + 1) < sent
    assert any("more not logged" in e["purpose"] for e in entries)


@pytest.mark.e2e
def test_the_view_is_for_owners_admins_and_auditors_and_reading_it_is_logged(
    stack: Stack, orgs: tuple[Org, Org]
) -> None:
    a, _ = orgs
    path = f"/api/v1/orgs/{a.slug}/access-log"
    assert a.clients["expert"].get(path).status_code == 403
    assert a.token.get(path).status_code == 403
    assert httpx.get(f"{a.base}{path}").status_code == 401
    for role in ("admin", "auditor"):
        assert a.log(a.clients[role])["entries"], role
    auditor = f"member:{a.members['auditor']['id']}"
    reads = [e for e in a.log(limit=MAX_PAGE)["entries"] if e["object_type"] == "access_log"]
    assert any(e["actor"] == auditor and e["action"] == "read" and e["outcome"] == "success" for e in reads)
    expert = f"member:{a.members['expert']['id']}"
    assert any(e["actor"] == expert and e["outcome"] == "denied" for e in reads), "a refused look is logged too"


@pytest.mark.e2e
def test_the_view_pages_newest_first_and_filters_by_outcome_and_time(stack: Stack, orgs: tuple[Org, Org]) -> None:
    a, _ = orgs
    everything = a.log(limit=MAX_PAGE)["entries"]
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) > 6
    # Walking the pages (each read adds an entry at the top, above the cursor) yields
    # every entry from the first page's top down to #1, once.
    pages: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor is not None:
            params["cursor"] = cursor
        page = a.log(**params)
        assert len(page["entries"]) <= 4
        pages.extend(e["seq"] for e in page["entries"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == list(range(pages[0], 0, -1))
    assert all(e["outcome"] == "success" for e in a.log(outcome="success")["entries"])
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    later = a.log(since=future)
    assert later["entries"] == [] and later["denied"] == 0
    assert a.log(until=future)["denied"] >= 6
    for bad in ({"limit": 0}, {"limit": MAX_PAGE + 1}, {"since": "2026-11-28T00:00:00"}, {"outcome": "maybe"}):
        response = a.owner.get(f"/api/v1/orgs/{a.slug}/access-log", params=bad)
        assert response.status_code == 400, (bad, response.text)


@pytest.mark.e2e
async def test_refusals_from_many_actors_are_bounded_per_organisation(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An in-process region app (the stack's database) with a small bound per organisation."""
    org = Org(stack, "log-many")
    monkeypatch.setattr(actors, "ORGANISATION_DENIALS", DenialBound(5))
    with bindings_restored(REGION_TABLES):
        async with AsyncTestClient(create_region_app(stack.settings.for_region("eu"))) as region:
            # Ten refusals, under the bound per actor (30): the one per organisation (5) stops them.
            for number in range(10):
                headers = {"authorization": f"Bearer ksl_eu_guess-{number}"}
                response = await region.get(f"/api/v1/orgs/{org.slug}/members", headers=headers)
                assert response.status_code == 401
    denied = org.log(outcome="denied")["entries"]
    assert len(denied) == 6
    assert "more not logged" in denied[0]["purpose"] and denied[0]["source_address"] == "testclient"
