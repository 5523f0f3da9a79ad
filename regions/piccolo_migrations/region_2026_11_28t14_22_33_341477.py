from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-28T14:22:33:341477"
VERSION = "1.38.0"
DESCRIPTION = "Access-log head: the last entry removed by retention (6 years) and its hash; chain-order index."


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)

    manager.add_column(
        table_class_name="AccessLogHead",
        tablename="access_log_head",
        column_name="pruned_hash",
        db_column_name="pruned_hash",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 64,
            "default": "0000000000000000000000000000000000000000000000000000000000000000",
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

    manager.add_column(
        table_class_name="AccessLogHead",
        tablename="access_log_head",
        column_name="pruned_seq",
        db_column_name="pruned_seq",
        column_class_name="BigInt",
        column_class=BigInt,
        params={
            "default": 0,
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

    async def access_log_by_org_and_seq() -> None:
        # Chain order per organisation: verification, paging and the retention purge's
        # "oldest entry still kept" read walk it without sorting the organisation's log.
        from konsil.platform.core.piccolo_conf import DB

        await DB.run_ddl("CREATE INDEX IF NOT EXISTS access_log_entry_org_seq ON access_log_entry (org_id, seq)")

    manager.add_raw(access_log_by_org_and_seq)
    return manager
