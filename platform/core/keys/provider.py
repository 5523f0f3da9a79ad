"""The key-provider interface: one named key per organisation in the region's key
service. Data keys are generated and unwrapped through it; the organisation key
itself never leaves it (Vault Transit) or its master-key-protected file (local).

Both implementations pass the same contract tests (tests/platform/core/keys/).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

import msgspec


class KeyServiceError(Exception):
    """Base of key-service failures. Messages name no key material."""


class KeyUnavailable(KeyServiceError):
    """The key service cannot be reached or failed: fail closed (HTTP 503)."""


class KeyServiceMisconfigured(KeyUnavailable):
    """The key service answers but is not set up for what was asked (no Transit engine
    at the mount, a policy that denies it): an operator must act; waiting will not help."""


class KeyDestroyed(KeyServiceError):
    """The organisation's key does not exist (deleted: crypto-shredded; HTTP 410)."""


class UnwrapRefused(KeyServiceError):
    """A wrapped data key that this organisation's key will not open: another
    organisation's, tampered, or of a retired key version."""


class DataKey(msgspec.Struct, frozen=True):
    plaintext: bytes  # 32 bytes, AES-256
    wrapped: str  # opaque, provider-specific, carries the key version
    key_version: int


class KeyInfo(msgspec.Struct, frozen=True):
    latest_version: int
    min_decryption_version: int


class KeyProvider(Protocol):
    """Async; implementations keep blocking I/O off the event loop."""

    name: str
    round_trips: int  # calls that reached the key service (for cache benchmarks)

    async def create_key(self, org_id: uuid.UUID) -> None:
        """Create the organisation's key; idempotent."""

    async def generate_data_key(self, org_id: uuid.UUID) -> DataKey: ...

    async def unwrap(self, org_id: uuid.UUID, wrapped: str) -> bytes: ...

    async def rewrap(self, org_id: uuid.UUID, wrapped: str) -> str:
        """Wrap again under the latest key version without exposing the plaintext."""

    async def rotate(self, org_id: uuid.UUID) -> int:
        """Add a new key version; return it."""

    async def key_info(self, org_id: uuid.UUID) -> KeyInfo: ...

    async def version_created(self, org_id: uuid.UUID) -> dict[int, datetime]:
        """When each key version was made (UTC), as the key service records it; a version
        missing here has no recorded time (key age evidence, compliance/evidence/keys.py)."""

    async def retire(self, org_id: uuid.UUID, min_decryption_version: int) -> None:
        """Refuse to unwrap data keys wrapped under versions below this one."""

    async def delete_key(self, org_id: uuid.UUID) -> None:
        """Delete the key and all its versions (crypto-shredding); idempotent."""

    async def close(self) -> None: ...


def key_name(org_id: uuid.UUID) -> str:
    return f"org-{org_id}"


def wrapped_version(wrapped: str) -> int:
    """The key version a wrapped data key was made with (``<scheme>:v<N>:…``)."""
    try:
        _scheme, version, _ = wrapped.split(":", 2)
        if not version.startswith("v"):
            raise ValueError
        return int(version[1:])
    except ValueError:
        raise UnwrapRefused("malformed wrapped data key") from None
