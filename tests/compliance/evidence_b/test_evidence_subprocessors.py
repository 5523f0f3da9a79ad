"""The subprocessors collector: the shipped register passes in the EU and the US region
and lists the region's processors; a test register with a processor lacking a
processing agreement, one taking EU data to the US without a transfer mechanism and
one receiving PHI without a business associate agreement fails, naming each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from piccolo.engine.base import Engine

from konsil.compliance.evidence import subprocessors
from konsil.compliance.subprocessors.register import parse_register
from konsil.platform.core.region import RegionContext
from tests.compliance.evidence_b.support import assert_well_formed, dsn_of, new_org, period, region_context

CHECKS = ("processing_agreements", "transfer_mechanisms", "business_associate_agreements")
EU = {"Stripe (EU)", "24SevenOffice", "Intercom", "Zendesk", "AWS", "Sinch", "Criipto", "Plausible"}
US = {"Stripe (US)", "24SevenOffice", "Intercom", "Zendesk", "Twilio", "Plausible"}

BROKEN = """
[regions.eu]
jurisdiction = "eu_eea"

[regions.us]
jurisdiction = "us"

[[subprocessors]]
name = "Hosting GmbH"
purpose = "Hosting"
data_categories = ["contact", "call_metadata"]
regions = ["eu", "us"]
location = "eu_eea"
transfer_mechanism = "none_needed"
personal_data = true
dpa_signed = false

[[subprocessors]]
name = "Mailer Inc"
purpose = "Newsletters"
data_categories = ["contact"]
regions = ["eu"]
location = "us"
transfer_mechanism = "none_needed"
personal_data = true
dpa_signed = true

[[subprocessors]]
name = "Texter Inc"
purpose = "SMS invitations"
data_categories = ["contact"]
regions = ["us"]
location = "us"
transfer_mechanism = "scc"
personal_data = true
dpa_signed = true
phi = true
baa = false
"""


@pytest.fixture(params=["eu", "us"])
async def ctx(
    request: pytest.FixtureRequest, region_engine: Engine[Any], tmp_path: Path
) -> AsyncIterator[RegionContext]:
    async with region_context(dsn_of(region_engine), tmp_path / "keyring", request.param) as context:
        yield context


async def test_the_shipped_register_passes_and_lists_the_regions_processors(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    scope = period(org)

    observation = await subprocessors.collect(ctx, scope)

    assert_well_formed(observation, "subprocessors", scope, CHECKS)
    listed = observation.evidence["processors"]
    assert {p["name"] for p in listed} == (EU if ctx.region.id == "eu" else US)
    assert {"purpose", "data_categories", "location", "transfer_mechanism", "dpa_signed", "baa"} <= set(listed[0])
    results = {c.name: c.result for c in observation.checks}
    if ctx.region.id == "eu":
        assert results == {
            "processing_agreements": "pass",
            "transfer_mechanisms": "pass",
            "business_associate_agreements": "not_applicable",
        }
        assert "Intercom (us, scc)" in observation.check("transfer_mechanisms").reason
        assert "not a US region" in observation.check("business_associate_agreements").reason
    else:
        assert results == {
            "processing_agreements": "pass",
            "transfer_mechanisms": "not_applicable",
            "business_associate_agreements": "pass",
        }
        assert "agreement (Twilio)" in observation.check("business_associate_agreements").reason
    assert observation.result == "pass"


async def test_a_register_with_missing_agreements_and_transfers_fails_naming_each(ctx: RegionContext) -> None:
    scope = period(await new_org(ctx))

    observation = subprocessors.observe(parse_register(BROKEN), ctx.region.id, scope)

    dpa = observation.check("processing_agreements")
    assert dpa.result == "fail"
    assert dpa.reason == (
        f"1 processor of region {ctx.region.id} without a processing agreement (GDPR 28) although receiving "
        "personal data: Hosting GmbH."
    )
    transfer, baa = observation.check("transfer_mechanisms"), observation.check("business_associate_agreements")
    if ctx.region.id == "eu":
        assert transfer.result == "fail"
        assert "Mailer Inc receives personal data of region eu in us (outside the EU/EEA) without a transfer" in (
            transfer.reason
        )
        assert baa.result == "not_applicable"
    else:
        assert transfer.result == "not_applicable"
        assert baa.result == "fail"
        assert baa.reason == (
            "Texter Inc handles PHI of region us without a business associate agreement (HIPAA 164.308(b))."
        )
    assert observation.result == "fail"


OTHER_REGION_ONLY = """
[regions.zz]
jurisdiction = "eu_eea"

[[subprocessors]]
name = "Hosting GmbH"
purpose = "Hosting"
data_categories = ["contact"]
regions = ["zz"]
location = "eu_eea"
transfer_mechanism = "none_needed"
personal_data = true
dpa_signed = true
"""


async def test_a_region_missing_from_the_register_fails_every_check(ctx: RegionContext) -> None:
    scope = period(await new_org(ctx))

    observation = subprocessors.observe(parse_register(OTHER_REGION_ONLY), ctx.region.id, scope)

    assert [c.result for c in observation.checks] == ["fail"] * 3
    assert f"region {ctx.region.id!r} is not in the subprocessor register" in observation.checks[0].reason
    assert observation.evidence["processors"] == []
