"""Data-subject requests (P17) through the running EU region: filing with a due date
four weeks out, finding a subject's records by e-mail or phone, the JSON export with
who accessed the data, rectification, erasure that keeps payment records, and the
errors a bad request gets."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e

PHONE = "+47 123 45 678"  # as the visitor typed it
PHONE_AS_FILED = "0047-12345678"  # as the person gives it later: another spelling of the same number


def sql(stack: Stack, query: str, *args: Any) -> list[Any]:
    return asyncio.run(fetch(stack.dsns["eu"], query, *args))


class Practice:
    def __init__(self, stack: Stack) -> None:
        made = stack.signup("eu")
        self.stack = stack
        self.slug: str = made["slug"]
        self.org_id = uuid.UUID(made["organisation_id"])
        self.owner = stack.login(stack.region_url("eu"), self.slug, made["owner"]["email"])
        self.expert = stack.add_member(self.owner, self.slug, "expert")
        self.as_expert = stack.login(stack.region_url("eu"), self.slug, self.expert["email"])
        room = self.as_expert.post(f"/api/v1/orgs/{self.slug}/rooms", json={"slug": "sprechstunde", "title": "S"})
        assert room.status_code == 201, room.text
        self.room_id = uuid.UUID(room.json()["id"])

    def api(self, path: str = "") -> str:
        return f"/api/v1/orgs/{self.slug}/dsr{path}"

    def join(self, name: str = "Kari Nordmann", phone: str = PHONE) -> uuid.UUID:
        joined = httpx.post(
            f"{self.stack.region_url('eu')}/{self.slug}/sprechstunde/visits",
            data={"name": name, "phone": phone, "consent": "yes"},
            follow_redirects=False,
        )
        assert joined.status_code == 303, joined.text
        return uuid.UUID(joined.headers["location"].rsplit("/", 1)[1])

    def call(self, visit_id: uuid.UUID) -> uuid.UUID:
        """Admit and end a call, then store its telemetry and relay receipt."""
        started = self.as_expert.post(f"/api/v1/orgs/{self.slug}/visits/{visit_id}/admit")
        assert started.status_code == 200, started.text
        call_id = uuid.UUID(started.json()["id"])
        assert self.as_expert.post(f"/api/v1/orgs/{self.slug}/calls/{call_id}/end").status_code == 200
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        for participant, kind, data in (
            ("visitor", "quality", {"rtt_ms": 42, "loss": 0.01}),
            ("expert", "action", {"action": "mute"}),
        ):
            sql(
                self.stack,
                "INSERT INTO call_telemetry (id, org_id, call_id, visit_id, participant, kind, data, at, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8)",
                uuid.uuid4(),
                self.org_id,
                call_id,
                visit_id,
                participant,
                kind,
                json.dumps(data),
                expires,
            )
        body = {"call_id": str(call_id), "region": "eu", "jurisdiction": "EU/EEA", "relays": ["eu-1"], "issued_at": ""}
        sql(
            self.stack,
            "INSERT INTO call_relay_receipt (id, org_id, call_id, body, signature, issued_at, expires_at) "
            "VALUES ($1, $2, $3, $4, 'sig', now(), $5)",
            uuid.uuid4(),
            self.org_id,
            call_id,
            json.dumps(body),
            expires,
        )
        return call_id

    def payment(self, visit_id: uuid.UUID) -> uuid.UUID:
        payment_id = uuid.uuid4()
        sql(
            self.stack,
            "INSERT INTO payment_record (id, org_id, visit_id, provider, provider_reference, amount_minor, currency, "
            "card_brand, card_last4, created_at, keep_until) "
            "VALUES ($1, $2, $3, 'stripe', 'pi_123', 45000, 'NOK', 'visa', '4242', now(), now() + interval '5 years')",
            payment_id,
            self.org_id,
            visit_id,
        )
        return payment_id

    def file(self, kind: str, **identifier: str) -> dict[str, Any]:
        filed = self.owner.post(self.api(), json={"kind": kind, **identifier})
        assert filed.status_code == 201, filed.text
        return dict(filed.json())


@pytest.fixture
def practice(stack: Stack) -> Practice:
    return Practice(stack)


def log_of(stack: Stack, subject: str) -> list[tuple[str, str, str]]:
    rows = sql(
        stack, "SELECT action, object_type, purpose FROM access_log_entry WHERE subject_ref = $1 ORDER BY seq", subject
    )
    return [(r["action"], r["object_type"], r["purpose"]) for r in rows]


def test_each_kind_is_filed_with_a_due_date_four_weeks_out_and_overdue_ones_are_listed(practice: Practice) -> None:
    filed = [
        practice.file("access", email="Person@Example.org"),
        practice.file("rectification", phone=PHONE),
        practice.file("erasure", email="person@example.org"),
        practice.file("portability", phone=PHONE_AS_FILED),
    ]
    for made in filed:
        received, due = dt.datetime.fromisoformat(made["received_at"]), dt.datetime.fromisoformat(made["due_at"])
        assert due - received == dt.timedelta(days=28)
        assert made["status"] == "received" and made["overdue"] is False
        assert set(made) == {"id", "kind", "identifier_kind", "received_at", "due_at", "status", "overdue"} | {
            "completed_at",
            "fulfilled_by",
            "outcome",
        }
        assert made["outcome"] == {}, "open: not answered yet"
    assert [m["kind"] for m in filed] == ["access", "rectification", "erasure", "portability"]

    rows = sql(practice.stack, "SELECT * FROM data_subject_request WHERE org_id = $1", practice.org_id)
    assert len(rows) == 4
    for row in rows:
        assert row["due_at"] - row["received_at"] == dt.timedelta(days=28)
        assert row["identifier"].startswith("kf1:") and len(row["identifier_index"]) == 64
        stored = " ".join(str(v) for v in dict(row).values()).lower()
        assert "person@example.org" not in stored and "12345678" not in stored, "the identifier is stored sealed"
    # The same person, spelled differently, has the same blind index.
    by_id = {r["id"]: r for r in rows}
    assert by_id[uuid.UUID(filed[0]["id"])]["identifier_index"] == by_id[uuid.UUID(filed[2]["id"])]["identifier_index"]
    assert by_id[uuid.UUID(filed[1]["id"])]["identifier_index"] == by_id[uuid.UUID(filed[3]["id"])]["identifier_index"]

    # One request received five weeks ago: it is overdue, and listed first.
    late = uuid.UUID(filed[2]["id"])
    sql(
        practice.stack,
        "UPDATE data_subject_request SET received_at = now() - interval '35 days', "
        "due_at = now() - interval '7 days' WHERE id = $1",
        late,
    )
    listed = practice.owner.get(practice.api()).json()
    assert listed[0]["id"] == str(late)
    assert {r["id"]: r["overdue"] for r in listed} == {m["id"]: m["id"] == str(late) for m in filed}
    assert all("identifier" not in r for r in listed), "the list shows no personal data"
    open_only = practice.owner.get(practice.api(), params={"status": "received"}).json()
    assert len(open_only) == 4
    assert practice.owner.get(practice.api(), params={"status": "nonsense"}).status_code == 400
    for made in filed:
        assert log_of(practice.stack, f"dsr:{made['id']}")[0][:2] == ("create", "data_subject_request")


def test_an_access_request_by_phone_exports_visits_calls_telemetry_and_who_accessed_them(practice: Practice) -> None:
    first = practice.join()
    second = practice.join(name="Kari N.", phone="+4712345678")
    other = practice.join(name="Ola Nordmann", phone="+4798765432")
    call_id = practice.call(first)
    assert practice.as_expert.get(f"/api/v1/orgs/{practice.slug}/visits/{second}").status_code == 200
    payment_id = practice.payment(first)
    made = practice.file("access", phone=PHONE_AS_FILED)

    shown = practice.owner.get(practice.api(f"/{made['id']}"))
    assert shown.status_code == 200, shown.text
    detail = shown.json()
    assert detail["identifier"] == "+4712345678" and detail["identifier_kind"] == "phone"
    assert detail["found"] == {
        "members": 0, "visits": 2, "calls": 1, "telemetry": 2, "relay_receipts": 1, "payments": 1
    }  # fmt: skip

    exported = practice.owner.post(practice.api(f"/{made['id']}/export"))
    assert exported.status_code == 200, exported.text
    assert "attachment" in exported.headers["content-disposition"]
    data = exported.json()
    assert (data["format"], data["version"]) == ("konsil.data-subject-export", 1)
    assert data["organisation"]["slug"] == practice.slug and data["organisation"]["region"] == "eu"
    assert [(v["id"], v["name"], v["phone"], v["room"]) for v in data["visits"]] == [
        (str(first), "Kari Nordmann", "+4712345678", "sprechstunde"),
        (str(second), "Kari N.", "+4712345678", "sprechstunde"),
    ]
    assert str(other) not in exported.text and "Ola" not in exported.text
    [call] = data["visits"][0]["calls"]
    assert call["id"] == str(call_id) and call["duration_seconds"] is not None
    assert call["expert_id"] == practice.expert["id"]
    assert sorted((t["participant"], t["kind"]) for t in call["telemetry"]) == [
        ("expert", "action"),
        ("visitor", "quality"),
    ]
    assert {"rtt_ms": 42, "loss": 0.01} in [t["data"] for t in call["telemetry"]]
    assert call["relay_receipt"]["region"] == "eu" and call["relay_receipt"]["relays"] == ["eu-1"]
    assert call["relay_receipt"]["key_id"] == "", "stored without a region key id: no proof, and says so"
    assert [(p["id"], p["card_last4"], p["legal_hold"]) for p in data["payments"]] == [(str(payment_id), "4242", True)]

    # Who accessed the data: the visitor's own form, the expert's admit and read, the search.
    accessed = {(a["actor"], a["action"], a["object_type"], a["object_id"]) for a in data["accessed_by"]}
    expert = f"member:{practice.expert['id']}"
    assert (f"visitor:{first}", "create", "visit", str(first)) in accessed
    assert (expert, "create", "call", str(call_id)) in accessed
    assert (expert, "read", "visit", str(second)) in accessed
    assert any(a[1] == "search" and a[3] == str(first) for a in accessed)
    assert not any(a[3] == str(other) for a in accessed)

    # Fulfilled, and the export itself is in the log of each record.
    assert data["request"]["status"] == "completed"
    listed = {r["id"]: r for r in practice.owner.get(practice.api()).json()}[made["id"]]
    assert listed["status"] == "completed" and listed["completed_at"]
    me = practice.owner.get(f"/api/v1/orgs/{practice.slug}/auth/me").json()["member_id"]
    assert listed["fulfilled_by"] == f"member:{me}"
    assert ("export", "visit", "data-subject request (access)") in log_of(practice.stack, f"visit:{first}")
    assert ("export", "payment_record", "data-subject request (access)") in log_of(
        practice.stack, f"payment:{payment_id}"
    )

    overview = practice.owner.post(practice.api(f"/{made['id']}/overview"))
    assert overview.status_code == 200 and overview.headers["content-type"].startswith("text/plain")
    assert "Visits: 2" in overview.text and "Kari Nordmann" in overview.text
    # The rights and the authority of the organisation's jurisdiction (no country set:
    # the European Data Protection Board's list of authorities), never a hard-coded one.
    assert "GDPR Art. 15" in overview.text and "edpb.europa.eu" in overview.text
    assert "Datatilsynet" not in overview.text


def test_a_member_is_found_by_e_mail(practice: Practice) -> None:
    made = practice.file("portability", email=practice.expert["email"].upper())
    detail = practice.owner.get(practice.api(f"/{made['id']}")).json()
    assert detail["found"]["members"] == 1 and detail["found"]["visits"] == 0
    data = practice.owner.post(practice.api(f"/{made['id']}/export")).json()
    [member] = data["members"]
    assert (member["id"], member["email"], member["role"]) == (
        practice.expert["id"],
        practice.expert["email"],
        "expert",
    )
    assert any(a["action"] == "create" and a["object_type"] == "member" for a in data["accessed_by"])


def test_rectification_changes_the_stored_fields_and_is_logged(practice: Practice) -> None:
    visit = practice.join(name="Kari Nordman")
    before = sql(practice.stack, "SELECT name, phone, phone_index FROM visit WHERE id = $1", visit)[0]
    made = practice.file("rectification", phone=PHONE)
    bad = practice.owner.post(practice.api(f"/{made['id']}/rectify"), json={})
    assert bad.status_code == 400 and "nothing to change" in bad.text
    done = practice.owner.post(practice.api(f"/{made['id']}/rectify"), json={"name": "Kari Nordmann"})
    assert done.status_code == 200, done.text
    assert done.json()["changed"] == {"members": 0, "visits": 1}
    assert done.json()["request"]["status"] == "completed"
    after = sql(practice.stack, "SELECT name, phone, phone_index FROM visit WHERE id = $1", visit)[0]
    assert after["name"].startswith("kf1:") and after["name"] != before["name"]
    assert (after["phone"], after["phone_index"]) == (before["phone"], before["phone_index"])
    opened = practice.as_expert.get(f"/api/v1/orgs/{practice.slug}/visits/{visit}").json()
    assert opened["name"] == "Kari Nordmann"
    assert ("update", "visit", "data-subject request (rectification)") in log_of(practice.stack, f"visit:{visit}")

    # A new phone: the visit is then found under it, no longer under the old one.
    practice.owner.post(practice.api(f"/{made['id']}/rectify"), json={"phone": "+47 400 00 000"})
    again = practice.file("access", phone="+4740000000")
    assert practice.owner.get(practice.api(f"/{again['id']}")).json()["found"]["visits"] == 1
    assert practice.owner.get(practice.api(f"/{made['id']}")).json()["found"]["visits"] == 0
    # Only a rectification request rectifies.
    assert practice.owner.post(practice.api(f"/{again['id']}/rectify"), json={"name": "X"}).status_code == 409


def test_erasure_removes_the_subjects_visits_in_this_organisation_and_keeps_payment_records(
    stack: Stack, practice: Practice
) -> None:
    paid = practice.join()
    call_id = practice.call(paid)
    waiting = practice.join(name="Kari")
    other = practice.join(name="Ola Nordmann", phone="+4798765432")
    payment_id = practice.payment(paid)
    elsewhere = Practice(stack)  # another organisation, the same person
    elsewhere_visit = elsewhere.join()
    elsewhere.call(elsewhere_visit)

    made = practice.file("erasure", phone=PHONE)
    refused = practice.owner.post(practice.api(f"/{made['id']}/erase"), json={})
    assert refused.status_code == 400 and "confirm" in refused.text
    assert practice.owner.post(practice.api(f"/{made['id']}/export")).json()["request"]["status"] == "received"
    erased = practice.owner.post(practice.api(f"/{made['id']}/erase"), json={"confirm": "erase"})
    assert erased.status_code == 200, erased.text
    assert erased.json()["changed"] == {
        "members": 0, "visits": 2, "calls": 1, "telemetry": 2, "relay_receipts": 1, "payments_kept": 1
    }  # fmt: skip
    assert erased.json()["request"]["status"] == "completed"

    def count(table: str, column: str, value: uuid.UUID) -> int:
        query = f"SELECT count(*) AS n FROM {table} WHERE {column} = $1"  # noqa: S608 (fixed names)
        return int(sql(stack, query, value)[0]["n"])

    assert count("visit", "id", paid) == count("visit", "id", waiting) == 0
    assert count("call", "id", call_id) == count("call_telemetry", "call_id", call_id) == 0
    assert count("call_relay_receipt", "call_id", call_id) == 0
    assert count("payment_record", "id", payment_id) == 1, "payment records are under legal hold"
    assert count("visit", "id", other) == 1, "another person's visit stays"
    assert count("visit", "id", elsewhere_visit) == 1, "the same phone in another organisation stays"
    assert count("call_telemetry", "visit_id", elsewhere_visit) == 2
    log = log_of(stack, f"visit:{paid}")
    assert ("delete", "visit", "data-subject request (erasure)") in log
    assert ("delete", "call", "data-subject request (erasure)") in log
    assert ("delete", "residency_receipt", "data-subject request (erasure)") in log

    # Afterwards the subject's data is only the payment record.
    after = practice.file("access", phone=PHONE)
    found = practice.owner.get(practice.api(f"/{after['id']}")).json()["found"]
    assert found["visits"] == found["calls"] == 0
    waiting_now = practice.as_expert.get(f"/api/v1/orgs/{practice.slug}/visits/waiting").json()
    assert [w["id"] for w in waiting_now] == [str(other)]


def test_erasure_of_a_member_account_and_its_limits(stack: Stack, practice: Practice) -> None:
    admin = stack.add_member(practice.owner, practice.slug, "admin")
    made = practice.file("erasure", email=admin["email"])
    done = practice.owner.post(practice.api(f"/{made['id']}/erase"), json={"confirm": "erase"})
    assert done.status_code == 200, done.text
    assert done.json()["changed"]["members"] == 1
    assert practice.owner.get(f"/api/v1/orgs/{practice.slug}/members/{admin['id']}").status_code == 404
    # An expert still owning a room: refused, nothing deleted.
    made = practice.file("erasure", email=practice.expert["email"])
    refused = practice.owner.post(practice.api(f"/{made['id']}/erase"), json={"confirm": "erase"})
    assert refused.status_code == 409 and "rooms" in refused.json()["message"]
    assert practice.owner.get(f"/api/v1/orgs/{practice.slug}/members/{practice.expert['id']}").status_code == 200
    assert practice.owner.get(practice.api()).json()[0]["status"] == "received"


def test_an_unknown_subject_gets_the_same_answer(practice: Practice) -> None:
    practice.join()
    known = practice.owner.post(practice.api(), json={"kind": "access", "phone": PHONE})
    unknown = practice.owner.post(practice.api(), json={"kind": "access", "phone": "+4711111111"})
    assert known.status_code == unknown.status_code == 201
    assert set(known.json()) == set(unknown.json())
    assert {k: v for k, v in known.json().items() if k not in ("id", "received_at", "due_at")} == {
        k: v for k, v in unknown.json().items() if k not in ("id", "received_at", "due_at")
    }
    data = practice.owner.post(practice.api(f"/{unknown.json()['id']}/export")).json()
    assert data["visits"] == data["members"] == data["payments"] == data["accessed_by"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "access", "email": "not-an-address"}, "email"),
        ({"kind": "access", "email": "kari@@example.org"}, "email"),
        ({"kind": "access", "phone": "12345678"}, "phone"),
        ({"kind": "access", "phone": "+47 12a45678"}, "phone"),
        ({"kind": "access", "phone": "+" + "1" * 30}, "phone"),
        ({"kind": "access", "email": "kari@example.org", "phone": PHONE}, "email or phone"),
        ({"kind": "access"}, "email or phone"),
        ({"kind": "forget-me", "email": "kari@example.org"}, "kind"),
        ({"kind": "access", "email": "kari@example.org", "name": "Kari"}, "name"),
    ],
)
def test_malformed_requests_get_a_clear_400_and_store_nothing(
    stack: Stack, practice: Practice, body: dict[str, str], field: str
) -> None:
    response = practice.owner.post(practice.api(), json=body)
    assert response.status_code == 400, response.text
    assert field in response.text
    for value in (body.get("email"), body.get("phone")):
        if value and field != "email or phone":
            assert value not in response.text, "the value is never echoed"
    assert sql(stack, "SELECT count(*) AS n FROM data_subject_request WHERE org_id = $1", practice.org_id)[0]["n"] == 0


def test_only_owners_and_admins_handle_requests(stack: Stack, practice: Practice) -> None:
    made = practice.file("access", email="kari@example.org")
    admin = stack.add_member(practice.owner, practice.slug, "admin")
    as_admin = stack.login(stack.region_url("eu"), practice.slug, admin["email"])
    assert as_admin.get(practice.api()).status_code == 200
    auditor = stack.add_member(practice.owner, practice.slug, "auditor")
    as_auditor = stack.login(stack.region_url("eu"), practice.slug, auditor["email"])
    # An auditor reads the list (no personal data in it), nothing more.
    listed = as_auditor.get(practice.api())
    assert listed.status_code == 200 and made["id"] in listed.text and "kari@example.org" not in listed.text
    assert practice.as_expert.get(practice.api()).status_code == 403
    for client in (practice.as_expert, as_auditor):
        assert client.post(practice.api(), json={"kind": "access", "email": "x@example.org"}).status_code == 403
        assert client.get(practice.api(f"/{made['id']}")).status_code == 403
        assert client.post(practice.api(f"/{made['id']}/export")).status_code == 403
        assert client.get(f"/{practice.slug}/portal/dsr").status_code == 403
    page = practice.owner.get(f"/{practice.slug}/portal/dsr")
    assert page.status_code == 200 and "/static/dsr.js" in page.text and "<script>" not in page.text
    assert f'href="/{practice.slug}/portal/dsr"' in practice.owner.get(f"/{practice.slug}/portal").text
    assert f"/{practice.slug}/portal/dsr" not in practice.as_expert.get(f"/{practice.slug}/portal").text
