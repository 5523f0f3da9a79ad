"""What the evidence tests of the residency, dsr, sessions, subprocessors and
network_tests collectors share: a region container on a real region database, an
organisation made by the tenant services (owner, room, visits, calls) and the checks
that an observation holds no personal data."""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine

from konsil.compliance.evidence.model import Observation, Scope, evidence_bytes, evidence_sha256
from konsil.platform.core import clock, database
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import RegionSettings, Settings, VaultSettings
from konsil.regions.container import build_region
from konsil.regions.tables import REGION_TABLES
from konsil.tenants import organisations, records, visits
from konsil.tenants.actors import Actor
from konsil.tenants.schemas import NewOrganisation, OwnerIn
from konsil.tenants.tables import Member, Organisation, Room

JURISDICTIONS = {"eu": "EU/EEA", "us": "United States"}
PASSWORD = "correct horse battery"


def dsn_of(engine: Engine[Any]) -> str:
    """The DSN of the session's region database (``region_engine``)."""
    assert isinstance(engine, PostgresEngine)
    return str(engine.config["dsn"])


@contextlib.asynccontextmanager
async def region_context(
    dsn: str, keyring: Path, region_id: str = "eu", **settings: Any
) -> AsyncIterator[RegionContext]:
    """A region container on ``dsn`` with a real local keyring; the tables' binding
    (process-wide) is put back afterwards."""
    region = RegionSettings(
        id=region_id,
        jurisdiction=JURISDICTIONS[region_id],
        public_url="http://127.0.0.1:9",
        listen="127.0.0.1:9",
        database=dsn,
        internal_secret=f"{region_id}-secret-{secrets.token_hex(8)}",
        vault=VaultSettings(backend="local", keyring_path=str(keyring)),
    )
    config = Settings(mode="embedded", discovery_key="discovery-key-for-tests", regions=[region], **settings)
    previous = [table._meta._db for table in REGION_TABLES]
    ctx = build_region(config, region, service_name="test")
    database.bind(REGION_TABLES, ctx.engine)
    await database.start(ctx.engine)
    try:
        yield ctx
    finally:
        await ctx.keys.provider.close()
        await database.stop(ctx.engine)
        for table, db in zip(REGION_TABLES, previous, strict=True):
            table._meta._db = db


@dataclass
class Org:
    """An organisation made as signup makes it, with its owner and one room."""

    ctx: RegionContext
    record: records.Organisation
    owner: records.Member
    owner_email: str
    room: records.Room
    # Plain personal data the tests put in (names, e-mails, phones): none may appear in evidence.
    personal: list[str]

    @property
    def id(self) -> uuid.UUID:
        return self.record.id

    @property
    def actor(self) -> Actor:
        who = f"member:{self.owner.id}"
        return Actor(who, "owner", who, "127.0.0.1")

    def as_row(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self.record)


async def new_org(ctx: RegionContext) -> Org:
    tag = secrets.token_hex(4)
    owner_name, owner_email = f"Dr Ingrid Owner {tag}", f"ingrid.{tag}@praxis.example"
    new = NewOrganisation(
        id=uuid.uuid4(),
        slug=f"praxis-{tag}",
        name=f"Praxis {tag}",
        owner=OwnerIn(name=owner_name, email=owner_email, password=PASSWORD),
    )
    created = await organisations.create(ctx, Actor("control", "system", "control", "127.0.0.1"), new)
    org = records.Organisation.of(await Organisation.select().where(Organisation.id == new.id).first().run() or {})
    owner = records.Member.of(await Member.select().where(Member.id == created.owner_id).first().run() or {})
    room = records.Room(
        id=uuid.uuid4(), org_id=org.id, slug="consult", title="Consultation", expert_id=owner.id, created_at=clock.now()
    )
    await Room.insert(Room(**msgspec.structs.asdict(room))).run()
    return Org(ctx, org, owner, owner_email, room, [owner_name, owner_email])


async def new_visit(org: Org, name: str | None = None, phone: str | None = None) -> uuid.UUID:
    name = name or f"Visitor {secrets.token_hex(3)}"
    org.personal += [name, *([phone] if phone else [])]
    form = visits.VisitorForm(name=name, consent=True, phone=phone)
    visit_id, _ = await visits.arrive(org.ctx, org.record, org.room, form, "127.0.0.1")
    return visit_id


async def new_call(org: Org, name: str | None = None, phone: str | None = None) -> records.Call:
    """A visitor arrives and the owner admits them: a call of the organisation."""
    visit_id = await new_visit(org, name, phone)
    out = await visits.admit(org.ctx, org.actor, org.record, visit_id, org.owner.id, "owner")
    call = await visits.call_by_id(org.id, out.id)
    assert call is not None
    return call


def period(org: Org | uuid.UUID, days: float = 1) -> Scope:
    """The last ``days`` up to a minute from now."""
    now = clock.now()
    org_id = org.id if isinstance(org, Org) else org
    return Scope(
        org_id=org_id,
        period_start=now - dt.timedelta(days=days),
        period_end=now + dt.timedelta(minutes=1),
        now=now + dt.timedelta(seconds=1),
    )


def assert_well_formed(observation: Observation, collector: str, scope: Scope, checks: Iterable[str]) -> None:
    assert observation.collector == collector and observation.org_id == scope.org_id
    assert observation.collected_at == scope.now
    assert (observation.period_start, observation.period_end) == (scope.period_start, scope.period_end)
    assert sorted(c.name for c in observation.checks) == sorted(checks)
    assert observation.evidence_sha256 == evidence_sha256(observation.evidence)
    for item in observation.checks:
        assert item.reason.strip(), item.name


def assert_no_personal_data(observation: Observation, personal: Iterable[str]) -> None:
    """Neither the evidence nor a reason holds any of the plain values put in, nor a
    sealed value (``kf1:…``), nor a blind index."""
    text = (evidence_bytes(observation.evidence) + msgspec.json.encode(observation.checks)).decode().lower()
    for value in personal:
        assert value.lower() not in text, f"personal data in the evidence: {value!r}"
    assert "kf1:" not in text
