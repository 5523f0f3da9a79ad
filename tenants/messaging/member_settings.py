"""A member's own SMS alert setting: "text me when someone is waiting" and the number to
text, kept in their member record (the phone sealed with the organisation's key, as any
member's phone). Shown back masked ("+47 *** ** 567"); reading it (to mask it) and
changing it are access-logged under the member themself.

A number is accepted as people type it, in the organisation's country's format or in
international format, and stored in E.164 only when libphonenumber knows it as a valid
number (a number that cannot receive a text is refused here, not by a failed alert)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from konsil.platform.core import database, errors
from konsil.platform.core.keys.cipher import FieldDecryptionError, FieldRef
from konsil.platform.core.phones import normalise_phone
from konsil.platform.core.region import RegionContext
from konsil.platform.core.sms import is_e164, mask_number
from konsil.platform.core.text import LINE_PATTERN
from konsil.tenants import members, records
from konsil.tenants.actors import Actor, record
from konsil.tenants.tables import Member

PhoneText = Annotated[
    str, msgspec.Meta(max_length=40, pattern=LINE_PATTERN, description="a mobile number, e.g. +47 412 34 567")
]


class SmsAlertsIn(msgspec.Struct, forbid_unknown_fields=True):
    """``enabled``: text me when someone is waiting in one of my rooms; ``phone``: the
    number to text (national format of the organisation's country or international;
    null removes it, which also turns the alerts off); left out: unchanged."""

    enabled: bool
    phone: PhoneText | msgspec.UnsetType | None = msgspec.UNSET


class SmsAlertsOut(msgspec.Struct):
    enabled: bool
    # The number masked ("+47 *** ** 567"), None without one.
    phone: str | None
    # Whether this region sends text messages at all (an SMS provider is configured).
    available: bool


NO_PROVIDER = "this region sends no text messages (no SMS provider is configured); ask your operator"
BAD_NUMBER = "phone: enter a mobile number that can receive text messages, e.g. +47 412 34 567"
NO_NUMBER = "phone: add the number to text before turning text alerts on"


def check_phone(text: str, country: str) -> str:
    """The number in E.164, or 400 with a message that does not repeat it."""
    number = normalise_phone(text, country)
    if number is None or not is_e164(number):
        raise errors.AppError(400, "invalid_phone", BAD_NUMBER)
    return number


async def _member(org: records.Organisation, member_id: object) -> records.Member:
    row = await Member.select().where((Member.id == member_id) & (Member.org_id == org.id)).first()
    if row is None:
        raise errors.not_found("no such member")
    return records.Member.of(row)


async def _out(ctx: RegionContext, actor: Actor, member: records.Member) -> SmsAlertsOut:
    phone = None
    if member.phone is not None:
        cipher = await ctx.keys.cipher(member.org_id)
        try:
            phone = cipher.open(FieldRef(member.org_id, "member", "phone", member.id), member.phone)
        except FieldDecryptionError:
            await record(ctx, actor, member.org_id, "read", "member", member.id, members.subject(member.id), "failure")
            raise errors.AppError(
                500, "integrity_error", "your stored phone number failed its integrity check; enter it again"
            ) from None
        await record(ctx, actor, member.org_id, "read", "member", member.id, members.subject(member.id))
    return SmsAlertsOut(
        enabled=member.sms_alerts and phone is not None,
        phone=mask_number(phone) if phone else None,
        available=ctx.sms is not None,
    )


async def read(ctx: RegionContext, actor: Actor, org: records.Organisation, member_id: object) -> SmsAlertsOut:
    return await _out(ctx, actor.for_purpose("own SMS alert setting"), await _member(org, member_id))


async def change(
    ctx: RegionContext, actor: Actor, org: records.Organisation, member_id: object, change: SmsAlertsIn
) -> SmsAlertsOut:
    actor = actor.for_purpose("own SMS alert setting")
    values: dict[Any, Any] = {}
    async with database.transaction(ctx.engine):
        member = await _member(org, member_id)
        has_phone = member.phone is not None
        if change.phone is not msgspec.UNSET:
            cipher = await ctx.keys.cipher(org.id)
            if change.phone is None or not change.phone.strip():
                values |= {Member.phone: None, Member.phone_index: None}
                has_phone = False
            else:
                number = check_phone(change.phone, org.country)
                values[Member.phone] = cipher.seal(FieldRef(org.id, "member", "phone", member.id), number)
                values[Member.phone_index] = members.phone_index(cipher, number)
                has_phone = True
        if change.enabled and not has_phone:
            raise errors.AppError(400, "invalid_phone", NO_NUMBER)
        if change.enabled and ctx.sms is None:
            raise errors.AppError(409, "sms_unavailable", NO_PROVIDER)
        values[Member.sms_alerts] = change.enabled and has_phone
        await Member.update(values).where(Member.id == member.id)
        await record(ctx, actor, org.id, "update", "member", member.id, members.subject(member.id))
        member = await _member(org, member_id)
    return await _out(ctx, actor, member)
