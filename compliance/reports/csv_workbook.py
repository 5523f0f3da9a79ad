"""The CSV evidence workbook: one row per check of every observation, for an auditor
to sample from (which control it serves, what was found, when and how, and the hash of
the evidence file in the ZIP that holds the detail).

Written row by row to the output, UTF-8 with a byte-order mark so spreadsheet programs
read æ, ø, å and ß right. Text that a spreadsheet would run as a formula (starting with
=, +, - or @) is prefixed with an apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import IO, Final

from konsil.compliance.reports.labels import METHOD_LABELS, STATUS_LABELS, check_label, collector_label
from konsil.compliance.reports.model import ReportDocument

MEDIA_TYPE: Final = "text/csv"

HEADER: Final = (
    "Controls",
    "Evidence source",
    "Check",
    "Check id",
    "Result",
    "Reason",
    "Figures",
    "Collected at (UTC)",
    "Method",
    "Observation id",
    "Evidence file",
    "Evidence SHA-256",
)


def evidence_path(observation_id: object) -> str:
    """Where an observation's evidence lies in the evidence ZIP."""
    return f"evidence/{observation_id}.json"


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def rows(doc: ReportDocument) -> Iterator[tuple[str, ...]]:
    yield HEADER
    served: dict[tuple[str, str], list[str]] = {}
    for finding in doc.findings:
        for ref in finding.checks:
            served.setdefault((ref.collector, ref.name), []).append(finding.control_id)
    for observation in doc.observations:
        collected = observation.collected_at.strftime("%Y-%m-%d %H:%M:%S")
        for check in observation.checks:
            figures = json.dumps(check.figures, ensure_ascii=False, sort_keys=True) if check.figures else ""
            yield (
                "; ".join(served.get((observation.collector, check.name), [])),
                collector_label(observation.collector),
                _cell(check_label(check.name)),
                check.name,
                STATUS_LABELS.get(check.result, check.result),
                _cell(check.reason),
                _cell(figures),
                collected,
                METHOD_LABELS.get(observation.method, observation.method),
                str(observation.id),
                evidence_path(observation.id),
                observation.evidence_sha256,
            )


def write_csv(doc: ReportDocument, out: IO[bytes]) -> None:
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=True)
    try:
        csv.writer(text).writerows(rows(doc))
        text.flush()
    finally:
        text.detach()


def csv_bytes(doc: ReportDocument) -> bytes:
    buffer = io.BytesIO()
    write_csv(doc, buffer)
    return buffer.getvalue()
