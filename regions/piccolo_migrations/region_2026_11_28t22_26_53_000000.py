from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-28T22:26:53:000000"
VERSION = "1.38.0"
DESCRIPTION = "Auditor grants made before they had an end: they end 90 days after this migration."


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="region", description=DESCRIPTION)

    async def open_ended_auditor_grants_end() -> None:
        # Auditors let in before grants had an end keep their access for 90 days from
        # this migration, then it ends like any other grant (an auditor without an end
        # date is refused: tenants/members.py access_ended). Its own migration: piccolo
        # runs a migration's raw steps before its new columns.
        from konsil.platform.core.piccolo_conf import DB

        ends = "now() + interval '90 days'" if DB.engine_type == "postgres" else "datetime('now', '+90 days')"
        await DB.run_ddl(
            f"UPDATE member SET access_expires_at = {ends}, access_granted_at = created_at "  # noqa: S608 - fixed SQL
            "WHERE role = 'auditor' AND access_expires_at IS NULL"
        )

    manager.add_raw(open_ended_auditor_grants_end)
    return manager
