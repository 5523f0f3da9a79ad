"""The report as an OSCAL assessment-results document (JSON, OSCAL 1.2): a secondary,
flagged export for tools that read OSCAL (COMPLIANCE.md §3, item 5).

Shape: one result for the period; one observation per collector observation (methods,
collected time, relevant evidence pointing at a back-matter resource that carries the
evidence file's SHA-256) and one per attestation; one finding per control, its target
``satisfied`` or ``not-satisfied`` with reason pass, fail or other, related to the
observations it rests on. OSCAL requires ``import-ap``, a link to the assessment plan;
Konsil has no separate plan, so it points at a stub plan described in back-matter
(the catalog's controls, assessed by Konsil's collectors).

OSCAL control ids are tokens ("gdpr-5.1.e" for GDPR 5(1)(e)): ``control_token`` makes
them; each finding keeps the framework's own id as a property ("label").

UUIDs are derived from the report id (uuid5), so one report always exports the same.
"""

from __future__ import annotations

import io
import re
import uuid
from datetime import datetime
from typing import IO, Any, Final

import msgspec

from konsil.compliance.evidence.model import Observation
from konsil.compliance.reports.csv_workbook import evidence_path
from konsil.compliance.reports.labels import STATUS_LABELS, check_label, collector_label
from konsil.compliance.reports.model import Finding, ReportDocument

MEDIA_TYPE: Final = "application/json"
OSCAL_VERSION: Final = "1.2.1"
NS: Final = "https://konsil.eu/ns/oscal"

_STATE: Final = {
    "pass": ("satisfied", "pass"),
    "attested": ("satisfied", "pass"),
    "not_applicable": ("satisfied", "other"),
    "fail": ("not-satisfied", "fail"),
    "not_attested": ("not-satisfied", "fail"),
}


def control_token(framework_id: str, control_id: str) -> str:
    """An OSCAL token for a framework's control id: letters, digits, '.', '-', '_'."""
    body = re.sub(r"[^A-Za-z0-9]+", ".", control_id).strip(".")
    return f"{framework_id}-{body}" if body else framework_id


