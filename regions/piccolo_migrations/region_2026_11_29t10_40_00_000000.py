from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T10:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Consent records (P13, P15): each decision about a purpose, and the e-mails sent on a consent."


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


CONSENT_EVENT: list[tuple[str, Any, dict[str, Any]]] = [
    ("id", UUID, _params(UUID4(), primary_key=True)),
    ("org_id", UUID, _params(UUID4(), index=True)),
    ("subject_kind", Varchar, _params("", length=8)),
    ("subject_id", UUID, _params(UUID4(), index=True)),
    ("purpose", Varchar, _params("", length=24)),
    ("action", Varchar, _params("", length=12)),
    ("wording_version", Varchar, _params("", length=16)),
    ("language", Varchar, _params("en", length=5)),
    ("source", Varchar, _params("", length=24)),
    ("at", Timestamptz, _params(TimestamptzNow(), index=True)),
    ("expires_at", Timestamptz, _params(None, null=True)),
    ("keep_until", Timestamptz, _params(None, null=True, index=True)),
]

CONSENT_MAIL: list[tuple[str, Any, dict[str, Any]]] = [
    ("id", UUID, _params(UUID4(), primary_key=True)),
    ("org_id", UUID, _params(UUID4(), index=True)),
    ("member_id", UUID, _params(UUID4(), index=True)),
    ("purpose", Varchar, _params("", length=24)),
    ("kind", Varchar, _params("", length=24)),
    ("consent_event_id", UUID, _params(UUID4())),
    ("sent_at", Timestamptz, _params(TimestamptzNow(), index=True)),
    ("keep_until", Timestamptz, _params(TimestamptzNow(), index=True)),
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)
    for class_name, tablename, columns in (
        ("ConsentEvent", "consent_event", CONSENT_EVENT),
        ("ConsentMail", "consent_mail", CONSENT_MAIL),
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
