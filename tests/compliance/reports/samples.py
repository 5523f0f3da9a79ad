"""Report inputs for the report tests: observations of every collector (built as the
evidence model defines them), attestations, a checkpoint and the shipped catalogs and
subprocessor register. Names carry Norwegian and German letters on purpose."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from konsil.compliance.access_log.chain import EntryRecord
from konsil.compliance.controls.catalog import COLLECTOR_RULES, Framework, load_catalogs
from konsil.compliance.evidence.model import Check, Observation, Result, evidence_sha256
from konsil.compliance.reports.model import Attested, Checkpoint, ReportDocument, Signing, assemble
from konsil.compliance.subprocessors.register import load_register

ORG_ID = uuid.UUID("6f1c2a4e-5b3d-4c2e-9a10-0c7d8e9f1a2b")
ORG_NAME = "Legesenteret Bjørgvin Ærøy & Søn (Praxis Müller-Groß)"
START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2025, 4, 1, tzinfo=UTC)
NOW = datetime(2025, 4, 2, 6, 30, tzinfo=UTC)
KID = "a1b2c3d4e5f60718"
KEY_SET_URL = "https://eu.konsil.example/.well-known/konsil/keys.json"

# Reasons per check (what a collector would say); fails in FAILS.
FAILS: dict[str, str] = {
    "data_within_retention": (
        "3 visits are older than the organisation's retention of 30 days plus 24 hours "
        "(oldest 41 days; visit ids 0b6e…, 5d21…, 9c0a…)."
    ),
    "access_within_deadline": (
        "1 access request is overdue: request 7f3e2c10 was received 35 days ago and is still open."
    ),
}
NOT_APPLICABLE = {"business_associate_agreements"}

FIGURES: dict[str, dict[str, int | float | str | bool | None]] = {
    "data_within_retention": {"retention_days": 30, "rows_past_retention": 3, "oldest_age_days": 41},
    "purges_ran": {"purge_runs": 90, "failed_runs": 0},
    "sealed_columns": {"columns": 9, "values": 12840, "plaintext": 0, "sealed_share": 100.0},
    "key_rotation": {"key_version": 4, "key_age_days": 61, "last_rotation": "2025-01-30"},
    "chain_verifies": {"entries": 1_204_551, "chain_ok": True},
    "nen7513_fields": {"complete_share": 100.0, "entries_missing_purpose": 0},
    "access_within_deadline": {"requests": 12, "closed_on_time": 11, "overdue": 1},
    "receipts_valid": {"calls": 4311, "receipts_valid": 4311, "calls_without_receipt": 0},
    "idle_timeout": {"idle_timeout_minutes": 30},
}


def check(name: str, result: Result | None = None) -> Check:
    if result is None:
        result = "fail" if name in FAILS else "not_applicable" if name in NOT_APPLICABLE else "pass"
    if result == "fail":
        reason = FAILS.get(name, f"The check {name} failed in this test.")
    elif result == "not_applicable":
        reason = "Region eu is under EU/EEA law: business associate agreements do not apply."
    else:
        reason = f"All records checked meet the rule ({name.replace('_', ' ')})."
    return Check(name=name, result=result, reason=reason, figures=FIGURES.get(name, {}))


def observation(
    collector: str,
    checks: list[Check] | None = None,
    *,
    collected_at: datetime = NOW,
    evidence: dict[str, Any] | None = None,
    org_id: uuid.UUID = ORG_ID,
) -> Observation:
    checks = checks if checks is not None else [check(name) for name in sorted(COLLECTOR_RULES[collector])]
    evidence = (
        evidence
        if evidence is not None
        else {"collector": collector, "checks": {c.name: c.figures for c in checks}, "note": "Bjørn's æøå ß ü"}
    )
    return Observation(
        id=uuid.uuid4(),
        org_id=org_id,
        collector=collector,
        method="TEST",
        description=f"Counted the organisation's records for {collector.replace('_', ' ')} in the region database.",
        period_start=START,
        period_end=END,
        collected_at=collected_at,
        checks=checks,
        evidence=evidence,
        evidence_sha256=evidence_sha256(evidence),
    )


def observations() -> list[Observation]:
    return [observation(collector) for collector in COLLECTOR_RULES]


def checkpoint(seq: int = 1_204_551) -> Checkpoint:
    head = "9f" * 32
    document = {
        "org": str(ORG_ID),
        "seq": seq,
        "head": head,
        "at": "2025-04-02T06:30:00+00:00",
        "signature": {"kid": KID, "alg": "EdDSA", "value": "c2lnbmF0dXJl"},
    }
    return Checkpoint(seq=seq, head_hash=head, kid=KID, made_at=NOW, document=document)


def framework(framework_id: str = "gdpr") -> Framework:
    return load_catalogs()[framework_id]


def attestations(framework_id: str, *, signed_at: datetime = START - timedelta(days=10)) -> list[Attested]:
    return [
        Attested(
            framework=framework_id,
            control_id=control.id,
            statement=control.attestation.statement,
            signed_by="member:3f2a9c1e (owner)",
            signed_at=signed_at,
            expires_at=signed_at + timedelta(days=control.attestation.valid_days),
        )
        for control in framework(framework_id).controls
        if control.attestation is not None
    ]


def report(
    framework_id: str = "gdpr",
    *,
    observed: list[Observation] | None = None,
    attested: list[Attested] | None = None,
    region: str = "eu",
    kid: str = KID,
) -> ReportDocument:
    register = load_register()
    return assemble(
        framework(framework_id),
        observed if observed is not None else observations(),
        attested if attested is not None else attestations(framework_id),
        org_id=ORG_ID,
        org_name=ORG_NAME,
        region=region,
        jurisdiction=register.jurisdiction(region),
        period_start=START,
        period_end=END,
        generated_at=NOW,
        checkpoint=checkpoint(),
        subprocessors=register.for_region(region),
        signing=Signing(kid=kid, key_set_url=KEY_SET_URL),
        report_id=uuid.UUID("0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a"),
    )


EXPERT = "member:3f2a9c1e-7b6d-4e5f-8a9b-0c1d2e3f4a5b"
ADMIN = "member:91b7c0de-2a3b-4c5d-9e8f-7a6b5c4d3e2f"


def access_entries(subject: str = "visit:5d21c3b4-0000-4000-8000-000000000001", count: int = 6) -> list[EntryRecord]:
    """Access-log entries about one visitor's visit: created on arrival, read by the
    expert and an administrator, one refused attempt, deleted by the purge."""
    kinds = [
        ("anonymous", "anonymous", "anonymous", "create", "visit", "success", "join the room"),
        (EXPERT, "expert", EXPERT, "read", "visit", "success", "provide the service"),
        (EXPERT, "expert", EXPERT, "create", "call", "success", "provide the service"),
        (ADMIN, "admin", ADMIN, "read", "visit", "denied", "refused: role"),
        ("token:4e5f", "integration", f"org:{ORG_ID}", "read", "visit", "success", "provide the service"),
        ("system", "system", "system", "delete", "visit", "success", "retention: visits older than 30 days"),
    ]
    entries = []
    for index in range(count):
        actor, role, behalf, action, object_type, outcome, purpose = kinds[index % len(kinds)]
        entries.append(
            EntryRecord(
                id=uuid.uuid4(),
                org_id=ORG_ID,
                seq=1000 + index,
                at=START + timedelta(days=2, minutes=7 * index),
                actor=actor,
                actor_role=role,
                on_behalf_of=behalf,
                subject_ref=subject,
                action=action,
                object_type=object_type,
                object_id=subject.split(":", 1)[1],
                source_address="192.0.2.10",
                outcome=outcome,
                purpose=purpose,
                source="region:eu",
                prev_hash="0" * 64,
                entry_hash="1" * 64,
            )
        )
    return entries
