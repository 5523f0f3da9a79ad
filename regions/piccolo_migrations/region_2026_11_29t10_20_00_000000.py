from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

from konsil.platform.core.keys.tables import EncryptedText

ID = "2026-11-29T10:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = (
    "National eID checks of visitors: the attempts under way (hashes only) and a visit's verified identity (sealed)."
)


def _params(default: Any, **more: Any) -> dict[str, Any]:
    return {
        "default": default,
        "null": False,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
        **more,
    }


IDENTITY_ATTEMPT: list[tuple[str, Any, dict[str, Any]]] = [
    ("id", UUID, _params(UUID4(), primary_key=True)),
    ("org_id", UUID, _params(UUID4(), index=True)),
    ("visit_id", UUID, _params(UUID4(), index=True)),
    ("eid", Varchar, _params("", length=16)),
    ("state_hash", Varchar, _params("", unique=True, length=64)),
    ("nonce", Varchar, _params("", length=64)),
    ("code_verifier", Varchar, _params("", length=128)),
    ("created_at", Timestamptz, _params(TimestamptzNow())),
    ("expires_at", Timestamptz, _params(TimestamptzNow(), index=True)),
    ("used_at", Timestamptz, _params(None, null=True)),
    ("outcome", Varchar, _params("", length=12)),
]

VISIT_IDENTITY: list[tuple[str, Any, dict[str, Any]]] = [
    ("visit_id", UUID, _params(UUID4(), primary_key=True)),
    ("org_id", UUID, _params(UUID4(), index=True)),
    ("eid", Varchar, _params("", length=16)),
    ("national_id", EncryptedText, _params("")),
    ("verified_name", EncryptedText, _params("")),
    ("verified_at", Timestamptz, _params(TimestamptzNow())),
    ("expires_at", Timestamptz, _params(TimestamptzNow(), index=True)),
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)
    for class_name, tablename, columns in (
        ("IdentityAttempt", "identity_attempt", IDENTITY_ATTEMPT),
        ("VisitIdentity", "visit_identity", VISIT_IDENTITY),
    ):
        manager.add_table(class_name=class_name, tablename=tablename, schema=None, columns=None)
        for name, kind, params in columns:
            manager.add_column(
                table_class_name=class_name,
                tablename=tablename,
                column_name=name,
                db_column_name=name,
                column_class_name=kind.__name__,
                column_class=kind,
                params=params,
                schema=None,
            )
    return manager
