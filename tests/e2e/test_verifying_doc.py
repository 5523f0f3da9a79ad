"""docs/verifying.md cannot rot: its Python blocks are run, as an auditor would run them
(in a folder of their own, with the key set they fetched and kept as ``keys.json``),
against what a running region signs with its key in its OpenBao: residency receipts
(before and after a rotation of that key), an access-log checkpoint from
``konsil audit checkpoint``, the log's head seal, a deletion certificate from
``konsil org delete`` and ``konsil audit certificate``, and an evidence ZIP signed with
the region's key. The same lines must refuse each of them with one byte changed, a
receipt the region must not vouch for, a key set that lost a key, and an evidence ZIP
re-signed with someone else's key and carrying that key in its own ``keys.json``."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import io
import json
import re
import subprocess
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from cryptography.exceptions import InvalidSignature

from konsil.compliance.controls.catalog import COLLECTOR_RULES
from konsil.compliance.reports import model as report_model
from konsil.compliance.reports.evidence_zip import current_signing, evidence_zip_bytes
from konsil.compliance.subprocessors.register import load_register
from konsil.platform.core.keys.region_signing import LocalSigner
from konsil.platform.core.region import RegionContext
from konsil.regions import container
from konsil.regions.container import build_region, region_relays
from konsil.regions.tables import REGION_TABLES
from konsil.tenants import organisations, visits
from konsil.tenants.actors import Actor
from tests.compliance.reports.samples import END, START, attestations, framework, observation
from tests.conftest import Stack, bindings_restored, fetch

pytestmark = pytest.mark.e2e

KONSIL = [sys.executable, "-m", "konsil.platform.cli.main"]
DOC = Path(__file__).resolve().parents[2] / "docs" / "verifying.md"
EXAMPLE_REGION = "https://eu.konsil.example"
# What the auditor's lines may import: the standard library and cryptography.
ALLOWED_IMPORTS = {
    "base64",
    "hashlib",
    "json",
    "os",
    "urllib.request",
    "zipfile",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
}
# How the documented lines refuse: a signature that does not verify, a record that is not
# what it claims (ValueError, which JSON that no longer parses raises too), a field gone.
REFUSED = (InvalidSignature, ValueError, KeyError)
SECTIONS = {
    "keys": "The region's key set",
    "check": "Checking a signature with your own code",
    "receipt": "Check a receipt yourself",
    "checkpoint": "Check a checkpoint yourself",
    "seal": "Head seals",
    "manifest": "Check an archive yourself",
    "certificate": "Check a certificate yourself",
}


# --- the document's blocks ---------------------------------------------------------------------


def section(title: str) -> str:
    """The text under the heading ``title``, up to the next heading of its level or above."""
    text = DOC.read_text()
    found = re.search(rf"^(#+) {re.escape(title)}\n", text, re.M)
    assert found, f"docs/verifying.md: no section {title!r}"
    level = len(found.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, found.end())
    return text[found.end() : end.start() if end else len(text)]


def block(name: str, max_lines: int = 16) -> str:
    """The one Python block of a section: only the allowed imports, and a few lines."""
    blocks = re.findall(r"```python\n(.*?)```", section(SECTIONS[name]), re.S)
    assert len(blocks) == 1, f"docs/verifying.md, {SECTIONS[name]!r}: expected one Python block"
    source = str(blocks[0])
    assert imported(source) <= ALLOWED_IMPORTS, imported(source)
    assert len([line for line in source.splitlines() if line.strip()]) <= max_lines, f"{name}: a few lines"
    return source


def imported(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


class Auditor:
    """An auditor's folder: ``keys.json`` as the document's lines fetch and keep it, and
    each record checked there by the document's lines, exactly as written."""

    def __init__(self, folder: Path, region_url: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        fetching = block("keys")
        assert EXAMPLE_REGION in fetching
        self._fetch = compile(fetching.replace(EXAMPLE_REGION, region_url), str(DOC), "exec")
        self._check = compile(block("check"), str(DOC), "exec")
        self._uses = {
            name: compile(block(name, max_lines=18), str(DOC), "exec")
            for name in ("receipt", "checkpoint", "manifest", "certificate")
        }

    def _exec(self, code: Any) -> tuple[dict[str, Any], str]:
        namespace: dict[str, Any] = {}
        out = io.StringIO()
        with contextlib.chdir(self.folder), contextlib.redirect_stdout(out):
            exec(self._check, namespace)  # noqa: S102 - the document's own code
            exec(code, namespace)  # noqa: S102
        return namespace, out.getvalue().strip()

    def fetch_keys(self) -> dict[str, Any]:
        """Run the document's fetch-and-keep lines against the running region."""
        self._exec(self._fetch)
        return dict(json.loads((self.folder / "keys.json").read_text()))

    def check(self, name: str, file: str, data: bytes) -> str:
        """Save ``data`` as ``file`` and run the section's lines: what they print."""
        (self.folder / file).write_bytes(data)
        return self._exec(self._uses[name])[1]

    def functions(self) -> dict[str, Any]:
        """``canonical``, ``check_signature`` and ``check_seal`` as the document defines them."""
        namespace, _ = self._exec(compile(block("seal"), str(DOC), "exec"))
        return namespace

    def refuses_every_changed_byte(self, name: str, file: str, data: bytes, start: int, end: int) -> None:
        """One byte changed anywhere in ``data[start:end]`` (the signed part): refused."""
        assert 0 <= start < end <= len(data)
        for at in range(start, end):
            changed = bytearray(data)
            changed[at] ^= 0x01
            with pytest.raises(REFUSED):
                self.check(name, file, bytes(changed))


def run_verifying_doc(answer: dict[str, Any], region_url: str, workdir: Path) -> None:
    """The document's lines on a receipt, as an auditor runs them: the key set fetched from
    the region and kept, the API's answer saved as ``receipt.json``
    (tests/e2e/test_media_allocation.py runs them on a receipt of a media node's relay)."""
    auditor = Auditor(workdir, region_url)
    auditor.fetch_keys()
    receipt = answer["receipt"]
    printed = auditor.check("receipt", "receipt.json", json.dumps(answer).encode())
    assert (
        printed
        == f"region {receipt['region']} carried call {receipt['call_id']} through {', '.join(receipt['relays'])}"
    )


def signed_part(data: bytes, field: str) -> tuple[int, int]:
    """Where ``field``'s object lies in a saved file: from its key to the top-level
    ``signature`` that follows it (the last one in the file)."""
    start = re.search(rf'"{field}":\s*'.encode(), data)
    assert start is not None, field
    return start.start(), data.rindex(b'"signature":')


# --- the running region ------------------------------------------------------------------------


def konsil(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KONSIL, *args, "--config", str(stack.run_dir / "region-eu.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.asynccontextmanager
async def in_region(stack: Stack) -> AsyncIterator[RegionContext]:
    """The EU region's own code, keys (its OpenBao) and database, in this process."""
    region = stack.settings.for_region("eu").region("eu")
    with bindings_restored(REGION_TABLES):
        ctx = build_region(stack.settings.for_region("eu"), region, service_name="cli", relays=region_relays(region))
        await container.start(ctx)
        try:
            yield ctx
        finally:
            await container.stop(ctx)


def new_organisation(stack: Stack) -> tuple[dict[str, Any], httpx.Client]:
    """A signed-up organisation with a room, its owner logged in."""
    made = stack.signup("eu")
    owner = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    room = owner.post(f"/api/v1/orgs/{made['slug']}/rooms", json={"slug": "room", "title": "Room"})
    assert room.status_code == 201, room.text
    return made, owner


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
    async with in_region(stack) as ctx:
        org = await organisations.get(slug)
        assert org is not None
        call = await visits.call_by_id(org.id, uuid.UUID(call_id))
        assert call is not None
        actor = Actor(f"member:{owner_id}", "owner", f"member:{owner_id}", "local")
        for node in nodes:
            await visits.record_relay(ctx, actor, call, node)


def rotate_signing_key(stack: Stack) -> str:
    done = konsil(stack, "keys", "rotate-signing", "--region", "eu")
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"signing key ([0-9a-f]{16}) is now current", done.stdout)
    assert found, done.stdout
    return found.group(1)


def receipt_of(owner: httpx.Client, slug: str, call_id: str) -> tuple[dict[str, Any], bytes]:
    """The API's answer, and its bytes as an auditor saves them (its own key order)."""
    answer = owner.get(f"/api/v1/orgs/{slug}/calls/{call_id}/receipt")
    assert answer.status_code == 200, answer.text
    return dict(answer.json()), answer.content


def relaid(document: Any) -> Any:
    """The same document laid out differently: every object's keys in reverse order."""
    if isinstance(document, dict):
        return {key: relaid(document[key]) for key in reversed(document)}
    return [relaid(item) for item in document] if isinstance(document, list) else document


def saved(document: dict[str, Any]) -> bytes:
    """A document saved laid out otherwise than the region wrote it (keys unsorted,
    indented by 4): only its canonical JSON is signed, so it still verifies."""
    return json.dumps(relaid(document), indent=4, ensure_ascii=False).encode()


# --- receipts ----------------------------------------------------------------------------------


async def test_the_documented_lines_verify_a_regions_receipts_across_a_rotation(stack: Stack, tmp_path: Path) -> None:
    made, owner = await asyncio.to_thread(new_organisation, stack)
    slug = made["slug"]
    call_id = await asyncio.to_thread(new_call, stack, owner, slug)
    await relayed_by(stack, slug, made["owner_id"], call_id, "eu-relay-a")
    auditor = Auditor(tmp_path / "auditor", stack.region_url("eu"))

    answer, answer_bytes = await asyncio.to_thread(receipt_of, owner, slug, call_id)
    assert answer["status"] == "valid" and answer["valid"] is True, answer
    assert answer["receipt"]["relays"] == ["eu-relay-a"] and answer["receipt"]["kind"] == "konsil.residency-receipt"
    before = await asyncio.to_thread(auditor.fetch_keys)
    assert before["region"] == "eu" and answer["signature"]["kid"] == next(
        k["kid"] for k in before["keys"] if k["status"] == "current"
    )
    assert list(answer["receipt"]) != sorted(answer["receipt"]), "the answer's own order, not the signed one"
    printed = await asyncio.to_thread(auditor.check, "receipt", "receipt.json", answer_bytes)
    assert printed == f"region eu carried call {call_id} through eu-relay-a"
    assert await asyncio.to_thread(auditor.check, "receipt", "receipt.json", saved(answer)) == printed

    # The same lines refuse the receipt with any one byte of it changed.
    await asyncio.to_thread(
        auditor.refuses_every_changed_byte,
        "receipt",
        "receipt.json",
        answer_bytes,
        *signed_part(answer_bytes, "receipt"),
    )

    # A rotation: fetched again, the key set still holds the old key (now retired), and the
    # old receipt still verifies; a receipt signed after it names the new key.
    new_kid = await asyncio.to_thread(rotate_signing_key, stack)
    after = await asyncio.to_thread(auditor.fetch_keys)
    statuses = {k["kid"]: k["status"] for k in after["keys"]}
    assert statuses[answer["signature"]["kid"]] == "retired" and statuses[new_kid] == "current"
    assert await asyncio.to_thread(auditor.check, "receipt", "receipt.json", answer_bytes) == printed
    await relayed_by(stack, slug, made["owner_id"], call_id, "eu-relay-b")
    grown, grown_bytes = await asyncio.to_thread(receipt_of, owner, slug, call_id)
    assert grown["status"] == "valid" and grown["receipt"]["relays"] == ["eu-relay-a", "eu-relay-b"]
    assert grown["signature"]["kid"] == new_kid
    printed = await asyncio.to_thread(auditor.check, "receipt", "receipt.json", grown_bytes)
    assert printed.endswith("through eu-relay-a, eu-relay-b")
    # The region's older public endpoint answers the current key alone, with its id.
    current = (await asyncio.to_thread(httpx.get, f"{stack.region_url('eu')}/.well-known/konsil/receipt-key")).json()
    assert current["kid"] == new_kid and current["algorithm"] == "Ed25519"

    # A key set that lost, or changed, a key the auditor kept: the fetching lines refuse it.
    kept = auditor.folder / "keys.json"
    for lost in (
        {**after, "keys": [*after["keys"], {**after["keys"][0], "kid": "0" * 16}]},
        {**after, "keys": [{**after["keys"][0], "x": after["keys"][-1]["x"]}, *after["keys"][1:]]},
    ):
        kept.write_text(json.dumps(lost))
        with pytest.raises(ValueError, match="lost or changed a key"):
            await asyncio.to_thread(auditor.fetch_keys)
    kept.write_text(json.dumps(after))

    # Changed in the database behind the region's back: the region says so, and so do the lines.
    region_dsn = stack.dsns["eu"]
    await fetch(
        region_dsn,
        "UPDATE call_relay_receipt SET body = replace(body, 'eu-relay-b', 'eu-relay-x') WHERE call_id = $1",
        uuid.UUID(call_id),
    )
    tampered, tampered_bytes = await asyncio.to_thread(receipt_of, owner, slug, call_id)
    assert tampered["status"] == "invalid" and tampered["valid"] is False, tampered
    with pytest.raises(InvalidSignature):
        await asyncio.to_thread(auditor.check, "receipt", "receipt.json", tampered_bytes)
    # ...and never signs it again over what was changed: a further relay leaves it as evidence.
    await relayed_by(stack, slug, made["owner_id"], call_id, "eu-relay-c")
    kept_receipt, _ = await asyncio.to_thread(receipt_of, owner, slug, call_id)
    assert kept_receipt["status"] == "invalid" and kept_receipt["receipt"]["relays"] == ["eu-relay-a", "eu-relay-x"]
    # A body that is no receipt at all: invalid too, never an error page.
    await fetch(region_dsn, "UPDATE call_relay_receipt SET body = '{\"x\":' WHERE call_id = $1", uuid.UUID(call_id))
    garbled = await asyncio.to_thread(owner.get, f"/api/v1/orgs/{slug}/calls/{call_id}/receipt")
    assert garbled.status_code == 200 and garbled.json()["status"] == "invalid", garbled.text
    assert garbled.json()["receipt"] is None and garbled.json()["valid"] is False


async def test_a_receipt_from_before_the_regions_own_key_is_not_proof(stack: Stack, tmp_path: Path) -> None:
    """A receipt stored before receipts named their key (signed with the key derived from
    the internal secret the control plane also holds): reported as such, never valid."""
    made, owner = await asyncio.to_thread(new_organisation, stack)
    slug = made["slug"]
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
    answer, answer_bytes = await asyncio.to_thread(receipt_of, owner, slug, call_id)
    assert answer["status"] == "retired_derivation" and answer["valid"] is False, answer
    assert answer["signature"] is None and "control plane could have forged it" in answer["note"]
    auditor = Auditor(tmp_path / "auditor", stack.region_url("eu"))
    await asyncio.to_thread(auditor.fetch_keys)
    with pytest.raises(ValueError, match="not signed by this region's own key"):
        await asyncio.to_thread(auditor.check, "receipt", "receipt.json", answer_bytes)
    # A further relay does not sign it again (the region cannot vouch for it).
    await relayed_by(stack, slug, made["owner_id"], call_id, "eu-relay-new")
    again, _ = await asyncio.to_thread(receipt_of, owner, slug, call_id)
    assert again["status"] == "retired_derivation" and again["receipt"]["relays"] == ["eu-relay-old"]


# --- checkpoints, head seals, evidence ZIPs ----------------------------------------------------


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def each_member_changed(files: dict[str, bytes]) -> Iterator[tuple[str, bytes]]:
    """The archive with one byte of one member changed, for every member."""
    for name, content in files.items():
        changed = bytearray(content)
        changed[len(changed) // 2] ^= 0x01
        yield name, rezip({**files, name: bytes(changed)})


def verify_zip_command(folder: Path, *keys: str) -> subprocess.CompletedProcess[str]:
    """The documented offline command, run in the auditor's folder."""
    return subprocess.run(
        [sys.executable, "-m", "konsil.compliance.reports.verify_zip", "report.zip", *keys],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=folder,
    )


async def evidence_zip(stack: Stack, made: dict[str, Any], kept: dict[str, Any]) -> bytes:
    """A report's evidence ZIP, its manifest signed with the region's key in its OpenBao:
    a report of the organisation (evidence shaped as the report tests build it) that
    covers the checkpoint the auditor kept."""
    org_id = uuid.UUID(made["organisation_id"])
    point = kept["checkpoint"]
    register = load_register()
    async with in_region(stack) as ctx:
        signing = await current_signing(ctx.signer, f"{stack.region_url('eu')}/.well-known/konsil/keys")
        doc = report_model.assemble(
            framework("gdpr"),
            [observation(collector, org_id=org_id) for collector in COLLECTOR_RULES],
            attestations("gdpr"),
            org_id=org_id,
            org_name=f"Praxis {made['slug']}",
            region="eu",
            jurisdiction=register.jurisdiction("eu"),
            period_start=START,
            period_end=END,
            generated_at=datetime.now(UTC),
            checkpoint=report_model.Checkpoint(
                seq=point["seq"],
                head_hash=point["head_hash"],
                kid=kept["signature"]["kid"],
                made_at=datetime.fromisoformat(point["at"]),
                document=kept,
            ),
            subprocessors=register.for_region("eu"),
            signing=signing,
        )
        return await evidence_zip_bytes(doc, ctx.signer)


async def head_row(stack: Stack, org_id: str) -> dict[str, Any]:
    rows = await fetch(
        stack.dsns["eu"],
        "SELECT org_id, seq, entry_hash, pruned_seq, pruned_hash, seal_key, seal FROM access_log_head "
        "WHERE org_id = $1",
        uuid.UUID(org_id),
    )
    assert len(rows) == 1
    return dict(rows[0])


async def test_the_documented_lines_verify_a_checkpoint_the_head_seal_and_an_evidence_zip(
    stack: Stack, tmp_path: Path
) -> None:
    made, owner = await asyncio.to_thread(new_organisation, stack)
    slug = made["slug"]
    await asyncio.to_thread(stack.add_member, owner, slug, "expert")
    auditor = Auditor(tmp_path / "auditor", stack.region_url("eu"))
    key_set = await asyncio.to_thread(auditor.fetch_keys)

    # The checkpoint, as `konsil audit checkpoint --out FILE` writes it.
    signed = await asyncio.to_thread(
        konsil, stack, "audit", "checkpoint", "--org", slug, "--out", str(auditor.folder / "checkpoint.json")
    )
    assert signed.returncode == 0, signed.stdout + signed.stderr
    data = (auditor.folder / "checkpoint.json").read_bytes()
    assert data.startswith(b'{\n  "checkpoint": {\n    "at": '), "laid out as the document shows"
    kept = json.loads(data)
    point = kept["checkpoint"]
    assert point["org"] == made["organisation_id"] and point["seq"] > 0
    printed = await asyncio.to_thread(auditor.check, "checkpoint", "checkpoint.json", data)
    assert printed == f"entry #{point['seq']} of the access log of {point['org']} has hash {point['head_hash']}"
    assert await asyncio.to_thread(auditor.check, "checkpoint", "checkpoint.json", saved(kept)) == printed
    await asyncio.to_thread(
        auditor.refuses_every_changed_byte, "checkpoint", "checkpoint.json", data, *signed_part(data, "checkpoint")
    )
    value = data.index(b'"value": "') + len(b'"value": "')
    await asyncio.to_thread(auditor.refuses_every_changed_byte, "checkpoint", "checkpoint.json", data, value, value + 8)

    # The head seal, read from the region's database as the document says.
    functions = auditor.functions()
    row = await head_row(stack, made["organisation_id"])
    functions["check_seal"](row, key_set)
    for column, changed in (
        ("seq", row["seq"] + 1),
        ("entry_hash", ("1" if row["entry_hash"][0] == "0" else "0") + row["entry_hash"][1:]),
        ("pruned_seq", 1),
        ("seal", ("B" if row["seal"][0] == "A" else "A") + row["seal"][1:]),
        ("seal_key", row["seal_key"].replace('"region":"eu"', '"region":"us"')),
    ):
        assert changed != row[column], column
        with pytest.raises(REFUSED):
            functions["check_seal"]({**row, column: changed}, key_set)
    # A sealing key the region never certified: refused even with a seal it made itself.
    uncertified = json.loads(row["seal_key"])
    uncertified["signature"] = None
    with pytest.raises(ValueError, match="not signed by this region's own key"):
        functions["check_seal"]({**row, "seal_key": json.dumps(uncertified)}, key_set)

    # An evidence ZIP, signed with the region's key.
    archive = await evidence_zip(stack, made, kept)
    files = members(archive)
    assert files["manifest.json"].startswith(b'{\n  "format": 1,\n'), "signed as stored, laid out on lines"
    assert set(files) >= {"report.json", "report.pdf", "evidence.csv", "VERIFY.txt", "manifest.sig", "keys.json"}
    listed = len(json.loads(files["manifest.json"])["files"])
    printed = await asyncio.to_thread(auditor.check, "manifest", "report.zip", archive)
    assert printed == f"all {listed} files match the manifest region eu signed"
    command = await asyncio.to_thread(verify_zip_command, auditor.folder, "--keys", "keys.json")
    assert command.returncode == 0 and command.stdout.startswith(f"VERIFIED: {listed} files"), command.stdout

    # One byte changed in any member: refused; except in the archive's copy of the key
    # set, which the lines never read (they use the copy the auditor keeps).
    for name, changed in each_member_changed(files):
        if name == "keys.json":
            assert await asyncio.to_thread(auditor.check, "manifest", "report.zip", changed) == printed
            continue
        with pytest.raises(REFUSED):
            await asyncio.to_thread(auditor.check, "manifest", "report.zip", changed)
    manifest = files["manifest.json"]
    for at in (0, manifest.index(b" "), len(manifest) // 2, len(manifest) - 1):  # any byte of it is signed
        changed_manifest = bytearray(manifest)
        changed_manifest[at] ^= 0x01
        with pytest.raises(InvalidSignature):
            await asyncio.to_thread(
                auditor.check, "manifest", "report.zip", rezip({**files, "manifest.json": bytes(changed_manifest)})
            )
    evidence = next(name for name in files if name.startswith("evidence/"))
    changed = rezip({**files, evidence: files[evidence] + b" "})
    (auditor.folder / "report.zip").write_bytes(changed)
    refused = await asyncio.to_thread(verify_zip_command, auditor.folder, "--keys", "keys.json")
    assert refused.returncode == 1 and refused.stdout.startswith("NOT VERIFIED") and evidence in refused.stdout
    for extra in (
        rezip({**files, "extra.txt": b"x"}),
        rezip({name: files[name] for name in files if name != evidence}),
    ):
        with pytest.raises(ValueError):
            await asyncio.to_thread(auditor.check, "manifest", "report.zip", extra)

    # Why the auditor pins the key set: an archive changed and re-signed with someone else's
    # key, that key in its own keys.json. Checked against that copy it verifies; against
    # the key set the auditor fetched from the region, it does not.
    forger = LocalSigner(tmp_path / "forger", "eu")
    forged_files = {**files, evidence: files[evidence] + b" "}
    forged_manifest = json.loads(manifest)
    for entry in forged_manifest["files"]:
        if entry["path"] == evidence:
            entry["size"] += 1
            entry["sha256"] = hashlib.sha256(forged_files[evidence]).hexdigest()
    forged_files["manifest.json"] = json.dumps(forged_manifest, indent=2).encode() + b"\n"
    forged_files["manifest.sig"] = msgspec.json.encode(await forger.sign(forged_files["manifest.json"]))
    forged_files["keys.json"] = msgspec.json.encode(await forger.key_set())
    forged = rezip(forged_files)
    with pytest.raises(ValueError, match="is not in the region's key set"):
        await asyncio.to_thread(auditor.check, "manifest", "report.zip", forged)
    borrowed = json.loads(forged_files["manifest.sig"]) | {"kid": json.loads(files["manifest.sig"])["kid"]}
    with pytest.raises(InvalidSignature):  # the forger's signature under the region key's id
        await asyncio.to_thread(
            auditor.check,
            "manifest",
            "report.zip",
            rezip({**forged_files, "manifest.sig": json.dumps(borrowed).encode()}),
        )
    trusting = Auditor(tmp_path / "trusting", stack.region_url("eu"))
    (trusting.folder / "keys.json").write_bytes(forged_files["keys.json"])
    assert (await asyncio.to_thread(trusting.check, "manifest", "report.zip", forged)).startswith("all ")
    (auditor.folder / "report.zip").write_bytes(forged)
    pinned = await asyncio.to_thread(verify_zip_command, auditor.folder, "--keys", "keys.json")
    assert pinned.returncode == 1 and "NOT VERIFIED" in pinned.stdout
    unpinned = await asyncio.to_thread(verify_zip_command, auditor.folder)
    assert unpinned.returncode == 0 and "Warning: checked with the key set inside the archive" in unpinned.stdout


# --- deletion certificates ---------------------------------------------------------------------


async def test_the_documented_lines_verify_a_deletion_certificate(stack: Stack, tmp_path: Path) -> None:
    made, owner = await asyncio.to_thread(new_organisation, stack)
    slug, org_id = made["slug"], made["organisation_id"]
    await asyncio.to_thread(stack.add_member, owner, slug, "expert")
    auditor = Auditor(tmp_path / "auditor", stack.region_url("eu"))
    await asyncio.to_thread(auditor.fetch_keys)

    deleted = await asyncio.to_thread(konsil, stack, "org", "delete", slug, "--yes")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    file = auditor.folder / "certificate.json"
    shown = await asyncio.to_thread(konsil, stack, "audit", "certificate", "--org-id", org_id, "--out", str(file))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    data = file.read_bytes()
    kept = json.loads(data)
    certificate = kept["certificate"]
    assert certificate["org"] == org_id and certificate["key_destroyed"] is True
    assert certificate["checkpoint"] is not None, certificate["log_problem"]
    printed = await asyncio.to_thread(auditor.check, "certificate", "certificate.json", data)
    assert printed == f"organisation {slug} ({org_id}) removed at {certificate['removed_at']}"
    assert await asyncio.to_thread(auditor.check, "certificate", "certificate.json", saved(kept)) == printed
    await asyncio.to_thread(
        auditor.refuses_every_changed_byte, "certificate", "certificate.json", data, *signed_part(data, "certificate")
    )

    # Its checkpoint is one like any other: the checkpoint lines accept it saved on its own,
    # and `konsil audit verify --since-checkpoint` proves the removed organisation's log extends it.
    inner = auditor.folder / "checkpoint-at-removal.json"
    inner.write_bytes(saved(certificate["checkpoint"]))
    printed = await asyncio.to_thread(auditor.check, "checkpoint", "checkpoint.json", inner.read_bytes())
    assert printed.startswith(f"entry #{certificate['checkpoint']['checkpoint']['seq']} of the access log of {org_id} ")
    extends = await asyncio.to_thread(
        konsil, stack, "audit", "verify", "--org-id", org_id, "--since-checkpoint", str(inner)
    )
    assert extends.returncode == 0, extends.stdout + extends.stderr
    assert "it extends the region's checkpoint" in extends.stdout
