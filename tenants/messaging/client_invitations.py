"""Client invitations: the expert sends a room's join link to a client by SMS or e-mail
from the dashboard. The link is the room's public address (no token, nothing about the
client in it); the text names the organisation and the room.

The address is used once and never stored: the send happens within the request (a
short provider timeout, one more try on an outage, the same idempotency key both
times), and the send record keeps only a keyed hash of the address (the organisation's
blind index, as members' and visits' phone numbers and e-mail addresses have, so a
data-subject request can still find "was I sent an invitation?"). Storing the address
to send it later from a background task would have kept it at rest for the length of
an outage; a failed send instead tells the expert at once (503, nothing sent) and they
try again; an address the client's mail server refuses for good is a 400. A send that
ends any other way (cancelled, a database error) leaves its record "failed", never
"sending". Every send is access-logged under the sender; at most ``PER_HOUR``
invitations per member an hour (429 beyond)."""

from __future__ import annotations

import datetime as dt
import html
import logging
import uuid
from typing import Annotated, Any, Literal

import msgspec

from konsil.platform.core import clock, errors
from konsil.platform.core.authz import MANAGERS
from konsil.platform.core.keys.provider import KeyUnavailable
from konsil.platform.core.mail import Mail, MailNotSent, RecipientRefused
from konsil.platform.core.region import RegionContext
from konsil.platform.core.sms import SmsReceipt, SmsRejected, SmsUnavailable
from konsil.platform.core.text import LINE_PATTERN
from konsil.platform.pages import i18n
from konsil.platform.pages.i18n import N_
from konsil.tenants import members, records, rooms
from konsil.tenants.actors import Actor, record
from konsil.tenants.auth import Principal
from konsil.tenants.messaging.member_settings import NO_PROVIDER, check_phone
from konsil.tenants.messaging.tables import ClientInvitation
from konsil.tenants.schemas import Email, Locale

log = logging.getLogger("konsil.messaging")

PER_HOUR = 30
TRIES = 2  # one more try on an outage, within the request

Channel = Literal["sms", "email"]


class ClientInvitationIn(msgspec.Struct, forbid_unknown_fields=True):
    """``to``: the client's mobile number (``sms``; national format of the organisation's
    country or international) or e-mail address (``email``); used for this send only and
    not stored. ``language``: of the message (default: the organisation's language)."""

    channel: Channel
    to: Annotated[str, msgspec.Meta(min_length=1, max_length=254, pattern=LINE_PATTERN)]
    language: Locale | None = None


class ClientInvitationOut(msgspec.Struct):
    id: uuid.UUID
    room_id: uuid.UUID
    channel: str
    status: str  # sent | failed
    created_at: dt.datetime
    sent_at: dt.datetime | None


BAD_EMAIL = "to: enter an e-mail address like name@example.org"
SMS_DOWN = "the text message service did not answer, so nothing was sent; please try again in a few minutes"
MAIL_DOWN = "the e-mail could not be sent right now, so nothing was sent; please try again in a few minutes"
EMAIL_REFUSED = "to: this e-mail address was refused by the client's mail server; check it, or send a text message"
KEYS_DOWN = (
    "the region's key service does not answer, so nothing was sent and nothing was stored; please try again in a minute"
)


def invitation_subject(invitation_id: uuid.UUID) -> str:
    """The access log's pseudonymous name of the invited client."""
    return f"client_invitation:{invitation_id}"


def sms_text(language: str, org_name: str, room_title: str, link: str) -> str:
    return i18n.gettext(
        language,
        N_("%(org)s invites you to a video consultation (%(room)s). Join here: %(link)s"),
        org=org_name,
        room=room_title,
        link=link,
    )


