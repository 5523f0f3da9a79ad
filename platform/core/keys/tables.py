"""The key service's own table and the column type of personal data: a value sealed
with its organisation's data key is all a personal-data column ever holds."""

from __future__ import annotations

from piccolo.columns import UUID, BigInt, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class EncryptedText(Text):
    """A personal-data column: holds only ``kf1:…`` ciphertext sealed with the
    organisation's data key (platform/core/keys/cipher.py). Declaring personal data any
    other way fails the architecture test (tests/tenants/test_architecture.py)."""

    @property
    def column_type(self) -> str:
        return "TEXT"  # piccolo would otherwise name the SQL type after the class


class TenantDataKey(Table, tablename="tenant_data_key"):
    """A data key, stored only wrapped by the organisation's key in the region's
    Vault. ``purpose`` is ``field`` (AES-256-GCM for fields) or ``index`` (HMAC key
    of blind indexes). Deleting the organisation's key makes these useless."""

    id = Varchar(length=32, primary_key=True)
    org_id = UUID(index=True)
    purpose = Varchar(length=8)
    wrapped = Text()
    key_version = Integer()
    # Encryptions made under this key, written back by each process when its cache
    # entry is renewed, so ``cache_max_uses`` bounds a key's use across reloads.
    encryptions = BigInt(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
