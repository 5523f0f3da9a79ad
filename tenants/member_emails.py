"""Onboarding and feature e-mails to members (P13): sent only on a recorded consent.

Every such e-mail goes through ``send``: it asks ``consent.may_send`` first and sends
nothing without a current grant; a sent one is recorded (``consent_mail``) with the
grant it was sent on, so the evidence can check every one. Account e-mails (an
invitation, a password reset, the sign-in after signup) are part of the service and
need no consent; they are in ``tenants/mails.py``.

- ``getting_started``: tips for getting started, once, when a member first agrees to
  onboarding e-mails;
- ``feature_news``: news about a feature, to every member of an organisation who
  agreed to feature e-mails (``send_feature_news``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec

from konsil.platform.core import clock, database
from konsil.platform.core.keys.cipher import FieldRef
from konsil.platform.core.mail import Mail, MailNotSent
from konsil.platform.core.region import RegionContext
from konsil.platform.pages import i18n
from konsil.platform.pages.i18n import N_
from konsil.tenants import consent, mails, members, records
from konsil.tenants.actors import Actor, record
from konsil.tenants.tables import Member, Organisation

log = logging.getLogger("konsil.member_emails")
# The mails are made here, also outside the region service (``konsil mail feature-news``,
# a worker): the area's catalogs are needed wherever this module is.
i18n.register_catalogs(Path(__file__).resolve().parent / "locale")

# A mail of one kind for (address, language, portal link).
MailMaker = Callable[[str, str, str], Mail]

SENDER = Actor("system", "system", "system", "local", "onboarding and feature e-mails")


class FeatureNews(msgspec.Struct, frozen=True, kw_only=True):
    """One piece of news: a title and paragraphs (English message ids, translated per member)."""

    title: str
    paragraphs: list[str]
    link_path: str = "/login"


def _t(language: str, message: str, **params: str) -> str:
    return str(i18n.gettext(language, message, **params))


def getting_started_mail(to: str, language: str, org_name: str, link: str) -> Mail:
    paragraphs = [
        _t(language, N_("Hello,")),
        _t(language, N_("Thank you for using Konsil at %(org)s. Three tips to get started:"), org=org_name),
        _t(language, N_("1. Create a room for each kind of consultation and send its link to your clients.")),
        _t(language, N_("2. Keep your dashboard open: it tells you when someone is waiting.")),
        _t(language, N_("3. Ask your clients to test their camera and connection on the room's page before the call.")),
        _t(language, N_("Your portal:")),
        "",
        _t(
            language,
            N_("You get this e-mail because you asked for tips. To stop them, open E-mail preferences in your portal."),
        ),
    ]
    subject = _t(language, N_("Getting started with Konsil"))
    return mails._mail(to, language, subject, paragraphs, link)


def feature_news_mail(to: str, language: str, news: FeatureNews, link: str) -> Mail:
    paragraphs = [_t(language, N_("Hello,")), *(_t(language, p) for p in news.paragraphs), ""]
    paragraphs.append(
        _t(
            language,
            N_(
                "You get this e-mail because you asked for news about features. "
                "To stop them, open E-mail preferences in your portal."
            ),
        )
    )
    return mails._mail(to, language, _t(language, news.title), paragraphs, link)


async def _address(ctx: RegionContext, org_id: uuid.UUID, member_id: uuid.UUID, purpose: str) -> str | None:
    """The member's stored address, read to mail it (an access-logged read)."""
    row = (
        await Member.select(Member.id, Member.email).where((Member.id == member_id) & (Member.org_id == org_id)).first()
    )
    if row is None:
        return None
    address: str = (await ctx.keys.cipher(org_id)).open(FieldRef(org_id, "member", "email", member_id), row["email"])
    await record(ctx, SENDER.for_purpose(purpose), org_id, "read", "member", member_id, members.subject(member_id))
    return address


async def send(
    ctx: RegionContext,
    org: records.Organisation,
    member_id: uuid.UUID,
    purpose: consent.Purpose,
    kind: str,
    make: MailMaker,
) -> bool:
    """Send one onboarding or feature e-mail if, and only if, the member's current
    decision for ``purpose`` is a grant; True when it went out."""
    grant = await consent.may_send(org.id, member_id, purpose)
    if grant is None or grant.event_id is None:
        return False
    address = await _address(ctx, org.id, member_id, f"send {purpose.replace('_', ' ')}")
    if address is None:
        return False
    language = grant.language if grant.language in i18n.LOCALES else "en"
    link = f"{ctx.region.public_url.rstrip('/')}/{org.slug}/portal"
    try:
        await ctx.mail.send(make(address, language, link))
    except MailNotSent:
        log.warning("an %s of organisation %s could not be mailed", purpose, org.id)
        return False
    now = clock.now()
    async with database.transaction(ctx.engine):
        mail_id = uuid.uuid4()
        await consent.ConsentMail.insert(
            consent.ConsentMail(
                id=mail_id,
                org_id=org.id,
                member_id=member_id,
                purpose=purpose,
                kind=kind,
                consent_event_id=grant.event_id,
                sent_at=now,
                keep_until=now + consent.PROOF,
            )
        )
        await record(
            ctx,
            SENDER.for_purpose(f"sent on consent {grant.event_id}"),
            org.id,
            "create",
            "consent_mail",
            mail_id,
            members.subject(member_id),
        )
    return True


async def getting_started(ctx: RegionContext, org: records.Organisation, member_id: uuid.UUID) -> bool:
    """The tips, once per member, on their onboarding consent."""
    already = await consent.ConsentMail.exists().where(
        (consent.ConsentMail.org_id == org.id)
        & (consent.ConsentMail.member_id == member_id)
        & (consent.ConsentMail.kind == "getting_started")
    )
    if already:
        return False
    return await send(
        ctx,
        org,
        member_id,
        "onboarding_emails",
        "getting_started",
        lambda to, language, link: getting_started_mail(to, language, org.name, link),
    )


async def send_feature_news(ctx: RegionContext, org_id: uuid.UUID, news: FeatureNews, kind: str) -> int:
    """The news to every member of the organisation who agreed to feature e-mails; how many went out."""
    org_row = await Organisation.select().where(Organisation.id == org_id).first()
    if org_row is None:
        return 0
    org = records.Organisation.of(org_row)
    sent = 0
    for row in await Member.select(Member.id).where(Member.org_id == org_id):
        sent += await send(
            ctx,
            org,
            row["id"],
            "feature_emails",
            kind,
            lambda to, language, link: feature_news_mail(to, language, news, link),
        )
    return sent


async def feature_news_audience(org_id: uuid.UUID) -> int:
    """How many members of the organisation agreed to feature e-mails now (no address is read)."""
    count = 0
    for row in await Member.select(Member.id).where(Member.org_id == org_id):
        count += await consent.may_send(org_id, row["id"], "feature_emails") is not None
    return count


async def mail_after(
    ctx: RegionContext, org: records.Organisation, member_id: uuid.UUID, decision: consent.Decision
) -> None:
    """After a decision: a first agreement to onboarding e-mails brings the tips. A mail
    that fails is logged; the decision stands."""
    if decision.purpose == "onboarding_emails" and decision.granted:
        try:
            await getting_started(ctx, org, member_id)
        except Exception as exc:  # the person's decision is recorded whatever the mail does
            log.error("the getting-started e-mail could not be sent (%s)", type(exc).__name__)
