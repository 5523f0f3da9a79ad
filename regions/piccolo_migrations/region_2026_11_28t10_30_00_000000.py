from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-28T10:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "room slugs are unique per organisation"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)

    async def room_slug_unique_per_organisation() -> None:
        from konsil.platform.core.piccolo_conf import DB

        await DB.run_ddl("CREATE UNIQUE INDEX room_org_slug ON room (org_id, slug)")

    manager.add_raw(room_slug_unique_per_organisation)
    return manager
