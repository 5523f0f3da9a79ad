from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Boolean, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T10:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = (
    "SMS arrival alerts (a member's setting, one send record per visit and member) and client "
    "invitations sent from the dashboard (a keyed hash of the address only)."
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


SMS_ALERT: list[tuple[str, Any, dict[str, Any]]] = [
    ("id", UUID, _params(UUID4(), primary_key=True)),
    ("org_id", UUID, _params(UUID4(), index=True)),
    ("member_id", UUID, _params(UUID4(), index=True)),
    ("room_id", UUID, _params(UUID4())),
    ("visit_id", UUID, _params(UUID4(), index=True)),
    ("status", Varchar, _params("queued", length=24)),
    ("attempts", Integer, _params(0)),
    ("reason", Varchar, _params("", length=200)),
    ("provider", Varchar, _params("", length=16)),
    ("provider_message_id", Varchar, _params("", length=100)),
    ("created_at", Timestamptz, _params(TimestamptzNow(), index=True)),
    ("next_attempt_at", Timestamptz, _params(TimestamptzNow())),
    ("claimed_until", Timestamptz, _params(None, null=True)),
    ("sent_at", Timestamptz, _params(None, null=True)),
    ("expires_at", Timestamptz, _params(TimestamptzNow(), index=True)),
]

CLIENT_INVITATION: list[tuple[str, Any, dict[str, Any]]] = [
    ("id", UUID, _params(UUID4(), primary_key=True)),
    ("org_id", UUID, _params(UUID4(), index=True)),
    ("room_id", UUID, _params(UUID4(), index=True)),
    ("member_id", UUID, _params(None, null=True, index=True)),
    ("channel", Varchar, _params("", length=8)),
    ("recipient_hash", Varchar, _params("", length=64, index=True)),
    ("language", Varchar, _params("en", length=5)),
    ("status", Varchar, _params("sending", length=12)),
    ("provider", Varchar, _params("", length=16)),
    ("provider_message_id", Varchar, _params("", length=100)),
    ("created_at", Timestamptz, _params(TimestamptzNow(), index=True)),
    ("sent_at", Timestamptz, _params(None, null=True)),
    ("expires_at", Timestamptz, _params(TimestamptzNow(), index=True)),
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)
    manager.add_column(
        table_class_name="Member",
        tablename="member",
        column_name="sms_alerts",
        db_column_name="sms_alerts",
        column_class_name="Boolean",
        column_class=Boolean,
        params=_params(False),
        schema=None,
    )
    for class_name, tablename, columns in (
        ("SmsAlert", "sms_alert", SMS_ALERT),
        ("ClientInvitation", "client_invitation", CLIENT_INVITATION),
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
