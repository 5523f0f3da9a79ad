"""The PDF report, opened as a reader would: its text (pypdf) names every control with
its result and reason, the checkpoint, the subprocessors and how to check it, in plain
words with æ, ø, å, ß and ü intact; its fonts are embedded; its pages render (pypdfium2).

The pages of the GDPR sample were rendered to PNG and looked at by hand when this was
written; ``KONSIL_REPORT_PNG_DIR=/some/dir`` keeps the PNGs of a run to look again."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import pypdfium2
import pytest
from pypdf import PdfReader

from konsil.compliance.reports.json_report import report_sha256
from konsil.compliance.reports.labels import STATUS_LABELS
from konsil.compliance.reports.model import ReportDocument
from konsil.compliance.reports.pdf_report import pdf_bytes
from tests.compliance.reports.samples import KEY_SET_URL, ORG_NAME, checkpoint, report

# Internal names that must never reach the page.
INTERNAL = re.compile(
    r"not_applicable|not_attested|data_within_retention|access_within_deadline|rows_past_retention|"
    r"retention_days|evidence_sha256|eu_eea|call_metadata|none_needed|\bscc\b"
)


def _text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def gdpr() -> tuple[ReportDocument, bytes]:
    doc = report()
    return doc, pdf_bytes(doc)


def test_the_text_names_every_control_result_and_reason(gdpr: tuple[ReportDocument, bytes]) -> None:
    doc, data = gdpr
    text = _flat(_text(data))
    for finding in doc.findings:
        assert f"GDPR {finding.control_id}: {finding.title}" in text
        assert _flat(finding.reason)[:60] in text, finding.control_id
    assert "3 visits are older than the organisation's retention of 30 days plus 24 hours" in text
    assert "Expired on" in text  # an attestation past its time
    for label in ("Pass", "Fail", "Attested", "Not attested", "Not applicable"):
        assert label in text
    assert f"{STATUS_LABELS['fail']} 2" in text  # summary: two controls fail
    assert "Retention setting (days): 30" in text  # figures in words
    assert not INTERNAL.search(text), INTERNAL.search(text)


def test_cover_checkpoint_subprocessors_and_signature_block(gdpr: tuple[ReportDocument, bytes]) -> None:
    doc, data = gdpr
    text = _flat(_text(data))
    assert ORG_NAME in text  # æ, ø, ß and ü survive extraction
    assert "Bjørgvin Ærøy & Søn (Praxis Müller-Groß)" in text
    assert "1 January 2025 to 31 March 2025" in text
    assert "2 April 2025, 06:30 UTC" in text
    assert "eu (EU/EEA law (GDPR))" in text
    point = checkpoint()
    assert "Entries up to number 1 204 551" in text
    assert point.head_hash in text.replace(" ", "")
    assert f"Signed with key {point.kid}" in text
    for processor in doc.subprocessors:
        assert processor.name in text
    assert "standard contractual clauses" in text
    assert report_sha256(doc) in text.replace(" ", "")
    assert f"key {doc.signing.kid}" in text
    assert KEY_SET_URL in text.replace(" ", "")
    assert "python -m konsil.compliance.reports.verify_zip REPORT.zip --keys KEYS.json" in text


def test_fonts_are_embedded(gdpr: tuple[ReportDocument, bytes]) -> None:
    _, data = gdpr
    reader = PdfReader(io.BytesIO(data))
    seen = 0
    for page in reader.pages:
        resources: Any = page["/Resources"]
        fonts: Any = resources.get_object().get("/Font", {})
        for ref in fonts.values():
            font = ref.get_object()
            descriptor = font.get("/FontDescriptor")
            if descriptor is None:  # a Type0 font keeps it on its descendant
                descriptor = font["/DescendantFonts"][0].get_object()["/FontDescriptor"]
            assert "/FontFile2" in descriptor.get_object(), font.get("/BaseFont")
            seen += 1
    assert seen


@pytest.mark.parametrize("framework_id", ["gdpr", "hipaa", "nen7510", "normen"])
def test_every_framework_renders_and_its_pages_draw(framework_id: str, tmp_path: Path) -> None:
    doc = report(framework_id, region="us" if framework_id == "hipaa" else "eu")
    data = pdf_bytes(doc)
    text = _flat(_text(data))
    assert f"{doc.framework.name} compliance report" in text
    if framework_id == "hipaa":
        assert "business associate agreement" in text
    keep = os.environ.get("KONSIL_REPORT_PNG_DIR")
    folder = Path(keep) if keep else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    pdf = pypdfium2.PdfDocument(data)
    try:
        assert len(pdf) >= 4
        for index in range(len(pdf)):
            image = pdf[index].render(scale=1).to_pil()
            image.save(folder / f"{framework_id}-{index + 1}.png")
            # Each page has ink on it: not a blank page, not a page of one colour.
            extrema = image.convert("L").getextrema()
            assert extrema[0] < 100 and extrema[1] > 200
    finally:
        pdf.close()
