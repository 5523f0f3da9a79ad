"""`konsil audit …` on a live region database: verify names the first tampered entry
with a non-zero exit code; a chain rewritten with a consistent head is caught against a
checkpoint kept from `konsil audit checkpoint`; a removed organisation's log is still
verified, by slug and by id, and its deletion certificate printed and checked."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import httpx
import msgspec
import pytest

from konsil.compliance.access_log import chain
from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e


def konsil(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    config = stack.run_dir / "region-eu.toml"
    return subprocess.run(
        [sys.executable, "-m", "konsil.platform.cli.main", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def verify(stack: Stack, slug: str, *more: str) -> subprocess.CompletedProcess[str]:
    return konsil(stack, "audit", "verify", "--org", slug, *more)


def test_audit_verify_reports_ok_then_names_the_modified_entry(stack: Stack) -> None:
    made = stack.signup("eu")
    owner = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    member = stack.add_member(owner, made["slug"], "expert")
    assert owner.get(f"/api/v1/orgs/{made['slug']}/members").status_code == 200
    ok = verify(stack, made["slug"])
    assert ok.returncode == 0, ok.stderr
    assert f"audit log of org '{made['slug']}': OK" in ok.stdout
    org_id = uuid.UUID(made["organisation_id"])
    asyncio.run(
        fetch(
            stack.dsns["eu"],
            "UPDATE access_log_entry SET actor = 'member:someone-else' WHERE org_id = $1 AND seq = 3",
            org_id,
        )
    )
    bad = verify(stack, made["slug"])
    assert bad.returncode == 1
    assert "entry #3" in bad.stdout and "modified" in bad.stdout
    assert member["email"] not in bad.stdout
    assert verify(stack, "no-such-org").returncode == 2


def test_logins_are_access_logged_with_their_outcome(stack: Stack) -> None:
    made = stack.signup("eu")
    url = f"{stack.region_url('eu')}/api/v1/orgs/{made['slug']}/auth/login"
    assert httpx.post(url, json={"email": made["owner"]["email"], "password": "wrong password!"}).status_code == 401
    assert (
        httpx.post(url, json={"email": made["owner"]["email"], "password": made["owner"]["password"]}).status_code
        == 200
    )
    rows = asyncio.run(
        fetch(
            stack.dsns["eu"],
            "SELECT actor, outcome, purpose FROM access_log_entry "
            "WHERE org_id = $1 AND purpose = 'log in' ORDER BY seq",
            uuid.UUID(made["organisation_id"]),
        )
    )
    assert [(r["actor"], r["outcome"]) for r in rows] == [
        ("anonymous", "failure"),
        (f"member:{made['owner_id']}", "success"),
    ]


async def rewrite_without(dsn: str, org_id: uuid.UUID, seq: int) -> None:
    """What someone with write access to the database can do: delete entry #seq, then
    renumber and re-hash every entry after it and move the head, so the chain is
    consistent again."""
    rows = await fetch(dsn, "SELECT * FROM access_log_entry WHERE org_id = $1 ORDER BY seq", org_id)
    await fetch(dsn, "DELETE FROM access_log_entry WHERE org_id = $1 AND seq = $2", org_id, seq)
    prev_hash = chain.GENESIS_HASH
    kept = [chain.EntryRecord(**dict(row)) for row in rows if row["seq"] != seq]
    for new_seq, record in enumerate(kept, start=1):
        if new_seq >= seq:
            moved = msgspec.structs.replace(record, seq=new_seq, prev_hash=prev_hash)
            new_hash = chain.entry_hash(moved)
            await fetch(
                dsn,
                "UPDATE access_log_entry SET seq = $1, prev_hash = $2, entry_hash = $3 WHERE id = $4",
                new_seq,
                prev_hash,
                new_hash,
                record.id,
            )
            prev_hash = new_hash
        else:
            prev_hash = record.entry_hash
    await fetch(
        dsn, "UPDATE access_log_head SET seq = $1, entry_hash = $2 WHERE org_id = $3", len(kept), prev_hash, org_id
    )


def test_a_chain_rewritten_with_a_consistent_head_is_caught_since_a_kept_checkpoint(stack: Stack) -> None:
    made = stack.signup("eu")
    slug, org_id = made["slug"], uuid.UUID(made["organisation_id"])
    owner = stack.login(stack.region_url("eu"), slug, made["owner"]["email"])
    stack.add_member(owner, slug, "expert")
    kept = stack.run_dir / f"checkpoint-{slug}.json"

    signed = konsil(stack, "audit", "checkpoint", "--org", slug, "--out", str(kept))
    assert signed.returncode == 0, signed.stderr
    assert f"saved to {kept}" in signed.stdout
    assert konsil(stack, "audit", "checkpoint", "--org", slug, "--out", str(kept)).returncode == 2, "never overwritten"
    document = json.loads(kept.read_text())
    assert document["checkpoint"]["org"] == str(org_id) and document["signature"]["alg"] == "EdDSA"
    assert owner.get(f"/api/v1/orgs/{slug}/members").status_code == 200  # the log moves on
    ok = verify(stack, slug, "--since-checkpoint", str(kept))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "the head carries the region's seal" in ok.stdout
    assert f"it extends the region's checkpoint of {document['checkpoint']['at']}" in ok.stdout

    asyncio.run(rewrite_without(stack.dsns["eu"], org_id, 2))

    caught = verify(stack, slug, "--since-checkpoint", str(kept))
    assert caught.returncode == 1
    assert "was rewritten" in caught.stdout and "checkpoint" in caught.stdout
    assert verify(stack, slug).returncode == 1, "the head's seal shows it without a kept checkpoint, too"
    refused = konsil(stack, "audit", "checkpoint", "--org", slug)
    assert refused.returncode == 1 and "does not sign" in refused.stdout
    bad = stack.run_dir / f"bad-{slug}.json"
    bad.write_text(kept.read_text().replace('"seq": ', '"seq": -'))
    unreadable = verify(stack, slug, "--since-checkpoint", str(bad))
    assert unreadable.returncode == 2 and "checkpoint.seq" in unreadable.stderr


def test_a_removed_organisation_is_verified_by_slug_and_id_and_has_a_certificate(stack: Stack) -> None:
    made = stack.signup("eu")
    slug, org_id = made["slug"], made["organisation_id"]
    owner = stack.login(stack.region_url("eu"), slug, made["owner"]["email"])
    stack.add_member(owner, slug, "expert")

    deleted = konsil(stack, "org", "delete", slug, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert f"konsil audit certificate --org-id {org_id}" in deleted.stdout

    by_slug = verify(stack, slug)
    assert by_slug.returncode == 0, by_slug.stdout + by_slug.stderr
    assert f"audit log of org '{slug}' (organisation removed " in by_slug.stdout and ": OK, " in by_slug.stdout
    by_id = konsil(stack, "audit", "verify", "--org-id", org_id)
    assert by_id.returncode == 0 and "it extends the region's checkpoint" in by_id.stdout

    shown = konsil(stack, "audit", "certificate", "--org-id", org_id)
    assert shown.returncode == 0, shown.stderr
    assert "the deletion certificate verifies with the region's key" in shown.stderr
    certificate = json.loads(shown.stdout)["certificate"]
    assert certificate["slug"] == slug and certificate["key_destroyed"] is True
    assert certificate["key_versions"] == [1] and certificate["rows_removed"]["member"] == 2
    assert certificate["rows_removed"]["organisation"] == 1
    assert certificate["checkpoint"]["checkpoint"]["org"] == org_id
    assert made["owner"]["email"] not in shown.stdout

    again = konsil(stack, "audit", "checkpoint", "--org-id", org_id)
    assert again.returncode == 0 and json.loads(again.stdout)["checkpoint"]["org"] == org_id
    missing = konsil(stack, "audit", "certificate", "--org-id", str(uuid.uuid4()))
    assert missing.returncode == 2 and "no organisation with id" in missing.stderr
    assert konsil(stack, "audit", "verify", "--org-id", "not-a-uuid").returncode == 2


# --- the commands' own reads are access-logged (NEN 7510 A.12.4.2) ------------------------------


def reads_logged(stack: Stack, org_id: str) -> list[dict[str, object]]:
    """The entries ``konsil audit`` wrote about its own reads of the organisation's log."""
    rows = asyncio.run(
        fetch(
            stack.dsns["eu"],
            "SELECT seq, actor, actor_role, on_behalf_of, subject_ref, action, object_type, object_id, outcome, "
            "purpose, source_address FROM access_log_entry WHERE org_id = $1 AND actor = 'operator:cli' "
            "AND purpose LIKE 'konsil audit %' ORDER BY seq",
            uuid.UUID(org_id),
        )
    )
    return [dict(row) for row in rows]


