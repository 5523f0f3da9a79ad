"""The report document: what one report says about one organisation, framework and
period, before it is rendered in any format.

``assemble`` decides each control's status from the evidence collectors' observations
(automated controls) or the owners' signed attestations:

- automated: every check the control's ``rules`` name passes -> pass; any fails ->
  fail, with that check's reason; all not applicable -> not applicable (passing and
  not-applicable checks together pass). Missing evidence fails: a control is never
  passed on evidence nobody collected.
- attestation: signed no later than the period's end and not expired then ->
  attested; otherwise not attested, "Not signed." or "Expired on …".

``ReportDocument`` is versioned (``schema_version``); the JSON renderer publishes its
schema (``report.schema.json``). A change that is not purely additive bumps the version.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import msgspec

from konsil.compliance.controls.catalog import Control, Framework
from konsil.compliance.evidence.model import Observation, Result
from konsil.compliance.reports.labels import check_label, date_text, utc
from konsil.compliance.subprocessors.register import Subprocessor

SCHEMA_VERSION: Final = 1
# Periods longer than this are refused (issue 13, "Bad input").
MAX_PERIOD_YEARS: Final = 3


def longer_than_allowed(start: datetime, end: datetime) -> bool:
    """Whether the period [start, end) runs over 3 calendar years (the one rule the job
    request and the document share): it may end at most on start's date 3 years on."""
    try:
        limit = start.replace(year=start.year + MAX_PERIOD_YEARS)
    except ValueError:  # 29 February: 3 years on has none
        limit = start.replace(year=start.year + MAX_PERIOD_YEARS, day=28) + timedelta(days=1)
    return end > limit


Status = Literal["pass", "fail", "attested", "not_attested", "not_applicable"]
STATUSES: Final[tuple[Status, ...]] = ("pass", "fail", "attested", "not_attested", "not_applicable")


class ReportInputError(ValueError):
    """Input a report cannot be made from; the message names the field."""


class Attested(msgspec.Struct, frozen=True, kw_only=True):
    """An owner's signed attestation of one control, as the portal records it."""

    framework: str
    control_id: str
    statement: str
    signed_by: str  # who signed, as the portal shows it (pseudonymous member reference)
    signed_at: datetime
    expires_at: datetime


class CheckRef(msgspec.Struct, frozen=True, kw_only=True):
    """One collector check a finding rests on, copied from its observation."""

    observation_id: uuid.UUID
    collector: str
    name: str
    result: Result
    reason: str
    figures: dict[str, int | float | str | bool | None] = {}
    evidence_sha256: str


class AttestationRef(msgspec.Struct, frozen=True, kw_only=True):
    statement: str
    signed_by: str
    signed_at: datetime
    expires_at: datetime


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    control_id: str
    title: str
    requirement: str
    promises: list[str]
    kind: Literal["automated", "attestation"]
    # The pass rule of an automated control, the statement an attestation asks for.
    rule: str
    status: Status
    reason: str
    collector: str | None = None
    checks: list[CheckRef] = []
    attestation: AttestationRef | None = None


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    passed: int
    failed: int
    attested: int
    not_attested: int
    not_applicable: int


class FrameworkRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """The signed access-log checkpoint the report covers. ``document`` is the signed
    checkpoint exactly as the access log issued it (opaque here); the other fields
    repeat what a reader needs to see on the page."""

    seq: int
    head_hash: str
    kid: str
    made_at: datetime
    document: dict[str, Any]


class Signing(msgspec.Struct, frozen=True, kw_only=True):
    """The region key that signs the report's evidence manifest, and where its public
    key set is published."""

    kid: str
    key_set_url: str


class ReportDocument(msgspec.Struct, frozen=True, kw_only=True):
    schema_version: Literal[1] = SCHEMA_VERSION
    id: uuid.UUID
    org_id: uuid.UUID
    org_name: str
    region: str
    jurisdiction: str
    framework: FrameworkRef
    period_start: datetime  # inclusive, UTC
    period_end: datetime  # exclusive, UTC
    generated_at: datetime
    summary: Summary
    findings: list[Finding]
    observations: list[Observation]
    checkpoint: Checkpoint
    subprocessors: list[Subprocessor]
    signing: Signing

    def observation(self, observation_id: uuid.UUID) -> Observation:
        for item in self.observations:
            if item.id == observation_id:
                return item
        raise KeyError(observation_id)


