"""The national eID check of a visit, step by step (OpenID Connect's authorization code
flow with PKCE, through the region's broker, ``ctx.identity``):

1. ``start``: the visitor asks to prove who they are. A new attempt: a random state,
   nonce and PKCE verifier; only the state's hash is stored (with the nonce and the
   verifier, which never leave the server), for ``ATTEMPT_MINUTES``. The browser is sent
   to the broker; the state also goes into a cookie of the visitor's browser, so only
   the browser that started an attempt can finish it.
2. ``finish``: the broker sends the browser back with a code and the state. The attempt
   is found by the state's hash and used up at once (a replayed state finds it used);
   the code is exchanged and the ID token checked (``IdentityBroker.verify``); the
   identity is sealed and kept (``store.save``) and the check-in step is done
   (``checkin.step_done``).

Whatever fails, nothing is kept and the visit stays checking in: the visitor may try
again. No message names the person, the number, the code or the state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Literal

from konsil.platform.core import clock
from konsil.platform.core.identity import EIDS, Eid, IdentityBroker, IdentityRejected, IdentityUnavailable
from konsil.platform.core.region import RegionContext
from konsil.tenants import checkin, records
from konsil.tenants.actors import Actor
from konsil.tenants.identity import store
from konsil.tenants.identity.criipto import code_challenge
from konsil.tenants.identity.tables import IdentityAttempt
from konsil.tenants.tables import Organisation, Room, Visit

log = logging.getLogger("konsil.identity")

CALLBACK_PATH = "/identity/callback"
ATTEMPT_MINUTES = 15
# Attempts older than this are deleted when a new one starts (they hold no personal data).
KEEP_ATTEMPTS = dt.timedelta(days=1)

Problem = Literal[
    "unavailable",  # the broker did not answer / failed: try again
    "rejected",  # the answer could not be trusted or did not fit
    "cancelled",  # the visitor stopped at the broker
    "replayed",  # this state was used already
    "expired",  # the attempt is too old
    "unknown",  # no such attempt (or another browser's)
    "not_needed",  # the visit is past its check-in (or the room asks for none)
    "off",  # the region has no eID broker
]


class IdentityFlowError(Exception):
    """An eID check that ended without a verified identity; ``problem`` says which kind
    for the visitor's page, ``reason`` for the log (neither names the person)."""

    def __init__(self, problem: Problem, reason: str, where: tuple[str, str, str] | None = None) -> None:
        super().__init__(reason)
        self.problem = problem
        self.reason = reason
        self.where = where  # (org slug, room slug, visit id) when known: the visitor's way back


@dataclass(frozen=True)
class Started:
    authorize_url: str
    state: str


@dataclass(frozen=True)
class Finished:
    org: records.Organisation
    room: records.Room
    visit_id: uuid.UUID


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def room_eid(room: records.Room) -> Eid | None:
    return room.identity_check if room.identity_check in EIDS else None


def broker_of(ctx: RegionContext) -> IdentityBroker:
    if ctx.identity is None:
        raise IdentityFlowError("off", "this region has no eID broker configured ([regions.identity])")
    return ctx.identity


def redirect_uri(ctx: RegionContext) -> str:
    return ctx.region.public_url.rstrip("/") + CALLBACK_PATH


def needs_identity(visit: records.Visit, room: records.Room) -> bool:
    return "identity" in checkin.pending(visit, room)


async def start(
    ctx: RegionContext, org: records.Organisation, room: records.Room, visit: records.Visit, locale: str
) -> Started:
    """A new attempt for the visit; where to send the visitor's browser."""
    broker = broker_of(ctx)
    eid = room_eid(room)
    if eid is None or not needs_identity(visit, room):
        raise IdentityFlowError("not_needed", "the visit has no identity check to do")
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    now = clock.now()
    await IdentityAttempt.delete().where(IdentityAttempt.created_at < now - KEEP_ATTEMPTS)
    await IdentityAttempt.insert(
        IdentityAttempt(
            id=uuid.uuid4(),
            org_id=org.id,
            visit_id=visit.id,
            eid=eid,
            state_hash=state_hash(state),
            nonce=nonce,
            code_verifier=verifier,
            created_at=now,
            expires_at=now + dt.timedelta(minutes=ATTEMPT_MINUTES),
        )
    ).run()
    try:
        url = await broker.authorization_url(
            eid,
            state=state,
            nonce=nonce,
            code_challenge=code_challenge(verifier),
            redirect_uri=redirect_uri(ctx),
            locale=locale,
        )
    except IdentityUnavailable as exc:
        raise IdentityFlowError("unavailable", exc.reason) from None
    return Started(authorize_url=url, state=state)


