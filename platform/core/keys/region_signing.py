"""The region's own signing key (Ed25519): residency receipts, access-log checkpoints,
evidence manifests and deletion certificates are signed with it, so an auditor can
check them with the region's published public keys and nothing else.

Only the region can sign: in services mode the key lives in the region's Vault
(Transit, never released: ``keys/vault_signing.py``); in the embedded default it is a
local keyring file next to the data-key keyring (``LocalSigner``). The control plane
holds neither, so it cannot sign for a region. Every signature names its key
(``kid``); the key set lists the current and the past public keys, so a signature made
before a rotation still verifies.

What is signed is always the exact bytes given to ``sign``; for a document that is
``canonical_json(document)``, and each document's section of docs/verifying.md says
which fields it has.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import functools
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from konsil.platform.core import clock

ALGORITHM: Final = "EdDSA"  # JOSE name; the curve is always Ed25519
ED25519_PUBLIC_BYTES: Final = 32
ED25519_SIGNATURE_BYTES: Final = 64


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

    def current(self) -> PublicKey:
        """The key new signatures are made with."""
        return next(key for key in self.keys if key.status == "current")


class SigningUnavailable(Exception):
    """The region's signing key cannot be used now (Vault sealed or unreachable, the key
    missing and not creatable, a keyring file unreadable). The message says which and
    names no key material; a request that needs a signature answers 503."""


class RegionSigner(Protocol):
    """Signs with the region's own key; lists the public keys that verify its signatures."""

    async def sign(self, message: bytes) -> Signature: ...

    async def key_set(self) -> KeySet: ...


class RegionKey(RegionSigner, Protocol):
    """What the region's processes build (``keys/build.py``): a signer that can also be
    rotated (``konsil keys rotate-signing``) and closed."""

    async def rotate_key(self) -> str:
        """Make a new current key (the first one, when there is none yet); the old ones
        stay in the key set as retired. Returns the new key's id."""

    async def close(self) -> None: ...


_canonical = msgspec.json.Encoder(order="sorted")


def canonical_json(document: Any) -> bytes:
    """The bytes the region signs for a document: JSON, UTF-8, object keys (and struct
    fields) sorted, no spaces. For strings, integers, lists and objects these are the
    bytes of Python's ``json.dumps(document, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False).encode()``, so an auditor rebuilds them without Konsil."""
    return _canonical.encode(document)


def key_id(public_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of the SHA-256 of its raw public key, so
    anyone holding the key can recompute it."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=256)
def _public_key(x: str) -> bytes | None:
    """A key set entry's raw 32-byte public key, once it is known to be an Ed25519 key
    (None: ``x`` is not). Cached by its text: the same few keys verify every signature
    a region made."""
    try:
        raw = _b64url_decode(x)
        Ed25519PublicKey.from_public_bytes(raw)  # refuses anything that is no Ed25519 public key
    except ValueError:
        return None
    return raw if len(raw) == ED25519_PUBLIC_BYTES else None


class Verifier:
    """The public keys of one key set, each decoded once: for checking many signatures
    (a report verifies every call's residency receipt); ``verify`` uses one too.

    Signatures are checked with libsodium (PyNaCl, ``crypto_sign_open``): about half
    the CPU of OpenSSL's Ed25519 verification on the same machine (55 against 110 us),
    and a report checks one per call of its period. libsodium is the stricter of the
    two (it also refuses non-canonical signatures and small-order keys), so everything
    it accepts verifies with ``cryptography`` too, as docs/verifying.md does it."""

    def __init__(self, key_set: KeySet) -> None:
        self._keys: dict[str, bytes | None] = {}
        for key in key_set.keys:
            self._keys.setdefault(key.kid, _public_key(key.x))  # the first of a kid, as ``verify`` always did

    def knows(self, kid: str) -> bool:
        """Whether the key set lists a key with this id."""
        return kid in self._keys

    def verify(self, message: bytes, signature: Signature) -> bool:
        """Whether ``signature`` over exactly ``message`` verifies under the key it names."""
        public = self._keys.get(signature.kid)
        if public is None:
            return False
        try:
            raw = base64.b64decode(signature.value, validate=True)
        except ValueError:
            return False
        if len(raw) != ED25519_SIGNATURE_BYTES:  # else its tail would be read as part of the message
            return False
        try:
            crypto_sign_open(raw + message, public)
        except (BadSignatureError, ValueError):
            return False
        return True

    def verify_all(self, items: Sequence[tuple[bytes, Signature]]) -> list[bool]:
        """``verify`` of each (message, signature), in order. Made for a worker thread:
        nearly all of its time is libsodium's, which runs outside the GIL."""
        return [self.verify(message, signature) for message, signature in items]


def verify(key_set: KeySet, message: bytes, signature: Signature) -> bool:
    """Whether ``signature`` over ``message`` verifies under the key it names."""
    return Verifier(key_set).verify(message, signature)


def public_key_entry(public_raw: bytes, created_at: str, current: bool) -> PublicKey:
    """A key set entry for a raw Ed25519 public key (its kid computed from it)."""
    return PublicKey(
        kid=key_id(public_raw),
        x=b64url(public_raw),
        created_at=created_at,
        status="current" if current else "retired",
    )


# --- the embedded default: a keyring file --------------------------------------------------


class _StoredKey(msgspec.Struct, frozen=True):
    kid: str
    private: str  # base64 of the 32-byte raw Ed25519 private key
    created_at: str


class _KeyFile(msgspec.Struct, frozen=True):
    format: Literal[1]
    keys: list[_StoredKey]


@dataclass(frozen=True)
class _Version:
    kid: str
    private: Ed25519PrivateKey
    public_raw: bytes
    created_at: str


def _open_version(stored: _StoredKey) -> _Version:
    try:
        private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(stored.private, validate=True))
    except ValueError:
        raise ValueError(f"key {stored.kid} is not a 32-byte Ed25519 private key") from None
    public_raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if key_id(public_raw) != stored.kid:
        raise ValueError(f"key {stored.kid} does not match its id")
    return _Version(stored.kid, private, public_raw, stored.created_at)


