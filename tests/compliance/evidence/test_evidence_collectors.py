"""The collector registry and a collection run: every check the catalogs name is
reported, a collector that cannot run yields a failed observation instead of an
error, and nothing personal reaches the evidence or the log."""

from __future__ import annotations

import logging
import warnings

import pytest

from konsil.compliance.controls.catalog import COLLECTOR_RULES
from konsil.compliance.evidence.collectors import COLLECTORS, UnknownCollector, collect
from konsil.platform.core import database
from konsil.platform.core.region import RegionContext
from konsil.regions.tables import REGION_TABLES
from tests.compliance.evidence.conftest import assert_no_personal_data, new_org, new_request, new_visit, scope_of
from tests.conftest import bindings_restored, free_port

MINE = ("retention", "encryption", "keys", "access_log")
ALL = tuple(COLLECTOR_RULES)


def test_the_registry_has_every_catalog_collector() -> None:
    assert set(COLLECTORS) == set(COLLECTOR_RULES)


async def test_every_rule_the_catalogs_name_is_reported(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    await new_request(ctx, org)
    observations = await collect(ctx, scope_of(org.id), ALL)
    assert [o.collector for o in observations] == list(ALL)
    for observation in observations:
        assert {c.name for c in observation.checks} == COLLECTOR_RULES[observation.collector], observation.collector
        assert observation.org_id == org.id
        assert_no_personal_data(observation, org.owner_email)


async def test_a_collector_that_cannot_run_fails_its_checks_and_the_run_goes_on(
    ctx: RegionContext, caplog: pytest.LogCaptureFixture
) -> None:
    org = await new_org(ctx)
    # The region's database goes away under the collectors (nothing listens on that port).
    with warnings.catch_warnings():  # piccolo warns that it cannot connect: that is the point
        warnings.simplefilter("ignore")
        gone = database.engine_for(f"postgresql://postgres@127.0.0.1:{free_port()}/konsil_gone")
    with bindings_restored(REGION_TABLES), caplog.at_level(logging.ERROR, "konsil.evidence"):
        database.bind(REGION_TABLES, gone)
        observations = await collect(ctx, scope_of(org.id), MINE)

    assert [o.collector for o in observations] == list(MINE)
    for observation in observations:
        assert observation.result == "fail"
        assert {c.name for c in observation.checks} == COLLECTOR_RULES[observation.collector]
        for check in observation.checks:
            assert check.result == "fail"
            assert check.reason.startswith("The collector could not run: ConnectionRefusedError"), check.reason
        assert observation.evidence["collector"] == observation.collector
    logged = [r.getMessage() for r in caplog.records if r.name == "konsil.evidence"]
    assert len(logged) == len(MINE)
    assert all("ConnectionRefusedError" in line and str(org.id) in line for line in logged)
    assert all(r.exc_info is None for r in caplog.records if r.name == "konsil.evidence")


async def test_an_unknown_collector_is_refused_before_anything_runs(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    with pytest.raises(UnknownCollector, match="collector: unknown 'vibes'"):
        await collect(ctx, scope_of(org.id), ["keys", "vibes"])
