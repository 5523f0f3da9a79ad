"""How a report decides each control: automated checks (pass, fail with the failing
check's reason, not applicable, missing evidence) and attestations (attested, not
signed, expired), and the input it refuses."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest

from konsil.compliance.controls.catalog import COLLECTOR_RULES, COLLECTORS
from konsil.compliance.evidence.model import Observation
from konsil.compliance.reports.labels import CHECK_LABELS, COLLECTOR_LABELS, figure_label, period_text
from konsil.compliance.reports.model import ReportInputError, Signing, assemble, longer_than_allowed
from konsil.compliance.subprocessors.register import load_register
from tests.compliance.reports.samples import (
    END,
    NOW,
    ORG_ID,
    ORG_NAME,
    START,
    attestations,
    check,
    checkpoint,
    framework,
    observation,
    observations,
    report,
)


def _passing() -> list[Observation]:  # every check of every collector passes
    return [observation(c, [check(n, "pass") for n in sorted(COLLECTOR_RULES[c])]) for c in COLLECTOR_RULES]


def test_every_check_and_collector_has_a_label() -> None:
    all_checks = set().union(*COLLECTOR_RULES.values())
    assert set(CHECK_LABELS) == all_checks
    assert set(COLLECTOR_LABELS) == set(COLLECTORS)
    assert figure_label("oldest_visit_age_days") == "Oldest visit age (days)"
    assert figure_label("dsr_overdue") == "Data-subject request overdue"
    assert period_text(START, END) == "1 January 2025 to 31 March 2025"


def test_all_rules_pass_so_the_control_passes() -> None:
    doc = report(observed=_passing())
    storage = next(f for f in doc.findings if f.control_id == "5(1)(e)")
    assert storage.status == "pass"
    assert [c.name for c in storage.checks] == ["data_within_retention", "purges_ran"]
    assert all(c.evidence_sha256 for c in storage.checks)


def test_a_failing_rule_fails_the_control_with_its_reason() -> None:
    doc = report()  # samples fail data_within_retention and access_within_deadline
    storage = next(f for f in doc.findings if f.control_id == "5(1)(e)")
    assert storage.status == "fail"
    assert "3 visits are older than the organisation's retention" in storage.reason
    access = next(f for f in doc.findings if f.control_id == "12(3)+15")
    assert access.status == "fail"
    assert "request 7f3e2c10" in access.reason


def test_all_rules_not_applicable_is_not_applicable_and_mixed_passes() -> None:
    observed = [
        observation(c, [check(n, "not_applicable") for n in sorted(COLLECTOR_RULES[c])]) for c in COLLECTOR_RULES
    ]
    doc = report(observed=observed)
    assert {f.status for f in doc.findings if f.kind == "automated"} == {"not_applicable"}
    mixed = [observation("retention", [check("data_within_retention", "pass"), check("purges_ran", "not_applicable")])]
    storage = next(f for f in report(observed=mixed).findings if f.control_id == "5(1)(e)")
    assert storage.status == "pass"


def test_missing_evidence_or_a_missing_check_fails() -> None:
    doc = report(observed=[])
    assert {f.status for f in doc.findings if f.kind == "automated"} == {"fail"}
    assert all("No evidence was collected" in f.reason for f in doc.findings if f.kind == "automated")
    partial = [observation("retention", [check("purges_ran", "pass")])]
    storage = next(f for f in report(observed=partial).findings if f.control_id == "5(1)(e)")
    assert storage.status == "fail"
    assert "Data kept no longer than its retention period" in storage.reason


def test_the_newest_observation_of_a_collector_decides() -> None:
    old = observation("dsr", [check(n, "fail") for n in sorted(COLLECTOR_RULES["dsr"])], collected_at=END)
    new = observation(
        "dsr", [check(n, "pass") for n in sorted(COLLECTOR_RULES["dsr"])], collected_at=END + timedelta(hours=1)
    )
    doc = report(observed=[new, old])
    access = next(f for f in doc.findings if f.control_id == "12(3)+15")
    assert access.status == "pass"
    assert access.checks[0].observation_id == new.id


def test_attestations_signed_expired_or_missing() -> None:
    gdpr = framework("gdpr")
    attested = [c for c in gdpr.controls if c.attestation is not None]
    assert attested, "the GDPR catalog has attestation controls"
    fresh = attestations("gdpr", signed_at=END - timedelta(days=5))
    doc = report(attested=fresh)
    for control in attested:
        finding = next(f for f in doc.findings if f.control_id == control.id)
        assert finding.status == "attested"
        assert finding.attestation is not None and finding.attestation.signed_by == "member:3f2a9c1e (owner)"
    assert {f.status for f in report(attested=[]).findings if f.kind == "attestation"} == {"not_attested"}
    assert {f.reason for f in report(attested=[]).findings if f.kind == "attestation"} == {"Not signed."}
    # Signed long before: expired at the period's end, on the date the catalog's valid_days give.
    old_signing = START - timedelta(days=800)
    doc = report(attested=attestations("gdpr", signed_at=old_signing))
    for control in attested:
        assert control.attestation is not None
        finding = next(f for f in doc.findings if f.control_id == control.id)
        expiry = old_signing + timedelta(days=control.attestation.valid_days)
        assert finding.status == "not_attested"
        assert finding.reason == f"Expired on {expiry.day} {expiry:%B} {expiry.year}."
    # Signed only after the period: not signed then.
    late = report(attested=attestations("gdpr", signed_at=END + timedelta(days=1)))
    assert all(
        f.reason.startswith("Not signed by the end of the period") for f in late.findings if f.kind == "attestation"
    )


def test_an_expiry_later_than_the_catalog_allows_is_capped() -> None:
    control = next(c for c in framework("gdpr").controls if c.attestation is not None)
    assert control.attestation is not None
    signed = END - timedelta(days=control.attestation.valid_days + 1)
    stretched = [
        a.__class__(
            framework=a.framework,
            control_id=a.control_id,
            statement=a.statement,
            signed_by=a.signed_by,
            signed_at=signed,
            expires_at=END + timedelta(days=365),
        )
        for a in attestations("gdpr")
        if a.control_id == control.id
    ]
    finding = next(f for f in report(attested=stretched).findings if f.control_id == control.id)
    assert finding.status == "not_attested"
    assert finding.reason.startswith("Expired on")


def test_summary_counts_add_up() -> None:
    doc = report()
    s = doc.summary
    assert s.total == len(doc.findings) == len(framework("gdpr").controls)
    assert s.passed + s.failed + s.attested + s.not_attested + s.not_applicable == s.total
    assert s.failed == 2


def test_bad_input_names_the_field() -> None:
    foreign = observation("dsr", org_id=uuid.uuid4())
    with pytest.raises(ReportInputError, match=r"observations\[1\]\.org_id"):
        report(observed=[observation("retention"), foreign])
    with pytest.raises(ReportInputError, match="period_end: the period must end after it starts"):
        _with_period(END, START)
    with pytest.raises(ReportInputError, match="period_end: a period may be at most 3 years long"):
        _with_period(START, START + timedelta(days=4 * 365))


def _with_period(start: datetime, end: datetime) -> None:
    assemble(
        framework("gdpr"),
        observations(),
        [],
        org_id=ORG_ID,
        org_name=ORG_NAME,
        region="eu",
        jurisdiction="eu_eea",
        period_start=start,
        period_end=end,
        generated_at=NOW,
        checkpoint=checkpoint(),
        subprocessors=load_register().for_region("eu"),
        signing=Signing(kid="k", key_set_url="https://example.invalid/keys.json"),
    )


@pytest.mark.parametrize(
    ("first", "last", "too_long"),
    [
        ("2025-01-01", "2027-12-31", False),  # exactly 3 years of days, both ends included
        ("2025-01-01", "2028-01-01", True),  # one day more, although no 29 February falls in it
        ("2024-02-29", "2027-02-28", False),  # from a leap day: 3 years on ends with 28 February
        ("2024-02-29", "2027-03-01", True),
    ],
)
def test_the_three_year_limit_is_calendar_years_for_jobs_and_documents(first: str, last: str, too_long: bool) -> None:
    start = datetime.combine(date.fromisoformat(first), time(), tzinfo=UTC)
    end = datetime.combine(date.fromisoformat(last) + timedelta(days=1), time(), tzinfo=UTC)
    assert longer_than_allowed(start, end) is too_long
