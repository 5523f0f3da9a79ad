"""Control attestations (issue 13, items 1 and 6) on the real region databases
(PostgreSQL, and a migrated SQLite file for the embedded default): an owner signs the
catalog's statement, it holds for the catalog's period or until withdrawn, each
signature and withdrawal is access-logged, ``current`` gives the reports what holds at
a moment, and the records outlive their organisation."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.compliance.attestations import service
from konsil.compliance.attestations.tables import ControlAttestation
from konsil.compliance.controls.catalog import load_catalogs
from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core import clock, database, errors
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import RegionSettings, Settings, VaultSettings
from konsil.regions.container import build_region
from konsil.regions.tables import ORGANISATION_OWNED, REGION_TABLES
from konsil.tenants import removal
from konsil.tenants.actors import Actor
from konsil.tenants.tables import Member, Organisation

CATALOGS = load_catalogs()
# A GDPR control met by attestation (Art. 30, the record of processing) and one met by evidence.
ATTESTED = next(c for c in CATALOGS["gdpr"].controls if c.attestation is not None)
CHECKED = next(c for c in CATALOGS["gdpr"].controls if c.check is not None)


@pytest.fixture(scope="session")
async def attestation_dsns(
    pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    sqlite = tmp_path_factory.mktemp("attestations") / "region.sqlite"
    migrate_target(Target("sqlite region", "region", f"sqlite://{sqlite}"))
    return {
        "postgres": await asyncio.to_thread(pg_database, "attestations_region", "region"),
        "sqlite": f"sqlite://{sqlite}",
    }


@pytest.fixture(params=["postgres", "sqlite"])
async def ctx(
    request: pytest.FixtureRequest, attestation_dsns: dict[str, str], tmp_path: Path
) -> AsyncIterator[RegionContext]:
    """A region context with a real local keyring; the tables' previous binding is put back."""
    region = RegionSettings(
        id="eu",
        jurisdiction="EU/EEA",
        public_url="http://127.0.0.1:9",
        listen="127.0.0.1:9",
        database=attestation_dsns[request.param],
        internal_secret="eu-secret-for-tests-only",
        vault=VaultSettings(backend="local", keyring_path=str(tmp_path / "keyring")),
    )
    settings = Settings(mode="embedded", discovery_key="discovery-key-for-tests", regions=[region])
    previous = [table._meta._db for table in REGION_TABLES]
    context = build_region(settings, region, service_name="test")
    database.bind(REGION_TABLES, context.engine)
    await database.start(context.engine)
    try:
        yield context
    finally:
        await context.keys.provider.close()
        await database.stop(context.engine)
        for table, db in zip(REGION_TABLES, previous, strict=True):
            table._meta._db = db


async def new_org(ctx: RegionContext) -> tuple[uuid.UUID, uuid.UUID]:
    """An organisation with its key and one owner: (org id, owner's member id)."""
    org_id, owner_id = uuid.uuid4(), uuid.uuid4()
    await Organisation.insert(Organisation(id=org_id, slug=f"att-{org_id.hex[:10]}", name="Praxis")).run()
    await ctx.keys.provision(org_id)
    await Member.insert(
        Member(
            id=owner_id, org_id=org_id, name="kf1:x", email="kf1:y", email_lookup="l", role="owner", password_hash="h"
        )
    ).run()
    return org_id, owner_id


def owner_actor(owner_id: uuid.UUID) -> Actor:
    who = f"member:{owner_id}"
    return Actor(who, "owner", who, "127.0.0.1")


def at_moment(monkeypatch: pytest.MonkeyPatch, moment: dt.datetime) -> None:
    monkeypatch.setattr(clock, "now", lambda: moment)


async def entries(org_id: uuid.UUID) -> list[dict[str, Any]]:
    return list(
        await AccessLogEntry.select(
            AccessLogEntry.actor,
            AccessLogEntry.action,
            AccessLogEntry.object_type,
            AccessLogEntry.object_id,
            AccessLogEntry.purpose,
        )
        .where((AccessLogEntry.org_id == org_id) & (AccessLogEntry.object_type == "attestation"))
        .order_by(AccessLogEntry.seq)
        .run()
    )


