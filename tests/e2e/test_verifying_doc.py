"""docs/verifying.md cannot rot: its Python blocks are run, as an auditor would run them,
against residency receipts from a running region (signed with the region's key in its
OpenBao) and the key set the region publishes, before and after a rotation of that key;
and receipts the region must not vouch for (changed, or from before the region had a key
of its own) are refused by the same lines."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import copy
import io
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature

from konsil.regions import container
from konsil.regions.container import build_region, region_relays
from konsil.regions.tables import REGION_TABLES
from konsil.tenants import organisations, visits
from konsil.tenants.actors import Actor
from tests.conftest import Stack, bindings_restored, fetch

pytestmark = pytest.mark.e2e

KONSIL = [sys.executable, "-m", "konsil.platform.cli.main"]
DOC = Path(__file__).resolve().parents[2] / "docs" / "verifying.md"
EXAMPLE_REGION = "https://eu.konsil.example"
# What the auditor's lines may import: the standard library's json, base64 and hashlib,
# urllib to fetch, and cryptography.
ALLOWED_IMPORTS = {"base64", "hashlib", "json", "urllib.request", "cryptography.hazmat.primitives.asymmetric.ed25519"}


def doc_blocks() -> tuple[str, str]:
    """The two Python blocks of "Check a receipt yourself": the check, and its use."""
    section = DOC.read_text().split("### Check a receipt yourself", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "docs/verifying.md: expected the check and its example"
    return blocks[0], blocks[1]


def imported(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def doc_check() -> Any:
    """``verify_receipt`` as docs/verifying.md defines it."""
    check, _ = doc_blocks()
    assert imported(check) <= ALLOWED_IMPORTS, imported(check)
    assert len([line for line in check.splitlines() if line.strip()]) <= 15, "the check stays a few lines"
    namespace: dict[str, Any] = {}
    exec(compile(check, str(DOC), "exec"), namespace)  # noqa: S102 - the document's own code
    return namespace["verify_receipt"]


def run_verifying_doc(answer: dict[str, Any], region_url: str, workdir: Path) -> None:
    """Both blocks as the document gives them: the receipt saved as ``receipt.json``, the
    key set fetched from the region (the example's host replaced by the running one)."""
    check, use = doc_blocks()
    assert imported(check) | imported(use) <= ALLOWED_IMPORTS
    assert EXAMPLE_REGION in use
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "receipt.json").write_text(json.dumps(answer))
    out = io.StringIO()
    with contextlib.chdir(workdir), contextlib.redirect_stdout(out):
        namespace: dict[str, Any] = {}
        exec(compile(check, str(DOC), "exec"), namespace)  # noqa: S102
        exec(compile(use.replace(EXAMPLE_REGION, region_url), str(DOC), "exec"), namespace)  # noqa: S102
    assert out.getvalue().strip() == f"signed by region {answer['receipt']['region']}"