def _time(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _uuid(doc: ReportDocument, *parts: str) -> str:
    return str(uuid.uuid5(doc.id, "/".join(parts)))


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": value}


def _observation(doc: ReportDocument, observation: Observation, resource: str) -> dict[str, Any]:
    checks = "; ".join(f"{check_label(c.name)}: {STATUS_LABELS[c.result]}" for c in observation.checks)
    return {
        "uuid": _uuid(doc, "observation", str(observation.id)),
        "title": collector_label(observation.collector),
        "description": f"{observation.description} Checks: {checks}.",
        "props": [_prop("observation-id", str(observation.id)), _prop("collector", observation.collector)],
        "methods": [observation.method],
        "types": ["control-objective"],
        "relevant-evidence": [
            {
                "href": f"#{resource}",
                "description": f"Evidence file {evidence_path(observation.id)}, SHA-256 {observation.evidence_sha256}",
            }
        ],
        "collected": _time(observation.collected_at),
    }


def _attestation_observation(doc: ReportDocument, finding: Finding) -> dict[str, Any] | None:
    a = finding.attestation
    if a is None:
        return None
    return {
        "uuid": _uuid(doc, "attestation", finding.control_id),
        "title": f"Attestation of {finding.control_id}",
        "description": f"“{a.statement}” signed by {a.signed_by}, valid until {_time(a.expires_at)}.",
        "methods": ["EXAMINE"],
        "types": ["control-objective"],
        "collected": _time(a.signed_at),
        "expires": _time(a.expires_at),
    }


def _finding(doc: ReportDocument, finding: Finding, related: list[str]) -> dict[str, Any]:
    state, reason = _STATE[finding.status]
    token = control_token(doc.framework.id, finding.control_id)
    out: dict[str, Any] = {
        "uuid": _uuid(doc, "finding", finding.control_id),
        "title": f"{doc.framework.name} {finding.control_id}: {finding.title}",
        "description": finding.requirement,
        "props": [_prop("label", finding.control_id), _prop("konsil-status", finding.status)],
        "target": {
            "type": "objective-id",
            "target-id": token,
            "status": {"state": state, "reason": reason, "remarks": finding.reason or STATUS_LABELS[finding.status]},
        },
        "remarks": f"{STATUS_LABELS[finding.status]}: {finding.reason}",
    }
    if related:
        out["related-observations"] = [{"observation-uuid": u} for u in related]
    return out


def assessment_results(doc: ReportDocument) -> dict[str, Any]:
    """The OSCAL document as a dict (``oscal_bytes`` encodes it)."""
    plan = _uuid(doc, "assessment-plan")
    resources: list[dict[str, Any]] = [
        {
            "uuid": plan,
            "title": f"Assessment plan (stub): {doc.framework.name} controls of Konsil's catalog",
            "description": (
                "Konsil has no separate assessment plan: each control of the framework's catalog is assessed "
                "by the evidence collector the catalog names, or by the owner's signed attestation."
            ),
        }
    ]
    observation_uuid: dict[uuid.UUID, str] = {}
    observations: list[dict[str, Any]] = []
    for observation in doc.observations:
        resource = _uuid(doc, "evidence", str(observation.id))
        resources.append(
            {
                "uuid": resource,
                "title": f"Evidence of {collector_label(observation.collector)}",
                "rlinks": [
                    {
                        "href": evidence_path(observation.id),
                        "media-type": "application/json",
                        "hashes": [{"algorithm": "SHA-256", "value": observation.evidence_sha256}],
                    }
                ],
            }
        )
        item = _observation(doc, observation, resource)
        observation_uuid[observation.id] = item["uuid"]
        observations.append(item)
    findings: list[dict[str, Any]] = []
    for finding in doc.findings:
        related = sorted(
            {observation_uuid[c.observation_id] for c in finding.checks if c.observation_id in observation_uuid}
        )
        attested = _attestation_observation(doc, finding)
        if attested is not None:
            observations.append(attested)
            related.append(attested["uuid"])
        findings.append(_finding(doc, finding, related))
    result: dict[str, Any] = {
        "uuid": _uuid(doc, "result"),
        "title": f"{doc.framework.name} assessment of {doc.org_name}",
        "description": (
            f"Konsil's live-evidence assessment of organisation {doc.org_id} in region {doc.region}. "
            "Secondary export of the Konsil report of the same id; the PDF and JSON report are primary."
        ),
        "start": _time(doc.period_start),
        "end": _time(doc.period_end),
        "props": [_prop("report-id", str(doc.id)), _prop("checkpoint-seq", str(doc.checkpoint.seq))],
        "reviewed-controls": {
            "control-selections": [
                {
                    "include-controls": [
                        {"control-id": control_token(doc.framework.id, f.control_id)} for f in doc.findings
                    ]
                }
            ]
        },
        "findings": findings,
    }
    if observations:
        result["observations"] = observations
    return {
        "assessment-results": {
            "uuid": _uuid(doc, "assessment-results"),
            "metadata": {
                "title": f"{doc.framework.name} compliance report: {doc.org_name}",
                "published": _time(doc.generated_at),
                "last-modified": _time(doc.generated_at),
                "version": str(doc.schema_version),
                "oscal-version": OSCAL_VERSION,
                "props": [_prop("region", doc.region), _prop("secondary-export", "true")],
            },
            "import-ap": {"href": f"#{plan}"},
            "results": [result],
            "back-matter": {"resources": resources},
        }
    }


def write_oscal(doc: ReportDocument, out: IO[bytes]) -> None:
    out.write(msgspec.json.format(msgspec.json.encode(assessment_results(doc)), indent=2))


def oscal_bytes(doc: ReportDocument) -> bytes:
    buffer = io.BytesIO()
    write_oscal(doc, buffer)
    return buffer.getvalue()
