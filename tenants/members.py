"""Member services: invite, read, change role, remove, log in.

Personal fields are sealed with the organisation's own data key (OrgCipher);
a field that fails to open is never shown and leaves a "failure" entry. Every read or change
of a member's personal data writes an access-log entry in the same transaction.
Adding or removing a member also changes the control plane's login-discovery index
(keyed hashes only): queued in the same transaction, delivered after commit and
retried until it lands (tenants/login_index.py).

Auditors are outsiders let in for an audit: only an owner grants the role, always with
an end (``access_expires_at``, at most a year ahead), and from that moment their login,
sessions and the tokens they made are refused (``access_ended``; tenants/auth.py).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec

from konsil.platform.core import clock, database, errors
from konsil.platform.core.keys.cipher import FieldDecryptionError, FieldRef, OrgCipher
from konsil.platform.core.lookup import email_lookup, normalise_email
from konsil.platform.core.region import RegionContext
from konsil.tenants import login_index, records
from konsil.tenants.actors import Actor, record, record_reads
from konsil.tenants.passwords import hash_password, verify_password
from konsil.tenants.schemas import MemberIn, MemberOut, MemberPatch
from konsil.tenants.tables import ApiToken, Member, MemberSession, Organisation, PasswordReset, Room


def subject(member_id: uuid.UUID) -> str:
    return f"member:{member_id}"


def _ref(member: records.Member, column: str) -> FieldRef:
    return FieldRef(member.org_id, "member", column, member.id)


def _decode(cipher: OrgCipher, member: records.Member) -> MemberOut:
    return MemberOut(
        id=member.id,
        name=cipher.open(_ref(member, "name"), member.name),
        email=cipher.open(_ref(member, "email"), member.email),
        phone=cipher.open(_ref(member, "phone"), member.phone) if member.phone is not None else None,
        role=member.role,
        created_at=member.created_at,
        access_expires_at=member.access_expires_at,
        access_granted_at=member.access_granted_at,
        access_granted_by=member.access_granted_by,
    )


async def decode(ctx: RegionContext, actor: Actor, member: records.Member) -> MemberOut:
    """Open a member's fields; a field that fails its integrity check is logged and refused."""
    cipher = await ctx.keys.cipher(member.org_id)
    try:
        return _decode(cipher, member)
    except FieldDecryptionError as exc:
        await record(ctx, actor, member.org_id, "read", "member", member.id, subject(member.id), "failure")
        raise errors.AppError(
            500,
            "integrity_error",
            f"a stored member record failed its integrity check ({exc.reason}) and was not shown; "
            "the failure is in the access log",
        ) from None


def email_index(cipher: OrgCipher, email: str) -> str:
    return cipher.blind_index("email", normalise_email(email))


def phone_index(cipher: OrgCipher, phone: str) -> str:
    return cipher.blind_index("phone", phone.replace(" ", ""))


async def first_owner(org_id: uuid.UUID) -> records.Member:
    row = (
        await Member.select()
        .where((Member.org_id == org_id) & (Member.role == "owner"))
        .order_by(Member.created_at)
        .first()
        .run()
    )
    if row is None:
        raise errors.not_found("organisation has no owner")
    return records.Member.of(row)


