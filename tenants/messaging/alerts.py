"""SMS arrival alerts: "Someone is waiting in room X." to a room's expert when a visitor
enters its waiting list, if the expert asked for it (their own setting, with a phone
number in their sealed member record; tenants/messaging/member_settings.py).

The visitor's check-in never waits on the provider: ``visitor_waiting`` (the waiting
list's hook) only writes the alert's row and hands a background task its id; the task
(``ALERT_TASK``) reads the number, sends, and on an outage asks to run again later
(``RetryLater``: 5 s, 15 s, 45 s, 2 min, then every 5 min, ten tries in all, about half
an hour) with the same idempotency key, so the provider's own deduplication holds
(Twilio's; Sinch documents none). A refused message (a number the provider does not
take, wrong credentials) fails at once with its reason, which never names the number.

When the task could not be handed out (the region's broker down), the row stays queued;
the region's sweep (``SWEEP_TASK``, every ``SWEEP_EVERY_SECONDS`` on the region's
schedule: in process or on Celery beat) and the next arrival in the organisation hand
out every queued alert whose try is overdue by a minute (each such alert by one of them
only: a conditional update takes it). A task whose visitor is no longer waiting by then
ends as ``skipped_not_waiting`` instead of texting about someone already let in.

Rate limit per member: at most one text per room in two minutes (a second arrival while
the expert already knows someone is there needs no second text) and ``PER_HOUR`` texts
an hour; the arrivals over it are recorded as ``skipped_rate_limit``. The count and the
insert run in one transaction under a PostgreSQL advisory transaction lock of the member
(``_member_lock``), so two arrivals at the same moment, in two processes, cannot both
pass it; the embedded default's SQLite takes its write lock up front, which does the same.

The text names the room and nobody else: no visitor name, no link.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path
from typing import Any

from konsil.platform.core import clock, database
from konsil.platform.core.keys.cipher import FieldDecryptionError, FieldRef
from konsil.platform.core.region import RegionContext, RetryLater
from konsil.platform.core.sms import SmsRejected, SmsUnavailable
from konsil.platform.pages import i18n
from konsil.platform.pages.i18n import N_
from konsil.tenants import records
from konsil.tenants.actors import Actor, record
from konsil.tenants.members import subject
from konsil.tenants.messaging.tables import SmsAlert
from konsil.tenants.tables import Member, Organisation, Room, Visit

log = logging.getLogger("konsil.messaging")
# The texts are written in a worker too, where no page registered the area's catalogs.
i18n.register_catalogs(Path(__file__).resolve().parent.parent / "locale")

ALERT_TASK = "konsil.messaging.arrival_alert"
SWEEP_TASK = "konsil.messaging.sweep"
SWEEP_EVERY_SECONDS = 60.0
ALERT_TEXT = N_("Someone is waiting in room %(room)s.")
# The system reading a member's number to text them (the access log's actor).
ALERT_ACTOR = Actor("system", "system", "system", "local", "arrival alert by SMS")

SAME_ROOM_WINDOW = dt.timedelta(minutes=2)
PER_HOUR = 10
# Seconds before the 2nd, 3rd, ... try after an outage; one try more than delays.
RETRY_DELAYS: tuple[float, ...] = (5, 15, 45, 120, 300, 300, 300, 300, 300)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# A sending task holds its alert this long (a second delivery of the task leaves it be).
CLAIM = dt.timedelta(seconds=60)
# A queued alert this long past its due try lost its task: handed out again.
LOST_AFTER = dt.timedelta(seconds=60)
LOST_PER_ARRIVAL = 20
LOST_PER_SWEEP = 500
# The first key of the member's advisory lock (the two-int4 form: its own key space).
_RATE_LOCK = 0x4B534D53  # "KSMS"
COUNTED = ("queued", "sent")


def _submit(ctx: RegionContext, alert_id: uuid.UUID, delay_seconds: float = 0) -> bool:
    """Hand the alert's task out; False (logged) when nobody takes it now."""
    if ctx.tasks is None:
        log.warning("sms alert %s: no task runner in this process; it stays queued", alert_id)
        return False
    try:
        ctx.tasks.submit(ALERT_TASK, alert_id, delay_seconds=delay_seconds)
    except Exception as exc:  # the broker down: the row stays queued, the next arrival hands it out
        log.warning("sms alert %s stays queued: the task could not be handed out (%s)", alert_id, type(exc).__name__)
        return False
    return True


