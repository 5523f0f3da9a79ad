from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

from konsil.platform.core.keys.tables import EncryptedText

ID = "2026-11-29T10:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = (
    "Card payments at check-in: each attempt to pay a visit's fee (a Stripe PaymentIntent), each "
    "Stripe event received (processed once), and a payment record's refund."
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


PAYMENT_ATTEMPT: list[tuple[str, Any, dict[str, Any]]] = [
    ("id", UUID, _params(UUID4(), primary_key=True)),
    ("org_id", UUID, _params(UUID4(), index=True)),
    ("visit_id", UUID, _params(UUID4(), index=True)),
    ("number", Integer, _params(1)),
    ("intent_id", Varchar, _params("", unique=True, length=100)),
    ("status", Varchar, _params("open", length=16)),
    ("amount_minor", Integer, _params(0)),
    ("currency", Varchar, _params("", length=3)),
    ("card_brand", Varchar, _params("", length=20)),
    ("card_last4", Varchar, _params("", length=4)),
    ("payer_email", EncryptedText, _params(None, null=True)),
    ("decline_reason", Varchar, _params("", length=200)),
    ("created_at", Timestamptz, _params(TimestamptzNow())),
    ("updated_at", Timestamptz, _params(TimestamptzNow())),
    ("expires_at", Timestamptz, _params(TimestamptzNow(), index=True)),
]

PAYMENT_EVENT: list[tuple[str, Any, dict[str, Any]]] = [
    ("id", UUID, _params(UUID4(), primary_key=True)),
    ("event_id", Varchar, _params("", unique=True, length=255)),
    ("type", Varchar, _params("", length=64)),
    ("intent_id", Varchar, _params(None, null=True, length=100)),
    ("status", Varchar, _params("received", length=12)),
    ("attempts", Integer, _params(0)),
    ("received_at", Timestamptz, _params(TimestamptzNow())),
    ("done_at", Timestamptz, _params(None, null=True)),
]

PAYMENT_RECORD: list[tuple[str, Any, dict[str, Any]]] = [
    ("refunded_minor", Integer, _params(0)),
    ("refunded_at", Timestamptz, _params(None, null=True)),
]


def _columns(manager: MigrationManager, class_name: str, tablename: str, columns: list[Any]) -> None:
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


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)
    for class_name, tablename, columns in (
        ("PaymentAttempt", "payment_attempt", PAYMENT_ATTEMPT),
        ("PaymentEvent", "payment_event", PAYMENT_EVENT),
    ):
        manager.add_table(class_name=class_name, tablename=tablename, schema=None, columns=None)
        _columns(manager, class_name, tablename, columns)
    _columns(manager, "PaymentRecord", "payment_record", PAYMENT_RECORD)
    return manager
