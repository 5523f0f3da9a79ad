"""The network_tests collector on the real region databases (PostgreSQL, and a
migrated SQLite file for the embedded default): stored results pass; a result that
carries the id of a visit, a runner that is not a kind, and a column added to the
table that links results to visits fail, each named."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from piccolo.engine.base import Engine

from konsil.compliance.evidence import network_tests
from konsil.media_nodes.network_test.tables import NetworkTestResult
from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core import clock
from konsil.platform.core.region import RegionContext
from tests.compliance.evidence_b.support import (
    assert_no_personal_data,
    assert_well_formed,
    dsn_of,
    new_call,
    new_org,
    period,
    region_context,
)


@pytest.fixture(scope="session")
async def sqlite_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    dsn = f"sqlite://{tmp_path_factory.mktemp('evidence_network_tests') / 'region.sqlite'}"
    await asyncio.to_thread(migrate_target, Target("sqlite region", "region", dsn))
    return dsn


@pytest.fixture
async def ctx(region_engine: Engine[Any], tmp_path: Path) -> AsyncIterator[RegionContext]:
    async with region_context(dsn_of(region_engine), tmp_path / "keyring") as context:
        yield context


async def stored_result(org_id: uuid.UUID, result_id: uuid.UUID | None = None, runner: str = "visitor") -> uuid.UUID:
    """A result as a finished test stores it (media_nodes/network_test/service.py)."""
    result_id = result_id or uuid.uuid4()
    await NetworkTestResult.insert(
        NetworkTestResult(
            id=result_id,
            org_id=org_id,
            created_at=clock.now(),
            runner=runner,
            transport="udp",
            verdict="good",
            rtt_ms=31.5,
            probes_sent=50,
            probes_answered=50,
            browser="firefox",
            browser_version=128,
            language="nb-NO",
        )
    ).run()
    return result_id


async def test_results_without_a_link_pass(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_call(org, phone="+4790000001")
    await stored_result(org.id)
    await stored_result(org.id, runner="member")
    scope = period(org)

    observation = await network_tests.collect(ctx, scope)

    assert_well_formed(observation, "network_tests", scope, ["results_unlinked"])
    result = observation.check("results_unlinked")
    assert result.result == "pass", result.reason
    assert result.figures == {"results_held": 2, "results_in_period": 2, "unreviewed_columns": 0, "linked_results": 0}
    assert "no column or value links a result to a visit" in result.reason
    assert sorted(observation.evidence["columns"]) == sorted(network_tests.REVIEWED_COLUMNS)
    assert_no_personal_data(observation, org.personal)


async def test_a_result_carrying_a_visit_or_call_id_or_an_odd_runner_fails_named(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    call = await new_call(org)
    await stored_result(org.id)
    as_visit = await stored_result(org.id, result_id=call.visit_id)
    as_call = await stored_result(org.id, result_id=call.id)
    odd = await stored_result(org.id, runner="v:7f3a")

    result = (await network_tests.collect(ctx, period(org))).check("results_unlinked")

    assert result.result == "fail"
    assert result.figures["linked_results"] == 3
    assert f"1 result with the id of a visit ({as_visit})" in result.reason
    assert f"1 result with the id of a call ({as_call})" in result.reason
    assert f"1 result whose runner is neither 'visitor' nor 'member' ({odd})" in result.reason


async def test_a_column_linking_results_to_visits_fails_naming_it(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    call = await new_call(org)
    linked = await stored_result(org.id)
    await stored_result(org.id)
    # A migration adds a link to the visit (the shared test database gets it back below).
    await NetworkTestResult.raw("ALTER TABLE network_test_result ADD COLUMN visit_id uuid")
    try:
        await NetworkTestResult.raw("UPDATE network_test_result SET visit_id = {} WHERE id = {}", call.visit_id, linked)
        observation = await network_tests.collect(ctx, period(org))
    finally:
        await NetworkTestResult.raw("ALTER TABLE network_test_result DROP COLUMN visit_id")

    result = observation.check("results_unlinked")
    assert result.result == "fail"
    assert result.figures["unreviewed_columns"] == 1
    assert "the table has 1 column that could link a result to a visit or visitor" in result.reason
    assert "(visit_id: 1 result with a value)" in result.reason
    assert observation.evidence["unreviewed_columns"] == {"visit_id": {"rows_with_a_value": 1}}


async def test_the_embedded_defaults_sqlite_database_is_read_the_same_way(sqlite_dsn: str, tmp_path: Path) -> None:
    async with region_context(sqlite_dsn, tmp_path / "keyring") as ctx:
        org = await new_org(ctx)
        await stored_result(org.id)
        call = await new_call(org)
        linked = await stored_result(org.id, result_id=call.visit_id)
        await NetworkTestResult.raw("ALTER TABLE network_test_result ADD COLUMN caller_name text")
        await NetworkTestResult.raw("UPDATE network_test_result SET caller_name = 'x' WHERE id = {}", str(linked))
        result = (await network_tests.collect(ctx, period(org))).check("results_unlinked")

    assert result.result == "fail"
    assert result.figures == {"results_held": 2, "results_in_period": 2, "unreviewed_columns": 1, "linked_results": 1}
    assert "(caller_name: 1 result with a value)" in result.reason
    assert f"1 result with the id of a visit ({linked})" in result.reason
