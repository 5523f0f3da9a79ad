"""The evidence ZIP: everything a report rests on, with a manifest the region signs.

Members:

- ``report.json``: the report (``json_report``); its SHA-256 is the one the PDF prints;
- ``report.pdf``: the PDF; ``evidence.csv``: the evidence workbook;
- ``evidence/<observation id>.json``: each observation's evidence, exactly the bytes
  its ``evidence_sha256`` was computed over (``evidence.model.evidence_bytes``);
- ``VERIFY.txt``: how to check the archive, in words;
- ``manifest.json``: ``{"format": 1, "report_id", "org_id", "region", "framework",
  "period_start", "period_end", "generated_at", "files": [{"path", "sha256", "size"}]}``
  listing every member above;
- ``manifest.sig``: the region's signature over the exact bytes of ``manifest.json``
  (``{"kid", "alg": "EdDSA", "value": base64 of the 64-byte Ed25519 signature}``);
- ``keys.json``: the region's key set at signing time (a convenience copy; an auditor
  verifies against a key set they fetched themselves, see ``verify_zip``).

Members are written one at a time straight into the archive, hashed as they are
written, so the evidence is never held in memory all at once. An archive cut short
(a job killed mid-way) has no ``manifest.sig`` and never verifies.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from collections.abc import Callable
from datetime import datetime
from typing import IO, Final

import msgspec

from konsil.compliance.evidence.model import evidence_bytes
from konsil.compliance.reports.csv_workbook import evidence_path, write_csv
from konsil.compliance.reports.json_report import write_json
from konsil.compliance.reports.model import ReportDocument, Signing
from konsil.compliance.reports.pdf_report import VERIFY_COMMAND, write_pdf
from konsil.platform.core.keys.region_signing import KeySet, RegionSigner, Signature

MEDIA_TYPE: Final = "application/zip"
MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.sig"
KEYS: Final = "keys.json"
# Written after the manifest and so not listed in it.
UNLISTED: Final = frozenset({MANIFEST, SIGNATURE, KEYS})
MANIFEST_FORMAT: Final = 1


class ManifestFile(msgspec.Struct, frozen=True):
    path: str
    sha256: str
    size: int


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    format: int
    report_id: str
    org_id: str
    region: str
    framework: str
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    files: list[ManifestFile]


class SigningMismatch(Exception):
    """The signature's key is not the one the report names (the key was rotated while
    the report was made: make it again), or not in the signer's own key set."""


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes to ``target``."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = bytes(data)
        self.digest.update(chunk)
        self.size += len(chunk)
        self.target.write(chunk)
        return len(chunk)


def _verify_text(doc: ReportDocument) -> bytes:
    return (
        f"Evidence archive of report {doc.id}\n"
        f"Organisation {doc.org_name} ({doc.org_id}), region {doc.region}, {doc.framework.name}\n\n"
        "manifest.json lists every other file of this archive with its SHA-256 and size.\n"
        "manifest.sig is the region's Ed25519 signature over the exact bytes of manifest.json;\n"
        f"its key id (kid) names the key in the region's key set, published at\n  {doc.signing.key_set_url}\n\n"
        "To check the archive, fetch that key set yourself, keep the file, and run\n"
        f"  {VERIFY_COMMAND}\n"
        "Without --keys the check uses keys.json from this archive, which proves only that the files\n"
        "match the manifest: anyone who can change the archive can also replace keys.json.\n"
    ).encode()


def _bytes_writer(data: bytes) -> Callable[[IO[bytes]], object]:
    return lambda out: out.write(data)


class EvidenceZipWriter:
    """Writes the members, then (after the caller has the signature) the manifest,
    its signature and the key set. ``write_evidence_zip`` drives it."""

    def __init__(self, out: IO[bytes]) -> None:
        self._zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        self._files: list[ManifestFile] = []
        self._kid = ""

    def add(self, path: str, write: Callable[[IO[bytes]], object], *, compress: bool = True) -> None:
        info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        with self._zip.open(info, "w", force_zip64=True) as member:
            hashing = _Hashing(member)
            write(hashing)  # type: ignore[arg-type]
        self._files.append(ManifestFile(path=path, sha256=hashing.digest.hexdigest(), size=hashing.size))

    def write_members(self, doc: ReportDocument) -> bytes:
        """Every listed member; returns the manifest's bytes (the bytes to sign)."""
        self._kid = doc.signing.kid
        self.add("report.json", lambda out: write_json(doc, out))
        self.add("report.pdf", lambda out: write_pdf(doc, out), compress=False)
        self.add("evidence.csv", lambda out: write_csv(doc, out))
        for observation in doc.observations:
            data = evidence_bytes(observation.evidence)
            self.add(evidence_path(observation.id), _bytes_writer(data))
        self.add("VERIFY.txt", _bytes_writer(_verify_text(doc)))
        manifest = Manifest(
            format=MANIFEST_FORMAT,
            report_id=str(doc.id),
            org_id=str(doc.org_id),
            region=doc.region,
            framework=doc.framework.id,
            period_start=doc.period_start,
            period_end=doc.period_end,
            generated_at=doc.generated_at,
            files=self._files,
        )
        return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"

    def abort(self) -> None:
        """Close what was written; it has no signed manifest, so it never verifies.
        The caller discards it."""
        self._zip.close()

    def finish(self, manifest: bytes, signature: Signature, key_set: KeySet) -> None:
        if signature.kid != self._kid:
            raise SigningMismatch(f"the report names key {self._kid} but the region signed with key {signature.kid}")
        if signature.kid not in {k.kid for k in key_set.keys}:
            raise SigningMismatch(f"the signature's key {signature.kid} is not in the region's key set")
        for name, data in (
            (MANIFEST, manifest),
            (SIGNATURE, msgspec.json.encode(signature) + b"\n"),
            (KEYS, msgspec.json.format(msgspec.json.encode(key_set), indent=2) + b"\n"),
        ):
            self._zip.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
        self._zip.close()


async def current_signing(signer: RegionSigner, key_set_url: str) -> Signing:
    """The ``Signing`` a report made now should name: the signer's current key."""
    key_set = await signer.key_set()
    current = [k.kid for k in key_set.keys if k.status == "current"]
    if not current:
        raise SigningMismatch("the region's key set has no current key")
    return Signing(kid=current[-1], key_set_url=key_set_url)


async def write_evidence_zip(doc: ReportDocument, signer: RegionSigner, out: IO[bytes]) -> Signature:
    """Write the signed evidence archive of ``doc`` to ``out`` (seekable or not); the
    rendering runs in a worker thread, the signing on the caller's loop."""
    writer = EvidenceZipWriter(out)
    try:
        manifest = await asyncio.to_thread(writer.write_members, doc)
        signature = await signer.sign(manifest)
        key_set = await signer.key_set()
        writer.finish(manifest, signature, key_set)
    except BaseException:
        writer.abort()
        raise
    return signature


async def evidence_zip_bytes(doc: ReportDocument, signer: RegionSigner) -> bytes:
    buffer = io.BytesIO()
    await write_evidence_zip(doc, signer, buffer)
    return buffer.getvalue()
