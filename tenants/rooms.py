"""Rooms: one public slug per room (unique within the organisation: the join link is
``/{org}/{room}``), owned by an expert of the organisation."""

from __future__ import annotations

import uuid
from typing import Any

from konsil.platform.core import database, errors
from konsil.platform.core.authz import MANAGERS
from konsil.tenants.auth import Principal
from konsil.tenants.schemas import RoomIn, RoomOut
from konsil.tenants.tables import Member, Room

# Room addresses that would collide with the organisation's own pages.
RESERVED_ROOM_SLUGS = frozenset({"portal", "logout", "login", "api", "static", "settings", "dashboard", "calls"})


def to_out(org: dict[str, Any], row: dict[str, Any]) -> RoomOut:
    return RoomOut(row["id"], row["slug"], row["title"], row["expert_id"], f"/{org['slug']}/{row['slug']}")


# A hot read (the room list of every dashboard and integration): fixed SQL on PostgreSQL.
_LIST_SQL = "SELECT id, slug, title, expert_id FROM room WHERE org_id = $1 ORDER BY slug"


async def list_rooms(org: dict[str, Any]) -> list[RoomOut]:
    engine = Room._meta.db
    if database.is_postgres(engine):
        rows = await database.fetch(engine, _LIST_SQL, org["id"])
    else:
        rows = await Room.select().where(Room.org_id == org["id"]).order_by(Room.slug).run()
    return [to_out(org, row) for row in rows]


async def get(org: dict[str, Any], room_id: uuid.UUID) -> dict[str, Any]:
    row = await Room.select().where((Room.id == room_id) & (Room.org_id == org["id"])).first().run()
    if row is None:
        raise errors.not_found("no such room")
    return row


async def create(principal: Principal, org: dict[str, Any], new: RoomIn) -> RoomOut:
    expert_id = new.expert_id
    if principal.kind == "member" and principal.role not in MANAGERS:
        # Experts open rooms for themselves only.
        if expert_id not in (None, principal.id):
            raise errors.forbidden("experts can only create their own rooms")
        expert_id = principal.id
    if expert_id is None and principal.kind == "member":
        expert_id = principal.id  # a manager opening a room for themselves
    if expert_id is None:
        raise errors.bad_request("expert_id is required")
    expert = (
        await Member.select(Member.role).where((Member.id == expert_id) & (Member.org_id == org["id"])).first().run()
    )
    if expert is None:
        raise errors.bad_request("expert_id is not a member of this organisation")
    if expert["role"] not in {"expert", "owner", "admin"}:
        raise errors.bad_request("rooms belong to experts, admins or owners")
    if new.slug in RESERVED_ROOM_SLUGS:
        raise errors.conflict("this room address is reserved")
    if await Room.exists().where((Room.org_id == org["id"]) & (Room.slug == new.slug)).run():
        raise errors.conflict("this room address is taken")
    row = Room(id=uuid.uuid4(), org_id=org["id"], slug=new.slug, title=new.title, expert_id=expert_id)
    await Room.insert(row).run()
    return to_out(org, {"id": row.id, "slug": new.slug, "title": new.title, "expert_id": expert_id})


async def remove(principal: Principal, org: dict[str, Any], room_id: uuid.UUID) -> None:
    row = await get(org, room_id)
    if principal.kind == "member" and principal.role not in MANAGERS and row["expert_id"] != principal.id:
        raise errors.forbidden("only the room's expert or an admin can remove it")
    await Room.delete().where(Room.id == room_id).run()