def test_each_audit_command_logs_its_read_of_the_log(stack: Stack) -> None:
    made = stack.signup("eu")
    slug, org_id = made["slug"], made["organisation_id"]
    assert reads_logged(stack, org_id) == []

    assert verify(stack, slug).returncode == 0
    [read] = reads_logged(stack, org_id)
    assert read["actor"] == read["on_behalf_of"] == "operator:cli" and read["actor_role"] == "operator"
    assert (read["action"], read["object_type"], read["object_id"], read["outcome"]) == (
        "read",
        "access_log",
        "verified",
        "success",
    )
    assert read["purpose"] == "konsil audit verify" and read["subject_ref"] == f"org:{org_id}"

    kept = stack.run_dir / f"checkpoint-read-{slug}.json"
    assert konsil(stack, "audit", "checkpoint", "--org", slug, "--out", str(kept)).returncode == 0
    signed = json.loads(kept.read_text())["checkpoint"]
    logged = reads_logged(stack, org_id)[-1]
    assert logged["purpose"] == "konsil audit checkpoint" and logged["object_id"] == f"checkpoint #{signed['seq']}"
    assert logged["seq"] == signed["seq"] + 1, "written after the checkpoint was signed, so it extends it"

    again = verify(stack, slug, "--since-checkpoint", str(kept))
    assert again.returncode == 0 and "it extends the region's checkpoint" in again.stdout
    assert [r["purpose"] for r in reads_logged(stack, org_id)] == [
        "konsil audit verify",
        "konsil audit checkpoint",
        "konsil audit verify",
    ]
    assert verify(stack, slug).returncode == 0, "the log with its read entries verifies"


