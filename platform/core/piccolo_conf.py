"""Piccolo configuration used only while migrating one database.

``konsil migrate`` (platform/cli/migrations.py) runs one short child process per
database with ``PICCOLO_CONF`` pointing here and none of its own ``KONSIL_*`` or
``PICCOLO_*`` variables; the target comes from ``PICCOLO_TARGET_DSN`` and
``PICCOLO_TARGET_APP`` (control | region). Without them (a developer running piccolo
by hand to write a migration) it uses a scratch SQLite file and both apps.
"""

import os

from piccolo.conf.apps import AppRegistry

from konsil.platform.core.database import engine_for

DB = engine_for(os.environ.get("PICCOLO_TARGET_DSN", "sqlite:///.konsil/piccolo-dev.db"))

_APPS = {
    "control": "konsil.platform.control.piccolo_app",
    "region": "konsil.regions.piccolo_app",
}
_target = os.environ.get("PICCOLO_TARGET_APP")
APP_REGISTRY = AppRegistry(apps=[_APPS[_target]] if _target else list(_APPS.values()))
