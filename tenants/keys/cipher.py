"""Field encryption under an organisation's data keys: AES-256-GCM, versioned format.

A sealed field is ``kf1:<data key id>:<base64url(nonce | ciphertext | tag)>``. The
associated data binds organisation, table, column and row id, so a ciphertext
copied to another row, column or tenant fails to decrypt. Blind indexes are a
keyed HMAC per organisation over a normalised value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from konsil.tenants.personal_data import FieldRef

FORMAT = "kf1"
NONCE_BYTES = 12


class FieldDecryptionError(Exception):
    """A stored field that cannot be opened. ``reason`` is safe to log; no values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def associated_data(ref: FieldRef) -> bytes:
    return f"{FORMAT}|{ref.org_id}|{ref.table}|{ref.column}|{ref.row_id}".encode()


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class OrgCipher:
    """Seals and opens one organisation's fields with its unwrapped data keys.

    Held in the data-key cache; ``encryptions`` counts uses of the active key so
    the cache can move to a fresh data key after its maximum number of uses.
    """

    org_id: uuid.UUID
    keys: dict[str, AESGCM]  # data key id → cipher
    active_key_id: str
    index_key: bytes
    encryptions: int = 0
    _index_cache: dict[str, str] = field(default_factory=dict, repr=False)

    def seal(self, ref: FieldRef, value: str) -> str:
        if ref.org_id != self.org_id:
            raise ValueError("field belongs to another organisation")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.keys[self.active_key_id].encrypt(nonce, value.encode(), associated_data(ref))
        self.encryptions += 1
        return f"{FORMAT}:{self.active_key_id}:{_b64encode(nonce + sealed)}"

    def open(self, ref: FieldRef, stored: str) -> str:
        parts = stored.split(":", 2)
        if len(parts) != 3:
            raise FieldDecryptionError("not an encrypted field")
        version, key_id, body = parts
        if version != FORMAT:
            raise FieldDecryptionError(f"unknown ciphertext format {version[:8]!r}")
        key = self.keys.get(key_id)
        if key is None:
            raise FieldDecryptionError("unknown data key (another organisation's, or removed)")
        try:
            raw = _b64decode(body)
        except (binascii.Error, ValueError):
            raise FieldDecryptionError("ciphertext is not valid base64") from None
        if len(raw) < NONCE_BYTES + 16:
            raise FieldDecryptionError("ciphertext is truncated")
        try:
            plain = key.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated_data(ref))
        except InvalidTag:
            raise FieldDecryptionError("ciphertext failed authentication (tampered, or moved)") from None
        return plain.decode()

    def blind_index(self, kind: str, normalised: str) -> str:
        """Keyed hash for equality lookups (e-mail, phone) within this organisation."""
        return hmac.new(self.index_key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()
