"""The region's signing key in services mode: an Ed25519 key in the region's own
Vault/OpenBao Transit engine (``konsil-region-signing-<region>`` unless
``[regions.vault] signing_key`` names another). Vault signs (``transit/sign``) and never
releases the private key; the public keys come from reading the key, every version
with its creation time, and each key id is ``key_id`` of the raw public key, so anyone
can recompute it. The control plane has no login to this Vault, so it cannot sign for
the region.

The key is created on first use when the region's login may (``create`` on
``transit/keys/<name>``); otherwise an operator creates it once (README, "The region's
Vault"). A key Vault would let anyone export, or of another type, is refused. A sealed,
unreachable or refusing Vault is ``SigningUnavailable``: what needs a signature answers
503, and the signer recovers by itself when Vault returns (the hvac client and its
login are the tenant keys' ``VaultTransitProvider``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from konsil.platform.core.keys.provider import KeyDestroyed, KeyServiceError
from konsil.platform.core.keys.region_signing import (
    KeySet,
    PublicKey,
    Signature,
    SigningUnavailable,
    public_key_entry,
)
from konsil.platform.core.keys.vault import VaultTransitProvider

T = TypeVar("T")
log = logging.getLogger("konsil.keys")

KEY_TYPE = "ed25519"


def default_key_name(region_id: str) -> str:
    return f"konsil-region-signing-{region_id}"


class _TransitVersion(msgspec.Struct):
    public_key: str  # base64 (standard) of the raw 32-byte Ed25519 public key
    creation_time: str  # RFC 3339 with nanoseconds


class _TransitKind(msgspec.Struct):
    """What kind of key ``GET transit/keys/<name>`` describes."""

    type: str
    exportable: bool = False
    allow_plaintext_backup: bool = False
    derived: bool = False


class _TransitKey(msgspec.Struct):
    """An asymmetric key's versions as ``GET transit/keys/<name>`` answers them."""

    latest_version: int
    keys: dict[str, _TransitVersion]


_FRACTION = re.compile(r"\.\d+")


def _utc_seconds(rfc3339: str) -> str:
    """Vault's creation time (``2026-11-28T22:25:04.703406198Z``) as the key set writes
    times: ISO 8601, UTC, whole seconds."""
    parsed = datetime.fromisoformat(_FRACTION.sub("", rfc3339, count=1).replace("Z", "+00:00"))
    return parsed.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class _Version:
    kid: str
    public: Ed25519PublicKey
    entry: PublicKey


