"""The one interface through which personal-data fields are written and read.

Every column listed in ``tenants.tables.PERSONAL_COLUMNS`` goes through a
``PersonalDataCodec``. The key issue plugs in envelope encryption under the
organisation's own key here; until then the region runs ``UnencryptedCodec``
and the architecture test only checks that every personal column is routed
through this interface.
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


class UnencryptedCodec:
    """Stores values as given. Replaced by the per-tenant key codec (issue 3)."""

    def seal(self, ref: FieldRef, value: str) -> str:
        return value

    def open(self, ref: FieldRef, stored: str) -> str:
        return stored
