"""Architecture rules as tests: personal data is declared encrypted, and the
control plane never imports region data models."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from piccolo.columns import Text, Varchar
from piccolo.table import Table

from konsil.regions.tables import REGION_TABLES
from konsil.tenants.tables import PERSONAL_COLUMNS, EncryptedText

ROOT = Path(__file__).resolve().parents[2]

# Column names that hold personal data wherever they appear.
PERSONAL_NAME = re.compile(r"(^|_)(name|first_name|last_name|email|phone|mobile|address|birth|national_id|ssn|note)s?$")
# Columns whose names look personal but are not: each with the reason.
NOT_PERSONAL = {
    ("organisation", "name"): "the organisation's business name, shown on its public join pages",
    ("access_log_entry", "source_address"): "the acting user's network access point, which NEN 7513 requires "
    "in the log; it outlives the data and so cannot be shredded with the tenant key",
}
# Keyed hashes next to encrypted columns, not the values themselves.
BLIND_INDEX = re.compile(r"_(lookup|index)$")


def unencrypted_personal_columns(tables: list[type[Table]]) -> list[str]:
    found = []
    for table in tables:
        for column in table._meta.columns:
            key = (table._meta.tablename, column._meta.name)
            if key in NOT_PERSONAL or BLIND_INDEX.search(column._meta.name):
                continue
            if PERSONAL_NAME.search(column._meta.name) and not isinstance(column, EncryptedText):
                found.append(f"{key[0]}.{key[1]}")
    return found


def test_every_personal_data_column_is_declared_encrypted() -> None:
    assert unencrypted_personal_columns(REGION_TABLES) == []
    assert {("member", "name"), ("member", "email"), ("member", "phone")} <= PERSONAL_COLUMNS


def test_the_rule_catches_a_personal_column_declared_in_plain_text() -> None:
    class Visitor(Table, tablename="visitor_example"):
        name = Text()
        phone = Varchar()
        email = EncryptedText()

    assert unencrypted_personal_columns([Visitor]) == ["visitor_example.name", "visitor_example.phone"]


def test_the_control_plane_imports_no_region_data_model() -> None:
    forbidden = ("konsil.tenants.tables", "konsil.regions.tables", "konsil.compliance.access_log.tables")
    offenders = []
    for path in (ROOT / "platform").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.startswith(forbidden) for n in names) and "control" in path.parts:
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