class VaultSigner:
    """RegionKey over an Ed25519 key in the region's Vault Transit engine."""

    def __init__(
        self, client: VaultTransitProvider, region_id: str, key_name: str = "", *, owns_client: bool = False
    ) -> None:
        self.client = client
        self.region_id = region_id
        self.key_name = key_name or default_key_name(region_id)
        self._owns_client = owns_client  # closed with the signer (else with the tenant keys)
        self._versions: dict[int, _Version] = {}

    def __repr__(self) -> str:
        return f"VaultSigner({self.client!r}, key={self.key_name!r})"

    # -- plumbing ------------------------------------------------------------------------

    def _unavailable(self, exc: KeyServiceError) -> SigningUnavailable:
        return SigningUnavailable(f"the region's signing key {self.key_name!r} cannot be used: {exc}")

    async def _transit(self, op: Callable[[Any], T]) -> T:
        """One Transit call; a missing key is ``KeyDestroyed``, anything else wrong is
        ``SigningUnavailable``."""
        try:
            return await self.client.transit(op)
        except KeyDestroyed:
            raise
        except KeyServiceError as exc:
            raise self._unavailable(exc) from None

    async def _read(self) -> _TransitKey | None:
        name, mount = self.key_name, self.client.mount
        try:
            response = await self._transit(lambda t: t.read_key(name, mount_point=mount))
        except KeyDestroyed:
            return None
        try:
            kind = msgspec.convert(response["data"], type=_TransitKind)
            if kind.type != KEY_TYPE or kind.derived:
                raise SigningUnavailable(
                    f"the Vault key {name!r} is a {'derived ' if kind.derived else ''}{kind.type} key; the region's "
                    f"signing key must be a plain ed25519 key (regions.vault.signing_key names another)"
                )
            if kind.exportable or kind.allow_plaintext_backup:
                raise SigningUnavailable(
                    f"the Vault key {name!r} may be exported, so it would not be the region's alone; make a new "
                    f"ed25519 key that cannot be (the default) and name it in regions.vault.signing_key"
                )
            return msgspec.convert(response["data"], type=_TransitKey)
        except (msgspec.ValidationError, KeyError, TypeError):
            raise SigningUnavailable(f"the region's Vault answered an unreadable key {name!r}") from None

    async def _create(self) -> None:
        name, mount = self.key_name, self.client.mount
        try:
            await self._transit(
                lambda t: t.create_key(
                    name, key_type=KEY_TYPE, exportable=False, allow_plaintext_backup=False, mount_point=mount
                )
            )
        except SigningUnavailable as exc:
            if "permission denied" not in str(exc):
                raise
            raise SigningUnavailable(
                f"the region's signing key {name!r} does not exist in its Vault, and the region's login may not "
                f"create it; an operator creates it once: bao write -f {mount}/keys/{name} type={KEY_TYPE}"
            ) from None
        log.info("region %s: made its signing key %s in Vault", self.region_id, name)

    def _remember(self, key: _TransitKey) -> list[PublicKey]:
        """Every version's public key, oldest first; the latest is current."""
        entries: list[PublicKey] = []
        for version in sorted(int(v) for v in key.keys):
            known = self._versions.get(version)
            if known is None:
                stored = key.keys[str(version)]
                try:
                    raw = base64.b64decode(stored.public_key, validate=True)
                    public = Ed25519PublicKey.from_public_bytes(raw)
                    created = _utc_seconds(stored.creation_time)
                except (binascii.Error, ValueError):
                    raise SigningUnavailable(
                        f"the region's Vault answered an unreadable public key for {self.key_name!r} v{version}"
                    ) from None
                entry = public_key_entry(raw, created, current=False)
                known = self._versions[version] = _Version(entry.kid, public, entry)
            current = version == key.latest_version
            entries.append(msgspec.structs.replace(known.entry, status="current" if current else "retired"))
        return entries

    async def _key(self) -> list[PublicKey]:
        """The key's versions as Vault has them now; the key is made when missing."""
        key = await self._read()
        if key is None:
            await self._create()
            key = await self._read()
            if key is None:
                raise SigningUnavailable(f"the region's signing key {self.key_name!r} was made but cannot be read")
        return self._remember(key)

    # -- RegionKey -----------------------------------------------------------------------

    async def key_set(self) -> KeySet:
        return KeySet(region=self.region_id, keys=await self._key())

    async def sign(self, message: bytes) -> Signature:
        if not self._versions:
            await self._key()
        name, mount = self.key_name, self.client.mount
        payload = base64.b64encode(message).decode()
        try:
            data = (await self._transit(lambda t: t.sign_data(name, hash_input=payload, mount_point=mount)))["data"]
        except KeyDestroyed:
            self._versions.clear()  # made again at the next signature
            raise SigningUnavailable(f"the region's signing key {name!r} is gone from its Vault") from None
        try:
            _, tag, encoded = str(data["signature"]).split(":", 2)
            version = int(data.get("key_version") or tag.removeprefix("v"))
            value = base64.b64decode(encoded, validate=True)
        except (KeyError, ValueError, binascii.Error):
            raise SigningUnavailable("the region's Vault answered an unreadable signature") from None
        if version not in self._versions:  # rotated since we last looked (another process)
            await self._key()
        known = self._versions.get(version)
        try:
            if known is None:
                raise InvalidSignature
            known.public.verify(value, message)
        except InvalidSignature:
            raise SigningUnavailable(
                f"the region's Vault signed with {name!r} v{version}, which its published keys do not verify"
            ) from None
        return Signature(kid=known.kid, value=base64.b64encode(value).decode())

    async def rotate_key(self) -> str:
        name, mount = self.key_name, self.client.mount
        if await self._read() is None:  # no key yet: the first one is the new one
            await self._create()
            return (await self.key_set()).current().kid
        try:
            await self._transit(lambda t: t.rotate_key(name, mount_point=mount))
        except KeyDestroyed:
            raise SigningUnavailable(f"the region's signing key {name!r} is gone from its Vault") from None
        return next(key.kid for key in await self._key() if key.status == "current")

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()
