"""Password reset by e-mail, on the region service.

A person gives their e-mail address; every member of this region with that address
(one per organisation) gets a mail with a one-time link. The answer to the person is
always the same, whether or not the address is known, and the work behind it runs after
the answer (``ask``), so its timing tells nothing either. The link carries 256 random
bits (only their SHA-256 is stored), works once, for 30 minutes; setting the new
password ends every session of that member and is access-logged like any other change
of a member. The mail goes to the address stored for the member, never to the one typed
(which only has to match it after normalisation).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import uuid
from typing import Literal

import msgspec

from konsil.platform.core import clock, database
from konsil.platform.core.authz import token_hash
from konsil.platform.core.keys.cipher import FieldRef
from konsil.platform.core.lookup import email_lookup
from konsil.platform.core.mail import MailNotSent
from konsil.platform.core.region import RegionContext
from konsil.platform.pages.i18n import LOCALES
from konsil.tenants import mails, members, records
from konsil.tenants.actors import Actor, record
from konsil.tenants.passwords import hash_password
from konsil.tenants.tables import Member, MemberSession, Organisation, PasswordReset

log = logging.getLogger("konsil.password_reset")

VALID_FOR = dt.timedelta(minutes=30)
# Used and expired links are kept a day (to say "already used"), then deleted.
KEEP_USED = dt.timedelta(days=1)
PURPOSE = "password reset by e-mail"

State = Literal["valid", "used", "expired", "unknown"]

# The resets being prepared after their answer went out; kept so none is collected early.
_running: set[asyncio.Task[None]] = set()


def link(ctx: RegionContext, token: str) -> str:
    return f"{ctx.region.public_url.rstrip('/')}/password-reset/{token}"


def ask(ctx: RegionContext, email: str, language: str, source_address: str) -> asyncio.Task[None]:
    """Start the reset of ``email`` after the caller has answered (see the module)."""
    task = asyncio.create_task(_ask(ctx, email, language, source_address))
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


async def _ask(ctx: RegionContext, email: str, language: str, source_address: str) -> None:
    try:
        await send_links(ctx, email, language, source_address)
    except Exception as exc:  # nobody waits for this task: say what failed, without the address
        log.error("a password reset could not be prepared (%s)", type(exc).__name__)


async def send_links(ctx: RegionContext, email: str, language: str, source_address: str) -> int:
    """Mail a reset link to every member of this region with ``email``; how many went out."""
    if not ctx.limits.password_reset_email(email):
        log.warning("password-reset mails for one address are over their limit; none sent")
        return 0
    now = clock.now()
    lookup = email_lookup(ctx.discovery_key, email)
    found = [records.Member.of(row) for row in await Member.select().where(Member.email_lookup == lookup).run()]
    sent = 0
    for member in found:
        if members.access_ended(member.role, member.access_expires_at, now):
            continue  # an auditor whose access ended cannot log in with any password
        sent += await _send_link(ctx, member, language if language in LOCALES else "en", source_address)
    return sent


async def _send_link(ctx: RegionContext, member: records.Member, language: str, source_address: str) -> int:
    org = records.Organisation.of(
        await Organisation.select().where(Organisation.id == member.org_id).first().run()  # type: ignore[arg-type]
    )
    token = secrets.token_urlsafe(32)
    reset_id = uuid.uuid4()
    now = clock.now()
    who = members.subject(member.id)
    asker = Actor("anonymous", "anonymous", who, source_address, PURPOSE)
    async with database.transaction(ctx.engine):
        await PasswordReset.insert(
            PasswordReset(
                id=reset_id,
                org_id=org.id,
                member_id=member.id,
                token_hash=token_hash(token),
                language=language,
                created_at=now,
                expires_at=now + VALID_FOR,
            )
        ).run()
        # The stored address is read to mail it: an access-logged read of the member.
        address = (await ctx.keys.cipher(org.id)).open(FieldRef(org.id, "member", "email", member.id), member.email)
        await record(ctx, asker, org.id, "read", "member", member.id, who)
    try:
        await ctx.mail.send(mails.password_reset(address, language, org.name, link(ctx, token)))
    except MailNotSent:
        log.warning("a password-reset link of organisation %s could not be mailed", org.id)
        return 0
    return 1


async def tidy() -> None:
    """Links that ended more than ``KEEP_USED`` ago go (run by the region service)."""
    await PasswordReset.delete().where(PasswordReset.expires_at < clock.now() - KEEP_USED).run()


class Opened(msgspec.Struct, frozen=True, kw_only=True):
    state: State
    language: str = ""  # the language the link was asked in; "" for an unknown link (the browser's then)


def _state(reset: records.PasswordReset, now: dt.datetime) -> State:
    if reset.used_at is not None:
        return "used"
    if reset.expires_at <= now:
        return "expired"
    return "valid"


async def _find(token: str) -> records.PasswordReset | None:
    if not token or len(token) > 100:
        return None
    return records.PasswordReset.maybe(
        await PasswordReset.select().where(PasswordReset.token_hash == token_hash(token)).first().run()
    )


async def open_link(token: str) -> Opened:
    """Whether a reset link still works, and the language it was asked in."""
    reset = await _find(token)
    if reset is None:
        return Opened(state="unknown")
    return Opened(state=_state(reset, clock.now()), language=reset.language)


class LinkNotValid(Exception):
    def __init__(self, state: State) -> None:
        super().__init__(state)
        self.state = state


async def complete(ctx: RegionContext, token: str, password: str, source_address: str) -> records.Organisation:
    """Set the member's new password and end all their sessions, in one transaction
    with its access-log entry; the link (and any other of theirs) is used up. Raises
    LinkNotValid when it was used or has expired."""
    hashed = hash_password(password)  # before the transaction: it takes a while on purpose
    now = clock.now()
    async with database.transaction(ctx.engine):
        reset = await _find(token)
        if reset is None:
            raise LinkNotValid("unknown")
        state = _state(reset, now)
        if state != "valid":
            raise LinkNotValid(state)
        claimed = (
            await PasswordReset.update({PasswordReset.used_at: now})
            .where((PasswordReset.id == reset.id) & PasswordReset.used_at.is_null() & (PasswordReset.expires_at > now))
            .returning(PasswordReset.id)
            .run()
        )
        if not claimed:
            raise LinkNotValid("used")
        member = records.Member.maybe(
            await Member.select().where((Member.id == reset.member_id) & (Member.org_id == reset.org_id)).first().run()
        )
        if member is None:  # removed since the link was sent
            raise LinkNotValid("unknown")
        # Other links of theirs stop working too.
        await (
            PasswordReset.update({PasswordReset.used_at: now})
            .where((PasswordReset.member_id == member.id) & PasswordReset.used_at.is_null())
            .run()
        )
        await Member.update({Member.password_hash: hashed}).where(Member.id == member.id).run()
        await MemberSession.delete().where(MemberSession.member_id == member.id).run()
        who = members.subject(member.id)
        actor = Actor(who, member.role, who, source_address, PURPOSE)
        await record(ctx, actor, member.org_id, "update", "member", member.id, who)
        org = records.Organisation.of(
            await Organisation.select().where(Organisation.id == member.org_id).first().run()  # type: ignore[arg-type]
        )
    return org
