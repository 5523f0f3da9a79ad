"""Member services: invite, read, change role, remove, log in.

Personal fields are sealed with the organisation's own data key (OrgCipher);
a field that fails to open is never shown and leaves a "failure" entry. Every read or change
of a member's personal data writes an access-log entry in the same transaction.
Adding or removing a member also updates the control plane's login-discovery
index (keyed hashes only); if that call fails, the change is rolled back.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgspec

from konsil.platform.core import clock, database, errors
from konsil.platform.core.keys.cipher import FieldDecryptionError, FieldRef, OrgCipher
from konsil.platform.core.lookup import email_lookup, normalise_email
from konsil.platform.core.region import RegionContext
from konsil.tenants.actors import Actor, record, record_reads
from konsil.tenants.passwords import hash_password, verify_password
from konsil.tenants.schemas import MemberIn, MemberOut, MemberPatch
from konsil.tenants.tables import ApiToken, Member, MemberSession, Organisation, Room


def subject(member_id: uuid.UUID) -> str:
    return f"member:{member_id}"


def _ref(org_id: uuid.UUID, member_id: uuid.UUID, column: str) -> FieldRef:
    return FieldRef(org_id, "member", column, member_id)


def _decode(cipher: OrgCipher, row: dict[str, Any]) -> MemberOut:
    phone = row["phone"]
    return MemberOut(
        id=row["id"],
        name=cipher.open(_ref(row["org_id"], row["id"], "name"), row["name"]),
        email=cipher.open(_ref(row["org_id"], row["id"], "email"), row["email"]),
        phone=cipher.open(_ref(row["org_id"], row["id"], "phone"), phone) if phone is not None else None,
        role=row["role"],
        created_at=row["created_at"],
    )


async def decode(ctx: RegionContext, actor: Actor, row: dict[str, Any]) -> MemberOut:
    """Open a member's fields; a field that fails its integrity check is logged and refused."""
    cipher = await ctx.keys.cipher(row["org_id"])
    try:
        return _decode(cipher, row)
    except FieldDecryptionError as exc:
        await record(ctx, actor, row["org_id"], "read", "member", row["id"], subject(row["id"]), "failure")
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


async def _sync_login_index(ctx: RegionContext, org_id: uuid.UUID, add: list[str], remove: list[str]) -> None:
    body = msgspec.json.encode({"org_id": str(org_id), "add": add, "remove": remove})
    try:
        response = await ctx.control.post("/internal/v1/login-index", body)
    except httpx.HTTPError:
        raise errors.unavailable("the directory service is unreachable; nothing was changed") from None
    if response.status_code != 200:
        raise errors.unavailable("the directory service refused the change; nothing was changed")


async def first_owner(org_id: uuid.UUID) -> dict[str, Any]:
    row = (
        await Member.select()
        .where((Member.org_id == org_id) & (Member.role == "owner"))
        .order_by(Member.created_at)
        .first()
        .run()
    )
    if row is None:
        raise errors.not_found("organisation has no owner")
    return row


async def insert(
    ctx: RegionContext,
    actor: Actor,
    org_id: uuid.UUID,
    name: str,
    email: str,
    phone: str | None,
    role: str,
    password: str | None,
) -> tuple[uuid.UUID, str]:
    """Insert a member inside the caller's transaction; return (id, e-mail lookup hash)."""
    member_id = uuid.uuid4()
    lookup = email_lookup(ctx.discovery_key, email)
    cipher = await ctx.keys.cipher(org_id)
    index = email_index(cipher, email)
    if await Member.exists().where((Member.org_id == org_id) & (Member.email_index == index)).run():
        raise errors.conflict("a member with this e-mail address already exists")
    await Member.insert(
        Member(
            id=member_id,
            org_id=org_id,
            name=cipher.seal(_ref(org_id, member_id, "name"), name),
            email=cipher.seal(_ref(org_id, member_id, "email"), email),
            email_lookup=lookup,
            email_index=index,
            phone=cipher.seal(_ref(org_id, member_id, "phone"), phone) if phone else None,
            phone_index=phone_index(cipher, phone) if phone else None,
            role=role,
            password_hash=hash_password(password) if password else NO_PASSWORD,
        )
    ).run()
    await record(ctx, actor, org_id, "create", "member", member_id, subject(member_id))
    return member_id, lookup