class LocalSigner:
    """The embedded default's region key: ``<directory>/signing-keys.json`` (mode 0600)
    holds every key version (private keys base64) in the order they were made; the last
    is current. Made on first use; ``rotate`` adds a version and retires the others
    (still listed). Writes replace the file atomically under an exclusive ``flock``, and
    readers reload it when it changed, so the region service sees a rotation made by
    ``konsil keys rotate-signing`` at its next signature."""

    FILE = "signing-keys.json"
    LOCK = "signing-keys.lock"

    def __init__(self, directory: str | Path, region_id: str) -> None:
        self.directory = Path(directory)
        self.region_id = region_id
        self._versions: list[_Version] | None = None
        self._stamp: tuple[int, ...] | None = None
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalSigner({str(self.directory)!r}, {self.region_id!r})"

    @property
    def path(self) -> Path:
        return self.directory / self.FILE

    # -- files ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _flock(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / self.LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _read(self) -> list[_Version] | None:
        """The key versions as the file holds them now (cached until it changes); None
        when there is no file yet."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                if self._versions is not None and stamp == self._stamp:
                    return self._versions
                if stat.S_IMODE(st.st_mode) & 0o077:
                    raise SigningUnavailable(
                        f"the region's signing keyring {self.path} is readable by group or others; "
                        f"run: chmod 600 {self.path}"
                    )
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            versions = [_open_version(stored) for stored in msgspec.json.decode(raw, type=_KeyFile).keys]
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            raise SigningUnavailable(f"the region's signing keyring {self.path} is unreadable: {exc}") from None
        if not versions:
            raise SigningUnavailable(f"the region's signing keyring {self.path} holds no key")
        self._versions, self._stamp = versions, stamp
        return versions

    def _write(self, versions: list[_Version]) -> None:
        stored = [
            _StoredKey(
                kid=v.kid,
                private=base64.b64encode(
                    v.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
                ).decode(),
                created_at=v.created_at,
            )
            for v in versions
        ]
        data = msgspec.json.encode(_KeyFile(format=1, keys=stored))
        temporary = self.directory / f".{self.FILE}.{secrets.token_hex(6)}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    @staticmethod
    def _new_version() -> _Version:
        private = Ed25519PrivateKey.generate()
        public_raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return _Version(key_id(public_raw), private, public_raw, clock.now().isoformat(timespec="seconds"))

    def _change(self, rotate: bool) -> list[_Version]:
        """Under the file lock: make the first key when there is none, else a new current
        one when ``rotate``; the versions afterwards."""
        with self._flock():
            versions = self._read() or []
            if rotate or not versions:  # a rotation with no key yet makes the first one
                versions = [*versions, self._new_version()]
                self._write(versions)
                self._versions, self._stamp = None, None
                versions = self._read() or versions
            return versions

    def _load(self, rotate: bool = False) -> list[_Version]:
        with self._thread_lock:
            try:
                return (None if rotate else self._read()) or self._change(rotate)
            except OSError as exc:
                raise SigningUnavailable(
                    f"the region's signing keyring {self.path} cannot be used ({type(exc).__name__})"
                ) from None

    # -- RegionKey -------------------------------------------------------------------------

    def rotate(self) -> str:
        """Add a new current key; the old ones stay in the key set as retired."""
        return self._load(rotate=True)[-1].kid

    async def rotate_key(self) -> str:
        return await asyncio.to_thread(self.rotate)

    async def sign(self, message: bytes) -> Signature:
        current = (await asyncio.to_thread(self._load))[-1]
        return Signature(kid=current.kid, value=base64.b64encode(current.private.sign(message)).decode())

    async def key_set(self) -> KeySet:
        versions = await asyncio.to_thread(self._load)
        last = len(versions) - 1
        return KeySet(
            region=self.region_id,
            keys=[public_key_entry(v.public_raw, v.created_at, i == last) for i, v in enumerate(versions)],
        )

    async def close(self) -> None:
        self._versions, self._stamp = None, None
