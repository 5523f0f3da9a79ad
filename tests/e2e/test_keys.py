"""Per-tenant keys in a running region with a real OpenBao: encrypted storage,
integrity failures, fail-closed outage and recovery, rotation, crypto-shredding."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import httpx
import pytest

from konsil.platform.core import database
from konsil.platform.core.keys.cipher import FieldRef
from konsil.platform.core.keys.provider import KeyDestroyed
from konsil.platform.core.keys.service import TenantKeys
from konsil.platform.core.keys.vault import VaultTransitProvider
from konsil.regions.tables import REGION_TABLES
from konsil.tenants.tables import Member
from tests.conftest import PG_SERVER, SESSION_TAG, Stack, fetch, wait_until

pytestmark = pytest.mark.e2e


def org_with_member(stack: Stack) -> tuple[dict, httpx.Client, dict]:  # type: ignore[type-arg]
    made = stack.signup("eu")
    client = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    member = stack.add_member(client, made["slug"], "expert", phone="+4712345678")
    return made, client, member


def rows(stack: Stack, sql: str, *args: object) -> list[dict]:  # type: ignore[type-arg]
    return [dict(r) for r in asyncio.run(fetch(stack.dsns["eu"], sql, *args))]


def log_outcomes(stack: Stack, org_id: str, subject: str) -> list[str]:
    found = rows(
        stack,
        "SELECT outcome FROM access_log_entry WHERE org_id = $1 AND subject_ref = $2 ORDER BY seq",
        uuid.UUID(org_id),
        subject,
    )
    return [r["outcome"] for r in found]


def test_personal_fields_are_stored_encrypted_under_the_tenants_key(stack: Stack) -> None:
    made, client, member = org_with_member(stack)
    stored = rows(stack, "SELECT * FROM member WHERE id = $1", uuid.UUID(member["id"]))[0]
    for column in ("name", "email", "phone"):
        assert stored[column].startswith("kf1:"), column
        assert member[column] not in stored[column]
    assert len(stored["email_index"]) == 64 and len(stored["phone_index"]) == 64
    keys = rows(
        stack, "SELECT purpose, wrapped FROM tenant_data_key WHERE org_id = $1", uuid.UUID(made["organisation_id"])
    )
    assert sorted(k["purpose"] for k in keys) == ["field", "index"]
    assert all(k["wrapped"].startswith("vault:v1:") for k in keys)
    assert client.get(f"/api/v1/orgs/{made['slug']}/members/{member['id']}").json()["phone"] == "+4712345678"


@pytest.mark.parametrize(
    "damage",
    [
        "copied_from_other_row",
        "copied_from_other_org",
        "tampered",
        "truncated",
        "unknown_key",
        "unknown_format",
        "plaintext",
    ],
)
def test_a_damaged_field_is_refused_and_logged_never_shown_wrong(stack: Stack, damage: str) -> None:
    made, client, member = org_with_member(stack)
    member_id = uuid.UUID(member["id"])
    stored = rows(stack, "SELECT name, email FROM member WHERE id = $1", member_id)[0]
    if damage == "copied_from_other_row":
        value = stored["email"]  # the e-mail ciphertext in the name column
    elif damage == "copied_from_other_org":
        _, _, other = org_with_member(stack)
        value = rows(stack, "SELECT name FROM member WHERE id = $1", uuid.UUID(other["id"]))[0]["name"]
    elif damage == "tampered":
        body = stored["name"]
        value = body[:-3] + ("A" if body[-3] != "A" else "B") + body[-2:]
    elif damage == "truncated":
        value = stored["name"][:20]
    elif damage == "unknown_key":
        value = "kf1:" + "0" * 32 + ":" + stored["name"].split(":", 2)[2]
    elif damage == "unknown_format":
        value = "kf9:" + stored["name"].split(":", 1)[1]
    else:
        value = "Mallory Plaintext"
    rows(stack, "UPDATE member SET name = $1 WHERE id = $2", value, member_id)
    response = client.get(f"/api/v1/orgs/{made['slug']}/members/{member['id']}")
    assert response.status_code == 500 and response.json()["error"] == "integrity_error"
    assert member["name"] not in response.text and "Mallory" not in response.text
    assert log_outcomes(stack, made["organisation_id"], f"member:{member['id']}")[-1] == "failure"


def test_the_key_service_down_fails_closed_and_recovers_by_itself(stack: Stack) -> None:
    made, client, member = org_with_member(stack)
    bao = stack.vault["eu"][2]
    before = rows(stack, "SELECT count(*) AS n FROM member")[0]["n"]
    os.kill(bao.pid, signal.SIGSTOP)
    try:
        # The region serves from its data-key cache (at most 3 s old here) until the entry
        # expires; from then on each read needs the key service, and is refused.
        def refused() -> httpx.Response | None:
            read = client.get(f"/api/v1/orgs/{made['slug']}/members/{member['id']}")
            assert read.status_code in (200, 503), read.text
            return read if read.status_code == 503 else None

        read = wait_until(refused, "reads to need the key service (the cached data keys to expire)", every=0.2)
        assert "nothing was written" in read.json()["message"]
        write = client.post(
            f"/api/v1/orgs/{made['slug']}/members",
            json={
                "name": "Nobody",
                "email": f"{stack.unique('n')}@x.example",
                "role": "expert",
                "password": "correct horse battery",
            },
        )
        assert write.status_code == 503
        signup = httpx.post(
            f"{stack.control_url}/api/v1/signup",
            timeout=30,
            json={
                "region": "eu",
                "organisation": {"name": "Down", "slug": stack.unique("down")},
                "owner": {"name": "O", "email": "o@down.example", "password": "correct horse battery"},
            },
        )
        assert signup.status_code == 503
        assert rows(stack, "SELECT count(*) AS n FROM member")[0]["n"] == before, "nothing was written"
        assert "Nobody" not in str(rows(stack, "SELECT name FROM member"))
    finally:
        os.kill(bao.pid, signal.SIGCONT)
    recovered = client.get(f"/api/v1/orgs/{made['slug']}/members/{member['id']}")
    assert recovered.status_code == 200 and recovered.json()["email"] == member["email"]


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "konsil.platform.cli.main", *args, "--config", str(stack.run_dir / "region-eu.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rotation_rewraps_data_keys_and_retires_old_versions(stack: Stack) -> None:
    made, client, member = org_with_member(stack)
    done = cli(stack, "keys", "rotate", "--org", made["slug"], "--retire")
    assert done.returncode == 0, done.stderr
    assert "key version 2, 2 data keys rewrapped" in done.stdout and "below 2 retired" in done.stdout
    keys = rows(
        stack, "SELECT wrapped, key_version FROM tenant_data_key WHERE org_id = $1", uuid.UUID(made["organisation_id"])
    )
    assert all(k["wrapped"].startswith("vault:v2:") and k["key_version"] == 2 for k in keys)
    # The region service still holds the data keys it unwrapped before the rotation (its
    # cache, at most 3 s here). The first use after that adds its use count to the stored
    # one, then unwraps them again, now from v2 only (v1 is retired): every read until
    # the count moves gives the name, and so does the one that reloaded.
    used = "SELECT sum(encryptions) AS n FROM tenant_data_key WHERE org_id = $1"
    org_id = uuid.UUID(made["organisation_id"])
    before = rows(stack, used, org_id)[0]["n"]
    # One more use to count: on a busy machine the uses of before the rotation were already
    # written back (a background use of the cipher after its 3 s), and reads add none.
    stack.add_member(client, made["slug"], "expert")

    def reloaded() -> bool:
        read = client.get(f"/api/v1/orgs/{made['slug']}/members/{member['id']}")
        assert read.status_code == 200 and read.json()["name"] == member["name"], read.text
        return bool(rows(stack, used, org_id)[0]["n"] > before)

    wait_until(reloaded, "the region service to reload the organisation's data keys", every=0.2)
    assert cli(stack, "keys", "rotate", "--org", "no-such-org").returncode == 2


def test_deleting_an_organisation_shreds_its_key_and_a_backup_cannot_be_read(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    made, client, member = org_with_member(stack)
    backup = tmp_path / "region-eu.sql"
    subprocess.run(["pg_dump", "--no-owner", "-f", str(backup), stack.dsns["eu"]], check=True, timeout=60)
    org_id = uuid.UUID(made["organisation_id"])
    assert read_backup(stack, backup, org_id, member["id"], "before") == member["email"], "the backup is readable"
    # A payment (legal hold, P9) and a network-test result (support metadata) of the organisation.
    payment, result = uuid.uuid4(), uuid.uuid4()
    rows(
        stack,
        "INSERT INTO payment_record (id, org_id, provider, provider_reference, amount_minor, currency, card_brand,"
        " card_last4, payer_name, payer_email_index, created_at, keep_until) VALUES ($1, $2, 'stripe', 'pi_123',"
        " 4500, 'EUR', 'visa', '4242', 'kf1:sealed', 'idx', now(), now() + interval '5 years')",
        payment,
        org_id,
    )
    rows(
        stack,
        "INSERT INTO network_test_result (id, org_id, created_at, runner, transport, verdict, probes_sent,"
        " probes_answered) VALUES ($1, $2, now(), 'visitor', 'udp', 'good', 10, 10)",
        result,
        org_id,
    )

    filed = client.post(f"/api/v1/orgs/{made['slug']}/dsr", json={"kind": "access", "email": "subject@keys.example"})
    assert filed.status_code == 201, filed.text

    refused = client.post(f"/api/v1/orgs/{made['slug']}/delete", json={"confirm": "wrong"})
    assert refused.status_code == 400
    deleted = client.post(f"/api/v1/orgs/{made['slug']}/delete", json={"confirm": made["slug"]})
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True, "directory_updated": True}

    assert rows(stack, "SELECT count(*) AS n FROM member WHERE org_id = $1", org_id)[0]["n"] == 0
    assert rows(stack, "SELECT count(*) AS n FROM tenant_data_key WHERE org_id = $1", org_id)[0]["n"] == 0
    assert rows(stack, "SELECT count(*) AS n FROM network_test_result WHERE id = $1", result)[0]["n"] == 0
    assert rows(stack, "SELECT count(*) AS n FROM data_subject_request WHERE org_id = $1", org_id)[0]["n"] == 0
    # The payment stays for its legal hold, without the payer fields the shredded key sealed.
    [kept] = rows(
        stack,
        "SELECT card_last4, amount_minor, payer_name, payer_email_index FROM payment_record WHERE id = $1",
        payment,
    )
    assert kept == {"card_last4": "4242", "amount_minor": 4500, "payer_name": None, "payer_email_index": None}
    log = rows(
        stack, "SELECT action, object_type, outcome FROM access_log_entry WHERE org_id = $1 ORDER BY seq", org_id
    )
    assert log[-1] == {"action": "delete", "object_type": "organisation", "outcome": "success"}
    # The README's promise: a deleted organisation answers 410 Gone at the gateway.
    assert httpx.get(f"{stack.control_url}/api/v1/orgs/{made['slug']}/").status_code == 410
    with pytest.raises(KeyDestroyed):
        read_backup(stack, backup, org_id, member["id"], "after")


def read_backup(stack: Stack, backup, org_id: uuid.UUID, member_id: str, tag: str) -> str:  # type: ignore[no-untyped-def]
    """Restore the dump into a new database and read the member with the region's Vault."""
    name = f"{SESSION_TAG}_backup_{tag}"
    subprocess.run(["psql", "-q", f"{PG_SERVER}/postgres", "-c", f'CREATE DATABASE "{name}"'], check=True)
    try:
        subprocess.run(["psql", "-q", "-o", "/dev/null", "-f", str(backup), f"{PG_SERVER}/{name}"], check=True)

        async def read() -> str:
            engine = database.engine_for(f"{PG_SERVER}/{name}")
            previous = {table: table._meta._db for table in REGION_TABLES}
            database.bind(REGION_TABLES, engine)
            url, token, _ = stack.vault["eu"]
            keys = TenantKeys(VaultTransitProvider(url, token=token, timeout=2))
            try:
                row = await Member.select().where(Member.id == uuid.UUID(member_id)).first().run()
                assert row is not None
                cipher = await keys.cipher(org_id)
                return cipher.open(FieldRef(org_id, "member", "email", row["id"]), row["email"])
            finally:
                for table, db in previous.items():
                    table._meta._db = db

        return asyncio.run(read())
    finally:
        subprocess.run(
            ["psql", "-q", f"{PG_SERVER}/postgres", "-c", f'DROP DATABASE "{name}" WITH (FORCE)'], check=True
        )


