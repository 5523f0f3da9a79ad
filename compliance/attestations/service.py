"""Attestations of controls: an owner signs the statement of a control that evidence
cannot decide (``[controls.attestation]`` in compliance/controls/*.toml), and it holds
for the catalog's ``valid_days`` or until it is withdrawn.

The statement signed is always the catalog's, stored as it was at signing, so a later
edit of the catalog never changes what someone put their name under. Signing and
withdrawing are access-logged in the same transaction as the change. ``current`` is
what the reports read: the attestations that hold at a given moment.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from konsil.compliance.attestations.tables import ControlAttestation
from konsil.compliance.controls.catalog import FRAMEWORK_IDS, Control, Framework, load_catalogs
from konsil.platform.core import clock, database, errors
from konsil.platform.core.region import RegionContext
from konsil.tenants.actors import Actor, record

State = Literal["attested", "expired", "withdrawn", "never"]
HISTORY_LIMIT = 500


class Attested(msgspec.Struct, frozen=True, kw_only=True):
    """A control met by an owner's attestation at a given moment (for the reports)."""

    framework: str
    control_id: str
    statement: str  # as signed
    signed_by: uuid.UUID  # the owner's member id
    signed_at: dt.datetime
    expires_at: dt.datetime


class AttestationOut(msgspec.Struct, frozen=True, kw_only=True):
    """One signature, as the API shows it (member ids only, no personal data)."""

    id: uuid.UUID
    framework: str
    control_id: str
    statement: str
    signed_by: uuid.UUID
    signed_at: dt.datetime
    expires_at: dt.datetime
    withdrawn_at: dt.datetime | None
    withdrawn_by: uuid.UUID | None


class ControlState(msgspec.Struct, frozen=True, kw_only=True):
    """A control met by attestation and where it stands now: ``attested`` (until
    ``attested_until``), ``expired``, ``withdrawn`` (its latest signature was), or
    ``never`` signed."""

    framework: str
    control_id: str
    title: str
    statement: str  # what signing attests now (the catalog's)
    valid_days: int
    state: State
    attested_until: dt.datetime | None
    latest: AttestationOut | None  # the latest signature, whatever became of it


