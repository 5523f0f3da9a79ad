"""Check-in steps: what a visitor does between the join form and the waiting list when
the room asks for it (P3) — prove who they are with a national eID (``identity``), then
pay the room's fee by card (``payment``).

A visit of such a room starts ``checking_in``: it is on no waiting list and no dashboard.
Each step's own area (tenants/identity, tenants/payments) calls ``step_done`` when its
step succeeded; the last one moves the visit onto the waiting list, once, however many
times and from however many places (a webhook, the visitor's return) it is called.
"""

from __future__ import annotations

import uuid

from piccolo.columns import Column

from konsil.platform.core import clock, database, errors
from konsil.platform.core.region import RegionContext
from konsil.tenants import records, visits
from konsil.tenants.records import CheckinStep
from konsil.tenants.tables import Visit

# The visitor's page of each step, under the visit's own path.
STEP_PAGES: dict[CheckinStep, str] = {"identity": "identity", "payment": "payment"}


def _done_column(step: CheckinStep) -> Column:
    return Visit.identity_checked_at if step == "identity" else Visit.paid_at


def steps_for(room: records.Room) -> list[CheckinStep]:
    """The room's check-in steps, in the order a visitor does them."""
    return room.checkin_steps()


def pending(visit: records.Visit, room: records.Room) -> list[CheckinStep]:
    """The steps this visit still has to do (none once it is past check-in)."""
    if visit.status != "checking_in":
        return []
    done = {"identity": visit.identity_checked_at, "payment": visit.paid_at}
    return [step for step in steps_for(room) if done[step] is None]


def next_page(base_path: str, visit: records.Visit, room: records.Room) -> str | None:
    """The path of the visitor's next step page under ``base_path`` (the visit's page), or
    None when the visit has no step left."""
    todo = pending(visit, room)
    return f"{base_path}/{STEP_PAGES[todo[0]]}" if todo else None


async def step_done(
    ctx: RegionContext, org: records.Organisation, room: records.Room, visit_id: uuid.UUID, step: CheckinStep
) -> bool:
    """Record that ``step`` of the visit succeeded; when it was the last, the visit joins
    the waiting list. True when this call moved it there (so exactly one caller does).
    A step the room no longer asks (its fee was removed while the visitor paid) is still
    recorded: what the visitor did is never held against them."""
    column = _done_column(step)
    async with database.transaction(ctx.engine):
        await (
            Visit.update({column: clock.now()})
            .where((Visit.id == visit_id) & (Visit.org_id == org.id) & column.is_null())
            .run()
        )
    return await move_on_if_done(ctx, org, room, visit_id)


async def move_on_if_done(
    ctx: RegionContext, org: records.Organisation, room: records.Room, visit_id: uuid.UUID
) -> bool:
    """A visit checking in with no step left joins the waiting list: after its last step,
    or when the room stopped asking for the steps it had not done yet. True when this call
    moved it (one caller does, however many ask at once)."""
    now = clock.now()
    async with database.transaction(ctx.engine):
        row = await Visit.select().where((Visit.id == visit_id) & (Visit.org_id == org.id)).first().run()
        if row is None:
            raise errors.not_found("no such visit")
        visit = records.Visit.of(row)
        if visit.status != "checking_in" or pending(visit, room):
            return False
        moved = (
            await Visit.update({Visit.status: "waiting", Visit.arrived_at: now})
            .where((Visit.id == visit_id) & (Visit.status == "checking_in"))
            .returning(Visit.id)
            .run()
        )
    if not moved:
        return False
    await visits.entered_waiting_list(ctx, org, room, visit_id)
    return True
