from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Integer, Timestamptz, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = (
    "Check-in steps: a room's card fee and national eID check; when a visit's identity was checked "
    "and its fee paid (a visit is 'checking_in' until its steps are done)."
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


COLUMNS: list[tuple[str, str, str, Any, dict[str, Any]]] = [
    ("Room", "room", "fee_amount", Integer, _params(None, null=True)),
    ("Room", "room", "fee_currency", Varchar, _params(None, null=True, length=3)),
    ("Room", "room", "fee_description", Varchar, _params("", length=120)),
    ("Room", "room", "identity_check", Varchar, _params("", length=16)),
    ("Visit", "visit", "identity_checked_at", Timestamptz, _params(None, null=True)),
    ("Visit", "visit", "paid_at", Timestamptz, _params(None, null=True)),
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)
    for table_class, tablename, name, kind, params in COLUMNS:
        manager.add_column(
            table_class_name=table_class,
            tablename=tablename,
            column_name=name,
            db_column_name=name,
            column_class_name=kind.__name__,
            column_class=kind,
            params=params,
            schema=None,
        )
    return manager
