from pathlib import Path

from piccolo.conf.apps import AppConfig

from konsil.regions.tables import REGION_TABLES

APP_CONFIG = AppConfig(
    app_name="region",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=list(REGION_TABLES),
)
