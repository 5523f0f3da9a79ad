from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-29T02:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = 'A network-test result\'s transport may be "direct" (a region without relays).'


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)

    async def transport_holds_direct() -> None:
        # SQLite does not enforce a VARCHAR's length (and cannot change it): PostgreSQL only.
        from konsil.platform.core.piccolo_conf import DB

        if DB.engine_type == "postgres":
            await DB.run_ddl("ALTER TABLE network_test_result ALTER COLUMN transport TYPE VARCHAR(6)")

    manager.add_raw(transport_holds_direct)
    return manager
