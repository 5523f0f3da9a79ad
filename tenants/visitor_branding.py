"""What a visitor sees of the organisation before the call: its logo (when it has
one), the name of the room's expert and, in the waiting room, their own phone number.

The expert's name is personal data of the member, sealed like every member field. It
is shown to the room's visitors because the organisation made that member the room's
expert: a visitor needs to know whom they are about to meet. Only the name is opened
(never the e-mail address or phone), and each time it is shown the read is written to
the organisation's access log as any other read is, with the visitor (or, on the join
page, the anonymous address) as the actor and why it was shown as the purpose. A public
page must not let anyone fill the log: past a bound per address and per organisation
a minute the name is simply not shown (and so not read) until the minute is over.
Nothing fails for the visitor when the name cannot be shown: the key service down or a
record that fails its integrity check ("failure" in the log) gives the neutral wording.
"""

from __future__ import annotations

import uuid

from konsil.platform.core.keys.cipher import FieldDecryptionError, FieldRef
from konsil.platform.core.keys.provider import KeyUnavailable
from konsil.platform.core.region import RegionContext
from konsil.tenants import members, records
from konsil.tenants.actors import Actor, DenialBound, record
from konsil.tenants.tables import Member, OrganisationLogo

EXPERT_NAME_PURPOSE = "show visitors the expert of the room they join"
OWN_PHONE_PURPOSE = "show the visitor the phone number they gave, in their waiting room"

# Names shown (and logged) per organisation and actor, and per organisation, a minute.
EXPERT_NAMES_PER_ACTOR_MINUTE = 30
EXPERT_NAMES_PER_ORGANISATION_MINUTE = 600
_PER_ACTOR = DenialBound(EXPERT_NAMES_PER_ACTOR_MINUTE)
_PER_ORGANISATION = DenialBound(EXPERT_NAMES_PER_ORGANISATION_MINUTE)


def anonymous(source: str) -> Actor:
    """Whoever opens a room's join page (no account, no visit yet)."""
    return Actor("anonymous", "anonymous", "anonymous", source, EXPERT_NAME_PURPOSE)


def visitor(visit_id: uuid.UUID, source: str) -> Actor:
    who = f"visitor:{visit_id}"
    return Actor(who, "visitor", who, source)


async def has_logo(org_id: uuid.UUID) -> bool:
    return bool(await OrganisationLogo.exists().where(OrganisationLogo.org_id == org_id).run())


def _within_bound(org_id: uuid.UUID, actor: Actor) -> bool:
    who = actor.actor if actor.role != "anonymous" else f"anonymous@{actor.source_address}"
    return _PER_ACTOR.admit(f"{org_id}/{who}") == "log" and _PER_ORGANISATION.admit(str(org_id)) == "log"


async def expert_name(ctx: RegionContext, actor: Actor, room: records.Room) -> str | None:
    """The name of the room's expert for its visitors, its read access-logged; None when
    it cannot be shown now (the page then says "the expert")."""
    row = await Member.select().where((Member.id == room.expert_id) & (Member.org_id == room.org_id)).first().run()
    if row is None or not _within_bound(room.org_id, actor):
        return None
    member = records.Member.of(row)
    try:
        cipher = await ctx.keys.cipher(member.org_id)
    except KeyUnavailable:
        return None  # nothing was opened; the join itself answers 503 until the service is back
    shown_as = actor.for_purpose(EXPERT_NAME_PURPOSE)
    try:
        name = cipher.open(FieldRef(member.org_id, "member", "name", member.id), member.name)
    except FieldDecryptionError:
        await record(ctx, shown_as, member.org_id, "read", "member", member.id, members.subject(member.id), "failure")
        return None
    await record(ctx, shown_as, member.org_id, "read", "member", member.id, members.subject(member.id))
    return name


async def own_phone(ctx: RegionContext, actor: Actor, visit: records.Visit) -> str | None:
    """The phone number the visitor gave, for their own waiting room (an access-logged
    read of the visit); None when they gave none or it cannot be opened now."""
    if not visit.phone:
        return None
    try:
        cipher = await ctx.keys.cipher(visit.org_id)
    except KeyUnavailable:
        return None
    shown_as = actor.for_purpose(OWN_PHONE_PURPOSE)
    subject = f"visit:{visit.id}"
    try:
        phone = cipher.open(FieldRef(visit.org_id, "visit", "phone", visit.id), visit.phone)
    except FieldDecryptionError:
        await record(ctx, shown_as, visit.org_id, "read", "visit", visit.id, subject, "failure")
        return None
    await record(ctx, shown_as, visit.org_id, "read", "visit", visit.id, subject)
    return phone
