"""Region tables of the tenant area: organisations, members, rooms, tokens, sessions.

These live only in a region database. Personal-data columns are listed in
``PERSONAL_COLUMNS`` and are written and read only through the tenant's
``PersonalDataCodec`` (tenants/personal_data.py).
"""

from __future__ import annotations

from piccolo.columns import UUID, Date, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class EncryptedText(Text):
    """A personal-data column: holds only ``kf1:…`` ciphertext sealed with the
    organisation's data key (tenants/keys/cipher.py). Declaring personal data any
    other way fails the architecture test (tests/tenants/test_architecture.py)."""


class Organisation(Table, tablename="organisation"):
    id = UUID(primary_key=True)
    slug = Varchar(length=40, unique=True, index=True)
    name = Varchar(length=200)
    retention_days = Integer(default=30)
    contract_end = Date(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Member(Table, tablename="member"):
    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    name = EncryptedText()
    email = EncryptedText()
    # Keyed hash with the region's discovery key: login across the region's
    # organisations and the control plane's login-discovery index.
    email_lookup = Varchar(length=64, index=True)
    # Blind indexes under the organisation's own index key (lookups inside it).
    email_index = Varchar(length=64, index=True, default="")
    phone = EncryptedText(null=True, default=None)
    phone_index = Varchar(length=64, index=True, null=True, default=None)
    role = Varchar(length=16)
    password_hash = Text()
    created_at = Timestamptz(default=TimestamptzNow())


class Room(Table, tablename="room"):
    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    slug = Varchar(length=60, index=True)  # unique per organisation (index room_org_slug)
    title = Varchar(length=120)
    expert_id = UUID(index=True)
    created_at = Timestamptz(default=TimestamptzNow())


class ApiToken(Table, tablename="api_token"):
    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    label = Varchar(length=80)
    token_hash = Varchar(length=64, unique=True, index=True)
    scopes = Varchar(length=200)
    created_by = UUID()
    created_at = Timestamptz(default=TimestamptzNow())
    revoked_at = Timestamptz(null=True, default=None)
    last_used_at = Timestamptz(null=True, default=None)


class MemberSession(Table, tablename="member_session"):
    id = Varchar(length=64, primary_key=True)  # sha256 of the cookie value
    org_id = UUID(index=True)
    member_id = UUID(index=True)
    csrf_token = Varchar(length=64)
    created_at = Timestamptz(default=TimestamptzNow())
    last_seen_at = Timestamptz(default=TimestamptzNow())


class TenantDataKey(Table, tablename="tenant_data_key"):
    """A data key, stored only wrapped by the organisation's key in the region's
    Vault. ``purpose`` is ``field`` (AES-256-GCM for fields) or ``index`` (HMAC key
    of blind indexes). Deleting the organisation's key makes these useless."""

    id = Varchar(length=32, primary_key=True)
    org_id = UUID(index=True)
    purpose = Varchar(length=8)
    wrapped = Text()
    key_version = Integer()
    created_at = Timestamptz(default=TimestamptzNow())


TENANT_TABLES: list[type[Table]] = [Organisation, Member, Room, ApiToken, MemberSession, TenantDataKey]


def personal_columns(tables: list[type[Table]]) -> frozenset[tuple[str, str]]:
    """(table, column) pairs declared as personal data (EncryptedText)."""
    return frozenset(
        (table._meta.tablename, column._meta.name)
        for table in tables
        for column in table._meta.columns
        if isinstance(column, EncryptedText)
    )


PERSONAL_COLUMNS = personal_columns(TENANT_TABLES)
