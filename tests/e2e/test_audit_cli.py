"""`konsil audit verify --org SLUG` on a live region database: OK for an intact
log, and the first tampered entry named, with a non-zero exit code."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e


def verify(stack: Stack, slug: str) -> subprocess.CompletedProcess[str]:
    config = stack.run_dir / "region-eu.toml"
    return subprocess.run(
        [sys.executable, "-m", "konsil.platform.cli.main", "audit", "verify", "--org", slug, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


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
