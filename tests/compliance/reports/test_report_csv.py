"""The CSV evidence workbook: one row per check of every observation, with the controls
it serves, in UTF-8 a spreadsheet reads, and no cell a spreadsheet would run."""

from __future__ import annotations

import csv
import io

from konsil.compliance.controls.catalog import COLLECTOR_RULES
from konsil.compliance.reports.csv_workbook import HEADER, csv_bytes
from tests.compliance.reports.samples import check, observation, report


def _rows(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM spreadsheets need for UTF-8
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def test_one_row_per_check_with_the_controls_it_serves() -> None:
    doc = report()
    rows = _rows(csv_bytes(doc))
    assert list(rows[0].keys()) == list(HEADER)
    assert len(rows) == sum(len(o.checks) for o in doc.observations) == sum(len(r) for r in COLLECTOR_RULES.values())
    retention = next(r for r in rows if r["Check id"] == "data_within_retention")
    assert retention["Controls"] == "5(1)(e)"
    assert retention["Result"] == "Fail"
    assert retention["Check"] == "Data kept no longer than its retention period"
    assert retention["Evidence source"] == "Retention and deletion"
    assert "3 visits are older" in retention["Reason"]
    assert retention["Method"] == "tested against live data"
    observation_row = doc.observation(next(o.id for o in doc.observations if o.collector == "retention"))
    assert retention["Evidence SHA-256"] == observation_row.evidence_sha256
    assert retention["Evidence file"] == f"evidence/{observation_row.id}.json"
    assert retention["Collected at (UTC)"] == "2025-04-02 06:30:00"
    assert '"rows_past_retention": 3' in retention["Figures"]


def test_text_a_spreadsheet_would_run_is_defused_and_letters_survive() -> None:
    hostile = check("purges_ran", "fail")
    hostile = hostile.__class__(
        name=hostile.name, result="fail", reason='=HYPERLINK("http://x") Bjørn æøå ß ü', figures={}
    )
    doc = report(observed=[observation("retention", [hostile, check("data_within_retention", "pass")])])
    rows = _rows(csv_bytes(doc))
    purge = next(r for r in rows if r["Check id"] == "purges_ran")
    assert purge["Reason"].startswith("'=HYPERLINK")
    assert "Bjørn æøå ß ü" in purge["Reason"]
