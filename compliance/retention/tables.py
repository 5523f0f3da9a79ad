"""Region tables of retention: purge-run evidence."""

from piccolo.table import Table

RETENTION_TABLES: list[type[Table]] = []
