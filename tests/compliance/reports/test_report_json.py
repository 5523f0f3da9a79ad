"""The JSON report: the shipped schema is the generated one, a rendered report validates
against it, and the bytes are stable (decode and encode again gives the same bytes)."""

from __future__ import annotations

import json

import jsonschema
import msgspec
import pytest

from konsil.compliance.reports.json_report import (
    decode_report,
    generated_schema,
    json_bytes,
    published_schema,
    report_sha256,
    schema_text,
)
from tests.compliance.reports.samples import ORG_NAME, report


def test_the_shipped_schema_is_the_generated_one() -> None:
    assert published_schema() == generated_schema(), (
        "report.schema.json is out of date: python -m konsil.compliance.reports.json_report "
        "> compliance/reports/report.schema.json"
    )
    assert json.loads(schema_text()) == published_schema()


@pytest.mark.parametrize("framework_id", ["gdpr", "hipaa", "nen7510", "normen"])
def test_a_rendered_report_validates_against_the_published_schema(framework_id: str) -> None:
    document = json.loads(json_bytes(report(framework_id)))
    validator = jsonschema.Draft202012Validator(published_schema())
    errors = list(validator.iter_errors(document))
    assert errors == []
    assert document["schema_version"] == 1
    assert document["org_name"] == ORG_NAME
    assert document["findings"][0]["status"] in {"pass", "fail", "attested", "not_attested", "not_applicable"}


def test_a_report_breaking_the_schema_is_rejected() -> None:
    document = json.loads(json_bytes(report()))
    document["findings"][0]["status"] = "probably fine"
    validator = jsonschema.Draft202012Validator(published_schema())
    assert any("probably fine" in e.message for e in validator.iter_errors(document))
    with pytest.raises(msgspec.ValidationError, match=r"findings\[0\]\.status"):
        decode_report(json.dumps(document).encode())


def test_the_bytes_and_their_hash_are_stable() -> None:
    doc = report()
    data = json_bytes(doc)
    assert json_bytes(decode_report(data)) == data
    assert report_sha256(decode_report(data)) == report_sha256(doc)
    assert "Bjørgvin Ærøy".encode() in data
