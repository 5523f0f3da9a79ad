"""The new owner's one-time sign-in link: after signup the control plane sends the
browser that signed up to ``/welcome/{token}`` in the organisation's region, which
opens the owner's session there, so they land in their portal logged in.

The token is made when the region creates the organisation and handed to the control
plane in its internal answer only (never in the signup API's JSON). Only its SHA-256
is stored; it works once (redeeming deletes it) and for ``LIFETIME`` only.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

from konsil.platform.core import clock
from konsil.platform.core.authz import token_hash
from konsil.tenants import records
from konsil.tenants.tables import Member, Organisation, WelcomeToken

LIFETIME = dt.timedelta(minutes=2)


async def issue(org_id: uuid.UUID, member_id: uuid.UUID) -> str:
    """A new token for the member (inside the caller's transaction); expired ones of
    earlier signups are dropped on the way."""
    now = clock.now()
    await WelcomeToken.delete().where(WelcomeToken.expires_at < now).run()
    token = secrets.token_urlsafe(32)
    await WelcomeToken.insert(
        WelcomeToken(token_hash=token_hash(token), org_id=org_id, member_id=member_id, expires_at=now + LIFETIME)
    ).run()
    return token


async def redeem(token: str) -> tuple[records.Member, records.Organisation] | None:
    """The member and organisation a token opens, once; None when it is unknown, used
    or expired (the person is then asked to log in)."""
    if not token or len(token) > 100:
        return None
    taken = (
        await WelcomeToken.delete()
        .where(WelcomeToken.token_hash == token_hash(token))
        .returning(WelcomeToken.org_id, WelcomeToken.member_id, WelcomeToken.expires_at)
        .run()
    )
    if not taken:
        return None
    row = taken[0]
    expires: dt.datetime = row["expires_at"]
    if (expires if expires.tzinfo else expires.replace(tzinfo=dt.UTC)) <= clock.now():
        return None
    member = (
        await Member.select().where((Member.id == row["member_id"]) & (Member.org_id == row["org_id"])).first().run()
    )
    org = await Organisation.select().where(Organisation.id == row["org_id"]).first().run()
    if member is None or org is None:
        return None
    return records.Member.of(member), records.Organisation.of(org)
