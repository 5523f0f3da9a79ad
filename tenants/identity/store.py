"""A visit's verified identity (national eID), sealed with the organisation's key: kept
when the check succeeds, shown to the room's expert with the national ID number masked,
revealed in full only on the expert's explicit ask. Every showing and every reveal is
access-logged; Konsil's support and operators never get it. It goes with its visit
(tenants/removal.py, the visit cascade)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace
from typing import Any

import msgspec

from konsil.platform.core import database, errors
from konsil.platform.core.identity import VerifiedIdentity, mask_national_id
from konsil.platform.core.keys.cipher import FieldDecryptionError, FieldRef, OrgCipher
from konsil.platform.core.region import RegionContext
from konsil.tenants import rooms
from konsil.tenants.actors import Actor, record, record_reads
from konsil.tenants.identity.tables import VisitIdentity

# Who never sees a national ID number, masked or not: Konsil's own staff (support,
# operators, the ops team) and auditors (who look at how data is handled, not at it).
NEVER_SHOWN_TO = frozenset({"support", "staff", "operator", "ops", "auditor", "system", "anonymous", "visitor"})
OBJECT = "visit_identity"
NATIONAL_ID = "national_id"  # the access log's object type of a reveal
REVEAL_PURPOSE = "reveal the visitor's national ID number (identity check)"
EID_LABELS = {"no_bankid": "BankID (NO)", "dk_mitid": "MitID (DK)", "se_bankid": "BankID (SE)"}


class IdentityShown(msgspec.Struct):
    """A visit's verified identity as the expert sees it before revealing the number."""

    eid: str
    eid_label: str
    verified_name: str
    national_id_masked: str
    verified_at: dt.datetime


class IdentityRevealed(msgspec.Struct):
    national_id: str


def _subject(visit_id: uuid.UUID) -> str:
    return f"visit:{visit_id}"


def _ref(org_id: uuid.UUID, column: str, visit_id: uuid.UUID) -> FieldRef:
    return FieldRef(org_id, OBJECT, column, visit_id)


async def save(
    ctx: RegionContext,
    actor: Actor,
    org_id: uuid.UUID,
    visit_id: uuid.UUID,
    identity: VerifiedIdentity,
    expires_at: dt.datetime,
) -> None:
    """Keep the verified identity of a visit, sealed (a second check replaces the first)."""
    cipher = await ctx.keys.cipher(org_id)
    row = VisitIdentity(
        visit_id=visit_id,
        org_id=org_id,
        eid=identity.eid,
        national_id=cipher.seal(_ref(org_id, NATIONAL_ID, visit_id), identity.national_id),
        verified_name=cipher.seal(_ref(org_id, "verified_name", visit_id), identity.name),
        expires_at=expires_at,
    )
    async with database.transaction(ctx.engine):
        await VisitIdentity.delete().where((VisitIdentity.visit_id == visit_id) & (VisitIdentity.org_id == org_id))
        await VisitIdentity.insert(row).run()
        await record(ctx, actor, org_id, "create", OBJECT, visit_id, _subject(visit_id))


def _refuse_staff(actor: Actor) -> None:
    if actor.role in NEVER_SHOWN_TO:
        raise errors.forbidden("a visitor's verified identity is shown to the organisation's experts only")


def _shown(cipher: OrgCipher, org_id: uuid.UUID, row: dict[str, object]) -> IdentityShown:
    visit_id = row["visit_id"]
    assert isinstance(visit_id, uuid.UUID)
    national_id = cipher.open(_ref(org_id, NATIONAL_ID, visit_id), str(row["national_id"]))
    name = cipher.open(_ref(org_id, "verified_name", visit_id), str(row["verified_name"]))
    verified_at = row["verified_at"]
    assert isinstance(verified_at, dt.datetime)
    eid = str(row["eid"])
    return IdentityShown(
        eid=eid,
        eid_label=EID_LABELS.get(eid, eid),
        verified_name=name,
        national_id_masked=mask_national_id(national_id),
        verified_at=verified_at,
    )


async def shown(
    ctx: RegionContext, actor: Actor, org_id: uuid.UUID, visit_ids: list[uuid.UUID]
) -> dict[uuid.UUID, IdentityShown]:
    """The verified identities of these visits (those that have one), number masked: each
    one an access-logged read. Staff get none (and their attempt is logged as refused)."""
    if not visit_ids:
        return {}
    rows = await VisitIdentity.select().where(
        (VisitIdentity.org_id == org_id) & VisitIdentity.visit_id.is_in(visit_ids)
    )
    if not rows:
        return {}
    if actor.role in NEVER_SHOWN_TO:
        for row in rows:
            await record(ctx, actor, org_id, "read", OBJECT, row["visit_id"], _subject(row["visit_id"]), "denied")
        return {}
    cipher = await ctx.keys.cipher(org_id)
    found: dict[uuid.UUID, IdentityShown] = {}
    for row in rows:
        try:
            found[row["visit_id"]] = _shown(cipher, org_id, row)
        except FieldDecryptionError:
            await record(ctx, actor, org_id, "read", OBJECT, row["visit_id"], _subject(row["visit_id"]), "failure")
    await record_reads(ctx, actor, org_id, OBJECT, [(visit_id, _subject(visit_id)) for visit_id in found])
    return found


async def _visit_for_member(org_id: uuid.UUID, visit_id: uuid.UUID, member_id: uuid.UUID, role: str) -> dict[str, Any]:
    return await rooms.visit_for_member(org_id, visit_id, member_id, role)


async def reveal(
    ctx: RegionContext, actor: Actor, org_id: uuid.UUID, visit_id: uuid.UUID, member_id: uuid.UUID, role: str
) -> IdentityRevealed:
    """The full national ID number of a visit, for the room's expert (or the
    organisation's owners and administrators) who chose to see it: access-logged as a
    reveal. Konsil's staff are refused (and that is logged)."""
    subject = _subject(visit_id)
    revealing = replace(actor, purpose=REVEAL_PURPOSE)
    if actor.role in NEVER_SHOWN_TO:
        await record(ctx, revealing, org_id, "read", NATIONAL_ID, visit_id, subject, "denied")
        _refuse_staff(actor)
    await _visit_for_member(org_id, visit_id, member_id, role)
    row = (
        await VisitIdentity.select()
        .where((VisitIdentity.org_id == org_id) & (VisitIdentity.visit_id == visit_id))
        .first()
    )
    if row is None:
        raise errors.not_found("this visit has no verified identity")
    cipher = await ctx.keys.cipher(org_id)
    try:
        national_id = cipher.open(_ref(org_id, NATIONAL_ID, visit_id), row["national_id"])
    except FieldDecryptionError as exc:
        await record(ctx, revealing, org_id, "read", NATIONAL_ID, visit_id, subject, "failure")
        raise errors.AppError(
            500, "integrity_error", f"this identity record failed its integrity check ({exc.reason}); it was not shown"
        ) from None
    await record(ctx, revealing, org_id, "read", NATIONAL_ID, visit_id, subject)
    return IdentityRevealed(national_id=national_id)
