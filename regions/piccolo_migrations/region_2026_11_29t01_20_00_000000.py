from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

from konsil.platform.core.keys.tables import EncryptedText

ID = "2026-11-29T01:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Member invitations by e-mail and password resets by e-mail (one-time links, only their hashes stored)."


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


INVITATION: list[tuple[str, Any, dict[str, Any]]] = [
    ("id", UUID, _params(UUID4(), primary_key=True)),
    ("org_id", UUID, _params(UUID4(), index=True)),
    ("email", EncryptedText, _params(None, null=True)),
    ("email_index", Varchar, _params(None, null=True, index=True, length=64)),
    ("role", Varchar, _params("", length=16)),
    ("access_expires_at", Timestamptz, _params(None, null=True)),
    ("language", Varchar, _params("en", length=5)),
    ("token_hash", Varchar, _params("", unique=True, length=64)),
    ("created_by", UUID, _params(None, null=True)),
    ("created_at", Timestamptz, _params(TimestamptzNow())),
    ("expires_at", Timestamptz, _params(TimestamptzNow(), index=True)),
    ("mailed_at", Timestamptz, _params(None, null=True)),
    ("accepted_at", Timestamptz, _params(None, null=True)),
    ("member_id", UUID, _params(None, null=True)),
    ("revoked_at", Timestamptz, _params(None, null=True)),
]

PASSWORD_RESET: list[tuple[str, Any, dict[str, Any]]] = [
    ("id", UUID, _params(UUID4(), primary_key=True)),
    ("org_id", UUID, _params(UUID4(), index=True)),
    ("member_id", UUID, _params(UUID4(), index=True)),
    ("token_hash", Varchar, _params("", unique=True, length=64)),
    ("language", Varchar, _params("en", length=5)),
    ("created_at", Timestamptz, _params(TimestamptzNow())),
    ("expires_at", Timestamptz, _params(TimestamptzNow(), index=True)),
    ("used_at", Timestamptz, _params(None, null=True)),
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)
    for class_name, tablename, columns in (
        ("Invitation", "invitation", INVITATION),
        ("PasswordReset", "password_reset", PASSWORD_RESET),
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