def invitation_mail(to: str, language: str, org_name: str, room_title: str, link: str) -> Mail:
    def t(message: str, **params: str) -> str:
        return i18n.gettext(language, message, **params)

    paragraphs = [
        t(N_("Hello,")),
        t(N_("%(org)s invites you to a video consultation in the room %(room)s."), org=org_name, room=room_title),
        t(N_("When it is time, open this link in your browser. You need no account and no app:")),
        "",
        t(N_("Konsil, on behalf of %(org)s"), org=org_name),
    ]
    subject = t(N_("Video consultation with %(org)s"), org=org_name)
    text = "\n\n".join(link if p == "" else p for p in paragraphs) + "\n"
    href = html.escape(link, quote=True)
    body = "\n".join(
        f'<p><a href="{href}">{href}</a></p>' if p == "" else f"<p>{html.escape(p)}</p>" for p in paragraphs
    )
    page = (
        f'<!doctype html>\n<html lang="{language}"><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )
    return Mail(to=to, subject=subject, text=text, html=page, language=language)


def _recipient(ctx: RegionContext, org: records.Organisation, data: ClientInvitationIn) -> str:
    """The address in its normal form, or 400 (a message that does not repeat it)."""
    if data.channel == "sms":
        if ctx.sms is None:
            raise errors.AppError(409, "sms_unavailable", NO_PROVIDER.replace("ask your operator", "send an e-mail"))
        try:
            return check_phone(data.to, org.country)
        except errors.AppError:
            raise errors.AppError(
                400, "invalid_phone", "to: enter the client's mobile number, e.g. +47 412 34 567"
            ) from None
    try:
        return msgspec.convert(data.to.strip(), Email)
    except msgspec.ValidationError:
        raise errors.AppError(400, "invalid_email", BAD_EMAIL) from None


def _own_room(principal: Principal, room: records.Room) -> bool:
    """Experts send and see invitations of their own rooms; owners, admins and API tokens
    (by their scope) of every room."""
    return principal.kind != "member" or principal.role in MANAGERS or room.expert_id == principal.id


async def _check_rate(principal: Principal, org: records.Organisation, now: dt.datetime) -> None:
    sender = (
        ClientInvitation.member_id == principal.id
        if principal.kind == "member"
        else ClientInvitation.member_id.is_null()
    )
    sent = await ClientInvitation.count().where(
        (ClientInvitation.org_id == org.id) & sender & (ClientInvitation.created_at > now - dt.timedelta(hours=1))
    )
    if sent >= PER_HOUR:
        raise errors.AppError(
            429,
            "too_many_invitations",
            f"at most {PER_HOUR} client invitations an hour; please wait a while",
            headers={"retry-after": "600"},
        )


async def _send_sms(ctx: RegionContext, number: str, text: str, key: str) -> SmsReceipt:
    assert ctx.sms is not None
    for attempt in range(1, TRIES + 1):
        try:
            return await ctx.sms.send(number, text, key)
        except SmsUnavailable as exc:
            log.warning("client invitation %s: try %d of %d failed (%s)", key, attempt, TRIES, exc.reason)
            if attempt == TRIES:
                raise
    raise AssertionError("unreachable")


async def send(
    ctx: RegionContext,
    actor: Actor,
    principal: Principal,
    org: records.Organisation,
    room_id: uuid.UUID,
    data: ClientInvitationIn,
) -> ClientInvitationOut:
    room = await rooms.get(org, room_id)
    if not _own_room(principal, room):
        raise errors.forbidden("you can invite clients to your own rooms only")
    address = _recipient(ctx, org, data)
    now = clock.now()
    await _check_rate(principal, org, now)
    language = data.language or (org.locale if org.locale in i18n.LOCALES else "en")
    link = f"{ctx.region.public_url.rstrip('/')}/{org.slug}/{room.slug}"
    try:
        cipher = await ctx.keys.cipher(org.id)
    except KeyUnavailable:
        # Before anything is written or sent: the address cannot be hashed for the record.
        raise errors.AppError(503, "unavailable", KEYS_DOWN, headers={"retry-after": "10"}) from None
    recipient_hash = (
        members.phone_index(cipher, address) if data.channel == "sms" else members.email_index(cipher, address)
    )
    invitation_id = uuid.uuid4()
    await ClientInvitation.insert(
        ClientInvitation(
            id=invitation_id,
            org_id=org.id,
            room_id=room.id,
            member_id=principal.id if principal.kind == "member" else None,
            channel=data.channel,
            recipient_hash=recipient_hash,
            language=language,
            status="sending",
            created_at=now,
            expires_at=now + dt.timedelta(days=org.retention_days),
        )
    )
    actor = actor.for_purpose("send a client the room's link")
    values: dict[Any, Any]
    try:
        if data.channel == "sms":
            receipt = await _send_sms(ctx, address, sms_text(language, org.name, room.title, link), str(invitation_id))
            values = {
                ClientInvitation.provider: receipt.provider,
                ClientInvitation.provider_message_id: receipt.message_id[:100],
            }
        else:
            await _send_mail(ctx, invitation_mail(address, language, org.name, room.title, link))
            values = {ClientInvitation.provider: "smtp"}
    except (SmsRejected, SmsUnavailable, MailNotSent) as exc:
        await _failed(ctx, actor, org, invitation_id)
        raise _failure(exc) from None
    except BaseException:
        # Anything else (the request cancelled mid-send, a database or key service error):
        # the row must not stay "sending"; the error itself is answered as it is.
        await _failed(ctx, actor, org, invitation_id)
        raise
    sent_at = clock.now()
    await ClientInvitation.update({ClientInvitation.status: "sent", ClientInvitation.sent_at: sent_at, **values}).where(
        ClientInvitation.id == invitation_id
    )
    await record(ctx, actor, org.id, "create", "client_invitation", invitation_id, invitation_subject(invitation_id))
    return ClientInvitationOut(
        id=invitation_id, room_id=room.id, channel=data.channel, status="sent", created_at=now, sent_at=sent_at
    )


async def _failed(ctx: RegionContext, actor: Actor, org: records.Organisation, invitation_id: uuid.UUID) -> None:
    """Mark the send record failed and log the attempt; a failure doing so is logged and
    does not hide the error that led here."""
    try:
        await ClientInvitation.update({ClientInvitation.status: "failed"}).where(ClientInvitation.id == invitation_id)
        await record(
            ctx,
            actor,
            org.id,
            "create",
            "client_invitation",
            invitation_id,
            invitation_subject(invitation_id),
            "failure",
        )
    except Exception as exc:
        log.error("client invitation %s: could not be marked failed (%s)", invitation_id, type(exc).__name__)


async def _send_mail(ctx: RegionContext, mail: Mail) -> None:
    for attempt in range(1, TRIES + 1):
        try:
            await ctx.mail.send(mail)
            return
        except MailNotSent as exc:
            log.warning("client invitation mail: try %d of %d failed (%s)", attempt, TRIES, exc.reason)
            if attempt == TRIES or isinstance(exc, RecipientRefused):
                raise


def _failure(exc: Exception) -> errors.AppError:
    if isinstance(exc, SmsRejected):
        if "credentials" in exc.reason:
            return errors.AppError(
                503, "sms_unavailable", SMS_DOWN.replace("did not answer", "refused our credentials")
            )
        return errors.AppError(
            400, "invalid_phone", "to: the text message service refused this number; check it, or send an e-mail"
        )
    if isinstance(exc, SmsUnavailable):
        return errors.AppError(503, "sms_unavailable", SMS_DOWN, headers={"retry-after": "60"})
    if isinstance(exc, RecipientRefused):
        return errors.AppError(400, "email_refused", EMAIL_REFUSED)
    return errors.AppError(503, "mail_unavailable", MAIL_DOWN, headers={"retry-after": "60"})


async def sent_for_room(
    principal: Principal, org: records.Organisation, room_id: uuid.UUID
) -> list[ClientInvitationOut]:
    """The room's invitations (no addresses: there are none to show); 404 for no such
    room, 403 for an expert's look at another expert's room."""
    room = await rooms.get(org, room_id)
    if not _own_room(principal, room):
        raise errors.forbidden("you can see the invitations of your own rooms only")
    rows = (
        await ClientInvitation.select()
        .where((ClientInvitation.org_id == org.id) & (ClientInvitation.room_id == room.id))
        .order_by(ClientInvitation.created_at, ascending=False)
        .limit(100)
    )
    return [
        ClientInvitationOut(
            id=r["id"],
            room_id=r["room_id"],
            channel=r["channel"],
            status=r["status"],
            created_at=r["created_at"],
            sent_at=r["sent_at"],
        )
        for r in rows
    ]
