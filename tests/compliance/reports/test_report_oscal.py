"""The OSCAL assessment-results export parses with compliance-trestle, names each
control with a valid token, and carries the evidence hashes and the findings' states."""

from __future__ import annotations

import json

import pytest
from trestle.oscal.assessment_results import AssessmentResults

from konsil.compliance.reports.oscal import control_token, oscal_bytes
from tests.compliance.reports.samples import framework, report


@pytest.mark.parametrize("framework_id", ["gdpr", "hipaa", "nen7510", "normen"])
def test_the_export_parses_with_trestle(framework_id: str) -> None:
    doc = report(framework_id, region="us" if framework_id == "hipaa" else "eu")
    data = json.loads(oscal_bytes(doc))
    parsed = AssessmentResults.model_validate(data["assessment-results"])
    assert parsed.import_ap.href.startswith("#")
    plan = parsed.import_ap.href[1:]
    assert parsed.back_matter is not None and parsed.back_matter.resources is not None
    assert plan in {str(r.uuid) for r in parsed.back_matter.resources}
    [result] = parsed.results
    assert result.findings is not None and len(result.findings) == len(doc.findings)
    tokens = [control_token(framework_id, c.id) for c in framework(framework_id).controls]
    assert len(set(tokens)) == len(tokens), "control tokens must stay unique"


def test_findings_and_evidence_hashes() -> None:
    doc = report()
    data = json.loads(oscal_bytes(doc))["assessment-results"]
    [result] = data["results"]
    states = {f["props"][0]["value"]: f["target"]["status"] for f in result["findings"]}
    assert states["5(1)(e)"]["state"] == "not-satisfied"
    assert states["5(1)(e)"]["reason"] == "fail"
    assert "3 visits are older" in states["5(1)(e)"]["remarks"]
    assert states["16"] == {"state": "satisfied", "reason": "pass", "remarks": states["16"]["remarks"]}
    assert next(f for f in result["findings"] if f["props"][0]["value"] == "5(1)(e)")["target"]["target-id"] == (
        "gdpr-5.1.e"
    )
    hashes = {
        h["value"]
        for r in data["back-matter"]["resources"]
        for link in r.get("rlinks", [])
        for h in link.get("hashes", [])
    }
    assert hashes == {o.evidence_sha256 for o in doc.observations}
    methods = {m for o in result["observations"] for m in o["methods"]}
    assert methods <= {"TEST", "EXAMINE"}
    assert oscal_bytes(doc) == oscal_bytes(doc)  # the same report exports the same document
