"""Field encryption under an organisation's data keys: AES-256-GCM, versioned format.

A sealed field is ``kf1:<data key id>:<base64(nonce | ciphertext | tag)>``. The
associated data binds organisation, table, column and row id, so a ciphertext
copied to another row, column or tenant fails to decrypt. Blind indexes are a
keyed HMAC per organisation over a normalised value.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = "kf1"
NONCE_BYTES = 12


@dataclass(frozen=True)
class FieldRef:
    """Where a personal-data value lives; encryption binds it as associated data."""

    org_id: uuid.UUID
    table: str
    column: str
    row_id: uuid.UUID


class FieldDecryptionError(Exception):
    """A stored field that cannot be opened. ``reason`` is safe to log; no values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def associated_data(ref: FieldRef) -> bytes:
    """Organisation, table, column and row: what a ciphertext is bound to."""
    return f"{FORMAT}|{ref.org_id}|{ref.table}|{ref.column}|".encode() + ref.row_id.bytes


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
    _aad_prefixes: dict[str, dict[str, bytes]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._org_int = self.org_id.int

    def _aad(self, ref: FieldRef) -> bytes:
        # The same bytes as associated_data(ref), with the per-column prefix cached, so
        # the field cipher costs little more than raw AES-GCM (bench/field_encryption.py).
        if ref.org_id.int != self._org_int:
            raise ValueError("field belongs to another organisation")
        columns = self._aad_prefixes.get(ref.table)
        if columns is None:
            columns = self._aad_prefixes[ref.table] = {}
        prefix = columns.get(ref.column)
        if prefix is None:
            prefix = columns[ref.column] = f"{FORMAT}|{self.org_id}|{ref.table}|{ref.column}|".encode()
        return prefix + ref.row_id.bytes

    def seal(self, ref: FieldRef, value: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.active_key_id
        sealed = self.keys[key_id].encrypt(nonce, value.encode(), self._aad(ref))
        self.encryptions += 1
        return FORMAT + ":" + key_id + ":" + binascii.b2a_base64(nonce + sealed, newline=False).decode()

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
            raw = binascii.a2b_base64(body, strict_mode=True)
        except (binascii.Error, ValueError):
            raise FieldDecryptionError("ciphertext is not valid base64") from None
        if len(raw) < NONCE_BYTES + 16:
            raise FieldDecryptionError("ciphertext is truncated")
        try:
            plain = key.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(ref))
        except InvalidTag:
            raise FieldDecryptionError("ciphertext failed authentication (tampered, or moved)") from None
        return plain.decode()

    def blind_index(self, kind: str, normalised: str) -> str:
        """Keyed hash for equality lookups (e-mail, phone) within this organisation."""
        return hmac.new(self.index_key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()