def test_reads_of_a_removed_organisations_log_are_logged_and_its_certificate_still_holds(stack: Stack) -> None:
    made = stack.signup("eu")
    slug, org_id = made["slug"], made["organisation_id"]
    assert konsil(stack, "org", "delete", slug, "--yes").returncode == 0

    shown = konsil(stack, "audit", "certificate", "--org-id", org_id)
    assert shown.returncode == 0, shown.stderr
    certificate = json.loads(shown.stdout)
    by_slug = verify(stack, slug)
    assert by_slug.returncode == 0 and "(organisation removed " in by_slug.stdout

    reads = reads_logged(stack, org_id)
    assert [(r["purpose"], r["object_type"], r["object_id"]) for r in reads] == [
        ("konsil audit certificate", "deletion_certificate", org_id),
        ("konsil audit verify", "access_log", "verified"),
    ]
    # The reads extend the log past the certificate's checkpoint; both still check out.
    inner = certificate["certificate"]["checkpoint"]
    assert reads[0]["seq"] == inner["checkpoint"]["seq"] + 1
    kept = stack.run_dir / f"certificate-checkpoint-{slug}.json"
    kept.write_text(json.dumps(inner))
    extends = verify(stack, slug, "--since-checkpoint", str(kept))
    assert extends.returncode == 0, extends.stdout + extends.stderr
    assert f"it extends the region's checkpoint of {inner['checkpoint']['at']}" in extends.stdout
    again = konsil(stack, "audit", "certificate", "--org", slug)
    assert again.returncode == 0 and "the deletion certificate verifies" in again.stderr
    assert json.loads(again.stdout) == certificate


def test_a_read_over_a_head_set_beside_the_log_service_is_logged_after_the_regions_alarm(stack: Stack) -> None:
    made = stack.signup("eu")
    slug, org_id = made["slug"], uuid.UUID(made["organisation_id"])
    owner = stack.login(stack.region_url("eu"), slug, made["owner"]["email"])
    stack.add_member(owner, slug, "expert")
    dsn = stack.dsns["eu"]
    # The tail cut and the head moved back to the new last entry: only the head's seal shows it.
    [last] = asyncio.run(fetch(dsn, "SELECT max(seq) AS seq FROM access_log_entry WHERE org_id = $1", org_id))
    asyncio.run(fetch(dsn, "DELETE FROM access_log_entry WHERE org_id = $1 AND seq = $2", org_id, last["seq"]))
    [kept] = asyncio.run(
        fetch(dsn, "SELECT seq, entry_hash FROM access_log_entry WHERE org_id = $1 ORDER BY seq DESC LIMIT 1", org_id)
    )
    asyncio.run(
        fetch(
            dsn,
            "UPDATE access_log_head SET seq = $1, entry_hash = $2 WHERE org_id = $3",
            kept["seq"],
            kept["entry_hash"],
            org_id,
        )
    )

    caught = verify(stack, slug)

    assert caught.returncode == 1 and "the chain head's seal does not match it" in caught.stdout
    # The read is logged, but only after the region's record that the head it extended
    # was not one it sealed: the read's entry cannot seal over the cut.
    alarms = asyncio.run(
        fetch(
            dsn,
            "SELECT seq, object_id FROM access_log_entry WHERE org_id = $1 AND actor = 'system:integrity'",
            org_id,
        )
    )
    assert [(a["seq"], a["object_id"]) for a in alarms] == [(kept["seq"] + 1, f"head:{kept['seq']}:mismatch")]
    assert [r["seq"] for r in reads_logged(stack, str(org_id))] == [kept["seq"] + 2]
    still = verify(stack, slug)
    assert still.returncode == 1, still.stdout
    assert f"the region found the chain head tampered at entry #{kept['seq']} on " in still.stdout
    assert f"recorded this in the log as entry #{kept['seq'] + 1}" in still.stdout
    # The region signs the log as it stands, its alarm included: taking the alarm out
    # later would then show against this checkpoint, too.
    signed = konsil(stack, "audit", "checkpoint", "--org", slug)
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert json.loads(signed.stdout)["checkpoint"]["seq"] == kept["seq"] + 3
