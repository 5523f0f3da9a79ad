"""Check an evidence ZIP offline: the manifest's signature, and every file against it.

    python -m konsil.compliance.reports.verify_zip REPORT.zip --keys KEYS.json

``KEYS.json`` is the region's key set as published at the address the report prints
(``{"region": …, "keys": [{"kid", "kty": "OKP", "crv": "Ed25519", "x", …}]}``; a bare
``{"keys": [...]}`` JWK set works too). Fetch it yourself, once, and keep it: that is
what makes the check mean something. The archive carries a copy (``keys.json``) and
without ``--keys`` that copy is used, but whoever could alter the archive could also
replace the copy with their own key and re-sign; pinning the key you fetched from the
region (and compare its kid with the one in your earlier reports) is what tells a
forged archive from the region's own.

What is checked: ``manifest.sig`` is a valid Ed25519 signature, by the key its ``kid``
names, over the exact bytes of ``manifest.json``; every file the manifest lists is in
the archive with that size and SHA-256; the archive holds no other file (besides the
manifest, its signature and ``keys.json``), no name twice and no path that leaves the
folder. By hand: ``sha256sum`` each file and compare with ``manifest.json``; verify the
signature with any Ed25519 library over ``manifest.json``'s bytes, with the key whose
``x`` (base64url) the key set lists under that kid.

Exit status 0: verified; 1: not verified (each problem printed); 2: bad usage.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
import zlib
from pathlib import Path
from typing import IO, Literal

import msgspec

from konsil.compliance.reports.evidence_zip import KEYS, MANIFEST, SIGNATURE, UNLISTED, Manifest
from konsil.platform.core.keys.region_signing import KeySet, PublicKey, Signature, verify

_CHUNK = 1 << 16
# What reading a damaged member raises (bad CRC, corrupt deflate data, cut short).
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError)


class _KeyFile(msgspec.Struct):
    keys: list[PublicKey]
    region: str = ""


class Verification(msgspec.Struct, kw_only=True):
    ok: bool
    problems: list[str]
    files: int = 0
    kid: str | None = None
    key_source: Literal["pinned", "archive"] = "archive"


def load_key_set(data: bytes) -> KeySet:
    """A key set file as published (or a bare JWK set); ValueError if it is not one."""
    try:
        parsed = msgspec.json.decode(data, type=_KeyFile)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a key set: {exc}") from None
    return KeySet(region=parsed.region, keys=parsed.keys)


def _hash_member(archive: zipfile.ZipFile, name: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with archive.open(name) as member:
        while chunk := member.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify_zip(source: str | Path | IO[bytes], key_set: KeySet | None = None) -> Verification:
    """Check an evidence archive. ``key_set``: the region's keys the auditor fetched
    (pinned); None uses the archive's own ``keys.json`` (integrity only, see above)."""
    problems: list[str] = []
    source_kind: Literal["pinned", "archive"] = "pinned" if key_set is not None else "archive"
    try:
        archive = zipfile.ZipFile(source)
    except _DAMAGED as exc:
        return Verification(ok=False, problems=[f"not a readable ZIP archive: {exc}"], key_source=source_kind)
    with archive:
        names = archive.namelist()
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            problems.append(f"names appear twice in the archive: {', '.join(duplicates)}")
        for name in names:
            if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
                problems.append(f"unsafe path in the archive: {name}")
        try:
            manifest_bytes = archive.read(MANIFEST)
            signature = msgspec.json.decode(archive.read(SIGNATURE), type=Signature)
        except KeyError as exc:
            return Verification(ok=False, problems=[*problems, f"missing from the archive: {exc.args[0]}"])
        except (msgspec.DecodeError, *_DAMAGED) as exc:
            return Verification(ok=False, problems=[*problems, f"{SIGNATURE} is damaged: {exc}"])
        if key_set is None:
            try:
                key_set = load_key_set(archive.read(KEYS))
            except (KeyError, ValueError, *_DAMAGED) as exc:
                return Verification(ok=False, problems=[*problems, f"{KEYS}: no usable key set ({exc})"])
        if signature.kid not in {k.kid for k in key_set.keys}:
            problems.append(f"the manifest is signed with key {signature.kid}, which the key set does not list")
        elif not verify(key_set, manifest_bytes, signature):
            problems.append(f"the signature of {MANIFEST} does not verify under key {signature.kid}")
        try:
            manifest = msgspec.json.decode(manifest_bytes, type=Manifest)
        except msgspec.DecodeError as exc:
            problems.append(f"{MANIFEST} cannot be read: {exc}")
            return Verification(ok=False, problems=problems, kid=signature.kid, key_source=source_kind)
        listed = {f.path for f in manifest.files}
        for entry in manifest.files:
            if entry.path not in names:
                problems.append(f"{entry.path}: listed in the manifest but missing from the archive")
                continue
            try:
                sha256, size = _hash_member(archive, entry.path)
            except _DAMAGED as exc:
                problems.append(f"{entry.path}: damaged ({exc})")
                continue
            if size != entry.size:
                problems.append(f"{entry.path}: {size} bytes, the manifest says {entry.size}")
            if sha256 != entry.sha256:
                problems.append(f"{entry.path}: SHA-256 {sha256} differs from the manifest's {entry.sha256}")
        for name in names:
            if name not in listed and name not in UNLISTED:
                problems.append(f"{name}: in the archive but not in the manifest")
    return Verification(
        ok=not problems, problems=problems, files=len(manifest.files), kid=signature.kid, key_source=source_kind
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m konsil.compliance.reports.verify_zip",
        description="Check a Konsil evidence archive: the region's signature and every file's SHA-256.",
    )
    parser.add_argument("archive", type=Path, help="the evidence ZIP")
    parser.add_argument("--keys", type=Path, help="the region's key set you fetched yourself (recommended)")
    args = parser.parse_args(argv)
    pinned: KeySet | None = None
    if args.keys is not None:
        try:
            pinned = load_key_set(args.keys.read_bytes())
        except (OSError, ValueError) as exc:
            print(f"--keys: {exc}", file=sys.stderr)
            return 2
    if not args.archive.is_file():
        print(f"archive: no such file: {args.archive}", file=sys.stderr)
        return 2
    result = verify_zip(args.archive, pinned)
    if not result.ok:
        print(f"NOT VERIFIED: {args.archive}")
        for problem in result.problems:
            print(f"  - {problem}")
        return 1
    print(f"VERIFIED: {result.files} files match the manifest, signed by key {result.kid}.")
    if result.key_source == "archive":
        print(
            "Warning: checked with the key set inside the archive. This proves the files match the manifest,\n"
            "not that the region signed it: pass --keys with the key set you fetched from the region."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
