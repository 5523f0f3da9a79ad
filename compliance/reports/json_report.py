"""The report as a versioned JSON document, and its published JSON Schema.

The bytes are msgspec's encoding of ``ReportDocument``: fields in declaration order,
UTF-8, no spaces. They are deterministic for one document (decoding and encoding again
gives the same bytes), so their SHA-256 (``report_sha256``) names the report: the PDF
prints it, the evidence ZIP's signed manifest lists it.

The schema shipped as ``report.schema.json`` is ``msgspec.json.schema(ReportDocument)``;
a test keeps the file equal to the generated one. Regenerate it with
``python -m konsil.compliance.reports.json_report > compliance/reports/report.schema.json``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib.resources import files
from typing import IO, Any, Final

import msgspec

from konsil.compliance.reports.model import ReportDocument

SCHEMA_FILE: Final = "report.schema.json"
MEDIA_TYPE: Final = "application/json"

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ReportDocument)


def json_bytes(doc: ReportDocument) -> bytes:
    return _encoder.encode(doc)


def write_json(doc: ReportDocument, out: IO[bytes]) -> None:
    out.write(_encoder.encode(doc))


def report_sha256(doc: ReportDocument) -> str:
    """The report's SHA-256: of its JSON bytes, as in the evidence ZIP (``report.json``)."""
    return hashlib.sha256(json_bytes(doc)).hexdigest()


def decode_report(data: bytes) -> ReportDocument:
    """A report read back; ``msgspec.ValidationError`` names the path of a bad field."""
    return _decoder.decode(data)


def generated_schema() -> dict[str, Any]:
    schema = msgspec.json.schema(ReportDocument)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Konsil compliance report",
        **schema,
    }


def schema_text() -> str:
    """The schema file's exact text (sorted keys, two-space indent, final newline)."""
    return json.dumps(generated_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def published_schema() -> dict[str, Any]:
    """The schema as shipped with the package."""
    text = files("konsil.compliance.reports").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


if __name__ == "__main__":
    sys.stdout.write(schema_text())