async def _where(attempt: dict[str, object]) -> tuple[records.Organisation, records.Room, records.Visit] | None:
    org = records.Organisation.maybe(await Organisation.select().where(Organisation.id == attempt["org_id"]).first())
    visit = records.Visit.maybe(
        await Visit.select().where((Visit.id == attempt["visit_id"]) & (Visit.org_id == attempt["org_id"])).first()
    )
    if org is None or visit is None:
        return None
    room = records.Room.maybe(await Room.select().where((Room.id == visit.room_id) & (Room.org_id == org.id)).first())
    return None if room is None else (org, room, visit)


async def finish(
    ctx: RegionContext,
    *,
    state: str,
    code: str,
    error: str,
    browser_state: str | None,
    source: str,
) -> Finished:
    """The broker sent the browser back: check, exchange, verify, keep, step done."""
    if not state or len(state) > 200:
        raise IdentityFlowError("unknown", "the answer has no state")
    attempt = await IdentityAttempt.select().where(IdentityAttempt.state_hash == state_hash(state)).first()
    if attempt is None:
        raise IdentityFlowError("unknown", "no attempt has this state")
    found = await _where(attempt)
    if found is None:
        raise IdentityFlowError("unknown", "the attempt's visit is gone")
    org, room, visit = found
    where = (org.slug, room.slug, str(visit.id))
    if browser_state is None or not secrets.compare_digest(browser_state, state):
        raise IdentityFlowError("unknown", "the attempt was started in another browser", where)
    now = clock.now()
    used = (
        await IdentityAttempt.update({IdentityAttempt.used_at: now})
        .where((IdentityAttempt.id == attempt["id"]) & IdentityAttempt.used_at.is_null())
        .returning(IdentityAttempt.id)
        .run()
    )
    if not used:
        raise IdentityFlowError("replayed", "this attempt's state was used already", where)

    async def ended(outcome: str) -> None:
        await IdentityAttempt.update({IdentityAttempt.outcome: outcome}).where(IdentityAttempt.id == attempt["id"])

    if attempt["expires_at"] < now:
        await ended("expired")
        raise IdentityFlowError("expired", "the attempt is too old", where)
    eid = room_eid(room)
    if eid is None or eid != attempt["eid"] or not needs_identity(visit, room):
        await ended("cancelled")
        raise IdentityFlowError("not_needed", "the visit has no identity check to do", where)
    if error or not code:
        await ended("cancelled")
        raise IdentityFlowError("cancelled", "the visitor stopped at the eID service", where)
    broker = broker_of(ctx)
    try:
        identity = await broker.verify(
            code,
            eid=eid,
            code_verifier=str(attempt["code_verifier"]),
            nonce=str(attempt["nonce"]),
            redirect_uri=redirect_uri(ctx),
        )
    except IdentityRejected as exc:
        await ended("rejected")
        log.warning("an eID check of visit %s was refused: %s", visit.id, exc.reason)
        raise IdentityFlowError("rejected", exc.reason, where) from None
    except IdentityUnavailable as exc:
        await ended("unavailable")
        log.warning("an eID check of visit %s could not finish: %s", visit.id, exc.reason)
        raise IdentityFlowError("unavailable", exc.reason, where) from None
    actor = Actor(f"visitor:{visit.id}", "visitor", f"visitor:{visit.id}", source, "identity check (national eID)")
    await store.save(ctx, actor, org.id, visit.id, identity, visit.expires_at)
    await ended("verified")
    await checkin.step_done(ctx, org, room, visit.id, "identity")
    return Finished(org=org, room=room, visit_id=visit.id)