async def test_an_owner_signs_the_catalogs_statement_and_it_holds_for_its_period(
    ctx: RegionContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, owner_id = await new_org(ctx)
    assert ATTESTED.attestation is not None
    signed_at = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
    ends = signed_at + dt.timedelta(days=ATTESTED.attestation.valid_days)

    before = {s.control_id: s for s in await service.states(org_id, "gdpr")}
    assert set(before) == {c.id for c in CATALOGS["gdpr"].controls if c.attestation is not None}
    assert before[ATTESTED.id].state == "never" and before[ATTESTED.id].latest is None

    at_moment(monkeypatch, signed_at)
    signed = await service.sign(ctx, owner_actor(owner_id), org_id, owner_id, "gdpr", ATTESTED.id)
    assert (signed.statement, signed.signed_by, signed.signed_at, signed.expires_at) == (
        ATTESTED.attestation.statement,
        owner_id,
        signed_at,
        ends,
    )
    state = {s.control_id: s for s in await service.states(org_id, "gdpr")}[ATTESTED.id]
    assert (state.state, state.attested_until, state.latest) == ("attested", ends, signed)

    # ``current``, what the reports read: from the signature up to (not including) its end.
    assert await service.current(org_id, "gdpr", signed_at - dt.timedelta(microseconds=1)) == []
    held = await service.current(org_id, "gdpr", ends - dt.timedelta(microseconds=1))
    assert held == [
        service.Attested(
            framework="gdpr",
            control_id=ATTESTED.id,
            statement=ATTESTED.attestation.statement,
            signed_by=owner_id,
            signed_at=signed_at,
            expires_at=ends,
        )
    ]
    assert await service.current(org_id, "gdpr", ends) == []
    assert await service.current(org_id, "hipaa", signed_at) == []

    at_moment(monkeypatch, ends)
    assert {s.control_id: s for s in await service.states(org_id, "gdpr")}[ATTESTED.id].state == "expired"
    assert await entries(org_id) == [
        {
            "actor": f"member:{owner_id}",
            "action": "create",
            "object_type": "attestation",
            "object_id": str(signed.id),
            "purpose": "attest a control",
        }
    ]


async def test_signing_again_renews_and_the_latest_signature_counts(
    ctx: RegionContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, owner_id = await new_org(ctx)
    first_at = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
    at_moment(monkeypatch, first_at)
    first = await service.sign(ctx, owner_actor(owner_id), org_id, owner_id, "gdpr", ATTESTED.id)
    at_moment(monkeypatch, first_at + dt.timedelta(days=10))
    second = await service.sign(ctx, owner_actor(owner_id), org_id, owner_id, "gdpr", ATTESTED.id)
    [held] = await service.current(org_id, "gdpr", first_at + dt.timedelta(days=11))
    assert held.signed_at == second.signed_at
    # Between the first one's end and the second one's, the second still holds.
    [later] = await service.current(org_id, "gdpr", first.expires_at + dt.timedelta(days=1))
    assert later.expires_at == second.expires_at
    signatures = await service.history(org_id, "gdpr")
    assert [s.id for s in signatures] == [second.id, first.id]


async def test_a_withdrawn_attestation_stops_holding_and_stays_on_record(
    ctx: RegionContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, owner_id = await new_org(ctx)
    signed_at = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
    at_moment(monkeypatch, signed_at)
    signed = await service.sign(ctx, owner_actor(owner_id), org_id, owner_id, "gdpr", ATTESTED.id)
    withdrawn_at = signed_at + dt.timedelta(days=3)
    at_moment(monkeypatch, withdrawn_at)
    withdrawn = await service.withdraw(ctx, owner_actor(owner_id), org_id, owner_id, signed.id)
    assert (withdrawn.withdrawn_at, withdrawn.withdrawn_by) == (withdrawn_at, owner_id)

    assert len(await service.current(org_id, "gdpr", withdrawn_at - dt.timedelta(seconds=1))) == 1
    assert await service.current(org_id, "gdpr", withdrawn_at) == []
    state = {s.control_id: s for s in await service.states(org_id, "gdpr")}[ATTESTED.id]
    assert (state.state, state.attested_until, state.latest) == ("withdrawn", None, withdrawn)
    assert [(e["action"], e["purpose"]) for e in await entries(org_id)] == [
        ("create", "attest a control"),
        ("update", "withdraw an attestation"),
    ]

    with pytest.raises(errors.AppError) as again:
        await service.withdraw(ctx, owner_actor(owner_id), org_id, owner_id, signed.id)
    assert again.value.status == 409 and "already withdrawn" in again.value.message
    # An expired one has nothing left to withdraw; another organisation's is not found.
    expired = await service.sign(ctx, owner_actor(owner_id), org_id, owner_id, "gdpr", ATTESTED.id)
    at_moment(monkeypatch, expired.expires_at)
    with pytest.raises(errors.AppError) as late:
        await service.withdraw(ctx, owner_actor(owner_id), org_id, owner_id, expired.id)
    assert late.value.status == 409 and "expired" in late.value.message
    other_id, other_owner = await new_org(ctx)
    with pytest.raises(errors.AppError) as elsewhere:
        await service.withdraw(ctx, owner_actor(other_owner), other_id, other_owner, signed.id)
    assert elsewhere.value.status == 404
    assert len(await entries(org_id)) == 3, "refused withdrawals change and log nothing"


@pytest.mark.parametrize(
    ("framework", "control_id", "named"),
    [
        ("iso27001", ATTESTED.id, "framework: no framework 'iso27001'"),
        ("gdpr", "Art. 99", "control_id: GDPR has no control 'Art. 99'"),
        ("gdpr", CHECKED.id, f"control_id: GDPR control {CHECKED.id} is decided by evidence"),
    ],
)
async def test_only_known_controls_met_by_attestation_can_be_signed(
    ctx: RegionContext, framework: str, control_id: str, named: str
) -> None:
    org_id, owner_id = await new_org(ctx)
    with pytest.raises(errors.AppError) as refused:
        await service.sign(ctx, owner_actor(owner_id), org_id, owner_id, framework, control_id)
    assert refused.value.status == 400 and refused.value.message.startswith(named), refused.value.message
    assert not await ControlAttestation.exists().where(ControlAttestation.org_id == org_id).run()
    assert await entries(org_id) == []


async def test_attestations_outlive_their_organisation(ctx: RegionContext, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ControlAttestation not in ORGANISATION_OWNED
    org_id, owner_id = await new_org(ctx)
    signed = await service.sign(
        ctx,
        owner_actor(owner_id),
        org_id,
        owner_id,
        "normen",
        next(c.id for c in CATALOGS["normen"].controls if c.attestation is not None),
    )
    await removal.remove_organisation(ctx, owner_actor(owner_id), org_id, tell=False)
    assert not await Organisation.exists().where(Organisation.id == org_id).run()
    [kept] = await service.current(org_id, "normen", signed.signed_at)
    assert (kept.control_id, kept.signed_by) == (signed.control_id, owner_id)
