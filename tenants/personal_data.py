"""The one interface through which personal-data fields are written and read.

Every column declared ``EncryptedText`` (``tenants.tables.PERSONAL_COLUMNS``) is
sealed and opened through a ``PersonalDataCodec``: the organisation's
``OrgCipher`` (tenants/keys/cipher.py), AES-256-GCM under its own data key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FieldRef:
    """Where a value lives; encryption binds it as associated data."""

    org_id: uuid.UUID
    table: str
    column: str
    row_id: uuid.UUID


class PersonalDataCodec(Protocol):
    def seal(self, ref: FieldRef, value: str) -> str: ...

    def open(self, ref: FieldRef, stored: str) -> str: ...
