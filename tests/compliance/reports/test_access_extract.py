"""A person's "who accessed my data" extract: each access in words (when, who and in
what role, on whose behalf, what, why, whether it went through), refused attempts
included, Norwegian letters intact, a long log over several pages."""

from __future__ import annotations

import io
import re

import pypdfium2
from pypdf import PdfReader

from konsil.compliance.reports.access_extract import access_extract_pdf
from tests.compliance.reports.samples import ADMIN, EXPERT, NOW, ORG_NAME, access_entries


def _text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return re.sub(r"\s+", " ", "\n".join(page.extract_text() or "" for page in reader.pages))


def test_each_access_in_words() -> None:
    data = access_extract_pdf(
        access_entries(),
        org_name=ORG_NAME,
        region="eu",
        subject_label="Your visit to the room “Dr. Åsa Sørensen” on 3 January 2025",
        generated_at=NOW,
        request_ref="request 7f3e2c10",
        actor_names={EXPERT: "Dr. Åsa Sørensen"},
    )
    text = _text(data)
    assert "Who accessed your data" in text
    assert ORG_NAME in text
    assert "6 accesses by 5 people or systems, on 3 January 2025; 1 refused." in text
    assert "Dr. Åsa Sørensen, expert" in text
    assert "Administrator" in text and ADMIN.split(":")[1][:8] in text
    assert "Viewed visit details" in text
    assert "Refused: role" in text and "refused" in text
    assert "Connected system (API token)" in text and "the organisation" in text
    assert "Konsil itself (automatic)" in text and "Deleted visit details" in text
    assert "Retention: visits older than 30 days" in text
    assert "Datatilsynet" in text
    # No internal names or codes of the log's columns.
    assert not re.search(r"actor_role|on_behalf_of|subject_ref|\bdenied\b|\bsuccess\b", text)
    pdf = pypdfium2.PdfDocument(data)
    try:
        assert len(pdf) == 1
        extrema = pdf[0].render(scale=1).to_pil().convert("L").getextrema()
        assert extrema[0] < 100 and extrema[1] > 200
    finally:
        pdf.close()


def test_no_access_says_so() -> None:
    text = _text(access_extract_pdf([], org_name=ORG_NAME, region="eu", subject_label="Your visits", generated_at=NOW))
    assert "No access to your data is recorded." in text


def test_a_long_log_runs_over_pages() -> None:
    entries = access_entries(count=600)
    data = access_extract_pdf(entries, org_name=ORG_NAME, region="eu", subject_label="Your visits", generated_at=NOW)
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) > 10
    assert "600 accesses" in _text(data)
    assert f"Page {len(reader.pages)} of {len(reader.pages)}" in (reader.pages[-1].extract_text() or "")
