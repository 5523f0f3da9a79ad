"""`konsil dsr …` against the running EU region's database: the identifier comes on
stdin (never on the command line), the request is listed with its due date, the
export is JSON, the "who accessed their data" extract a PDF file, erasure keeps
payment records; bad input stores nothing."""

from __future__ import annotations

import asyncio
import io
import json
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from pypdf import PdfReader

from tests.conftest import Stack, fetch

pytestmark = pytest.mark.e2e


def dsr(stack: Stack, *args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    config = stack.run_dir / "region-eu.toml"
    return subprocess.run(
        [sys.executable, "-m", "konsil.platform.cli.main", "dsr", *args, "--config", str(config)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
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


def test_the_who_accessed_extract_is_written_to_a_pdf_file(stack: Stack, tmp_path: Path) -> None:
    made = stack.signup("eu")
    slug = made["slug"]
    owner = stack.login(stack.region_url("eu"), slug, made["owner"]["email"])
    assert owner.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "consult", "title": "C"}).status_code == 201
    joined = httpx.post(
        f"{stack.region_url('eu')}/{slug}/consult/visits",
        data={"name": "Astrid Berg", "phone": "+47 555 12 346", "consent": "yes"},
        follow_redirects=False,
    )
    visit_id = uuid.UUID(joined.headers["location"].rsplit("/", 1)[1])
    filed = dsr(stack, "file", "--org", slug, "--kind", "access", "--by", "phone", stdin="+4755512346\n")
    request_id = filed.stdout.split("\t")[0]

    done = dsr(stack, "extract", request_id, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = tmp_path / f"access-log-extract-{request_id}.pdf"
    assert done.stdout == "" and str(written.name) in done.stderr, "the PDF goes to a file, not the terminal"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600, "personal data: readable by its owner only"
    reader = PdfReader(io.BytesIO(written.read_bytes()))
    text = " ".join((page.extract_text() or "") for page in reader.pages)
    assert "Who accessed your data" in text and f"Praxis {slug}" in text
    assert "You, visitor" in text and "Konsil operations" in text
    chosen = tmp_path / "extract.pdf"
    assert dsr(stack, "extract", request_id, "--output", str(chosen)).returncode == 0
    assert chosen.read_bytes().startswith(b"%PDF-")

    log = asyncio.run(
        fetch(
            stack.dsns["eu"],
            "SELECT actor, action, object_type, purpose FROM access_log_entry WHERE subject_ref = $1 ORDER BY seq",
            f"visit:{visit_id}",
        )
    )
    made_by_cli = ("operator:cli", "export", "access_log", "data-subject request (access log extract)")
    assert [tuple(r.values()) for r in log].count(made_by_cli) == 2
    assert dsr(stack, "extract", str(uuid.uuid4()), cwd=tmp_path).returncode == 2
