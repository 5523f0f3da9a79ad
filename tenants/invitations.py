"""Invitations: an owner or admin invites a new member by e-mail, with a role; the
person opens a one-time link, chooses their name and password and is in.

- The link carries 256 random bits; only their SHA-256 is stored. It works once, for
  7 days, until it is revoked; sending it again makes a new link (the old one stops).
- The e-mail address is personal data: sealed with the organisation's key (with a blind
  index to refuse a second invitation of the same address), read only by managers with
  an access-log entry per invitation shown, and cleared once the invitation is accepted,
  revoked or has expired (``tidy``). Old rows go after ``KEEP_USED``.
- Who may invite whom follows the members' rules (``members.check_grant``): only an
  owner invites an admin or an auditor, an auditor always with an end of access.
- A mail that cannot be sent loses nothing: the invitation stays, marked as not mailed,
  and can be sent again.
- Accepting is one transaction: the member, their access-log entry, the used link and
  the consent to each optional e-mail the person ticked (tenants/consent.py, source
  "invitation") together, or nothing (a link used twice, expired or revoked, or an
  address that has become a member in the meantime, creates nothing). A box left
  unticked records nothing: the member has not chosen yet, and gets no such e-mail.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import uuid
from typing import Literal

import msgspec
from piccolo.custom_types import Combinable

from konsil.platform.core import clock, database, errors
from konsil.platform.core.authz import token_hash
from konsil.platform.core.keys.cipher import FieldDecryptionError, FieldRef, OrgCipher
from konsil.platform.core.mail import MailNotSent
from konsil.platform.core.region import RegionContext
from konsil.platform.pages.i18n import LOCALES
from konsil.tenants import consent, login_index, mails, member_emails, members, records
from konsil.tenants.actors import Actor, record, record_reads
from konsil.tenants.schemas import AccessExpiresAt, Email, MemberIn, Password, PersonName, Strict
from konsil.tenants.tables import Invitation, Organisation

log = logging.getLogger("konsil.invitations")

VALID_FOR = dt.timedelta(days=7)
# Accepted, revoked and expired invitations (their e-mail already cleared, or expired)
# are kept this long to answer a second use of the link, then deleted.
KEEP_USED = dt.timedelta(days=30)
INVITABLE_ROLES = ("admin", "expert", "auditor")
Language = Literal["en", "nb", "de", "nl"]
# The optional e-mails offered on the invitation's page (consent.MEMBER_PURPOSES).
EmailChoice = Literal["onboarding_emails", "feature_emails"]
EMAIL_CHOICES: tuple[EmailChoice, ...] = ("onboarding_emails", "feature_emails")


class InvitationIn(Strict):
    email: Email
    role: Literal["admin", "expert", "auditor"]
    # Auditors only, and then required (at most 365 days ahead).
    access_expires_at: AccessExpiresAt | None = None
    # The language of the mail and of the page behind the link; default the organisation's.
    language: Language | None = None


class InvitationOut(msgspec.Struct):
    id: uuid.UUID
    email: str
    role: str
    access_expires_at: dt.datetime | None
    language: str
    created_at: dt.datetime
    expires_at: dt.datetime
    # Whether the last mail with the link went out; false: send it again.
    mail_sent: bool


class Acceptance(Strict):
    """What the invited person gives on the invitation's page: their name and password,
    and the optional e-mails they ask for (unticked on the page unless they tick them),
    agreed to in the wording of ``consent.WORDINGS`` shown in ``language``."""

    name: PersonName
    password: Password
    emails: frozenset[EmailChoice] = frozenset()
    language: str = "en"


def subject(invitation_id: uuid.UUID) -> str:
    return f"invitation:{invitation_id}"


def _ref(org_id: uuid.UUID, invitation_id: uuid.UUID) -> FieldRef:
    return FieldRef(org_id, "invitation", "email", invitation_id)


def link(ctx: RegionContext, token: str) -> str:
    return f"{ctx.region.public_url.rstrip('/')}/invitations/{token}"


def _open(cipher: OrgCipher, invitation: records.Invitation) -> str:
    if invitation.email is None:
        return ""
    return cipher.open(_ref(invitation.org_id, invitation.id), invitation.email)


def _pending(org_id: uuid.UUID, now: dt.datetime) -> Combinable:
    return (
        (Invitation.org_id == org_id)
        & Invitation.accepted_at.is_null()
        & Invitation.revoked_at.is_null()
        & (Invitation.expires_at > now)
    )


# Who clears what an ended invitation held, in the access log.
TIDY = Actor("system:retention", "system", "system", "local", "invitation ended: its e-mail address removed")


async def tidy(ctx: RegionContext) -> int:
    """An invitation that expired keeps no e-mail address (its link no longer works, and
    nobody sees it again): cleared, each with an access-log entry. Invitations that ended
    more than ``KEEP_USED`` ago go. Run every few minutes by the region service; how many
    addresses were cleared."""
    now = clock.now()
    expired = (
        await Invitation.select(Invitation.id, Invitation.org_id)
        .where(Invitation.email.is_not_null() & (Invitation.expires_at <= now))
        .run()
    )
    for row in expired:
        async with database.transaction(ctx.engine):
            await (
                Invitation.update({Invitation.email: None, Invitation.email_index: None})
                .where(Invitation.id == row["id"])
                .run()
            )
            await record(ctx, TIDY, row["org_id"], "delete", "invitation", row["id"], subject(row["id"]))
    old = now - KEEP_USED
    await (
        Invitation.delete()
        .where((Invitation.expires_at < old) | (Invitation.accepted_at < old) | (Invitation.revoked_at < old))
        .run()
    )
    return len(expired)


async def _mail(
    ctx: RegionContext, org: records.Organisation, invitation: records.Invitation, email: str, token: str
) -> bool:
    """Send the invitation's link; whether it went out (the cause of a failure is
    logged by the mailer, without the address)."""
    mail = mails.invitation(
        email,
        invitation.language,
        org.name,
        invitation.role,
        link(ctx, token),
        invitation.expires_at,
        invitation.access_expires_at,
    )
    try:
        await ctx.mail.send(mail)
    except MailNotSent:
        log.warning("the invitation %s of organisation %s could not be mailed; it stays valid", invitation.id, org.id)
        return False
    await Invitation.update({Invitation.mailed_at: clock.now()}).where(Invitation.id == invitation.id).run()
    return True


def _out(invitation: records.Invitation, email: str, mail_sent: bool) -> InvitationOut:
    return InvitationOut(
        id=invitation.id,
        email=email,
        role=invitation.role,
        access_expires_at=invitation.access_expires_at,
        language=invitation.language,
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
        mail_sent=mail_sent,
    )


def already_invited() -> errors.AppError:
    return errors.AppError(
        409,
        "already_invited",
        "this e-mail address has a pending invitation; send it again or revoke it first",
    )


async def create(
    ctx: RegionContext, actor: Actor, org: records.Organisation, new: InvitationIn, language: str | None = None
) -> InvitationOut:
    """Invite ``new.email`` with ``new.role``, then mail the link (in ``new.language``,
    else ``language``, else the organisation's). 409 when the address is already a
    member or has a pending invitation."""
    members.check_grant(actor, new.role)
    now = clock.now()
    members.check_access_end(new.role, new.access_expires_at, now)
    chosen = new.language or language or org.locale
    token = secrets.token_urlsafe(32)
    invitation_id = uuid.uuid4()
    cipher = await ctx.keys.cipher(org.id)
    index = members.email_index(cipher, new.email)
    async with database.transaction(ctx.engine):
        if await members.is_member(org.id, index):
            raise members.already_member()
        if await Invitation.exists().where(_pending(org.id, now) & (Invitation.email_index == index)).run():
            raise already_invited()
        invitation = records.Invitation(
            id=invitation_id,
            org_id=org.id,
            email=cipher.seal(_ref(org.id, invitation_id), new.email),
            email_index=index,
            role=new.role,
            access_expires_at=new.access_expires_at,
            language=chosen if chosen in LOCALES else "en",
            token_hash=token_hash(token),
            created_by=members.member_of(actor),
            created_at=now,
            expires_at=now + VALID_FOR,
            mailed_at=None,
            accepted_at=None,
            member_id=None,
            revoked_at=None,
        )
        await Invitation.insert(Invitation(**msgspec.structs.asdict(invitation))).run()
        await record(ctx, actor, org.id, "create", "invitation", invitation_id, subject(invitation_id))
    sent = await _mail(ctx, org, invitation, new.email, token)
    return _out(invitation, new.email, sent)


async def list_pending(ctx: RegionContext, actor: Actor, org: records.Organisation) -> list[InvitationOut]:
    """The pending invitations, oldest first; each shown e-mail address is an
    access-logged read."""
    now = clock.now()
    rows = await Invitation.select().where(_pending(org.id, now)).order_by(Invitation.created_at).run()
    found = [records.Invitation.of(row) for row in rows]
    cipher = await ctx.keys.cipher(org.id)
    shown = []
    for invitation in found:
        try:
            email = _open(cipher, invitation)
        except FieldDecryptionError as exc:
            await record(ctx, actor, org.id, "read", "invitation", invitation.id, subject(invitation.id), "failure")
            raise errors.AppError(
                500,
                "integrity_error",
                f"a stored invitation failed its integrity check ({exc.reason}) and was not shown; "
                "the failure is in the access log",
            ) from None
        shown.append(_out(invitation, email, invitation.mailed_at is not None))
    await record_reads(ctx, actor, org.id, "invitation", [(i.id, subject(i.id)) for i in found])
    return shown


async def _get_pending(org_id: uuid.UUID, invitation_id: uuid.UUID) -> records.Invitation:
    row = (
        await Invitation.select().where(_pending(org_id, clock.now()) & (Invitation.id == invitation_id)).first().run()
    )
    if row is None:
        raise errors.not_found("no such pending invitation")
    return records.Invitation.of(row)


async def revoke(ctx: RegionContext, actor: Actor, org: records.Organisation, invitation_id: uuid.UUID) -> None:
    """The link stops working and the e-mail address is cleared. Only who may give the
    role may take the invitation back."""
    async with database.transaction(ctx.engine):
        invitation = await _get_pending(org.id, invitation_id)
        members.check_grant(actor, invitation.role)
        await (
            Invitation.update(
                {Invitation.revoked_at: clock.now(), Invitation.email: None, Invitation.email_index: None}
            )
            .where(Invitation.id == invitation_id)
            .run()
        )
        await record(ctx, actor, org.id, "delete", "invitation", invitation_id, subject(invitation_id))


async def resend(
    ctx: RegionContext, actor: Actor, org: records.Organisation, invitation_id: uuid.UUID
) -> InvitationOut:
    """A new link (the old one stops), valid 7 days from now, mailed again."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    async with database.transaction(ctx.engine):
        invitation = await _get_pending(org.id, invitation_id)
        members.check_grant(actor, invitation.role)
        if invitation.access_expires_at is not None and invitation.access_expires_at <= now + dt.timedelta(hours=1):
            raise errors.bad_request("access_expires_at: this auditor's access ends too soon; invite them anew")
        await (
            Invitation.update(
                {
                    Invitation.token_hash: token_hash(token),
                    Invitation.expires_at: now + VALID_FOR,
                    Invitation.mailed_at: None,
                }
            )
            .where(Invitation.id == invitation_id)
            .run()
        )
        await record(ctx, actor, org.id, "update", "invitation", invitation_id, subject(invitation_id))
        invitation = msgspec.structs.replace(invitation, expires_at=now + VALID_FOR, mailed_at=None)
        email = _open(await ctx.keys.cipher(org.id), invitation)
    sent = await _mail(ctx, org, invitation, email, token)
    return _out(invitation, email, sent)


# --- the invited person's side ------------------------------------------------------------

State = Literal["valid", "used", "expired", "revoked", "unknown"]


class Opened(msgspec.Struct, frozen=True, kw_only=True):
    """An invitation link as its holder sees it: whether it still works, and for what."""

    state: State
    invitation: records.Invitation | None = None
    organisation: records.Organisation | None = None
    email: str = ""


def _state(invitation: records.Invitation, now: dt.datetime) -> State:
    if invitation.accepted_at is not None:
        return "used"
    if invitation.revoked_at is not None:
        return "revoked"
    if invitation.expires_at <= now:
        return "expired"
    return "valid"


async def open_link(ctx: RegionContext, token: str, source_address: str) -> Opened:
    """The invitation behind ``token``. Showing its e-mail address to the holder of
    the link is an access-logged read."""
    if not token or len(token) > 100:
        return Opened(state="unknown")
    row = await Invitation.select().where(Invitation.token_hash == token_hash(token)).first().run()
    if row is None:
        return Opened(state="unknown")
    invitation = records.Invitation.of(row)
    org = records.Organisation.maybe(
        await Organisation.select().where(Organisation.id == invitation.org_id).first().run()
    )
    if org is None:
        return Opened(state="unknown")
    state = _state(invitation, clock.now())
    if state != "valid":
        return Opened(state=state, invitation=invitation, organisation=org)
    email = _open(await ctx.keys.cipher(org.id), invitation)
    holder = Actor(subject(invitation.id), "invitee", subject(invitation.id), source_address, "accept an invitation")
    await record(ctx, holder, org.id, "read", "invitation", invitation.id, subject(invitation.id))
    return Opened(state=state, invitation=invitation, organisation=org, email=email)


class LinkNotValid(Exception):
    """The link no longer works (``state``); nothing was created."""

    def __init__(self, state: State) -> None:
        super().__init__(state)
        self.state = state


async def accept(
    ctx: RegionContext, token: str, answer: Acceptance, source_address: str
) -> tuple[records.Member, records.Organisation]:
    """Make the invited member and use up the link, in one transaction. Raises
    LinkNotValid when the link was used, revoked or has expired (also by a second
    acceptance racing this one), ``members.already_member()`` when the address became a
    member meanwhile, a 400 when an auditor's access would already have ended."""
    now = clock.now()
    hashed = token_hash(token)
    async with database.transaction(ctx.engine):
        row = await Invitation.select().where(Invitation.token_hash == hashed).first().run()
        if row is None:
            raise LinkNotValid("unknown")
        invitation = records.Invitation.of(row)
        state = _state(invitation, now)
        if state != "valid":
            raise LinkNotValid(state)
        org = records.Organisation.of(
            await Organisation.select().where(Organisation.id == invitation.org_id).first().run()  # type: ignore[arg-type]
        )
        member_id = uuid.uuid4()
        # Claim the link first: of two acceptances at once, one updates the row, the other none.
        claimed = (
            await Invitation.update(
                {
                    Invitation.accepted_at: now,
                    Invitation.member_id: member_id,
                    Invitation.email: None,
                    Invitation.email_index: None,
                }
            )
            .where(
                (Invitation.id == invitation.id)
                & Invitation.accepted_at.is_null()
                & Invitation.revoked_at.is_null()
                & (Invitation.expires_at > now)
            )
            .returning(Invitation.id)
            .run()
        )
        if not claimed:
            raise LinkNotValid("used")
        email = _open(await ctx.keys.cipher(org.id), invitation)
        who = members.subject(member_id)
        on_behalf = members.subject(invitation.created_by) if invitation.created_by else f"org:{org.id}"
        actor = Actor(who, invitation.role, on_behalf, source_address, "accept an invitation")
        new = MemberIn(
            name=answer.name,
            email=email,
            role=invitation.role,  # type: ignore[arg-type]
            password=answer.password,
            access_expires_at=invitation.access_expires_at,
        )
        member = await members.insert(ctx, actor, org.id, new, member_id=member_id, granted_by=invitation.created_by)
        await record(ctx, actor, org.id, "update", "invitation", invitation.id, subject(invitation.id))
        decisions = [
            await consent.decide(
                ctx,
                actor,
                org.id,
                "member",
                member_id,
                purpose,
                True,
                version=consent.VERSIONS[purpose],
                language=answer.language,
                source="invitation",
            )
            for purpose in EMAIL_CHOICES
            if purpose in answer.emails
        ]
        await login_index.queue(org.id, member.email_lookup)
    await login_index.deliver_after_commit(ctx, org.id)
    for decision in decisions:  # the tips, on an agreement to them (a mail that fails loses nothing)
        await member_emails.mail_after(ctx, org, member_id, decision)
    return member, org


__all__ = [
    "EMAIL_CHOICES",
    "INVITABLE_ROLES",
    "Acceptance",
    "InvitationIn",
    "InvitationOut",
    "LinkNotValid",
    "Opened",
    "accept",
    "create",
    "list_pending",
    "open_link",
    "resend",
    "revoke",
]
