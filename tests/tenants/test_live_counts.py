"""The region-wide live counts behind ``konsil_waiting_visitors`` and
``konsil_active_calls``, on a real PostgreSQL region database: what is waiting and what
is going on now, whichever process changed it; a visitor gone by timeout and visits
removed by a purge no longer counted; the split by organisation only where
``organisation_attributes`` allows it; and a database that does not answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from konsil.compliance.retention.purge import PurgeRequest, purge
from konsil.platform.core import clock, database
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import RegionSettings, Settings, VaultSettings
from konsil.platform.core.telemetry import metrics
from konsil.platform.core.telemetry.config import TelemetrySettings
from konsil.platform.core.telemetry.privacy import ORGANISATION_ID, ORGANISATION_SLUG
from konsil.regions.container import build_region
from konsil.regions.tables import REGION_TABLES
from konsil.tenants import live_counts
from konsil.tenants.tables import Call, Organisation, Visit
from konsil.tenants.visits import AWAY_LIMIT
from tests.conftest import bindings_restored, free_port, wait_until_async

NOW = dt.datetime(2026, 11, 29, 10, 0, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture(scope="module")
def live_counts_dsn(pg_database: Callable[[str, str], str]) -> str:
    return pg_database("live_counts_region", "region")


@pytest.fixture
async def ctx(live_counts_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RegionContext]:
    """A region of its own (the counts are region-wide), emptied for each test, its
    clock at ``NOW``; the gauges forgotten afterwards."""
    monkeypatch.setattr(clock, "now", lambda: NOW)
    region = RegionSettings(
        id="eu",
        jurisdiction="EU/EEA",
        public_url="http://127.0.0.1:9",
        listen="127.0.0.1:9",
        database=live_counts_dsn,
        internal_secret="eu-secret-for-tests-only",
        vault=VaultSettings(backend="local", keyring_path=str(tmp_path / "keyring")),
    )
    settings = Settings(mode="embedded", discovery_key="discovery-key-for-tests", regions=[region])
    with bindings_restored(REGION_TABLES):
        context = build_region(settings, region, service_name="test")
        database.bind(REGION_TABLES, context.engine)
        await database.start(context.engine)
        try:
            for table in (Call, Visit, Organisation):
                await table.delete(force=True)
            yield context
        finally:
            live_counts.forget()
            await context.keys.provider.close()
            await database.stop(context.engine)


async def new_org(ctx: RegionContext, slug: str) -> uuid.UUID:
    org_id = uuid.uuid4()
    await Organisation.insert(Organisation(id=org_id, slug=slug, name="Praxis", retention_days=30))
    await ctx.keys.provision(org_id)
    return org_id


async def new_visit(
    org_id: uuid.UUID,
    status: str = "waiting",
    *,
    away_since: dt.datetime | None = None,
    arrived_at: dt.datetime = NOW - 5 * MINUTE,
    call: str | None = None,
) -> uuid.UUID:
    """A visit (sealed fields are opaque here), with a call "active" or "ended"."""
    visit_id = uuid.uuid4()
    await Visit.insert(
        Visit(
            id=visit_id,
            org_id=org_id,
            room_id=uuid.uuid4(),
            name="kf1:sealed",
            status=status,
            away_since=away_since,
            token_hash=uuid.uuid4().hex,
            consented_at=arrived_at,
            arrived_at=arrived_at,
            expires_at=arrived_at + dt.timedelta(days=30),
        )
    )
    if call is not None:
        await Call.insert(
            Call(
                id=uuid.uuid4(),
                org_id=org_id,
                room_id=uuid.uuid4(),
                visit_id=visit_id,
                expert_id=uuid.uuid4(),
                started_at=arrived_at,
                ended_at=None if call == "active" else arrived_at + MINUTE,
                expires_at=arrived_at + dt.timedelta(days=30),
            )
        )
    return visit_id


def totals() -> tuple[int | None, int | None]:
    def total(gauge: metrics.RegionGauge) -> int | None:
        points = gauge.observed()
        assert all(attributes == {} for _, attributes in points)
        return points[0][0] if points else None

    return total(metrics.waiting_visitors), total(metrics.active_calls)


def by_org(gauge: metrics.RegionGauge) -> dict[str, int]:
    return {attributes[ORGANISATION_ID]: value for value, attributes in gauge.observed()}


async def seeded(ctx: RegionContext) -> tuple[uuid.UUID, uuid.UUID]:
    """Two organisations: 3 visitors waiting and 3 calls going on, among visits that count
    for neither (left, ended, away too long)."""
    a = await new_org(ctx, "clinic-a")
    b = await new_org(ctx, "clinic-b")
    await new_visit(a)
    await new_visit(a, away_since=NOW - 2 * MINUTE)  # a reload: still waiting
    await new_visit(a, away_since=NOW - AWAY_LIMIT - MINUTE)  # gone for good, not yet marked "left"
    await new_visit(a, "left")
    await new_visit(a, "admitted", call="active")
    await new_visit(a, "ended", call="ended")
    await new_visit(b)
    await new_visit(b, "admitted", call="active")
    await new_visit(b, "admitted", call="active")
    return a, b


async def test_the_counts_are_what_the_region_database_holds(ctx: RegionContext) -> None:
    a, b = await seeded(ctx)

    await live_counts.refresh("none")

    assert totals() == (3, 3)
    # No organisation on them unless organisation_attributes allows it.
    assert metrics.waiting_visitors_by_organisation.observed() == ()
    assert metrics.active_calls_by_organisation.observed() == ()

    await live_counts.refresh("id")
    assert totals() == (3, 3)
    assert by_org(metrics.waiting_visitors_by_organisation) == {str(a): 2, str(b): 1}
    assert by_org(metrics.active_calls_by_organisation) == {str(a): 1, str(b): 2}
    assert all(ORGANISATION_SLUG not in attrs for _, attrs in metrics.waiting_visitors_by_organisation.observed())

    await live_counts.refresh("slug")
    observed = metrics.active_calls_by_organisation.observed()
    slugs = {attrs[ORGANISATION_ID]: attrs[ORGANISATION_SLUG] for _, attrs in observed}
    assert slugs == {str(a): "clinic-a", str(b): "clinic-b"}


async def test_a_visitor_away_too_long_is_no_longer_waiting(
    ctx: RegionContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await new_org(ctx, "clinic-a")
    await new_visit(a, away_since=NOW - AWAY_LIMIT + MINUTE)  # its socket went away 9 minutes ago
    await live_counts.refresh()
    assert totals() == (1, 0)

    # Two minutes on, nobody has read a waiting list (which would mark the visit "left"):
    # the visitor has left all the same.
    monkeypatch.setattr(clock, "now", lambda: NOW + 2 * MINUTE)
    await live_counts.refresh()
    assert totals() == (0, 0)
    assert await Visit.count().where(Visit.status == "waiting") == 1


async def test_visits_removed_by_a_purge_are_no_longer_counted(ctx: RegionContext) -> None:
    a = await new_org(ctx, "clinic-a")
    old = NOW - dt.timedelta(days=40)  # past the organisation's 30 days
    await new_visit(a, arrived_at=old)  # a waiting visit nobody ended
    await new_visit(a, "admitted", arrived_at=old, call="active")  # a call nobody hung up
    await new_visit(a)
    await live_counts.refresh()
    assert totals() == (2, 1)

    await purge(ctx, PurgeRequest(run_id=uuid.uuid4(), as_of=NOW, trigger="cli", org_slug="clinic-a"))

    await live_counts.refresh()
    assert totals() == (1, 0)


async def test_while_the_database_does_not_answer_nothing_is_reported_and_it_is_said_once(
    ctx: RegionContext, caplog: pytest.LogCaptureFixture
) -> None:
    a = await new_org(ctx, "clinic-a")
    await new_visit(a)
    caplog.set_level(logging.INFO, logger="konsil.telemetry")
    counting = asyncio.create_task(live_counts.keep_counting("none", every=0.05))
    try:
        await wait_until_async(lambda: totals() == (1, 0), "the first count")

        # Nothing listens on this port: the region database is unreachable.
        unreachable = database.engine_for(f"postgresql://postgres@127.0.0.1:{free_port()}/gone")
        database.bind(REGION_TABLES, unreachable)
        await wait_until_async(lambda: totals() == (None, None), "the gauges to report nothing")
        await asyncio.sleep(0.3)  # several failed rounds
        database.bind(REGION_TABLES, ctx.engine)
        await wait_until_async(lambda: totals() == (1, 0), "the count after the outage")
    finally:
        counting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await counting
    messages = [r.getMessage() for r in caplog.records if r.name == "konsil.telemetry"]
    assert sum("did not answer" in m for m in messages) == 1, messages
    assert sum("answers again" in m for m in messages) == 1, messages
    assert totals() == (None, None)  # a stopped task reports nothing


def test_nothing_is_counted_while_telemetry_is_off() -> None:
    assert live_counts.start(TelemetrySettings()) is None


def test_a_gauge_exports_what_was_set_and_nothing_once_cleared() -> None:
    """The OpenTelemetry SDK's own reader: a count set is exported; once cleared (the
    database did not answer) no point at all, not the last one again."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    gauge = metrics.RegionGauge("konsil_test_gauge", "a test", meter=provider.get_meter("test"))

    def exported() -> list[tuple[int | float, dict[str, Any]]]:
        data = reader.get_metrics_data()
        return [
            (point.value, dict(point.attributes or {}))
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "konsil_test_gauge"
            for point in metric.data.data_points
            if isinstance(point, NumberDataPoint)
        ]

    try:
        gauge.set([(4, {})])
        assert exported() == [(4, {})]
        assert exported() == [(4, {})]  # observed again at each export
        gauge.clear()
        assert exported() == []
    finally:
        provider.shutdown()