async def insert(
    ctx: RegionContext,
    actor: Actor,
    org_id: uuid.UUID,
    new: MemberIn,
    *,
    member_id: uuid.UUID | None = None,
    granted_by: uuid.UUID | None = None,
) -> records.Member:
    """Insert a member inside the caller's transaction, with its access-log entry. An
    auditor's grant is recorded as given by ``granted_by`` (default: the actor), e.g.
    the owner whose invitation the new member accepted."""
    now = clock.now()
    check_access_end(new.role, new.access_expires_at, now)
    granted = new.role == AUDITOR
    member_id = member_id or uuid.uuid4()
    cipher = await ctx.keys.cipher(org_id)
    index = email_index(cipher, new.email)
    if await is_member(org_id, index):
        raise already_member()

    def seal(column: str, value: str) -> str:
        return cipher.seal(FieldRef(org_id, "member", column, member_id), value)

    member = records.Member(
        id=member_id,
        org_id=org_id,
        name=seal("name", new.name),
        email=seal("email", new.email),
        email_lookup=email_lookup(ctx.discovery_key, new.email),
        email_index=index,
        phone=seal("phone", new.phone) if new.phone else None,
        phone_index=phone_index(cipher, new.phone) if new.phone else None,
        role=new.role,
        password_hash=hash_password(new.password) if new.password else NO_PASSWORD,
        created_at=now,
        access_expires_at=new.access_expires_at,
        access_granted_at=now if granted else None,
        access_granted_by=(granted_by or member_of(actor)) if granted else None,
    )
    await Member.insert(Member(**msgspec.structs.asdict(member))).run()
    await record(ctx, actor, org_id, "create", "member", member_id, subject(member_id))
    return member


async def is_member(org_id: uuid.UUID, index: str) -> bool:
    """Whether the organisation has a member with this e-mail blind index."""
    found: bool = await Member.exists().where((Member.org_id == org_id) & (Member.email_index == index)).run()
    return found


def already_member() -> errors.AppError:
    return errors.AppError(409, "already_member", "a member with this e-mail address already exists")


def last_owner() -> errors.AppError:
    return errors.AppError(409, "last_owner", "an organisation keeps at least one owner")


async def _hold_owners(ctx: RegionContext, org_id: uuid.UUID) -> None:
    """Inside a transaction that may take an owner away: lock the organisation's row, so
    that two owners demoting or removing each other at once cannot leave none (SQLite
    serialises write transactions already)."""
    if database.is_postgres(ctx.engine):
        await database.fetch(ctx.engine, "SELECT id FROM organisation WHERE id = $1 FOR UPDATE", org_id)


# Roles that manage other members. Only an owner grants, takes or touches them:
# nothing may grant more than its holder has (an admin cannot make an admin, an
# integration token cannot make any manager).
MANAGER_ROLES = frozenset({"owner", "admin"})
# Read-only and time-boxed: only an owner lets an auditor in, and only until a set end.
AUDITOR = "auditor"
MAX_AUDITOR_ACCESS = dt.timedelta(days=365)


