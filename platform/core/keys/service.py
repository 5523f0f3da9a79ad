"""TenantKeys: provisioning, the data-key cache, rotation and crypto-shredding.

Each organisation has a ``field`` data key (AES-256-GCM for personal fields) and an
``index`` data key (HMAC key of blind indexes), stored wrapped by the
organisation's key in the region's key service. Unwrapped keys live only in the
in-process cache, per organisation, for at most ``max_age`` seconds and
``max_uses`` encryptions of the active key; after that many uses a fresh field
key is generated (old keys stay to decrypt). After warm-up ordinary requests make
no key-service round trip. Deleting the key empties the cache at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from konsil.platform.core.keys.build import build_key_provider
from konsil.platform.core.keys.cipher import OrgCipher
from konsil.platform.core.keys.provider import KeyInfo, KeyProvider
from konsil.platform.core.keys.tables import TenantDataKey
from konsil.platform.core.settings import RegionSettings, Settings
from konsil.platform.core.telemetry import metrics


@dataclass
class _Entry:
    cipher: OrgCipher
    loaded_at: float
    counted: int  # encryptions of the active key already written back


@dataclass(frozen=True)
class RotationResult:
    org_id: uuid.UUID
    key_version: int
    rewrapped: int


_HIT = {"result": "hit"}
_MISS = {"result": "miss"}


def _new_key_id() -> str:
    return uuid.uuid4().hex


class TenantKeys:
    def __init__(self, provider: KeyProvider, *, max_age_seconds: float = 300.0, max_uses: int = 1_000_000) -> None:
        self.provider = provider
        self.max_age = max_age_seconds
        self.max_uses = max_uses
        self._cache: dict[uuid.UUID, _Entry] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}

    # --- provisioning -------------------------------------------------------------------

    async def provision(self, org_id: uuid.UUID) -> None:
        """Create the organisation's key and its first data keys (inside the caller's
        transaction for the rows)."""
        await self.provider.create_key(org_id)
        for purpose in ("field", "index"):
            await self._store_new(org_id, purpose)

    async def _store_new(self, org_id: uuid.UUID, purpose: str) -> tuple[str, bytes]:
        data_key = await self.provider.generate_data_key(org_id)
        key_id = _new_key_id()
        await TenantDataKey.insert(
            TenantDataKey(
                id=key_id, org_id=org_id, purpose=purpose, wrapped=data_key.wrapped, key_version=data_key.key_version
            )
        ).run()
        return key_id, data_key.plaintext

    # --- the cache ----------------------------------------------------------------------

    def _lock(self, org_id: uuid.UUID) -> asyncio.Lock:
        lock = self._locks.get(org_id)
        if lock is None:
            lock = self._locks[org_id] = asyncio.Lock()
        return lock

    async def cipher(self, org_id: uuid.UUID) -> OrgCipher:
        """The organisation's cipher; raises KeyUnavailable, KeyDestroyed or UnwrapRefused."""
        entry = self._cache.get(org_id)
        now = time.monotonic()
        if entry is not None and now - entry.loaded_at < self.max_age and entry.cipher.encryptions < self.max_uses:
            metrics.key_cache.add(1, _HIT)
            return entry.cipher
        metrics.key_cache.add(1, _MISS)
        async with self._lock(org_id):
            entry = self._cache.get(org_id)
            now = time.monotonic()
            if entry is not None:
                await self._write_back(entry)
                if now - entry.loaded_at < self.max_age:
                    if entry.cipher.encryptions >= self.max_uses:
                        key_id, plaintext = await self._store_new(org_id, "field")
                        entry.cipher.keys[key_id] = AESGCM(plaintext)
                        entry.cipher.active_key_id = key_id
                        entry.cipher.encryptions = entry.counted = 0
                    return entry.cipher
            cipher = await self._load(org_id)
            self._cache[org_id] = _Entry(cipher, time.monotonic(), cipher.encryptions)
            return cipher

    async def _write_back(self, entry: _Entry) -> None:
        """Add this process's encryptions under the active key to its stored count."""
        used = entry.cipher.encryptions - entry.counted
        if used > 0:
            await (
                TenantDataKey.update({TenantDataKey.encryptions: TenantDataKey.encryptions + used})
                .where(TenantDataKey.id == entry.cipher.active_key_id)
                .run()
            )
            entry.counted = entry.cipher.encryptions

    async def _load(self, org_id: uuid.UUID) -> OrgCipher:
        rows = (
            await TenantDataKey.select().where(TenantDataKey.org_id == org_id).order_by(TenantDataKey.created_at).run()
        )
        keys: dict[str, AESGCM] = {}
        active: str | None = None
        used = 0
        index_key: bytes | None = None
        for row in rows:
            plaintext = await self.provider.unwrap(org_id, row["wrapped"])
            if row["purpose"] == "index":
                index_key = plaintext
            else:
                keys[row["id"]] = AESGCM(plaintext)
                active, used = row["id"], row["encryptions"]
        if active is not None and used >= self.max_uses:
            # Its budget was spent (here or in other processes): encrypt under a fresh key.
            active, plaintext = await self._store_new(org_id, "field")
            keys[active] = AESGCM(plaintext)
            used = 0
        if active is None or index_key is None:
            # No data keys: an organisation made before keys existed, or half-provisioned.
            await self.provider.create_key(org_id)
            if index_key is None:
                _, index_key = await self._store_new(org_id, "index")
            if active is None:
                active, plaintext = await self._store_new(org_id, "field")
                keys[active] = AESGCM(plaintext)
        return OrgCipher(org_id=org_id, keys=keys, active_key_id=active, index_key=index_key, encryptions=used)

    def evict(self, org_id: uuid.UUID) -> None:
        self._cache.pop(org_id, None)

    def cached(self, org_id: uuid.UUID) -> bool:
        return org_id in self._cache

    # --- rotation and retirement --------------------------------------------------------

    async def rotate(self, org_id: uuid.UUID, on_rewrapped: Callable[[int], None] | None = None) -> RotationResult:
        """Rotate the organisation key, then rewrap every stored data key under the new
        version inside the key service: plaintext data keys never reach this job."""
        entry = self._cache.get(org_id)
        if entry is not None:
            await self._write_back(entry)
        version = await self.provider.rotate(org_id)
        rows = (
            await TenantDataKey.select(TenantDataKey.id, TenantDataKey.wrapped)
            .where(TenantDataKey.org_id == org_id)
            .run()
        )
        for done, row in enumerate(rows, start=1):
            wrapped = await self.provider.rewrap(org_id, row["wrapped"])
            await (
                TenantDataKey.update({TenantDataKey.wrapped: wrapped, TenantDataKey.key_version: version})
                .where(TenantDataKey.id == row["id"])
                .run()
            )
            if on_rewrapped is not None:
                on_rewrapped(done)
        self.evict(org_id)
        return RotationResult(org_id, version, len(rows))

    async def retire_old_versions(self, org_id: uuid.UUID) -> KeyInfo:
        """Refuse versions older than the oldest one still used by a stored data key."""
        rows = await TenantDataKey.select(TenantDataKey.key_version).where(TenantDataKey.org_id == org_id).run()
        info = await self.provider.key_info(org_id)
        oldest_used = min((row["key_version"] for row in rows), default=info.latest_version)
        await self.provider.retire(org_id, oldest_used)
        self.evict(org_id)
        return await self.provider.key_info(org_id)

    async def data_key_count(self, org_id: uuid.UUID) -> int:
        count: int = await TenantDataKey.count().where(TenantDataKey.org_id == org_id).run()
        return count

    # --- crypto-shredding ---------------------------------------------------------------

    async def shred(self, org_id: uuid.UUID) -> None:
        """Delete the organisation's key: every copy of its data, backups included,
        becomes unreadable. The cache is emptied first, so nothing is served after."""
        self.evict(org_id)
        await self.provider.delete_key(org_id)
        self.evict(org_id)


def build_tenant_keys(settings: Settings, region: RegionSettings) -> TenantKeys:
    return TenantKeys(
        build_key_provider(settings, region),
        max_age_seconds=region.vault.cache_max_age_seconds,
        max_uses=region.vault.cache_max_uses,
    )