class _Row(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    org_id: uuid.UUID
    framework: str
    control_id: str
    statement: str
    signed_by: uuid.UUID
    signed_at: dt.datetime
    expires_at: dt.datetime
    withdrawn_at: dt.datetime | None
    withdrawn_by: uuid.UUID | None

    def holds_at(self, at: dt.datetime) -> bool:
        withdrawn = self.withdrawn_at is not None and self.withdrawn_at <= at
        return self.signed_at <= at < self.expires_at and not withdrawn

    def out(self) -> AttestationOut:
        return msgspec.convert(msgspec.structs.asdict(self), AttestationOut)


@functools.cache
def _catalogs() -> dict[str, Framework]:
    """The catalogs, loaded and checked once per process."""
    return load_catalogs()


def framework_of(framework_id: str) -> Framework:
    found = _catalogs().get(framework_id)
    if found is None:
        known = ", ".join(FRAMEWORK_IDS)
        raise errors.bad_request(f"framework: no framework {framework_id[:40]!r} (known: {known})")
    return found


def attested_control(framework_id: str, control_id: str) -> Control:
    """The control, when it is one an owner attests; a 400 naming it otherwise."""
    framework = framework_of(framework_id)
    try:
        control = framework.control(control_id)
    except KeyError:
        raise errors.bad_request(f"control_id: {framework.name} has no control {control_id[:80]!r}") from None
    if control.attestation is None:
        raise errors.bad_request(
            f"control_id: {framework.name} control {control.id} is decided by evidence Konsil collects, "
            "not by an attestation"
        )
    return control


def _attested_controls(framework: Framework) -> list[Control]:
    return [c for c in framework.controls if c.attestation is not None]


async def _rows(org_id: uuid.UUID, framework_ids: Iterable[str]) -> list[_Row]:
    """The organisation's signatures of these frameworks, oldest first. Times are
    compared in Python: the same on PostgreSQL and on SQLite's text timestamps."""
    rows = (
        await ControlAttestation.select()
        .where((ControlAttestation.org_id == org_id) & ControlAttestation.framework.is_in(list(framework_ids)))
        .order_by(ControlAttestation.signed_at)
        .run()
    )
    return [msgspec.convert(row, _Row) for row in rows]


async def current(org_id: uuid.UUID, framework: str, at: dt.datetime) -> list[Attested]:
    """The controls of ``framework`` an attestation meets at ``at``, in catalog order:
    for each, the latest signature that holds then (signed, not expired, not withdrawn
    by then). Works for a deleted organisation too (the rows outlive it)."""
    catalog = framework_of(framework)
    latest: dict[str, _Row] = {}
    for row in await _rows(org_id, [framework]):
        if row.holds_at(at):
            latest[row.control_id] = row  # oldest first: the last one wins
    held = [latest[control.id] for control in catalog.controls if control.id in latest]
    return [
        Attested(
            framework=held_row.framework,
            control_id=held_row.control_id,
            statement=held_row.statement,
            signed_by=held_row.signed_by,
            signed_at=held_row.signed_at,
            expires_at=held_row.expires_at,
        )
        for held_row in held
    ]


def _state(control: Control, framework: Framework, rows: list[_Row], now: dt.datetime) -> ControlState:
    assert control.attestation is not None
    holding = [r for r in rows if r.holds_at(now)]
    latest = rows[-1] if rows else None
    state: State
    if holding:
        state = "attested"
    elif latest is None:
        state = "never"
    elif latest.withdrawn_at is not None:
        state = "withdrawn"
    else:
        state = "expired"
    return ControlState(
        framework=framework.id,
        control_id=control.id,
        title=control.title,
        statement=control.attestation.statement,
        valid_days=control.attestation.valid_days,
        state=state,
        attested_until=max(r.expires_at for r in holding) if holding else None,
        latest=latest.out() if latest else None,
    )


async def states(org_id: uuid.UUID, framework: str | None) -> list[ControlState]:
    """Every control met by attestation (of one framework, or all) and its state now."""
    frameworks = [framework_of(framework)] if framework is not None else list(_catalogs().values())
    by_control: dict[tuple[str, str], list[_Row]] = {}
    for row in await _rows(org_id, [f.id for f in frameworks]):
        by_control.setdefault((row.framework, row.control_id), []).append(row)
    now = clock.now()
    return [
        _state(control, f, by_control.get((f.id, control.id), []), now)
        for f in frameworks
        for control in _attested_controls(f)
    ]


async def history(org_id: uuid.UUID, framework: str | None) -> list[AttestationOut]:
    """Every signature (of one framework, or all), newest first, withdrawn ones too."""
    frameworks = [framework_of(framework).id] if framework is not None else list(_catalogs())
    rows = await _rows(org_id, frameworks)
    return [row.out() for row in reversed(rows[-HISTORY_LIMIT:])]


def _subject(org_id: uuid.UUID) -> str:
    # An owner attests for the organisation: the record is about it, not about a person.
    return f"org:{org_id}"


async def sign(
    ctx: RegionContext, actor: Actor, org_id: uuid.UUID, signer: uuid.UUID, framework: str, control_id: str
) -> AttestationOut:
    """The owner ``signer`` signs the control's statement, valid for the catalog's
    ``valid_days``; signing again renews it (a new signature, the old one stays)."""
    control = attested_control(framework, control_id)
    assert control.attestation is not None
    now = clock.now()
    row = _Row(
        id=uuid.uuid4(),
        org_id=org_id,
        framework=framework,
        control_id=control.id,
        statement=control.attestation.statement,
        signed_by=signer,
        signed_at=now,
        expires_at=now + dt.timedelta(days=control.attestation.valid_days),
        withdrawn_at=None,
        withdrawn_by=None,
    )
    async with database.transaction(ctx.engine):
        await ControlAttestation.insert(ControlAttestation(**msgspec.structs.asdict(row))).run()
        await record(
            ctx, actor.for_purpose("attest a control"), org_id, "create", "attestation", row.id, _subject(org_id)
        )
    return row.out()


async def withdraw(
    ctx: RegionContext, actor: Actor, org_id: uuid.UUID, by: uuid.UUID, attestation_id: uuid.UUID
) -> AttestationOut:
    """Withdraw a signature that still holds: from now on the control is not attested
    by it. The row stays, naming who withdrew it and when."""
    now = clock.now()
    async with database.transaction(ctx.engine):
        found = await _one(org_id, attestation_id)
        if found.withdrawn_at is not None:
            raise errors.conflict("this attestation was already withdrawn")
        if found.expires_at <= now:
            raise errors.conflict("this attestation has already expired; there is nothing to withdraw")
        changes: dict[Any, Any] = {ControlAttestation.withdrawn_at: now, ControlAttestation.withdrawn_by: by}
        changed = (
            await ControlAttestation.update(changes)
            .where((ControlAttestation.id == attestation_id) & ControlAttestation.withdrawn_at.is_null())
            .returning(ControlAttestation.id)
            .run()
        )
        if not changed:  # withdrawn by someone else in the meantime
            raise errors.conflict("this attestation was already withdrawn")
        await record(
            ctx,
            actor.for_purpose("withdraw an attestation"),
            org_id,
            "update",
            "attestation",
            attestation_id,
            _subject(org_id),
        )
    return msgspec.structs.replace(found, withdrawn_at=now, withdrawn_by=by).out()


async def _one(org_id: uuid.UUID, attestation_id: uuid.UUID) -> _Row:
    row = (
        await ControlAttestation.select()
        .where((ControlAttestation.id == attestation_id) & (ControlAttestation.org_id == org_id))
        .first()
        .run()
    )
    if row is None:
        raise errors.not_found("no such attestation")
    return msgspec.convert(row, _Row)