async def visitor_waiting(
    ctx: RegionContext, org: records.Organisation, room: records.Room, visit_id: uuid.UUID
) -> uuid.UUID | None:
    """The waiting list's hook: queue a text to the room's expert if they asked for one.
    Returns the alert's id (None: no alert wanted). Never raises: an alert that cannot
    be queued must not fail the visitor's check-in."""
    try:
        alert_id = await _queue(ctx, org, room, visit_id)
        await resubmit_lost(ctx, org.id)
    except Exception:
        log.exception("sms alert for a visit in room %s could not be queued", room.id)
        return None
    return alert_id


async def _queue(
    ctx: RegionContext, org: records.Organisation, room: records.Room, visit_id: uuid.UUID
) -> uuid.UUID | None:
    if ctx.sms is None:
        return None
    member = (
        await Member.select(Member.id, Member.sms_alerts, Member.phone)
        .where((Member.id == room.expert_id) & (Member.org_id == org.id))
        .first()
    )
    if member is None or not member["sms_alerts"] or member["phone"] is None:
        return None
    alert_id = uuid.uuid4()
    async with database.transaction(ctx.engine):
        await _member_lock(ctx, member["id"])
        now = clock.now()  # after the lock: the row is dated when it was counted
        status, reason = await _over_limit(org.id, member["id"], room.id, now)
        await SmsAlert.insert(
            SmsAlert(
                id=alert_id,
                org_id=org.id,
                member_id=member["id"],
                room_id=room.id,
                visit_id=visit_id,
                status=status,
                reason=reason,
                created_at=now,
                next_attempt_at=now,
                expires_at=now + dt.timedelta(days=org.retention_days),
            )
        )
    if status == "queued":  # committed first: the task reads the row
        _submit(ctx, alert_id)
    return alert_id


async def _member_lock(ctx: RegionContext, member_id: uuid.UUID) -> None:
    """Hold the member's rate-limit lock until the transaction ends (PostgreSQL; SQLite's
    transaction already holds the database's write lock)."""
    if database.is_postgres(ctx.engine):
        key = int.from_bytes(member_id.bytes[:4], "big", signed=True)
        await database.fetch(ctx.engine, "SELECT pg_advisory_xact_lock($1::int4, $2::int4)", _RATE_LOCK, key)


async def _over_limit(org_id: uuid.UUID, member_id: uuid.UUID, room_id: uuid.UUID, now: dt.datetime) -> tuple[str, str]:
    """("queued", "") or ("skipped_rate_limit", why)."""
    mine = (SmsAlert.org_id == org_id) & (SmsAlert.member_id == member_id) & SmsAlert.status.is_in(list(COUNTED))
    if await SmsAlert.exists().where(
        mine & (SmsAlert.room_id == room_id) & (SmsAlert.created_at > now - SAME_ROOM_WINDOW)
    ):
        return "skipped_rate_limit", "a text about this room went out less than 2 minutes ago"
    if await SmsAlert.count().where(mine & (SmsAlert.created_at > now - dt.timedelta(hours=1))) >= PER_HOUR:
        return "skipped_rate_limit", f"{PER_HOUR} texts in the last hour already"
    return "queued", ""


async def resubmit_lost(ctx: RegionContext, org_id: uuid.UUID | None, limit: int = LOST_PER_ARRIVAL) -> int:
    """Hand out again the queued alerts (of one organisation, or of the region: None)
    whose try is overdue (their task was never taken, or was lost); the number handed
    out. Each is taken by a conditional update, so two sweeps at once hand it out once."""
    now = clock.now()
    overdue = (
        (SmsAlert.status == "queued")
        & (SmsAlert.next_attempt_at < now - LOST_AFTER)
        & (SmsAlert.claimed_until.is_null() | (SmsAlert.claimed_until < now))
    )
    where = overdue if org_id is None else overdue & (SmsAlert.org_id == org_id)
    rows = await SmsAlert.select(SmsAlert.id).where(where).order_by(SmsAlert.created_at).limit(limit)
    handed = 0
    for row in rows:
        # Due again now (a later sweep waits another minute for it), if no one took it meanwhile.
        taken = (
            await SmsAlert.update({SmsAlert.next_attempt_at: now})
            .where((SmsAlert.id == row["id"]) & overdue)
            .returning(SmsAlert.id)
        )
        if taken:
            handed += _submit(ctx, row["id"])
    return handed


async def sweep_task(ctx: RegionContext, region: str, run_id: uuid.UUID) -> dict[str, Any]:
    """The region's periodic sweep: hand out the queued alerts whose task was lost (the
    broker was down when they were queued), so none waits for the next arrival."""
    if region != ctx.region.id:
        raise RuntimeError(f"a task of region {region!r} reached a worker of region {ctx.region.id!r}")
    handed = await resubmit_lost(ctx, None, LOST_PER_SWEEP)
    if handed:
        log.info("sms alert sweep: %d queued alert(s) handed out again", handed)
    return {"run_id": str(run_id), "handed_out": handed}


