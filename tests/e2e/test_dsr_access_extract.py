"""The "who accessed my data" extract of a data-subject request (NEN 7513 ch. 5, Normen
innsyn i logg) through the running EU region on PostgreSQL: a PDF the person reads,
listing every access to their records and nobody else's, with the organisation's
members by name; its making is in the access log; it is the organisation's managers'
alone, and only for their own organisation's requests."""

from __future__ import annotations

import io
import re
import uuid

import httpx
import pytest
from pypdf import PdfReader

from tests.conftest import Stack
from tests.e2e.test_dsr import PHONE, PHONE_AS_FILED, Practice, sql

pytestmark = pytest.mark.e2e

PURPOSE = "data-subject request (access log extract)"


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    return re.sub(r"\s+", " ", " ".join(page.extract_text() or "" for page in reader.pages))


def entries_about(stack: Stack, refs: list[str]) -> list[dict[str, object]]:
    rows = sql(stack, "SELECT * FROM access_log_entry WHERE subject_ref = ANY($1::text[]) ORDER BY seq", refs)
    return [dict(r) for r in rows]


@pytest.fixture
def practice(stack: Stack) -> Practice:
    return Practice(stack)


def test_the_extract_lists_every_access_to_the_subjects_records_and_no_one_elses(
    stack: Stack, practice: Practice
) -> None:
    first = practice.join()
    second = practice.join(name="Kari N.", phone="+4712345678")
    other = practice.join(name="Ola Nordmann", phone="+4798765432")
    call_id = practice.call(first)
    payment_id = practice.payment(first)
    visits_api = f"/api/v1/orgs/{practice.slug}/visits"
    assert practice.as_expert.get(f"{visits_api}/{second}").status_code == 200
    assert practice.as_expert.get(f"{visits_api}/{other}").status_code == 200  # another person's, not theirs
    made = practice.file("access", phone=PHONE_AS_FILED)

    response = practice.owner.post(practice.api(f"/{made['id']}/access-extract"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["cache-control"] == "no-store"
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="access-log-extract-{made["id"]}.pdf"', "names no person"
    text = pdf_text(response.content)

    # The organisation, the person's own records, and the request it answers.
    assert "Who accessed your data" in text
    assert f"Praxis {practice.slug}" in text
    assert (
        "Your records: 2 visits (with their calls) and 1 payment record, found by your phone number +4712345678"
    ) in text
    assert made["id"][:8] in text

    # Every entry about their records, its own making included, and nothing more.
    refs = [f"visit:{first}", f"visit:{second}", f"payment:{payment_id}"]
    entries = entries_about(stack, refs)
    made_now = [e for e in entries if e["purpose"] == PURPOSE]
    assert sorted((e["subject_ref"], e["action"], e["object_type"]) for e in made_now) == sorted(
        (ref, "export", "access_log") for ref in refs
    )
    people = len({e["actor"] for e in entries})
    assert f"{len(entries)} accesses by {people} people or systems" in text
    # Who: the visitor is "You"; the organisation's expert and owner by name and role.
    assert "You, visitor" in text
    assert f"{practice.expert['name']}, expert" in text
    assert f"Owner {practice.slug}, owner of the organisation" in text
    assert "Created call record" in text and "Viewed visit details" in text
    assert "Exported access log" in text and "Data-subject request (access log extract)" in text
    # Nothing of the other visitor: not their name, phone, visit or its accesses.
    for leak in ("Ola", "98765432", str(other), str(other)[:8]):
        assert leak not in text, leak
    assert str(call_id) not in text, "which record is not printed, only its kind"
    # No internal field names.
    assert not re.search(r"actor_role|on_behalf_of|subject_ref|object_type", text)

    # Opening a staff member's name is a read of their data, logged as such.
    expert_log = entries_about(stack, [f"member:{practice.expert['id']}"])
    assert ("read", "member", PURPOSE, "success") in [
        (e["action"], e["object_type"], e["purpose"], e["outcome"]) for e in expert_log
    ]
    # The request's own entry; the request stays open (the export or overview answers it).
    request_log = entries_about(stack, [f"dsr:{made['id']}"])
    assert ("export", "access_log", PURPOSE) in [(e["action"], e["object_type"], e["purpose"]) for e in request_log]
    listed = {r["id"]: r for r in practice.owner.get(practice.api()).json()}[made["id"]]
    assert listed["status"] == "received"


def test_an_unknown_subject_gets_an_extract_that_says_nothing_is_recorded(practice: Practice) -> None:
    practice.join()
    made = practice.file("access", email="nobody@example.org")
    response = practice.owner.post(practice.api(f"/{made['id']}/access-extract"))
    assert response.status_code == 200, response.text
    text = pdf_text(response.content)
    assert "No access to your data is recorded." in text
    assert "Your records found by your e-mail address nobody@example.org: none are held" in text
    assert "Kari" not in text


def test_a_member_subject_sees_themselves_as_you_and_a_connected_system_by_its_label(
    stack: Stack, practice: Practice
) -> None:
    # A connected system (an integration's API token) lists the members, the expert among them.
    token = practice.owner.post(
        f"/api/v1/orgs/{practice.slug}/tokens", json={"label": "Journal system", "scopes": ["members:read"]}
    )
    assert token.status_code == 201, token.text
    listed = httpx.get(
        f"{stack.region_url('eu')}/api/v1/orgs/{practice.slug}/members",
        headers={"authorization": f"Bearer {token.json()['token']}"},
    )
    assert listed.status_code == 200, listed.text
    made = practice.file("access", email=practice.expert["email"])
    text = pdf_text(practice.owner.post(practice.api(f"/{made['id']}/access-extract")).content)
    assert "Your records: 1 member account, found by your e-mail address" in text
    # The owner created the account and made the extract; the expert's own log-in is theirs.
    assert f"Owner {practice.slug}, owner of the organisation" in text
    assert "Created member account" in text
    assert "You, expert" in text
    assert "Journal system, connected system (API token)" in text and "the organisation" in text
    assert practice.expert["name"] not in text, "the person is shown as You, not by name"


def test_only_the_organisations_managers_get_it_and_only_for_their_requests(stack: Stack, practice: Practice) -> None:
    practice.join()
    made = practice.file("access", phone=PHONE)
    path = practice.api(f"/{made['id']}/access-extract")
    before = len(entries_about(stack, [f"dsr:{made['id']}"]))

    admin = stack.add_member(practice.owner, practice.slug, "admin")
    as_admin = stack.login(stack.region_url("eu"), practice.slug, admin["email"])
    assert as_admin.post(path).status_code == 200
    auditor = stack.add_member(practice.owner, practice.slug, "auditor")
    as_auditor = stack.login(stack.region_url("eu"), practice.slug, auditor["email"])
    for client in (as_auditor, practice.as_expert):
        refused = client.post(path)
        assert refused.status_code == 403, refused.text
        assert "Kari" not in refused.text
    # The refusals are in the log, against the request; the extract was made once.
    log = entries_about(stack, [f"dsr:{made['id']}"])
    assert [e["outcome"] for e in log[before:]].count("denied") == 2
    assert [e["purpose"] for e in log[before:]].count(PURPOSE) == 1

    # Another organisation's owner, on their own organisation: no such request.
    elsewhere = Practice(stack)
    assert elsewhere.owner.post(elsewhere.api(f"/{made['id']}/access-extract")).status_code == 404
    # ... and on this organisation's path: not theirs, and not told it exists.
    assert elsewhere.owner.post(path).status_code == 404
    log = entries_about(stack, [f"dsr:{made['id']}"])
    assert [e["purpose"] for e in log[before:]].count(PURPOSE) == 1, "nothing was made for them"
    # No CSRF token, no extract.
    without = practice.owner.post(path, headers={"x-csrf-token": ""})
    assert without.status_code == 403

    # A rejected request is not answered.
    practice.owner.post(practice.api(f"/{made['id']}/reject"), json={"reason": "identity_not_verified"})
    rejected = practice.owner.post(path)
    assert rejected.status_code == 409 and "rejected" in rejected.json()["message"]
    assert practice.owner.post(practice.api(f"/{uuid.uuid4()}/access-extract")).status_code == 404