def key_set(stack: Stack, region: str) -> dict[str, Any]:
    answer = httpx.get(f"{stack.region_url(region)}/.well-known/konsil/keys", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    return dict(answer.json())


def new_call(stack: Stack, owner: httpx.Client, slug: str) -> str:
    """A visitor arrives in the organisation's room and is admitted: the call's id."""
    base = stack.region_url("eu")
    arrived = httpx.post(f"{base}/{slug}/room/visits", data={"name": "Vera Visitor", "consent": "yes"}, timeout=10)
    assert arrived.status_code == 303, arrived.text
    admitted = owner.post(f"/api/v1/orgs/{slug}/visits/{arrived.headers['location'].rsplit('/', 1)[1]}/admit")
    assert admitted.status_code == 200, admitted.text
    return str(admitted.json()["id"])


async def relayed_by(stack: Stack, slug: str, owner_id: str, call_id: str, *nodes: str) -> None:
    """The region gives the call these relay nodes: what admitting does in a region with
    media nodes (tests/e2e/test_media_allocation.py runs that part for real), here through
    the region's own code, keys and database."""
    region = stack.settings.for_region("eu").region("eu")
    with bindings_restored(REGION_TABLES):
        ctx = build_region(stack.settings.for_region("eu"), region, service_name="cli", relays=region_relays(region))
        await container.start(ctx)
        try:
            org = await organisations.get(slug)
            assert org is not None
            call = await visits.call_by_id(org.id, uuid.UUID(call_id))
            assert call is not None
            actor = Actor(f"member:{owner_id}", "owner", f"member:{owner_id}", "local")
            for node in nodes:
                await visits.record_relay(ctx, actor, call, node)
        finally:
            await container.stop(ctx)


def rotate_signing_key(stack: Stack) -> str:
    done = subprocess.run(
        [*KONSIL, "keys", "rotate-signing", "--region", "eu", "--config", str(stack.run_dir / "region-eu.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"signing key ([0-9a-f]{16}) is now current", done.stdout)
    assert found, done.stdout
    return found.group(1)


async def test_the_documented_check_verifies_a_regions_receipts_across_a_rotation(stack: Stack, tmp_path: Path) -> None:
    made = await asyncio.to_thread(stack.signup, "eu")
    slug = made["slug"]
    owner = await asyncio.to_thread(stack.login, stack.region_url("eu"), slug, made["owner"]["email"])
    room = await asyncio.to_thread(owner.post, f"/api/v1/orgs/{slug}/rooms", json={"slug": "room", "title": "Room"})
    assert room.status_code == 201, room.text
    call_id = await asyncio.to_thread(new_call, stack, owner, slug)
    await relayed_by(stack, slug, made["owner_id"], call_id, "eu-relay-a")

    answer = (await asyncio.to_thread(owner.get, f"/api/v1/orgs/{slug}/calls/{call_id}/receipt")).json()
    assert answer["status"] == "valid" and answer["valid"] is True, answer
    assert answer["receipt"]["relays"] == ["eu-relay-a"] and answer["receipt"]["kind"] == "konsil.residency-receipt"
    before = await asyncio.to_thread(key_set, stack, "eu")
    assert before["region"] == "eu" and answer["signature"]["kid"] == next(
        k["kid"] for k in before["keys"] if k["status"] == "current"
    )
    await asyncio.to_thread(run_verifying_doc, answer, stack.region_url("eu"), tmp_path / "first")

    # The same lines refuse a receipt changed after it was signed.
    verify_receipt = doc_check()
    for field, value in (("region", "us"), ("relays", ["eu-relay-a", "us-relay-1"]), ("call_id", str(uuid.uuid4()))):
        changed = copy.deepcopy(answer)
        changed["receipt"][field] = value
        with pytest.raises((InvalidSignature, ValueError)):
            verify_receipt(changed, before)

    # A rotation: the old receipt still verifies with the region's key set, whose old key
    # is now retired; a receipt signed after it names the new key.
    new_kid = await asyncio.to_thread(rotate_signing_key, stack)
    after = await asyncio.to_thread(key_set, stack, "eu")
    statuses = {k["kid"]: k["status"] for k in after["keys"]}
    assert statuses[answer["signature"]["kid"]] == "retired" and statuses[new_kid] == "current"
    assert all(k in after["keys"] for k in before["keys"] if k["status"] == "retired"), "old keys stay as they were"
    await asyncio.to_thread(run_verifying_doc, answer, stack.region_url("eu"), tmp_path / "after-rotation")
    await relayed_by(stack, slug, made["owner_id"], call_id, "eu-relay-b")
    grown = (await asyncio.to_thread(owner.get, f"/api/v1/orgs/{slug}/calls/{call_id}/receipt")).json()
    assert grown["status"] == "valid" and grown["receipt"]["relays"] == ["eu-relay-a", "eu-relay-b"]
    assert grown["signature"]["kid"] == new_kid
    await asyncio.to_thread(run_verifying_doc, grown, stack.region_url("eu"), tmp_path / "grown")
    # The region's older public endpoint answers the current key alone, with its id.
    current = (await asyncio.to_thread(httpx.get, f"{stack.region_url('eu')}/.well-known/konsil/receipt-key")).json()
    assert current["kid"] == new_kid and current["algorithm"] == "Ed25519"

    # Changed in the database behind the region's back: the region says so.
    region_dsn = stack.dsns["eu"]
    await fetch(
        region_dsn,
        "UPDATE call_relay_receipt SET body = replace(body, 'eu-relay-b', 'eu-relay-x') WHERE call_id = $1",
        uuid.UUID(call_id),
    )
    tampered = (await asyncio.to_thread(owner.get, f"/api/v1/orgs/{slug}/calls/{call_id}/receipt")).json()
    assert tampered["status"] == "invalid" and tampered["valid"] is False, tampered
    with pytest.raises(InvalidSignature):
        verify_receipt(tampered, after)
    # ...and never signs it again over what was changed: a further relay leaves it as evidence.
    await relayed_by(stack, slug, made["owner_id"], call_id, "eu-relay-c")
    kept = (await asyncio.to_thread(owner.get, f"/api/v1/orgs/{slug}/calls/{call_id}/receipt")).json()
    assert kept["status"] == "invalid" and kept["receipt"]["relays"] == ["eu-relay-a", "eu-relay-x"]
    # A body that is no receipt at all: invalid too, never an error page.
    await fetch(region_dsn, "UPDATE call_relay_receipt SET body = '{\"x\":' WHERE call_id = $1", uuid.UUID(call_id))
    garbled = await asyncio.to_thread(owner.get, f"/api/v1/orgs/{slug}/calls/{call_id}/receipt")
    assert garbled.status_code == 200 and garbled.json()["status"] == "invalid", garbled.text
    assert garbled.json()["receipt"] is None and garbled.json()["valid"] is False


async def test_a_receipt_from_before_the_regions_own_key_is_not_proof(stack: Stack) -> None:
    """A receipt stored before receipts named their key (signed with the key derived from
    the internal secret the control plane also holds): reported as such, never valid."""
    made = await asyncio.to_thread(stack.signup, "eu")
    slug = made["slug"]
    owner = await asyncio.to_thread(stack.login, stack.region_url("eu"), slug, made["owner"]["email"])
    room = await asyncio.to_thread(owner.post, f"/api/v1/orgs/{slug}/rooms", json={"slug": "room", "title": "Room"})
    assert room.status_code == 201, room.text
    call_id = await asyncio.to_thread(new_call, stack, owner, slug)
    body = json.dumps(
        {
            "call_id": call_id,
            "region": "eu",
            "jurisdiction": "EU/EEA",
            "relays": ["eu-relay-old"],
            "issued_at": "2026-11-01T10:00:00+00:00",
        },
        separators=(",", ":"),
    )
    # As the rows were written then: no key id (the column's default), a base64 signature.
    await fetch(
        stack.dsns["eu"],
        "INSERT INTO call_relay_receipt (id, org_id, call_id, body, signature, issued_at, expires_at) "
        "SELECT $1, org_id, id, $2, $3, now(), expires_at FROM call WHERE id = $4",
        uuid.uuid4(),
        body,
        "A" * 86 + "==",
        uuid.UUID(call_id),
    )
    answer = (await asyncio.to_thread(owner.get, f"/api/v1/orgs/{slug}/calls/{call_id}/receipt")).json()
    assert answer["status"] == "retired_derivation" and answer["valid"] is False, answer
    assert answer["signature"] is None and "control plane could have forged it" in answer["note"]
    with pytest.raises(ValueError, match="not signed by this region's own key"):
        doc_check()(answer, await asyncio.to_thread(key_set, stack, "eu"))
    # A further relay does not sign it again (the region cannot vouch for it).
    await relayed_by(stack, slug, made["owner_id"], call_id, "eu-relay-new")
    again = (await asyncio.to_thread(owner.get, f"/api/v1/orgs/{slug}/calls/{call_id}/receipt")).json()
    assert again["status"] == "retired_derivation" and again["receipt"]["relays"] == ["eu-relay-old"]