# Roles that manage other members. Only an owner grants, takes or touches them:
# nothing may grant more than its holder has (an admin cannot make an admin, an
# integration token cannot make any manager).
MANAGER_ROLES = frozenset({"owner", "admin"})
# Stored instead of a hash for a member without a password: it never verifies
# (authenticate treats it as no password at all).
NO_PASSWORD = "!no-password"  # noqa: S105 - a marker, not a secret


def _is_token(actor: Actor) -> bool:
    return actor.actor.startswith("token:")


def _check_grant(actor: Actor, role: str) -> None:
    """Whether ``actor`` may give a member ``role`` (by invitation or by a change)."""
    if role not in MANAGER_ROLES:
        return
    if _is_token(actor):
        raise errors.forbidden("an integration token cannot give a member a role above expert")
    if actor.role != "owner":
        raise errors.forbidden(f"only an owner can give a member the {role} role")


def _check_target(actor: Actor, row: dict[str, Any], *, personal_data_only: bool) -> None:
    """Whether ``actor`` may change or remove the member ``row``: an owner or admin only
    by an owner (an admin may still correct their own name and phone)."""
    if row["role"] not in MANAGER_ROLES or actor.role == "owner":
        return
    if personal_data_only and actor.actor == subject(row["id"]) and not _is_token(actor):
        return
    if _is_token(actor):
        raise errors.forbidden("an integration token cannot change or remove an owner or admin")
    raise errors.forbidden(f"only an owner can change or remove an {row['role']}")


async def invite(ctx: RegionContext, actor: Actor, org: dict[str, Any], new: MemberIn) -> MemberOut:
    if new.password is not None and _is_token(actor):
        raise errors.forbidden("an integration token cannot set a member's password; leave password out")
    _check_grant(actor, new.role)
    async with database.transaction(ctx.engine):
        member_id, lookup = await insert(ctx, actor, org["id"], new.name, new.email, new.phone, new.role, new.password)
        await _sync_login_index(ctx, org["id"], add=[lookup], remove=[])
        row = await Member.select().where(Member.id == member_id).first().run()
    assert row is not None
    return await decode(ctx, actor, row)


async def list_members(ctx: RegionContext, actor: Actor, org: dict[str, Any]) -> list[MemberOut]:
    rows = await Member.select().where(Member.org_id == org["id"]).order_by(Member.created_at).run()
    members = [await decode(ctx, actor, row) for row in rows]
    await record_reads(ctx, actor, org["id"], "member", [(row["id"], subject(row["id"])) for row in rows])
    return members


async def _get_row(org: dict[str, Any], member_id: uuid.UUID) -> dict[str, Any]:
    row = await Member.select().where((Member.id == member_id) & (Member.org_id == org["id"])).first().run()
    if row is None:
        raise errors.not_found("no such member")
    return row


async def get(ctx: RegionContext, actor: Actor, org: dict[str, Any], member_id: uuid.UUID) -> MemberOut:
    row = await _get_row(org, member_id)
    member = await decode(ctx, actor, row)
    await record(ctx, actor, org["id"], "read", "member", member_id, subject(member_id))
    return member


async def _owners(org_id: uuid.UUID) -> int:
    return await Member.count().where((Member.org_id == org_id) & (Member.role == "owner")).run()


async def change(
    ctx: RegionContext, actor: Actor, org: dict[str, Any], member_id: uuid.UUID, patch: MemberPatch
) -> MemberOut:
    async with database.transaction(ctx.engine):
        row = await _get_row(org, member_id)
        role_change = patch.role is not msgspec.UNSET and patch.role != row["role"]
        _check_target(actor, row, personal_data_only=not role_change)
        values: dict[Any, Any] = {}
        if patch.role is not msgspec.UNSET and patch.role != row["role"]:
            _check_grant(actor, patch.role)
            if row["role"] == "owner" and await _owners(org["id"]) <= 1:
                raise errors.conflict("an organisation keeps at least one owner")
            values[Member.role] = patch.role
        cipher = await ctx.keys.cipher(org["id"])
        if patch.name is not msgspec.UNSET:
            values[Member.name] = cipher.seal(_ref(org["id"], member_id, "name"), patch.name)
        if patch.phone is not msgspec.UNSET:
            phone = patch.phone
            values[Member.phone] = cipher.seal(_ref(org["id"], member_id, "phone"), phone) if phone else None
            values[Member.phone_index] = phone_index(cipher, phone) if phone else None
        if not values:
            raise errors.bad_request("nothing to change")
        await Member.update(values).where(Member.id == member_id).run()
        await record(ctx, actor, org["id"], "update", "member", member_id, subject(member_id))
        row = await _get_row(org, member_id)
    return await decode(ctx, actor, row)


