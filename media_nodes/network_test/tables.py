"""Region tables of the network test: results kept as support metadata (P10)."""

from piccolo.table import Table

NETWORK_TEST_TABLES: list[type[Table]] = []