def access_ended(role: str, expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a member's access is over at ``now``: their end date has come. An auditor
    without one never had a valid grant, and is refused too (fail closed)."""
    if expires_at is None:
        return role == AUDITOR
    return expires_at <= now


def ended_in_words(expires_at: dt.datetime | None) -> str:
    """ "ended on 28 November 2026 at 14:00 UTC", for the messages of a refused auditor."""
    if expires_at is None:
        return "has no end date, so it is not valid"
    at = expires_at.astimezone(dt.UTC)
    return f"ended on {at.day} {at:%B %Y} at {at:%H:%M} UTC"


def access_ended_error(status: int, expires_at: dt.datetime | None) -> errors.AppError:
    return errors.AppError(
        status,
        "access_expired",
        f"your auditor access to this organisation {ended_in_words(expires_at)}; ask one of its owners for a new grant",
    )


def check_access_end(role: str, expires_at: dt.datetime | None, now: dt.datetime) -> None:
    """An auditor's access needs an end in the coming year; no other role has one."""
    field = "access_expires_at"
    if role != AUDITOR:
        if expires_at is not None:
            raise errors.bad_request(f"{field}: only an auditor's access has an end date; leave it out for {role}")
        return
    if expires_at is None:
        raise errors.bad_request(f"{field}: an auditor's access needs an end date, at most 365 days ahead")
    if expires_at <= now:
        raise errors.bad_request(f"{field}: the end of an auditor's access must be in the future")
    if expires_at > now + MAX_AUDITOR_ACCESS:
        raise errors.bad_request(f"{field}: an auditor's access may last at most 365 days from now")


def member_of(actor: Actor) -> uuid.UUID | None:
    """The member behind an actor ("member:<id>"), None for tokens and the system."""
    kind, _, value = actor.actor.partition(":")
    if kind != "member":
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# Stored instead of a hash for a member without a password: it never verifies
# (authenticate treats it as no password at all).
NO_PASSWORD = "!no-password"  # noqa: S105 - a marker, not a secret


def _is_token(actor: Actor) -> bool:
    return actor.actor.startswith("token:")


def check_grant(actor: Actor, role: str) -> None:
    """Whether ``actor`` may give a member ``role`` (by invitation or by a change)."""
    if role == AUDITOR:
        if _is_token(actor):
            raise errors.forbidden("an integration token cannot grant auditor access")
        if actor.role != "owner":
            raise errors.forbidden("only an owner can grant auditor access or change when it ends")
        return
    if role not in MANAGER_ROLES:
        return
    if _is_token(actor):
        raise errors.forbidden("an integration token cannot give a member a role above expert")
    if actor.role != "owner":
        raise errors.forbidden(f"only an owner can give a member the {role} role")


def _check_target(actor: Actor, member: records.Member, *, personal_data_only: bool) -> None:
    """Whether ``actor`` may change or remove ``member``: an owner or admin only by an
    owner (an admin may still correct their own name and phone)."""
    if member.role not in MANAGER_ROLES or actor.role == "owner":
        return
    if personal_data_only and actor.actor == subject(member.id) and not _is_token(actor):
        return
    if _is_token(actor):
        raise errors.forbidden("an integration token cannot change or remove an owner or admin")
    raise errors.forbidden(f"only an owner can change or remove an {member.role}")


async def invite(ctx: RegionContext, actor: Actor, org: records.Organisation, new: MemberIn) -> MemberOut:
    """Add a member; the control plane's login index learns of them after commit."""
    if new.password is not None and _is_token(actor):
        raise errors.forbidden("an integration token cannot set a member's password; leave password out")
    check_grant(actor, new.role)
    async with database.transaction(ctx.engine):
        member = await insert(ctx, actor, org.id, new)
        await login_index.queue(org.id, member.email_lookup)
    await login_index.deliver_after_commit(ctx, org.id)
    return await decode(ctx, actor, member)


async def list_members(ctx: RegionContext, actor: Actor, org: records.Organisation) -> list[MemberOut]:
    rows = await Member.select().where(Member.org_id == org.id).order_by(Member.created_at).run()
    found = [records.Member.of(row) for row in rows]
    shown = [await decode(ctx, actor, member) for member in found]
    await record_reads(ctx, actor, org.id, "member", [(m.id, subject(m.id)) for m in found])
    return shown


async def _get(org_id: uuid.UUID, member_id: uuid.UUID) -> records.Member:
    row = await Member.select().where((Member.id == member_id) & (Member.org_id == org_id)).first().run()
    if row is None:
        raise errors.not_found("no such member")
    return records.Member.of(row)


async def get(ctx: RegionContext, actor: Actor, org: records.Organisation, member_id: uuid.UUID) -> MemberOut:
    shown = await decode(ctx, actor, await _get(org.id, member_id))
    await record(ctx, actor, org.id, "read", "member", member_id, subject(member_id))
    return shown


async def _owners(org_id: uuid.UUID) -> int:
    owners: int = await Member.count().where((Member.org_id == org_id) & (Member.role == "owner")).run()
    return owners


async def change(
    ctx: RegionContext, actor: Actor, org: records.Organisation, member_id: uuid.UUID, patch: MemberPatch
) -> MemberOut:
    async with database.transaction(ctx.engine):
        member = await _get(org.id, member_id)
        role_change = patch.role is not msgspec.UNSET and patch.role != member.role
        grant_change = patch.access_expires_at is not msgspec.UNSET
        _check_target(actor, member, personal_data_only=not (role_change or grant_change))
        values: dict[Any, Any] = {}
        if patch.role is not msgspec.UNSET and patch.role != member.role:
            check_grant(actor, patch.role)
            if member.role == "owner":
                await _hold_owners(ctx, org.id)
                if await _owners(org.id) <= 1:
                    raise last_owner()
            values[Member.role] = patch.role
        values |= _grant_values(actor, member, patch)
        cipher = await ctx.keys.cipher(org.id)
        if patch.name is not msgspec.UNSET:
            values[Member.name] = cipher.seal(_ref(member, "name"), patch.name)
        if patch.phone is not msgspec.UNSET:
            phone = patch.phone
            values[Member.phone] = cipher.seal(_ref(member, "phone"), phone) if phone else None
            values[Member.phone_index] = phone_index(cipher, phone) if phone else None
        if not values:
            raise errors.bad_request("nothing to change")
        await Member.update(values).where(Member.id == member_id).run()
        await record(ctx, actor, org.id, "update", "member", member_id, subject(member_id))
        if role_change and patch.role == AUDITOR:
            await _revoke_tokens_made_by(ctx, actor, org.id, member_id)
        member = await _get(org.id, member_id)
    return await decode(ctx, actor, member)


def _grant_values(actor: Actor, member: records.Member, patch: MemberPatch) -> dict[Any, Any]:
    """The access columns a change sets: a new or changed auditor grant (owners only,
    with its end), or none left when an auditor gets another role."""
    role = member.role if patch.role is msgspec.UNSET else patch.role
    expires = None if patch.access_expires_at is msgspec.UNSET else patch.access_expires_at
    if role == AUDITOR:
        if role == member.role and expires is None:
            return {}  # the grant stays as it is (a change of name or phone)
        check_grant(actor, AUDITOR)
        now = clock.now()
        check_access_end(AUDITOR, expires, now)
        return {
            Member.access_expires_at: expires,
            Member.access_granted_at: now,
            Member.access_granted_by: member_of(actor),
        }
    check_access_end(role, expires, clock.now())  # another role: refuses an end date
    if member.role == AUDITOR and role != AUDITOR:
        return {Member.access_expires_at: None, Member.access_granted_at: None, Member.access_granted_by: None}
    return {}


async def _revoke_tokens_made_by(ctx: RegionContext, actor: Actor, org_id: uuid.UUID, member_id: uuid.UUID) -> None:
    """A member who becomes an auditor keeps no token they made: an auditor changes nothing."""
    revoked = (
        await ApiToken.update({ApiToken.revoked_at: clock.now()})
        .where((ApiToken.created_by == member_id) & (ApiToken.org_id == org_id) & ApiToken.revoked_at.is_null())
        .returning(ApiToken.id)
        .run()
    )
    for row in revoked:
        await record(ctx, actor, org_id, "delete", "api_token", row["id"], f"org:{org_id}")


class AuditorGrant(msgspec.Struct, frozen=True, kw_only=True):
    """An auditor's grant, for the evidence of who let outsiders in and until when (no
    personal data: member ids only)."""

    member_id: uuid.UUID
    expires_at: dt.datetime | None
    granted_at: dt.datetime | None
    granted_by: uuid.UUID | None
    active: bool


async def auditor_grants(org_id: uuid.UUID, at: dt.datetime | None = None) -> list[AuditorGrant]:
    """Every auditor of the organisation and whether their access holds at ``at`` (now)."""
    when = at or clock.now()
    rows = (
        await Member.select(
            Member.id, Member.role, Member.access_expires_at, Member.access_granted_at, Member.access_granted_by
        )
        .where((Member.org_id == org_id) & (Member.role == AUDITOR))
        .order_by(Member.created_at)
        .run()
    )
    return [
        AuditorGrant(
            member_id=row["id"],
            expires_at=row["access_expires_at"],
            granted_at=row["access_granted_at"],
            granted_by=row["access_granted_by"],
            active=not access_ended(AUDITOR, row["access_expires_at"], when),
        )
        for row in rows
    ]


async def remove(ctx: RegionContext, actor: Actor, org_id: uuid.UUID, member_id: uuid.UUID) -> None:
    """Remove a member with their sessions; their tokens are revoked. Inside a caller's
    transaction (a data-subject erasure) the login index follows after that commits."""
    async with database.transaction(ctx.engine):
        member = await _get(org_id, member_id)
        _check_target(actor, member, personal_data_only=False)
        if member.role == "owner":
            await _hold_owners(ctx, org_id)
            if await _owners(org_id) <= 1:
                raise last_owner()
        if await Room.exists().where(Room.expert_id == member_id).run():
            raise errors.AppError(
                409, "member_has_rooms", "this member still owns rooms; remove or reassign them first"
            )
        await MemberSession.delete().where(MemberSession.member_id == member_id).run()
        await PasswordReset.delete().where(PasswordReset.member_id == member_id).run()
        await (
            ApiToken.update({ApiToken.revoked_at: clock.now()})
            .where((ApiToken.created_by == member_id) & ApiToken.revoked_at.is_null())
            .run()
        )
        await Member.delete().where(Member.id == member_id).run()
        await record(ctx, actor, org_id, "delete", "member", member_id, subject(member_id))
        await login_index.queue(org_id, member.email_lookup)
    await login_index.deliver_after_commit(ctx, org_id)


def _usable_hash(stored: str | None) -> str | None:
    return stored if stored and stored.startswith("$argon2") else None


async def authenticate(
    ctx: RegionContext, email: str, password: str, org_slug: str | None, source_address: str
) -> tuple[records.Member, records.Organisation] | list[str]:
    """Members whose e-mail and password match, in this region.

    Returns the member and their organisation for one match, or the list of
    organisation slugs to choose from when the same login opens several.
    Unknown e-mail and wrong password look the same to the caller. Failed
    attempts on a known member are access-logged here, a success by the session it
    starts (``auth.log_in``). Failures are rate-limited per account and per address
    (platform/core/limits.py: 429).
    """
    ctx.limits.check_login(email, source_address)
    lookup = email_lookup(ctx.discovery_key, email)
    known = [records.Member.of(row) for row in await Member.select().where(Member.email_lookup == lookup).run()]
    # A member without a password (NO_PASSWORD, or anything that is not an argon2 hash)
    # costs the same dummy verification as an unknown e-mail and never matches.
    matches = [m for m in known if verify_password(_usable_hash(m.password_hash), password)]
    if not known:
        verify_password(None, password)  # same work as for a known e-mail
    orgs = {
        org.id: org
        for org in map(
            records.Organisation.of,
            await Organisation.select()
            .where(Organisation.id.is_in([m.org_id for m in matches] or [uuid.UUID(int=0)]))
            .run(),
        )
    }
    if org_slug is not None:
        matches = [m for m in matches if orgs[m.org_id].slug == org_slug]
    anonymous = Actor("anonymous", "anonymous", "anonymous", source_address, "log in")
    for member in known:
        if member not in matches:
            await record(ctx, anonymous, member.org_id, "read", "member", member.id, subject(member.id), "failure")
    if not matches:
        ctx.limits.login_failed(email, source_address)
        raise errors.unauthorized("e-mail address or password is wrong")
    matches = await _without_ended_access(ctx, matches, source_address)
    if len(matches) > 1:
        return sorted(orgs[m.org_id].slug for m in matches)
    return matches[0], orgs[matches[0].org_id]


async def _without_ended_access(
    ctx: RegionContext, matches: list[records.Member], source_address: str
) -> list[records.Member]:
    """The matches whose access still holds. An auditor whose grant ended is told so
    (the password was right) when nothing else is left, and the refusal is logged."""
    now = clock.now()
    ended = [m for m in matches if access_ended(m.role, m.access_expires_at, now)]
    for member in ended:
        who = subject(member.id)
        refused = Actor(who, member.role, who, source_address, "log in: auditor access ended")
        await record(ctx, refused, member.org_id, "read", "member", member.id, who, "denied")
    left = [m for m in matches if m not in ended]
    if not left:
        raise access_ended_error(403, ended[0].access_expires_at)
    return left
