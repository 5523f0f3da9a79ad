"""The "who accessed my data" extract (compliance/dsr/service.py ``access_extract``) in
the embedded default, a migrated SQLite region with a local keyring: the subject's
entries in words, the organisation's members by name, and a visitor who is someone
else never named nor identified. (PostgreSQL and the HTTP route: tests/e2e/
test_dsr_access_extract.py.)"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pypdf import PdfReader

from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.compliance.dsr import service
from konsil.compliance.dsr.tables import DataSubjectRequest
from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core import database
from konsil.platform.core.region import RegionContext
from konsil.regions.container import build_region
from konsil.regions.tables import REGION_TABLES
from konsil.tenants.actors import Actor, record
from konsil.tenants.tables import Organisation
from tests.compliance.evidence.conftest import (
    OWNER_NAME,
    VISITOR_NAME,
    VISITOR_PHONE,
    new_org,
    new_request,
    new_visit,
    region_settings,
)
from tests.conftest import bindings_restored


@pytest.fixture(scope="module")
def sqlite_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    dsn = f"sqlite://{tmp_path_factory.mktemp('dsr') / 'region.sqlite'}"
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


def text_of(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return re.sub(r"\s+", " ", " ".join(page.extract_text() or "" for page in reader.pages))


async def test_the_extract_names_members_and_hides_other_visitors(lite: RegionContext) -> None:
    org = await new_org(lite)
    visit_id, call_id = await new_visit(lite, org)
    request_id = await new_request(lite, org)
    row = await Organisation.select().where(Organisation.id == org.id).first()
    assert row is not None and call_id is not None
    # Should a visitor ever act on someone else's visit, the extract must not say who.
    stranger = uuid.uuid4()
    other = Actor(f"visitor:{stranger}", "visitor", f"visitor:{stranger}", "203.0.113.9", "video consultation")
    await record(lite, other, org.id, "read", "call", call_id, f"visit:{visit_id}")

    text = text_of(await service.access_extract(lite, org.owner, row, request_id))

    assert "Who accessed your data" in text and "Praxis Nord" in text
    assert f"found by your phone number {VISITOR_PHONE}" in text
    assert f"{OWNER_NAME}, owner of the organisation" in text, "the organisation's member, by name"
    assert "You, visitor" in text and f"visitor:{visit_id}" in re.sub(r"\s", "", text)
    assert "Another visitor, visitor" in text
    assert str(stranger)[:8] not in text and VISITOR_NAME not in text
    entries = await AccessLogEntry.select().where(AccessLogEntry.subject_ref == f"visit:{visit_id}")
    made = [e for e in entries if e["purpose"] == service.EXTRACT_PURPOSE]
    assert [(e["action"], e["object_type"]) for e in made] == [("export", "access_log")]
    assert f"{len(entries)} accesses" in text, "every entry about the visit, its own making included"
    status = await DataSubjectRequest.select(DataSubjectRequest.status).where(DataSubjectRequest.id == request_id)
    assert status == [{"status": "received"}], "the extract alone does not answer an access request"
