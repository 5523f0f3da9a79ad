"""The data map covers every personal-data column of a region database, names only
columns that exist, and prints as the record of processing activities (GDPR Art. 30)."""

from __future__ import annotations

import csv
import io
from importlib.resources import files

import pytest
from piccolo.table import Table

from konsil.compliance.reports.ropa import DataMapError, load_data_map, parse_data_map, ropa_bytes
from konsil.compliance.subprocessors.register import load_register
from konsil.platform.core.keys.tables import EncryptedText
from konsil.regions.tables import REGION_TABLES
from tests.compliance.reports.samples import report


def _columns(tables: list[type[Table]]) -> dict[tuple[str, str], object]:
    return {(t._meta.tablename, c._meta.name): c for t in tables for c in t._meta.columns}


def test_every_encrypted_column_has_an_entry() -> None:
    mapped = {(f.table, f.column) for f in load_data_map().fields}
    sealed = {key for key, column in _columns(REGION_TABLES).items() if isinstance(column, EncryptedText)}
    missing = sorted(sealed - mapped)
    assert not missing, f"personal-data columns with no data-map entry (compliance/reports/data_map.toml): {missing}"


def test_every_entry_names_an_existing_column_and_says_if_it_is_sealed() -> None:
    columns = _columns(REGION_TABLES)
    for field in load_data_map().fields:
        key = (field.table, field.column)
        assert key in columns, f"data map names {field.table}.{field.column}, which no region table has"
        assert field.sealed == isinstance(columns[key], EncryptedText), f"{field.table}.{field.column}: sealed"


def test_recipients_are_subprocessors_of_the_register() -> None:
    names = {p.name for p in load_register().subprocessors}
    for key, activity in load_data_map().activities.items():
        unknown = set(activity.recipients) - names
        assert not unknown, f"activities.{key}.recipients: {unknown} not in the subprocessor register"


def test_a_new_encrypted_column_without_an_entry_fails_the_check() -> None:
    class Referral(Table, tablename="referral"):
        note = EncryptedText()

    mapped = {(f.table, f.column) for f in load_data_map().fields}
    sealed = {key for key, column in _columns([*REGION_TABLES, Referral]).items() if isinstance(column, EncryptedText)}
    assert sealed - mapped == {("referral", "note")}


def test_the_record_lists_each_field_with_its_activity_and_transfers() -> None:
    doc = report()
    data = ropa_bytes(doc)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert len(rows) == len(load_data_map().fields)
    visit_name = next(r for r in rows if (r["Dataset"], r["Field"]) == ("visit", "name"))
    assert visit_name["Article 6 lawful basis for processing personal data"].startswith("Consent, Art. 6(1)(a)")
    assert visit_name["Categories of Personal Data (Fides Taxonomy)"] == "user.name"
    assert "AES-256-GCM" in visit_name["General Description of Security Measures"]
    assert "Bjørgvin" in visit_name["Fides System"]
    email = next(r for r in rows if (r["Dataset"], r["Field"]) == ("member", "email"))
    assert "Intercom" in email["Categories of Recipients"]
    assert email["Third Country Transfers"] == "Intercom: United States"
    assert email["Safeguards for Exceptional Transfers of Personal Data"] == "Intercom: standard contractual clauses"
    payer = next(r for r in rows if (r["Dataset"], r["Field"]) == ("payment_record", "payer_name"))
    assert "Stripe (EU)" in payer["Categories of Recipients"] and "Stripe (US)" not in payer["Categories of Recipients"]
    assert payer["Retention Schedule"].startswith("5 years")


def test_a_broken_data_map_is_named() -> None:
    text = load_data_map_text()
    with pytest.raises(DataMapError, match=r"fields\[0\] \(visit\.name\)\.category"):
        parse_data_map(text.replace('category = "user.name"', 'category = "user.nickname"', 1))
    with pytest.raises(DataMapError, match=r"activity: no activity 'calls'"):
        parse_data_map(text.replace('activity = "visits"', 'activity = "calls"', 1))


def load_data_map_text() -> str:
    return files("konsil.compliance.reports").joinpath("data_map.toml").read_text(encoding="utf-8")
