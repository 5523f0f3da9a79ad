from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T01:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "A new owner's one-time sign-in link after signup (its hash only): welcome_token."


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


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)
    manager.add_table(class_name="WelcomeToken", tablename="welcome_token", schema=None, columns=None)
    columns: list[tuple[str, Any, dict[str, Any]]] = [
        ("token_hash", Varchar, _params("", length=64, primary_key=True)),
        ("org_id", UUID, _params(UUID4(), index=True)),
        ("member_id", UUID, _params(UUID4())),
        ("expires_at", Timestamptz, _params(TimestamptzNow(), index=True)),
    ]
    for name, kind, params in columns:
        manager.add_column(
            table_class_name="WelcomeToken",
            tablename="welcome_token",
            column_name=name,
            db_column_name=name,
            column_class_name=kind.__name__,
            column_class=kind,
            params=params,
            schema=None,
        )
    return manager
