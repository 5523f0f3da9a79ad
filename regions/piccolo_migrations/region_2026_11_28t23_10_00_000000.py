from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-28T23:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = (
    "Residency receipts name the region key that signed them (key_id); receipts stored before keep '', "
    "signed with the retired key derived from the internal secret."
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)

    manager.add_column(
        table_class_name="CallRelayReceipt",
        tablename="call_relay_receipt",
        column_name="key_id",
        db_column_name="key_id",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 32,
            "default": "",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    return manager
