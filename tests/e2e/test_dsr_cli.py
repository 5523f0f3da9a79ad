"""`konsil dsr …` against the running EU region's database: the identifier comes on
stdin (never on the command line), the request is listed with its due date, the
export is JSON, erasure keeps payment records; bad input stores nothing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e


def dsr(stack: Stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    config = stack.run_dir / "region-eu.toml"
    return subprocess.run(
        [sys.executable, "-m", "konsil.platform.cli.main", "dsr", *args, "--config", str(config)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_file_list_export_and_erase_from_the_command_line(stack: Stack) -> None:
    made = stack.signup("eu")
    slug = made["slug"]
    owner = stack.login(stack.region_url("eu"), slug, made["owner"]["email"])
    room = owner.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "consult", "title": "Consult"})
    assert room.status_code == 201, room.text
    joined = httpx.post(
        f"{stack.region_url('eu')}/{slug}/consult/visits",
        data={"name": "Astrid Berg", "phone": "+47 555 12 345", "consent": "yes"},
        follow_redirects=False,
    )
    visit_id = uuid.UUID(joined.headers["location"].rsplit("/", 1)[1])

    bad = dsr(stack, "file", "--org", slug, "--kind", "access", "--by", "phone", stdin="555 12 345\n")
    assert bad.returncode == 2 and "phone" in bad.stderr and "555" not in bad.stderr
    filed = dsr(stack, "file", "--org", slug, "--kind", "access", "--by", "phone", stdin="+47 55512345\n")
    assert filed.returncode == 0, filed.stderr
    request_id = filed.stdout.split("\t")[0]
    assert "due" in filed.stdout

    listed = dsr(stack, "list", "--org", slug)
    assert listed.returncode == 0 and request_id in listed.stdout and "received" in listed.stdout

    exported = dsr(stack, "export", request_id)
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert data["format"] == "konsil.data-subject-export"
    assert [(v["id"], v["name"]) for v in data["visits"]] == [(str(visit_id), "Astrid Berg")]
    text = dsr(stack, "export", request_id, "--text")
    assert "Astrid Berg" in text.stdout and "Visits: 1" in text.stdout

    erasure = dsr(stack, "file", "--org", slug, "--kind", "erasure", "--by", "phone", stdin="+4755512345\n")
    erasure_id = erasure.stdout.split("\t")[0]
    assert dsr(stack, "erase", request_id, "--yes").returncode == 1, "an access request does not erase"
    assert dsr(stack, "erase", erasure_id, stdin="no\n").returncode == 1
    erased = dsr(stack, "erase", erasure_id, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert "erased 1 visit(s)" in erased.stdout
    rows = asyncio.run(fetch(stack.dsns["eu"], "SELECT id FROM visit WHERE id = $1", visit_id))
    assert rows == []
    log = asyncio.run(
        fetch(
            stack.dsns["eu"],
            "SELECT actor, action FROM access_log_entry WHERE subject_ref = $1 ORDER BY seq",
            f"visit:{visit_id}",
        )
    )
    assert ("operator:cli", "export") in [(r["actor"], r["action"]) for r in log]
    assert ("operator:cli", "delete") in [(r["actor"], r["action"]) for r in log]
    assert dsr(stack, "show", str(uuid.uuid4())).returncode == 2
