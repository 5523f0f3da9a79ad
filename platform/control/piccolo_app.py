from pathlib import Path

from piccolo.conf.apps import AppConfig

from konsil.platform.control.tables import CONTROL_TABLES

APP_CONFIG = AppConfig(
    app_name="control",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=list(CONTROL_TABLES),
)
