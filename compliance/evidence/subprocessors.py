"""Subprocessor evidence (P16; GDPR 28 and 44-46, HIPAA 164.308(b), NEN 7510 A.15.1.2):
the processors that receive this region's data, from the subprocessor register
(``compliance/subprocessors/register.toml``), each with its agreements and transfer
basis. The evidence lists them all; reports print that list.
"""

from __future__ import annotations

from typing import Any

import msgspec

from konsil.compliance.evidence.common import named, observation, plural
from konsil.compliance.evidence.model import Check, Observation, Scope
from konsil.compliance.subprocessors.register import (
    Register,
    RegisterError,
    Subprocessor,
    load_register,
    transfer_problems,
)
from konsil.platform.core.region import RegionContext

COLLECTOR = "subprocessors"
CHECKS = ("processing_agreements", "transfer_mechanisms", "business_associate_agreements")

Figures = dict[str, int | float | str | bool | None]


def _listed(processor: Subprocessor) -> dict[str, Any]:
    entry: dict[str, Any] = msgspec.to_builtins(processor)
    return entry


def processing_agreements(processors: list[Subprocessor], region_id: str) -> Check:
    with_data = [p for p in processors if p.personal_data]
    without = [p.name for p in with_data if not p.dpa_signed]
    figures: Figures = {
        "processors": len(processors),
        "with_personal_data": len(with_data),
        "without_dpa": len(without),
    }
    if not with_data:
        reason = f"No processor of region {region_id} receives personal data, so none needs a processing agreement."
        return Check(name="processing_agreements", result="not_applicable", reason=reason, figures=figures)
    if without:
        reason = (
            f"{plural(len(without), 'processor')} of region {region_id} without a processing agreement (GDPR 28) "
            f"although receiving personal data: {named(without)}."
        )
        return Check(name="processing_agreements", result="fail", reason=reason, figures=figures)
    reason = (
        f"Every processor that receives personal data of region {region_id} ({len(with_data)}) has a "
        "processing agreement, as the register records it. Prior notice to tenants of a new processor is not "
        "recorded in the register and is not checked here."
    )
    return Check(name="processing_agreements", result="pass", reason=reason, figures=figures)


def transfer_mechanisms(register: Register, processors: list[Subprocessor], region_id: str) -> Check:
    outside = [p for p in processors if p.personal_data and p.location != "eu_eea"]
    figures: Figures = {"processors": len(processors), "outside_eu_eea": len(outside)}
    if register.jurisdiction(region_id) != "eu_eea":
        figures["problems"] = 0
        reason = (
            f"Region {region_id} does not hold data under EU/EEA jurisdiction, so the EU rules on transfers "
            "out of the EU/EEA do not apply to it."
        )
        return Check(name="transfer_mechanisms", result="not_applicable", reason=reason, figures=figures)
    problems = [p for p in transfer_problems(register, region_id) if p.rule == "transfer"]
    figures["problems"] = len(problems)
    if problems:
        reason = "; ".join(p.reason for p in problems) + "."
        return Check(name="transfer_mechanisms", result="fail", reason=reason, figures=figures)
    if not outside:
        reason = f"No processor of region {region_id} receives personal data outside the EU/EEA."
    else:
        covered = named([f"{p.name} ({p.location}, {p.transfer_mechanism})" for p in outside])
        reason = (
            f"Personal data of region {region_id} goes outside the EU/EEA only with a transfer mechanism: {covered}. "
            "The register records no transfer impact assessments; they are not checked here."
        )
    return Check(name="transfer_mechanisms", result="pass", reason=reason, figures=figures)


def business_associate_agreements(register: Register, processors: list[Subprocessor], region_id: str) -> Check:
    phi = [p for p in processors if p.phi]
    figures: Figures = {"processors": len(processors), "receiving_phi": len(phi)}
    if register.jurisdiction(region_id) != "us":
        figures["without_baa"] = 0
        reason = f"Region {region_id} is not a US region: HIPAA business associate agreements do not apply to it."
        return Check(name="business_associate_agreements", result="not_applicable", reason=reason, figures=figures)
    problems = [p for p in transfer_problems(register, region_id) if p.rule == "baa"]
    figures["without_baa"] = len(problems)
    if problems:
        reason = "; ".join(p.reason for p in problems) + "."
        return Check(name="business_associate_agreements", result="fail", reason=reason, figures=figures)
    others = len(processors) - len(phi)
    if phi:
        reason = (
            f"Every processor of region {region_id} that receives health information has a business associate "
            f"agreement ({named([p.name for p in phi])}); the register records that the other {others} receive none."
        )
    else:
        reason = f"The register records that no processor of region {region_id} receives health information."
    return Check(name="business_associate_agreements", result="pass", reason=reason, figures=figures)


DESCRIPTION = (
    "Read the subprocessor register for this region: every processor that receives its data, with purpose, "
    "data categories, location, transfer mechanism and agreements, and checked the agreements and transfers "
    "the region's jurisdiction requires."
)


def _unreadable(region_id: str, scope: Scope, error: RegisterError) -> Observation:
    reason = f"The subprocessor register cannot be read for region {region_id}: {error}."
    checks = [Check(name=name, result="fail", reason=reason) for name in CHECKS]
    evidence: dict[str, Any] = {"region": region_id, "processors": [], "error": str(error)}
    return observation(scope, COLLECTOR, "EXAMINE", DESCRIPTION, checks, evidence)


def observe(register: Register, region_id: str, scope: Scope) -> Observation:
    """The observation for ``register`` (the shipped one in production; a test's own)."""
    try:
        processors = register.for_region(region_id)
    except RegisterError as exc:
        return _unreadable(region_id, scope, exc)
    checks = [
        processing_agreements(processors, region_id),
        transfer_mechanisms(register, processors, region_id),
        business_associate_agreements(register, processors, region_id),
    ]
    evidence = {
        "region": region_id,
        "jurisdiction": register.jurisdiction(region_id),
        "processors": [_listed(p) for p in processors],
    }
    return observation(scope, COLLECTOR, "EXAMINE", DESCRIPTION, checks, evidence)


async def collect(region: RegionContext, scope: Scope) -> Observation:
    try:
        register = load_register()
    except RegisterError as exc:
        return _unreadable(region.region.id, scope, exc)
    return observe(register, region.region.id, scope)
