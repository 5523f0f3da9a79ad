"""The evidence ZIP: its signed manifest verifies offline under the region's key; one
changed byte in any member, a wrong key, an extra file or a cut archive fails; the
command says so with its exit status."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import msgspec
import pytest

from konsil.compliance.evidence.model import evidence_bytes
from konsil.compliance.reports.evidence_zip import SigningMismatch, current_signing, evidence_zip_bytes
from konsil.compliance.reports.json_report import json_bytes, report_sha256
from konsil.compliance.reports.model import ReportDocument
from konsil.compliance.reports.verify_zip import load_key_set, main, verify_zip
from konsil.platform.core.keys.region_signing import KeySet, LocalSigner
from tests.compliance.reports.samples import KEY_SET_URL, report


@pytest.fixture
def signer(tmp_path: Path) -> LocalSigner:
    return LocalSigner(tmp_path / "keys", "eu")


async def _doc(signer: LocalSigner) -> ReportDocument:
    signing = await current_signing(signer, KEY_SET_URL)
    return report(kid=signing.kid)


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rezip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


async def test_the_archive_verifies_under_the_pinned_key(signer: LocalSigner) -> None:
    doc = await _doc(signer)
    data = await evidence_zip_bytes(doc, signer)
    keys = await signer.key_set()
    result = verify_zip(io.BytesIO(data), keys)
    assert result.ok, result.problems
    assert result.key_source == "pinned" and result.kid == doc.signing.kid
    members = _members(data)
    manifest = json.loads(members["manifest.json"])
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(members) - {"manifest.json", "manifest.sig", "keys.json"}
    assert members["report.json"] == json_bytes(doc)
    assert listed["report.json"]["sha256"] == report_sha256(doc)
    assert members["report.pdf"].startswith(b"%PDF-")
    for observation in doc.observations:
        assert members[f"evidence/{observation.id}.json"] == evidence_bytes(observation.evidence)
        assert listed[f"evidence/{observation.id}.json"]["sha256"] == observation.evidence_sha256
    assert b"--keys" in members["VERIFY.txt"]


async def test_one_changed_byte_in_any_member_fails(signer: LocalSigner) -> None:
    data = await evidence_zip_bytes(await _doc(signer), signer)
    keys = await signer.key_set()
    members = _members(data)
    for name, content in members.items():
        flipped = bytearray(content)
        flipped[len(flipped) // 2] ^= 0x01
        altered = _rezip({**members, name: bytes(flipped)})
        if name == "keys.json":
            # A pinned key set ignores the archive's copy; the copy, changed, no longer verifies.
            assert verify_zip(io.BytesIO(altered), keys).ok
            assert not verify_zip(io.BytesIO(altered)).ok, name
            continue
        result = verify_zip(io.BytesIO(altered), keys)
        assert not result.ok, f"a changed byte in {name} went unnoticed"
        if name not in ("manifest.json", "manifest.sig"):
            assert any(p.startswith(f"{name}: SHA-256") for p in result.problems), result.problems
    # A byte flipped in the archive file itself (compressed data, CRC) fails too.
    raw = bytearray(data)
    raw[200] ^= 0x01
    assert not verify_zip(io.BytesIO(bytes(raw)), keys).ok


async def test_a_wrong_key_fails(signer: LocalSigner, tmp_path: Path) -> None:
    data = await evidence_zip_bytes(await _doc(signer), signer)
    other = await LocalSigner(tmp_path / "other", "eu").key_set()
    result = verify_zip(io.BytesIO(data), other)
    assert not result.ok
    assert "which the key set does not list" in result.problems[0]
    # The same kid with another public key: the signature does not verify.
    mine = await signer.key_set()
    forged = KeySet(region="eu", keys=[msgspec.structs.replace(other.keys[0], kid=mine.keys[0].kid)])
    result = verify_zip(io.BytesIO(data), forged)
    assert not result.ok and "does not verify" in result.problems[0]


async def test_a_re_signed_archive_passes_only_without_a_pinned_key(signer: LocalSigner, tmp_path: Path) -> None:
    """Why the key is pinned: a forger re-signs with their own key and ships it in keys.json."""
    forger = LocalSigner(tmp_path / "forger", "eu")
    forged_doc = report(kid=(await current_signing(forger, KEY_SET_URL)).kid)
    forged = await evidence_zip_bytes(forged_doc, forger)
    assert verify_zip(io.BytesIO(forged)).ok
    assert not verify_zip(io.BytesIO(forged), await signer.key_set()).ok


async def test_extra_missing_and_cut_archives_fail(signer: LocalSigner) -> None:
    data = await evidence_zip_bytes(await _doc(signer), signer)
    keys = await signer.key_set()
    members = _members(data)
    extra = verify_zip(io.BytesIO(_rezip({**members, "evidence/extra.json": b"{}"})), keys)
    assert "evidence/extra.json: in the archive but not in the manifest" in extra.problems
    missing = verify_zip(io.BytesIO(_rezip({k: v for k, v in members.items() if k != "report.pdf"})), keys)
    assert "report.pdf: listed in the manifest but missing from the archive" in missing.problems
    unsigned = verify_zip(io.BytesIO(_rezip({k: v for k, v in members.items() if k != "manifest.sig"})), keys)
    assert unsigned.problems == ["missing from the archive: There is no item named 'manifest.sig' in the archive"]
    assert not verify_zip(io.BytesIO(data[: len(data) // 2]), keys).ok


async def test_the_signing_key_must_be_the_one_the_report_names(signer: LocalSigner) -> None:
    doc = await _doc(signer)
    signer.rotate()
    with pytest.raises(SigningMismatch, match="the report names key"):
        await evidence_zip_bytes(doc, signer)


async def test_the_command(signer: LocalSigner, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = await evidence_zip_bytes(await _doc(signer), signer)
    archive = tmp_path / "report.zip"
    archive.write_bytes(data)
    keys_file = tmp_path / "keys.json"
    keys_file.write_bytes(msgspec.json.encode(await signer.key_set()))
    assert load_key_set(keys_file.read_bytes()).keys
    assert main([str(archive), "--keys", str(keys_file)]) == 0
    assert "VERIFIED" in capsys.readouterr().out
    assert main([str(archive)]) == 0
    assert "Warning: checked with the key set inside the archive" in capsys.readouterr().out
    other = tmp_path / "other.json"
    other.write_bytes(msgspec.json.encode(await LocalSigner(tmp_path / "o", "eu").key_set()))
    assert main([str(archive), "--keys", str(other)]) == 1
    assert "NOT VERIFIED" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    assert main([str(archive), "--keys", str(bad)]) == 2
    assert "--keys: not a key set" in capsys.readouterr().err
