"""Region tables of data-subject requests."""

from piccolo.table import Table

DSR_TABLES: list[type[Table]] = []
