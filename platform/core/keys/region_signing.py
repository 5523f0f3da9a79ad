"""The region's own signing key (Ed25519): residency receipts, access-log checkpoints,
evidence manifests and deletion certificates are signed with it, so an auditor can
check them with the region's published public keys and nothing else.

Only the region can sign: in services mode the key lives in the region's Vault
(Transit, never released); in the embedded default it is a local keyring file next to
the data-key keyring. Every signature names its key (``kid``); the key set lists the
current and the past public keys, so a signature made before a rotation still verifies.

What is signed is always the exact bytes given to ``sign``; each caller documents its
bytes (docs/verifying.md).
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal, Protocol

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

ALGORITHM: Final = "EdDSA"  # JOSE name; the curve is always Ed25519


class Signature(msgspec.Struct, frozen=True, kw_only=True):
    kid: str  # which public key of the key set verifies it
    alg: Literal["EdDSA"] = "EdDSA"
    value: str  # base64 (standard alphabet, padded) of the 64-byte Ed25519 signature


class PublicKey(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the region's key set, JWK-shaped (RFC 8037) plus when it was made
    and whether it still signs."""

    kid: str
    kty: Literal["OKP"] = "OKP"
    crv: Literal["Ed25519"] = "Ed25519"
    alg: Literal["EdDSA"] = "EdDSA"
    use: Literal["sig"] = "sig"
    x: str  # base64url (no padding) of the 32-byte raw public key, as JWK writes it
    created_at: str  # ISO 8601, UTC
    status: Literal["current", "retired"]


class KeySet(msgspec.Struct, frozen=True, kw_only=True):
    region: str
    keys: list[PublicKey]


class SigningUnavailable(Exception):
    """The region's signing key cannot be used now (Vault sealed or unreachable)."""


class RegionSigner(Protocol):
    """Signs with the region's own key; lists the public keys that verify its signatures."""

    async def sign(self, message: bytes) -> Signature: ...

    async def key_set(self) -> KeySet: ...


def key_id(public_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of the SHA-256 of its raw public key, so
    anyone holding the key can recompute it."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify(key_set: KeySet, message: bytes, signature: Signature) -> bool:
    """Whether ``signature`` over ``message`` verifies under the key it names."""
    for key in key_set.keys:
        if key.kid == signature.kid:
            try:
                public = Ed25519PublicKey.from_public_bytes(_b64url_decode(key.x))
                public.verify(base64.b64decode(signature.value, validate=True), message)
            except (InvalidSignature, ValueError):
                return False
            return True
    return False


class LocalSigner:
    """The embedded default's region key: ``<directory>/signing-keys.json`` holds every
    key version (private keys base64, mode 0600) and which one is current. Made on
    first use; ``rotate`` adds a version and retires the others (still listed)."""

    FILE = "signing-keys.json"

    def __init__(self, directory: str | Path, region_id: str) -> None:
        self.directory = Path(directory)
        self.region_id = region_id
        self._keys: list[dict[str, str]] | None = None

    @property
    def path(self) -> Path:
        return self.directory / self.FILE

    def _load(self) -> list[dict[str, str]]:
        if self._keys is not None and self.path.exists():
            return self._keys
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.directory / (self.FILE + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.exists():
                keys: list[dict[str, str]] = json.loads(self.path.read_text())["keys"]
            else:
                keys = []
                self._write([*keys, self._new_key()])
                keys = json.loads(self.path.read_text())["keys"]
        self._keys = keys
        return keys

    @staticmethod
    def _new_key() -> dict[str, str]:
        private = Ed25519PrivateKey.generate()
        raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "kid": key_id(public),
            "private": base64.b64encode(raw).decode(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _write(self, keys: list[dict[str, str]]) -> None:
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"format": 1, "keys": keys}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)

    def rotate(self) -> str:
        """Add a new current key; the old ones stay in the key set as retired."""
        keys = self._load()
        keys = [*keys, self._new_key()]
        self._write(keys)
        self._keys = keys
        return keys[-1]["kid"]

    def _sign_now(self, message: bytes) -> Signature:
        current = self._load()[-1]
        private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(current["private"]))
        return Signature(kid=current["kid"], value=base64.b64encode(private.sign(message)).decode())

    async def sign(self, message: bytes) -> Signature:
        if self._keys is None:
            await asyncio.to_thread(self._load)
        return self._sign_now(message)

    async def key_set(self) -> KeySet:
        keys = await asyncio.to_thread(self._load)
        out: list[PublicKey] = []
        for index, entry in enumerate(keys):
            private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(entry["private"]))
            public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            status: Literal["current", "retired"] = "current" if index == len(keys) - 1 else "retired"
            out.append(PublicKey(kid=entry["kid"], x=_b64url(public), created_at=entry["created_at"], status=status))
        return KeySet(region=self.region_id, keys=out)
