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