async def remove(ctx: RegionContext, actor: Actor, org: dict[str, Any], member_id: uuid.UUID) -> None:
    async with database.transaction(ctx.engine):
        row = await _get_row(org, member_id)
        _check_target(actor, row, personal_data_only=False)
        if row["role"] == "owner":
            if await _owners(org["id"]) <= 1:
                raise errors.conflict("an organisation keeps at least one owner")
        if await Room.exists().where(Room.expert_id == member_id).run():
            raise errors.conflict("this member still owns rooms; remove or reassign them first")
        await MemberSession.delete().where(MemberSession.member_id == member_id).run()
        await (
            ApiToken.update({ApiToken.revoked_at: clock.now()})
            .where((ApiToken.created_by == member_id) & ApiToken.revoked_at.is_null())
            .run()
        )
        await Member.delete().where(Member.id == member_id).run()
        await record(ctx, actor, org["id"], "delete", "member", member_id, subject(member_id))
        still_used = (
            await Member.exists()
            .where((Member.org_id == org["id"]) & (Member.email_lookup == row["email_lookup"]))
            .run()
        )
        if not still_used:
            await _sync_login_index(ctx, org["id"], add=[], remove=[row["email_lookup"]])


def _usable_hash(stored: str | None) -> str | None:
    return stored if stored and stored.startswith("$argon2") else None


async def authenticate(
    ctx: RegionContext, email: str, password: str, org_slug: str | None, source_address: str
) -> tuple[dict[str, Any], dict[str, Any]] | list[str]:
    """Members whose e-mail and password match, in this region.

    Returns (member row, organisation row) for one match, or the list of
    organisation slugs to choose from when the same login opens several.
    Unknown e-mail and wrong password look the same to the caller. Failed
    attempts on a known member and every successful login are access-logged.
    Failures are rate-limited per account and per address (platform/core/limits.py: 429).
    """
    ctx.limits.check_login(email, source_address)
    lookup = email_lookup(ctx.discovery_key, email)
    rows = await Member.select().where(Member.email_lookup == lookup).run()
    # A member without a password (NO_PASSWORD, or anything that is not an argon2 hash)
    # costs the same dummy verification as an unknown e-mail and never matches.
    matches: list[dict[str, Any]] = [
        row for row in rows if verify_password(_usable_hash(row["password_hash"]), password)
    ]
    if not rows:
        verify_password(None, password)  # same work as for a known e-mail
    orgs = {
        org["id"]: org
        for org in await Organisation.select()
        .where(Organisation.id.is_in([m["org_id"] for m in matches] or [uuid.UUID(int=0)]))
        .run()
    }
    if org_slug is not None:
        matches = [m for m in matches if orgs[m["org_id"]]["slug"] == org_slug]
    anonymous = Actor("anonymous", "anonymous", "anonymous", source_address, "log in")
    for row in rows:
        if row not in matches:
            await record(ctx, anonymous, row["org_id"], "read", "member", row["id"], subject(row["id"]), "failure")
    if not matches:
        ctx.limits.login_failed(email, source_address)
        raise errors.unauthorized("e-mail address or password is wrong")
    if len(matches) > 1:
        return sorted(orgs[m["org_id"]]["slug"] for m in matches)
    member = matches[0]
    actor = Actor(f"member:{member['id']}", member["role"], f"member:{member['id']}", source_address, "log in")
    await record(ctx, actor, member["org_id"], "read", "member", member["id"], subject(member["id"]))
    return member, orgs[member["org_id"]]
