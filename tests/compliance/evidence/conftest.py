"""Evidence collectors against a real PostgreSQL region database and a real local
keyring. Organisations, members, rooms, visits, calls and data-subject requests are
made through the product's own actions, so their rows are sealed and their access-log
entries are the ones production writes; failing fixtures then change the database
behind the service's back, as an intruder, a bug or a stuck purge would."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from konsil.compliance.dsr import service as dsr
from konsil.compliance.dsr.schemas import RequestIn
from konsil.compliance.evidence.model import Observation, Scope, evidence_bytes
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import RegionSettings, Settings, VaultSettings
from konsil.regions import container
from konsil.regions.container import build_region
from konsil.regions.tables import REGION_TABLES
from konsil.tenants import organisations, records, rooms, visits
from konsil.tenants.actors import Actor
from konsil.tenants.auth import Principal
from konsil.tenants.schemas import NewOrganisation, OwnerIn, RoomIn
from konsil.tenants.tables import Member, Organisation, Room
from tests.conftest import bindings_restored

# Personal data the fixtures enter; none of it may appear in evidence or reasons.
VISITOR_NAME = "Vera Visitorsen"
VISITOR_PHONE = "+4791234567"
OWNER_NAME = "Olga Ownerdottir"
SIGNUP = Actor("control-plane", "system", "signup", "192.0.2.10", "create the customer account")


@pytest.fixture(scope="session")
async def evidence_dsn(pg_database: Callable[[str, str], str]) -> str:
    return await asyncio.to_thread(pg_database, "evidence_region", "region")


def region_settings(dsn: str, keyring: Path, **fields: Any) -> Settings:
    region = RegionSettings(
        id="eu",
        jurisdiction="EU/EEA",
        public_url="http://127.0.0.1:9",
        listen="127.0.0.1:9",
        database=dsn,
        internal_secret="eu-secret-for-tests-only",
        vault=VaultSettings(backend="local", keyring_path=str(keyring)),
        **fields,
    )
    return Settings(mode="services", discovery_key="discovery-key-for-tests", regions=[region])


@pytest.fixture
async def ctx(evidence_dsn: str, tmp_path: Path) -> AsyncIterator[RegionContext]:
    """A region container on the PostgreSQL region database with its own local keyring.
    Table binding is process-wide: the previous one is put back afterwards."""
    settings = region_settings(evidence_dsn, tmp_path / "keyring")
    context = build_region(settings, settings.regions[0], service_name="test")
    with bindings_restored(REGION_TABLES):
        await container.start(context)  # binds the tables and seals the log heads it writes
        try:
            yield context
        finally:
            await container.stop(context)


def with_region(ctx: RegionContext, **fields: Any) -> RegionContext:
    """The same container with some of its region's settings changed."""
    return dataclasses.replace(ctx, region=msgspec.structs.replace(ctx.region, **fields))


@dataclass(frozen=True)
class Org:
    record: records.Organisation
    owner_id: uuid.UUID
    owner: Actor  # the owner acting in the portal
    owner_email: str
    room: records.Room

    @property
    def id(self) -> uuid.UUID:
        return self.record.id


async def new_org(ctx: RegionContext, retention_days: int = 30, relay_only: bool = False) -> Org:
    """An organisation as signup makes it (owner, keys), with a room of the owner."""
    org_id = uuid.uuid4()
    email = f"olga.{org_id.hex[:8]}@praxis.example"
    created = await organisations.create(
        ctx,
        SIGNUP,
        NewOrganisation(
            id=org_id,
            slug=f"praxis-{org_id.hex[:10]}",
            name="Praxis Nord",
            owner=OwnerIn(name=OWNER_NAME, email=email, password="correct horse battery"),
            retention_days=retention_days,
        ),
    )
    await Organisation.update({Organisation.relay_only: relay_only}).where(Organisation.id == org_id)
    org_row = await Organisation.select().where(Organisation.id == org_id).first()
    assert org_row is not None
    org = records.Organisation.of(org_row)
    owner = Actor(f"member:{created.owner_id}", "owner", f"member:{created.owner_id}", "198.51.100.20")
    principal = Principal(kind="member", org_id=org_id, id=created.owner_id, role="owner")
    await rooms.create(ctx, owner, principal, org, RoomIn(slug="sprechstunde", title="Sprechstunde"))
    room_row = await Room.select().where(Room.org_id == org_id).first()
    assert room_row is not None
    room = records.Room.of(room_row)
    return Org(record=org, owner_id=created.owner_id, owner=owner, owner_email=email, room=room)


async def new_visit(ctx: RegionContext, org: Org, *, admit: bool = True) -> tuple[uuid.UUID, uuid.UUID | None]:
    """A visitor arrives (and is admitted: a call starts, then ends). (visit id, call id)."""
    form = visits.VisitorForm(name=VISITOR_NAME, consent=True, phone=VISITOR_PHONE)
    visit_id, _ = await visits.arrive(ctx, org.record, org.room, form, "203.0.113.5")
    if not admit:
        return visit_id, None
    call = await visits.admit(ctx, org.owner, org.record, visit_id, org.owner_id, "owner")
    await visits.end_call(ctx, org.owner, org.id, call.id)
    return visit_id, call.id


async def new_request(ctx: RegionContext, org: Org) -> uuid.UUID:
    """A data-subject access request filed by the owner for the visitor's phone."""
    row = await Organisation.select().where(Organisation.id == org.id).first()
    assert row is not None
    out = await dsr.file(ctx, org.owner, row, RequestIn(kind="access", phone=VISITOR_PHONE))
    return out.id


def scope_of(org_id: uuid.UUID, days: int = 30, now: dt.datetime | None = None) -> Scope:
    """The last ``days`` days up to (and a minute past) now."""
    at = now or dt.datetime.now(dt.UTC)
    return Scope(
        org_id=org_id,
        period_start=at - dt.timedelta(days=days),
        period_end=at + dt.timedelta(minutes=1),
        now=at,
    )


def assert_no_personal_data(observation: Observation, *also: str) -> None:
    """Neither the evidence nor a reason holds what a person entered."""
    text = (evidence_bytes(observation.evidence) + msgspec.json.encode(observation.checks)).decode()
    for value in (VISITOR_NAME, VISITOR_PHONE, OWNER_NAME, *also):
        assert value not in text, f"{value!r} appears in the {observation.collector} observation"
    for word in ("Vera", "Visitorsen", "Olga", "91234567"):
        assert word not in text


async def member_ids(org_id: uuid.UUID) -> list[uuid.UUID]:
    return [row["id"] for row in await Member.select(Member.id).where(Member.org_id == org_id)]