def assemble(
    framework: Framework,
    observations: Sequence[Observation],
    attestations: Iterable[Attested],
    *,
    org_id: uuid.UUID,
    org_name: str,
    region: str,
    jurisdiction: str,
    period_start: datetime,
    period_end: datetime,
    generated_at: datetime,
    checkpoint: Checkpoint,
    subprocessors: Sequence[Subprocessor],
    signing: Signing,
    report_id: uuid.UUID | None = None,
) -> ReportDocument:
    """The report of ``framework`` for one organisation and period. Raises
    ``ReportInputError`` naming the field for input no report can be made from."""
    period_start, period_end, generated_at = utc(period_start), utc(period_end), utc(generated_at)
    if period_end <= period_start:
        raise ReportInputError("period_end: the period must end after it starts")
    if longer_than_allowed(period_start, period_end):
        raise ReportInputError("period_end: a period may be at most 3 years long")
    for index, observation in enumerate(observations):
        if observation.org_id != org_id:
            raise ReportInputError(f"observations[{index}].org_id: evidence of another organisation")
    mine = [a for a in attestations if a.framework == framework.id]
    findings = [_finding(control, observations, mine, period_end) for control in framework.controls]
    counts = {status: sum(1 for f in findings if f.status == status) for status in STATUSES}
    return ReportDocument(
        id=report_id or uuid.uuid4(),
        org_id=org_id,
        org_name=org_name,
        region=region,
        jurisdiction=jurisdiction,
        framework=FrameworkRef(id=framework.id, name=framework.name),
        period_start=period_start,
        period_end=period_end,
        generated_at=generated_at,
        summary=Summary(
            total=len(findings),
            passed=counts["pass"],
            failed=counts["fail"],
            attested=counts["attested"],
            not_attested=counts["not_attested"],
            not_applicable=counts["not_applicable"],
        ),
        findings=findings,
        observations=list(observations),
        checkpoint=checkpoint,
        subprocessors=list(subprocessors),
        signing=signing,
    )


def _finding(
    control: Control, observations: Sequence[Observation], attestations: list[Attested], period_end: datetime
) -> Finding:
    common: dict[str, Any] = {
        "control_id": control.id,
        "title": control.title,
        "requirement": control.requirement,
        "promises": list(control.promises),
    }
    if control.check is not None:
        status, reason, checks = _automated(control, observations)
        return Finding(
            **common,
            kind="automated",
            rule=control.check.pass_rule,
            status=status,
            reason=reason,
            collector=control.check.collector,
            checks=checks,
        )
    assert control.attestation is not None  # the catalog guarantees one of the two
    status, reason, ref = _attested(control, attestations, period_end)
    return Finding(
        **common, kind="attestation", rule=control.attestation.statement, status=status, reason=reason, attestation=ref
    )


def _automated(control: Control, observations: Sequence[Observation]) -> tuple[Status, str, list[CheckRef]]:
    assert control.check is not None
    collector = control.check.collector
    # The newest observation of the control's collector decides.
    candidates = [o for o in observations if o.collector == collector]
    if not candidates:
        return "fail", "No evidence was collected for this control in the period.", []
    observation = max(candidates, key=lambda o: utc(o.collected_at))
    refs: list[CheckRef] = []
    missing: list[str] = []
    for name in control.check.rules:
        try:
            check = observation.check(name)
        except KeyError:
            missing.append(name)
            continue
        refs.append(
            CheckRef(
                observation_id=observation.id,
                collector=collector,
                name=check.name,
                result=check.result,
                reason=check.reason,
                figures=dict(check.figures),
                evidence_sha256=observation.evidence_sha256,
            )
        )
    if missing:
        names = ", ".join(f'"{check_label(n)}"' for n in missing)
        return "fail", f"The evidence does not include the check(s) {names}.", refs
    failed = [r for r in refs if r.result == "fail"]
    if failed:
        return "fail", " ".join(r.reason for r in failed), refs
    if all(r.result == "not_applicable" for r in refs):
        return "not_applicable", " ".join(r.reason for r in refs), refs
    return "pass", " ".join(r.reason for r in refs if r.result == "pass"), refs


def _attested(
    control: Control, attestations: list[Attested], period_end: datetime
) -> tuple[Status, str, AttestationRef | None]:
    assert control.attestation is not None
    signed = [a for a in attestations if a.control_id == control.id]
    before_end = [a for a in signed if utc(a.signed_at) < period_end]
    if not before_end:
        if signed:
            first = min(utc(a.signed_at) for a in signed)
            return "not_attested", f"Not signed by the end of the period (first signed on {date_text(first)}).", None
        return "not_attested", "Not signed.", None
    latest = max(before_end, key=lambda a: utc(a.signed_at))
    # The catalog says how long a signature holds; a later expiry given with it does not extend that.
    expires = min(utc(latest.expires_at), utc(latest.signed_at) + timedelta(days=control.attestation.valid_days))
    ref = AttestationRef(
        statement=latest.statement, signed_by=latest.signed_by, signed_at=utc(latest.signed_at), expires_at=expires
    )
    if expires < period_end:
        return "not_attested", f"Expired on {date_text(expires)}.", ref
    return (
        "attested",
        f"Signed by {latest.signed_by} on {date_text(latest.signed_at)}, valid until {date_text(expires)}.",
        ref,
    )