async def _finish(alert_id: uuid.UUID, status: str, reason: str = "", **values: Any) -> dict[str, Any]:
    update: dict[Any, Any] = {SmsAlert.status: status, SmsAlert.reason: reason[:200], SmsAlert.claimed_until: None}
    update |= {getattr(SmsAlert, name): value for name, value in values.items()}
    await SmsAlert.update(update).where(SmsAlert.id == alert_id)
    return {"alert": str(alert_id), "status": status, "reason": reason}


async def _claim(alert_id: uuid.UUID, now: dt.datetime) -> dict[str, Any] | None:
    """The alert, held by this run for ``CLAIM`` and its try counted; None when it is
    not queued or another run holds it."""
    rows = (
        await SmsAlert.update({SmsAlert.attempts: SmsAlert.attempts + 1, SmsAlert.claimed_until: now + CLAIM})
        .where(
            (SmsAlert.id == alert_id)
            & (SmsAlert.status == "queued")
            & (SmsAlert.claimed_until.is_null() | (SmsAlert.claimed_until < now))
        )
        .returning(*SmsAlert.all_columns())
    )
    return rows[0] if rows else None


def alert_text(language: str, room_title: str) -> str:
    return i18n.gettext(language, ALERT_TEXT, room=room_title)


async def arrival_alert_task(ctx: RegionContext, region: str, run_id: uuid.UUID) -> dict[str, Any]:
    """Send one alert (its row's id is ``run_id``); raises ``RetryLater`` on an outage."""
    if region != ctx.region.id:
        raise RuntimeError(f"a task of region {region!r} reached a worker of region {ctx.region.id!r}")
    now = clock.now()
    alert = await _claim(run_id, now)
    if alert is None:
        return {"alert": str(run_id), "status": "not queued or being sent"}
    org_id, member_id = alert["org_id"], alert["member_id"]
    visit = await Visit.select(Visit.status).where(Visit.id == alert["visit_id"]).first()
    if visit is None or visit["status"] != "waiting":
        return await _finish(run_id, "skipped_not_waiting", "the visitor was no longer waiting")
    if ctx.sms is None:
        return await _finish(run_id, "failed", "this region has no SMS provider")
    member = await Member.select(Member.phone, Member.sms_alerts).where(Member.id == member_id).first()
    if member is None or not member["sms_alerts"] or member["phone"] is None:
        return await _finish(run_id, "skipped_off", "the member turned text alerts off")
    org = await Organisation.select(Organisation.locale).where(Organisation.id == org_id).first()
    room = await Room.select(Room.title).where(Room.id == alert["room_id"]).first()
    if org is None or room is None:
        return await _finish(run_id, "skipped_not_waiting", "the room is gone")
    cipher = await ctx.keys.cipher(org_id)
    try:
        phone = cipher.open(FieldRef(org_id, "member", "phone", member_id), member["phone"])
    except FieldDecryptionError as exc:
        await record(ctx, ALERT_ACTOR, org_id, "read", "member", member_id, subject(member_id), "failure")
        return await _finish(run_id, "failed", f"the stored number failed its integrity check ({exc.reason})")
    await record(ctx, ALERT_ACTOR, org_id, "read", "member", member_id, subject(member_id))
    try:
        receipt = await ctx.sms.send(phone, alert_text(org["locale"], room["title"]), str(run_id))
    except SmsRejected as exc:
        return await _finish(run_id, "failed", exc.reason)
    except SmsUnavailable as exc:
        attempts = int(alert["attempts"])
        if attempts >= MAX_ATTEMPTS:
            return await _finish(run_id, "failed", f"gave up after {attempts} tries: {exc.reason}")
        delay = RETRY_DELAYS[attempts - 1]
        await SmsAlert.update(
            {
                SmsAlert.reason: exc.reason[:200],
                SmsAlert.claimed_until: None,
                SmsAlert.next_attempt_at: now + dt.timedelta(seconds=delay),
            }
        ).where(SmsAlert.id == run_id)
        log.info(
            "sms alert %s: try %d of %d failed (%s); next in %.0f s", run_id, attempts, MAX_ATTEMPTS, exc.reason, delay
        )
        raise RetryLater(delay, exc.reason) from None
    return await _finish(
        run_id, "sent", provider=receipt.provider, provider_message_id=receipt.message_id[:100], sent_at=clock.now()
    )
