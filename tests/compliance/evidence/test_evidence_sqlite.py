"""The embedded default keeps its region in SQLite: the collectors' SQL (the sealed-value
test uses GLOB there, PostgreSQL a regular expression) gives the same answers on a
migrated SQLite file, for a passing organisation and for the faults that SQL decides."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from konsil.compliance.controls.catalog import COLLECTOR_RULES
from konsil.compliance.evidence.collectors import collect
from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core import database
from konsil.platform.core.region import RegionContext
from konsil.regions.container import build_region
from konsil.regions.tables import REGION_TABLES
from konsil.tenants.tables import Visit
from tests.compliance.evidence.conftest import (
    VISITOR_NAME,
    assert_no_personal_data,
    new_org,
    new_request,
    new_visit,
    region_settings,
    scope_of,
)
from tests.conftest import bindings_restored

# Checks that do not depend on the database: the public address of these settings is
# plain HTTP (its own tests are in test_evidence_encryption.py), and no purge ran.
NOT_HERE = {"transport_encrypted", "purges_ran"}


@pytest.fixture(scope="module")
def sqlite_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    dsn = f"sqlite://{tmp_path_factory.mktemp('evidence') / 'region.sqlite'}"
    migrate_target(Target("sqlite region", "region", dsn))
    return dsn


@pytest.fixture
async def lite(sqlite_dsn: str, tmp_path: Path) -> AsyncIterator[RegionContext]:
    settings = region_settings(sqlite_dsn, tmp_path / "keyring")
    context = build_region(settings, settings.regions[0], service_name="test")
    with bindings_restored(REGION_TABLES):
        database.bind(REGION_TABLES, context.engine)
        await database.start(context.engine)
        try:
            yield context
        finally:
            await context.keys.provider.close()
            await database.stop(context.engine)


async def test_a_sound_organisation_passes_on_sqlite(lite: RegionContext) -> None:
    org = await new_org(lite)
    await new_visit(lite, org)
    await new_request(lite, org)
    observations = await collect(lite, scope_of(org.id), ["retention", "encryption", "keys", "access_log"])
    for observation in observations:
        assert {c.name for c in observation.checks} == COLLECTOR_RULES[observation.collector]
        assert_no_personal_data(observation, org.owner_email)
        for check in observation.checks:
            assert check.result == "pass" or check.name in NOT_HERE, check
    encryption, access_log = observations[1], observations[3]
    assert encryption.check("sealed_columns").figures["values"] == 5
    assert access_log.check("entries_in_period").figures["records_created"] == 5


async def test_faults_are_found_on_sqlite(lite: RegionContext) -> None:
    org = await new_org(lite)
    visit_id, _ = await new_visit(lite, org)
    await Visit.update({Visit.name: VISITOR_NAME}).where(Visit.id == visit_id)
    hidden, now = uuid.uuid4(), dt.datetime.now(dt.UTC)
    await Visit.insert(
        Visit(
            id=hidden,
            org_id=org.id,
            room_id=org.room.id,
            name="kf1:" + "0" * 32 + ":" + "A" * 40,  # the shape of an envelope, under no key of ours
            token_hash=uuid.uuid4().hex,
            consented_at=now - dt.timedelta(days=45),
            arrived_at=now - dt.timedelta(days=45),
            expires_at=now,
        )
    )
    [retention, encryption, access_log] = await collect(
        lite, scope_of(org.id, days=60), ["retention", "encryption", "access_log"]
    )
    sealed = encryption.check("sealed_columns")
    assert sealed.result == "fail" and sealed.figures["plaintext"] == 2
    assert str(visit_id) in sealed.reason and str(hidden) in sealed.reason
    within = retention.check("data_within_retention")
    assert within.result == "fail" and str(hidden) in within.reason
    logged = access_log.check("entries_in_period")
    assert logged.result == "fail" and f"1 visit (e.g. id {hidden})" in logged.reason
    for observation in (retention, encryption, access_log):
        assert_no_personal_data(observation, org.owner_email)