def test_org_delete_from_the_command_line(stack: Stack) -> None:
    made, client, _ = org_with_member(stack)
    done = cli(stack, "org", "delete", made["slug"], "--yes")
    assert done.returncode == 0, done.stderr
    assert "key destroyed" in done.stdout
    assert client.get(f"/api/v1/orgs/{made['slug']}/").status_code == 404
    # The command told the control plane: its gateway answers 410 Gone, as the README promises.
    assert httpx.get(f"{stack.control_url}/api/v1/orgs/{made['slug']}/").status_code == 410
    assert cli(stack, "org", "delete", made["slug"], "--yes").returncode == 2


def test_a_tenant_whose_key_is_gone_gets_410(stack: Stack) -> None:
    import hvac

    made, client, member = org_with_member(stack)
    url, token, _ = stack.vault["eu"]
    vault = hvac.Client(url=url, token=token)
    name = f"org-{made['organisation_id']}"
    vault.secrets.transit.update_key_configuration(name=name, deletion_allowed=True)
    vault.secrets.transit.delete_key(name=name)

    # Served from the data-key cache (at most 3 s old here) until the entry expires.
    def gone() -> httpx.Response | None:
        read = client.get(f"/api/v1/orgs/{made['slug']}/members/{member['id']}")
        assert read.status_code in (200, 410), read.text
        return read if read.status_code == 410 else None

    response = wait_until(gone, "reads to find the key gone (the cached data keys to expire)", every=0.2)
    assert response.json()["error"] == "gone"
    assert member["email"] not in response.text
