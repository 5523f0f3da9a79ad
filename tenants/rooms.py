"""Rooms: one public slug per room (unique within the organisation: the join link is
``/{org}/{room}``), owned by an expert of the organisation. Creating and removing one
is access-logged under its expert (a room's title may name them)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from konsil.platform.core import clock, database, errors
from konsil.platform.core.authz import MANAGERS
from konsil.platform.core.region import RegionContext
from konsil.tenants import records
from konsil.tenants.actors import Actor, record
from konsil.tenants.auth import Principal
from konsil.tenants.members import subject
from konsil.tenants.schemas import RoomFee, RoomIn, RoomOut, RoomPatch
from konsil.tenants.tables import Member, Room, Visit

# Room addresses that would collide with the organisation's own pages.
RESERVED_ROOM_SLUGS = frozenset(
    {"portal", "logout", "login", "api", "static", "settings", "dashboard", "calls", "logo"}
)


def to_out(org: records.Organisation, room: records.Room) -> RoomOut:
    return _out(org, msgspec.structs.asdict(room))


def fee_of(room: records.Room) -> RoomFee | None:
    """The fee a room asks (None: free)."""
    if room.fee_amount is None or room.fee_currency is None:
        return None
    return msgspec.convert(
        {"amount_minor": room.fee_amount, "currency": room.fee_currency, "description": room.fee_description}, RoomFee
    )


def _out(org: records.Organisation, row: dict[str, Any]) -> RoomOut:
    fee = None
    if row.get("fee_amount") is not None and row.get("fee_currency"):
        fee = RoomFee(row["fee_amount"], row["fee_currency"], row.get("fee_description") or "")
    return RoomOut(
        id=row["id"],
        slug=row["slug"],
        title=row["title"],
        expert_id=row["expert_id"],
        join_path=f"/{org.slug}/{row['slug']}",
        welcome_text=row["welcome_text"],
        fee=fee,
        identity_check=row.get("identity_check") or "",
    )


def _fee_columns(fee: RoomFee | None) -> dict[str, Any]:
    if fee is None:
        return {"fee_amount": None, "fee_currency": None, "fee_description": ""}
    return {"fee_amount": fee.amount_minor, "fee_currency": fee.currency, "fee_description": fee.description.strip()}


_COLUMNS = "id, slug, title, expert_id, welcome_text, fee_amount, fee_currency, fee_description, identity_check"
# A hot read (the room list of every dashboard and integration): fixed SQL on PostgreSQL.
_LIST_SQL = f"SELECT {_COLUMNS} FROM room WHERE org_id = $1 ORDER BY slug"  # noqa: S608 - constant columns


async def list_rooms(org: records.Organisation) -> list[RoomOut]:
    engine = Room._meta.db
    rows: list[dict[str, Any]]
    if database.is_postgres(engine):
        rows = await database.fetch(engine, _LIST_SQL, org.id)
    else:
        rows = (
            await Room.select(*(getattr(Room, name.strip()) for name in _COLUMNS.split(",")))
            .where(Room.org_id == org.id)
            .order_by(Room.slug)
            .run()
        )
    return [_out(org, r) for r in rows]


async def get(org: records.Organisation, room_id: uuid.UUID) -> records.Room:
    row = await Room.select().where((Room.id == room_id) & (Room.org_id == org.id)).first().run()
    if row is None:
        raise errors.not_found("no such room")
    return records.Room.of(row)


async def by_slug(org: records.Organisation, room_slug: str) -> records.Room:
    row = await Room.select().where((Room.org_id == org.id) & (Room.slug == room_slug)).first().run()
    if row is None:
        raise errors.not_found("no such room")
    return records.Room.of(row)


def _expert_of_new_room(principal: Principal, new: RoomIn) -> uuid.UUID:
    expert_id = new.expert_id
    if principal.kind == "member" and principal.role not in MANAGERS:
        # Experts open rooms for themselves only.
        if expert_id not in (None, principal.id):
            raise errors.forbidden("experts can only create their own rooms")
        return principal.id
    if expert_id is None and principal.kind == "member":
        return principal.id  # a manager opening a room for themselves
    if expert_id is None:
        raise errors.bad_request("expert_id is required")
    return expert_id


NO_PAYMENTS = "card fees are not set up in this region (it has no payment provider); set up the room without a fee"


def _check_fee(ctx: RegionContext, fee: RoomFee | None) -> None:
    """A room may ask a fee only where the region can take card payments."""
    if fee is not None and ctx.payments is None:
        raise errors.AppError(409, "payments_unavailable", NO_PAYMENTS)


def _check_identity_service(ctx: RegionContext, identity_check: str) -> None:
    """A room asks for a national eID check only where the region has an eID service
    (``[regions.identity]``); otherwise its visitors could never get past check-in."""
    if identity_check and ctx.identity is None:
        raise errors.conflict("this region has no national eID service configured, so rooms cannot ask for it yet")


async def create(
    ctx: RegionContext, actor: Actor, principal: Principal, org: records.Organisation, new: RoomIn
) -> RoomOut:
    _check_fee(ctx, new.fee)
    _check_identity_service(ctx, new.identity_check)
    expert_id = _expert_of_new_room(principal, new)
    room = records.Room(
        id=uuid.uuid4(),
        org_id=org.id,
        slug=new.slug,
        title=new.title,
        expert_id=expert_id,
        created_at=clock.now(),
        welcome_text=new.welcome_text.strip(),
        identity_check=new.identity_check,
        **_fee_columns(new.fee),
    )
    async with database.transaction(ctx.engine):
        await _check_expert(org, expert_id)
        if new.slug in RESERVED_ROOM_SLUGS:
            raise errors.conflict("this room address is reserved")
        if await Room.exists().where((Room.org_id == org.id) & (Room.slug == new.slug)).run():
            raise errors.conflict("this room address is taken")
        await Room.insert(Room(**msgspec.structs.asdict(room))).run()
        await record(ctx, actor, org.id, "create", "room", room.id, subject(expert_id))
    return to_out(org, room)


async def _check_expert(org: records.Organisation, expert_id: uuid.UUID) -> None:
    expert = await Member.select(Member.role).where((Member.id == expert_id) & (Member.org_id == org.id)).first().run()
    if expert is None:
        raise errors.bad_request("expert_id is not a member of this organisation")
    if expert["role"] not in {"expert", "owner", "admin"}:
        raise errors.bad_request("rooms belong to experts, admins or owners")


async def change(
    ctx: RegionContext,
    actor: Actor,
    principal: Principal,
    org: records.Organisation,
    room_id: uuid.UUID,
    patch: RoomPatch,
) -> RoomOut:
    """Rename a room, set its welcome text, or give it to another expert. An expert
    changes only their own rooms and cannot give them away; managers change any."""
    values: dict[str, Any] = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not msgspec.UNSET}
    if not values:
        raise errors.bad_request("nothing to change: send title, welcome_text, expert_id, fee or identity_check")
    if "welcome_text" in values:
        values["welcome_text"] = values["welcome_text"].strip()
    if "identity_check" in values:
        _check_identity_service(ctx, values["identity_check"])
    if "fee" in values:
        _check_fee(ctx, patch.fee if isinstance(patch.fee, RoomFee) else None)
        values.update(_fee_columns(patch.fee if isinstance(patch.fee, RoomFee) else None))
        del values["fee"]
    manager = principal.kind != "member" or principal.role in MANAGERS
    async with database.transaction(ctx.engine):
        room = await get(org, room_id)
        if not manager and room.expert_id != principal.id:
            raise errors.forbidden("only the room's expert or an admin can change it")
        expert_id = values.get("expert_id", room.expert_id)
        if expert_id != room.expert_id:
            if not manager:
                raise errors.forbidden("only owners and admins can give a room to another expert")
            await _check_expert(org, expert_id)
        columns = {getattr(Room, name): value for name, value in values.items()}
        await Room.update(columns).where(Room.id == room_id).run()
        await record(ctx, actor, org.id, "update", "room", room_id, subject(expert_id))
    return to_out(org, msgspec.structs.replace(room, **values))


async def remove(
    ctx: RegionContext, actor: Actor, principal: Principal, org: records.Organisation, room_id: uuid.UUID
) -> None:
    async with database.transaction(ctx.engine):
        room = await get(org, room_id)
        if principal.kind == "member" and principal.role not in MANAGERS and room.expert_id != principal.id:
            raise errors.forbidden("only the room's expert or an admin can remove it")
        await Room.delete().where(Room.id == room_id).run()
        await record(ctx, actor, org.id, "delete", "room", room_id, subject(room.expert_id))


async def visit_for_member(org_id: uuid.UUID, visit_id: uuid.UUID, member_id: uuid.UUID, role: str) -> dict[str, Any]:
    """The visit (its id and room) if this member may see what it holds: owners and
    administrators any visit of the organisation, an expert only those of the rooms they
    hold. Otherwise "no such visit", as if it did not exist."""
    visit: dict[str, Any] | None = (
        await Visit.select(Visit.id, Visit.room_id).where((Visit.id == visit_id) & (Visit.org_id == org_id)).first()
    )
    if visit is None:
        raise errors.not_found("no such visit")
    if role not in MANAGERS:
        room = await Room.select(Room.expert_id).where((Room.id == visit["room_id"]) & (Room.org_id == org_id)).first()
        if room is None or room["expert_id"] != member_id:
            raise errors.not_found("no such visit")
    return visit
