"""Storing observations in the region database: what is read back re-hashes to the
SHA-256 recorded at collection, a report pins its observations, a changed evidence
document is refused, and observations outlive the organisation (6 years, like the
access log) because they are not among the rows removed with it."""

from __future__ import annotations

import uuid

import pytest

from konsil.compliance.evidence import store
from konsil.compliance.evidence.collectors import collect
from konsil.compliance.evidence.model import evidence_sha256
from konsil.compliance.evidence.tables import EvidenceObservation
from konsil.platform.core.region import RegionContext
from konsil.regions.tables import ORGANISATION_OWNED, REGION_TABLES
from konsil.tenants import removal
from konsil.tenants.actors import Actor
from tests.compliance.evidence.conftest import new_org, new_visit, scope_of


def test_observations_are_region_data_kept_apart_from_the_organisations_rows() -> None:
    assert EvidenceObservation in REGION_TABLES
    assert EvidenceObservation not in ORGANISATION_OWNED


async def test_stored_observations_come_back_as_collected(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    observations = await collect(ctx, scope_of(org.id), ["retention", "keys"])
    report_id = uuid.uuid4()

    await store.store(observations, report_id=report_id)

    loaded = await store.load(report_id)
    assert sorted(loaded, key=lambda o: o.collector) == sorted(observations, key=lambda o: o.collector)
    for observation in loaded:
        assert evidence_sha256(observation.evidence) == observation.evidence_sha256
    latest = await store.latest(org.id, "keys")
    assert latest == next(o for o in observations if o.collector == "keys")
    assert await store.latest(org.id, "access_log") is None
    [row] = await EvidenceObservation.select(EvidenceObservation.result).where(
        (EvidenceObservation.org_id == org.id) & (EvidenceObservation.collector == "keys")
    )
    assert row["result"] == latest.result


async def test_the_newest_observation_is_the_latest(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    first = await collect(ctx, scope_of(org.id), ["keys"])
    second = await collect(ctx, scope_of(org.id), ["keys"])
    await store.store([*second, *first])  # stored in any order, unpinned
    assert await store.latest(org.id, "keys") == second[0]


async def test_evidence_changed_after_storing_is_refused(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    [observation] = await collect(ctx, scope_of(org.id), ["keys"])
    report_id = uuid.uuid4()
    await store.store([observation], report_id=report_id)
    await EvidenceObservation.raw(
        "UPDATE evidence_observation SET evidence = replace(evidence, '\"latest_version\":1', "
        "'\"latest_version\":2') WHERE id = {}",
        observation.id,
    )
    with pytest.raises(store.EvidenceAltered, match=str(observation.id)):
        await store.load(report_id)


async def test_an_observation_whose_hash_does_not_match_is_not_stored(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    [observation] = await collect(ctx, scope_of(org.id), ["keys"])
    forged = type(observation)(
        **{**{f: getattr(observation, f) for f in observation.__struct_fields__}, "evidence_sha256": "0" * 64}
    )
    with pytest.raises(ValueError, match="evidence_sha256 does not match"):
        await store.store([forged])
    assert await store.latest(org.id, "keys") is None


async def test_observations_outlive_the_organisation(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    observations = await collect(ctx, scope_of(org.id), ["keys", "access_log"])
    await store.store(observations)
    operator = Actor("operator:cli", "operator", "operator:cli", "local", "delete the customer account")
    assert (await removal.remove_organisation(ctx, operator, org.id, tell=False)).found
    assert await store.latest(org.id, "access_log") == observations[1]
