"""The control plane's login-discovery index, kept in step with the region's members.

Adding or removing a member queues its e-mail lookup (a keyed hash) in
``LoginIndexChange``, in the member's own transaction; nothing crosses the network
inside it. After commit the change is delivered (``deliver``), and the region service
retries what did not land (``keep_delivering``) until the control plane has it, so a
control plane that is down delays discovery but never an invitation.

A delivery sends what the region holds at that moment (the lookup is added when a
member of the organisation still has it, removed otherwise), so a change sent twice,
or after a later one, does no harm. One delivery runs at a time per region database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any

import httpx
import msgspec
from piccolo.custom_types import Combinable
from piccolo.engine.base import Engine

from konsil.platform.core import clock, database
from konsil.platform.core.region import RegionContext
from konsil.tenants.tables import LoginIndexChange, Member

log = logging.getLogger("konsil.login_index")

PATH = "/internal/v1/login-index"
# PostgreSQL advisory-lock key of a region's login-index delivery (any fixed 64-bit number).
_LOCK = 0x4B6F6E73696C4C49  # "KonsilLI"
# After commit, the caller waits this long for its own change to land; past it (or when
# another delivery holds the lock) the retries take it over.
INLINE_SECONDS = 3.0
RETRY_EVERY_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 60
BATCH = 500


async def queue(org_id: uuid.UUID, email_lookup: str) -> None:
    """Note, inside the caller's transaction, that this lookup's index entry may have
    changed (a member added or removed)."""
    now = clock.now()
    await LoginIndexChange.insert(
        LoginIndexChange(id=uuid.uuid4(), org_id=org_id, email_lookup=email_lookup, created_at=now, next_attempt_at=now)
    ).run()


class LoginIndexSync(msgspec.Struct, frozen=True):
    """What the control plane's internal endpoint takes (keyed hashes only)."""

    org_id: uuid.UUID
    add: list[str]
    remove: list[str]


async def _post(ctx: RegionContext, change: LoginIndexSync) -> str:
    """What became of the change: "done", "refused" (the control plane will never take
    it: no such organisation in this region, a malformed entry) or "retry"."""
    try:
        response = await ctx.control.post(PATH, msgspec.json.encode(change))
    except httpx.HTTPError:
        return "retry"
    if response.status_code == 200:
        return "done"
    if response.status_code in (400, 404, 422):
        return "refused"
    return "retry"


def _backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(2**attempts, MAX_BACKOFF_SECONDS))


class _Queued(msgspec.Struct, frozen=True):
    id: uuid.UUID
    org_id: uuid.UUID
    email_lookup: str
    attempts: int


def _due(org_id: uuid.UUID | None) -> Combinable:
    due: Combinable = LoginIndexChange.next_attempt_at <= clock.now()
    return due if org_id is None else due & (LoginIndexChange.org_id == org_id)


async def _deliver_due(ctx: RegionContext, due: Combinable) -> bool:
    """One pass over the due changes; True when all of them landed."""
    rows = await (
        LoginIndexChange.select(
            LoginIndexChange.id, LoginIndexChange.org_id, LoginIndexChange.email_lookup, LoginIndexChange.attempts
        )
        .where(due)
        .order_by(LoginIndexChange.created_at)
        .limit(BATCH)
        .run()
    )
    by_org: dict[uuid.UUID, list[_Queued]] = {}
    for row in rows:
        queued = msgspec.convert(row, _Queued)
        by_org.setdefault(queued.org_id, []).append(queued)
    for org_id, changes in by_org.items():
        lookups = sorted({c.email_lookup for c in changes})
        held = {
            r["email_lookup"]
            for r in await Member.select(Member.email_lookup)
            .where((Member.org_id == org_id) & Member.email_lookup.is_in(lookups))
            .run()
        }
        sync = LoginIndexSync(org_id, [x for x in lookups if x in held], [x for x in lookups if x not in held])
        outcome = await _post(ctx, sync)
        ids = [c.id for c in changes]
        if outcome == "refused":
            log.warning("the control plane refused a login-index change of organisation %s; dropped", org_id)
        if outcome in ("done", "refused"):
            await LoginIndexChange.delete().where(LoginIndexChange.id.is_in(ids)).run()
            continue
        attempts = max(c.attempts for c in changes) + 1
        await (
            LoginIndexChange.update(
                {
                    LoginIndexChange.attempts: attempts,
                    LoginIndexChange.next_attempt_at: clock.now() + _backoff(attempts),
                }
            )
            .where(LoginIndexChange.id.is_in(ids))
            .run()
        )
        log.warning("the control plane did not take a login-index change (attempt %d); retried later", attempts)
        return False  # it does not answer: the other organisations' changes wait for the next pass too
    return len(rows) < BATCH


# One delivery at a time in this process too (SQLite has no advisory locks; on PostgreSQL
# this spares a connection for a lock that the process's other delivery holds). Per
# engine (a process has one per region database; kept, so its id is never reused).
_in_process: dict[int, tuple[Engine[Any], asyncio.Lock]] = {}


def _process_lock(engine: Engine[Any]) -> asyncio.Lock:
    return _in_process.setdefault(id(engine), (engine, asyncio.Lock()))[1]


async def _acquire(lock: asyncio.Lock, wait_seconds: float) -> bool:
    if lock.locked() and not wait_seconds:
        return False
    try:
        async with asyncio.timeout(wait_seconds or None):
            await lock.acquire()
    except TimeoutError:
        return False
    return True


async def deliver(ctx: RegionContext, org_id: uuid.UUID | None = None, wait_seconds: float = 0) -> bool:
    """Send the due changes (of one organisation, or all). Only after commit: inside a
    transaction (the caller's own is not committed yet) this leaves them to the retries.
    True when none of them is left."""
    if database.in_transaction(ctx.engine):
        return False
    due = _due(org_id)
    if not await LoginIndexChange.exists().where(due).run():
        return True
    lock = _process_lock(ctx.engine)
    if not await _acquire(lock, wait_seconds):
        return False
    try:
        async with database.advisory_lock(ctx.engine, _LOCK, wait_seconds) as mine:
            return mine and await _deliver_due(ctx, due)
    finally:
        lock.release()


async def deliver_after_commit(ctx: RegionContext, org_id: uuid.UUID) -> None:
    """The organisation's changes, right after the action that made them committed;
    bounded, so a control plane that does not answer holds no request for long."""
    try:
        async with asyncio.timeout(INLINE_SECONDS):
            await deliver(ctx, org_id, wait_seconds=INLINE_SECONDS)
    except TimeoutError:
        pass  # the retries deliver it
    except Exception as exc:  # the change is made; the retries deliver it
        log.warning("login-index delivery after commit failed (%s); retried", type(exc).__name__)


async def keep_delivering(ctx: RegionContext, every: float = RETRY_EVERY_SECONDS) -> None:
    """The region service's retries: every few seconds, what is due (each change backs
    off on its own, up to a minute, while the control plane does not take it)."""
    while True:
        try:
            await deliver(ctx)
        except Exception as exc:  # the database is away: try again on the next pass
            log.warning("login-index delivery failed (%s); retried", type(exc).__name__)
        await asyncio.sleep(every)
