"""The attestation API of a region (issue 13, item 1): owners list the controls of a
framework that their signature meets, sign one and withdraw it; admins and auditors
read along; nobody else, and no integration token. Bad input names what is wrong."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from konsil.compliance.controls.catalog import load_catalogs
from tests.conftest import Stack

pytestmark = pytest.mark.e2e

CATALOGS = load_catalogs()
HIPAA_ATTESTED = [c for c in CATALOGS["hipaa"].controls if c.attestation is not None]
HIPAA_CHECKED = next(c for c in CATALOGS["hipaa"].controls if c.check is not None)


@pytest.fixture(scope="module")
def practice(stack: Stack) -> dict[str, Any]:
    made = stack.signup("eu", slug=stack.unique("attest"))
    base, slug = stack.region_url("eu"), made["slug"]
    owner = stack.login(base, slug, made["owner"]["email"])
    clients = {"owner": owner}
    for role in ("admin", "expert", "auditor"):
        member = stack.add_member(owner, slug, role)
        clients[role] = stack.login(base, slug, member["email"])
    token = owner.post(f"/api/v1/orgs/{slug}/tokens", json={"label": "all", "scopes": ["org:read", "members:write"]})
    assert token.status_code == 201, token.text
    clients["token"] = httpx.Client(base_url=base, headers={"authorization": f"Bearer {token.json()['token']}"})
    return {"api": f"/api/v1/orgs/{slug}/attestations", "owner_id": made["owner_id"], **clients}


def test_owners_sign_and_withdraw_and_everyone_who_may_read_sees_the_state(practice: dict[str, Any]) -> None:
    api, owner = practice["api"], practice["owner"]
    control = HIPAA_ATTESTED[0]
    assert control.attestation is not None
    listed = owner.get(api, params={"framework": "hipaa"})
    assert listed.status_code == 200, listed.text
    assert [s["control_id"] for s in listed.json()] == [c.id for c in HIPAA_ATTESTED]
    assert {s["state"] for s in listed.json()} == {"never"}

    signed = owner.post(api, json={"framework": "hipaa", "control_id": control.id})
    assert signed.status_code == 201, signed.text
    body = signed.json()
    assert body["statement"] == control.attestation.statement and body["signed_by"] == practice["owner_id"]
    signed_at, expires_at = (dt.datetime.fromisoformat(body[k]) for k in ("signed_at", "expires_at"))
    assert expires_at - signed_at == dt.timedelta(days=control.attestation.valid_days)

    for reader in ("owner", "admin", "auditor"):
        states = practice[reader].get(api, params={"framework": "hipaa"})
        assert states.status_code == 200, (reader, states.text)
        state = next(s for s in states.json() if s["control_id"] == control.id)
        assert state["state"] == "attested" and state["attested_until"] == body["expires_at"], reader
        assert state["latest"]["id"] == body["id"]
    assert len(owner.get(api).json()) == sum(
        1 for f in CATALOGS.values() for c in f.controls if c.attestation is not None
    ), "all frameworks without ?framework"

    withdrawn = owner.post(f"{api}/{body['id']}/withdraw")
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["withdrawn_by"] == practice["owner_id"]
    state = next(s for s in owner.get(api, params={"framework": "hipaa"}).json() if s["control_id"] == control.id)
    assert state["state"] == "withdrawn" and state["attested_until"] is None
    again = owner.post(f"{api}/{body['id']}/withdraw")
    assert again.status_code == 409
    signatures = practice["auditor"].get(f"{api}/signatures", params={"framework": "hipaa"})
    assert signatures.status_code == 200 and [s["id"] for s in signatures.json()] == [body["id"]]

    # Both are in the organisation's access log, naming the owner and the attestation.
    log = owner.get(f"{api.rsplit('/', 1)[0]}/access-log", params={"limit": 50}).json()["entries"]
    mine = [(e["action"], e["purpose"]) for e in log if e["object_type"] == "attestation"]
    assert mine == [("update", "withdraw an attestation"), ("create", "attest a control")]
    assert all(e["actor"] == f"member:{practice['owner_id']}" for e in log if e["object_type"] == "attestation")


def test_only_owners_sign_or_withdraw_and_experts_and_tokens_read_nothing(practice: dict[str, Any]) -> None:
    api, owner = practice["api"], practice["owner"]
    control_id = HIPAA_ATTESTED[1].id
    signed = owner.post(api, json={"framework": "hipaa", "control_id": control_id})
    assert signed.status_code == 201
    for who in ("admin", "expert", "auditor", "token"):
        client = practice[who]
        assert client.post(api, json={"framework": "hipaa", "control_id": control_id}).status_code == 403, who
        assert client.post(f"{api}/{signed.json()['id']}/withdraw").status_code == 403, who
    for who in ("expert", "token"):
        assert practice[who].get(api).status_code == 403, who
        assert practice[who].get(f"{api}/signatures").status_code == 403, who
    newest = owner.get(f"{api}/signatures", params={"framework": "hipaa"}).json()[0]
    assert newest["id"] == signed.json()["id"] and newest["withdrawn_at"] is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"framework": "sox", "control_id": "404"}, "framework: no framework 'sox'"),
        ({"framework": "hipaa", "control_id": "164.999"}, "control_id: HIPAA Security Rule has no control '164.999'"),
        ({"framework": "hipaa", "control_id": HIPAA_CHECKED.id}, "control_id: HIPAA Security Rule control"),
    ],
)
def test_an_unknown_or_automated_control_is_refused_naming_it(
    practice: dict[str, Any], body: dict[str, str], named: str
) -> None:
    before = practice["owner"].get(f"{practice['api']}/signatures").json()
    refused = practice["owner"].post(practice["api"], json=body)
    assert refused.status_code == 400 and refused.json()["message"].startswith(named), refused.text
    assert practice["owner"].get(f"{practice['api']}/signatures").json() == before


def test_malformed_requests_are_refused_naming_the_field(practice: dict[str, Any]) -> None:
    api, owner = practice["api"], practice["owner"]
    missing = owner.post(api, json={"framework": "gdpr"})
    assert missing.status_code == 400 and "control_id" in str(missing.json()), missing.text
    extra = owner.post(api, json={"framework": "gdpr", "control_id": "x", "statement": "I say so"})
    assert extra.status_code == 400 and "statement" in str(extra.json()), extra.text
    unknown = owner.get(api, params={"framework": "sox"})
    assert unknown.status_code == 400 and unknown.json()["message"].startswith("framework: no framework 'sox'")
