from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Bytea, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T01:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = (
    "The tenant portal: an organisation's default language and country (its legal notices), "
    "a room's welcome text, the organisation's logo."
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


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)
    for name, length, default in (("locale", 5, "en"), ("country", 2, "")):
        manager.add_column(
            table_class_name="Organisation",
            tablename="organisation",
            column_name=name,
            db_column_name=name,
            column_class_name="Varchar",
            column_class=Varchar,
            params=_params(default, length=length),
            schema=None,
        )
    manager.add_column(
        table_class_name="Room",
        tablename="room",
        column_name="welcome_text",
        db_column_name="welcome_text",
        column_class_name="Text",
        column_class=Text,
        params=_params(""),
        schema=None,
    )
    manager.add_table(class_name="OrganisationLogo", tablename="organisation_logo", schema=None, columns=None)
    logo_columns: list[tuple[str, Any, dict[str, Any]]] = [
        ("org_id", UUID, _params(UUID4(), primary_key=True)),
        ("content_type", Varchar, _params("", length=40)),
        ("image", Bytea, _params(b"")),
        ("sha256", Varchar, _params("", length=64)),
        ("updated_at", Timestamptz, _params(TimestamptzNow())),
    ]
    for name, kind, params in logo_columns:
        manager.add_column(
            table_class_name="OrganisationLogo",
            tablename="organisation_logo",
            column_name=name,
            db_column_name=name,
            column_class_name=kind.__name__,
            column_class=kind,
            params=params,
            schema=None,
        )
    return manager
