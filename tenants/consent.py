"""Consent records (P13, P15; GDPR Art. 7): what a person agreed to, for which purpose,
when, in which wording, and when they took it back.

Two kinds of subject, both pseudonymous (no personal data in a consent record):

- a **member** (``member:<id>``) agrees to onboarding e-mails and feature e-mails on the
  e-mail preferences page or when accepting an invitation;
- a **visitor's device** (``device:<random id>``) agrees to remembering its camera and
  microphone choice and to prefilling the join form. The random id is made by the page
  in the browser the first time the visitor decides, kept there per organisation, and
  says nothing about the person; the remembered values themselves stay in the browser.

Every decision is one row of ``consent_event`` (never changed afterwards, except its
``keep_until``) and one access-log entry. The current decision for a (subject, purpose)
is its latest event; a device's agreement lapses after ``DEVICE_CONSENT_DAYS`` and is
asked again. The wording shown is identified by ``wording_version``: the SHA-256 of the
English text (the page showed its translation in ``language`` from the same release).

Strictly necessary cookies need no consent and are not recorded: the visit cookie, the
member's session, the forms' CSRF cookies and the language chosen.

Kept as proof of consent (``keep_until``): ``PROOF_YEARS`` after the decision stops
holding (superseded, withdrawn, lapsed, or the member removed; the retention purge
starts that clock for removed members, ``start_proof_clock_of_removed_members``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Literal, get_args

import msgspec
from piccolo.columns import UUID, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from konsil.platform.core import clock, database
from konsil.platform.core.region import RegionContext
from konsil.platform.pages.i18n import N_
from konsil.tenants.actors import Actor, record
from konsil.tenants.tables import Member

SubjectKind = Literal["member", "device"]
Purpose = Literal["remember_device", "prefill_forms", "onboarding_emails", "feature_emails"]
Action = Literal["granted", "withdrawn"]
PURPOSES: tuple[Purpose, ...] = get_args(Purpose)
MEMBER_PURPOSES: tuple[Purpose, ...] = ("onboarding_emails", "feature_emails")
DEVICE_PURPOSES: tuple[Purpose, ...] = ("remember_device", "prefill_forms")
# Where a decision was taken.
Source = Literal["join_page", "email_preferences", "invitation"]

# A device's agreement holds this long, then the page asks again (and forgets what it kept).
DEVICE_CONSENT_DAYS = 365
# Consent records are kept as proof this long after the decision stops holding: the
# general limitation period for claims (Norway, Germany: 3 years).
PROOF_YEARS = 3
PROOF = dt.timedelta(days=365 * PROOF_YEARS + 1)

# The wording a person agrees to, per purpose (English; the page shows its translation).
WORDINGS: dict[Purpose, str] = {
    "remember_device": N_(
        "Remember my camera and microphone choice on this device. It is kept in this browser only, "
        "for one year, until you untick this box."
    ),
    "prefill_forms": N_(
        "Remember my name and phone number on this device to fill in this form next time. They are kept in "
        "this browser only, for one year, until you untick this box."
    ),
    "onboarding_emails": N_(
        "Send me a few e-mails with tips for getting started with Konsil. You can stop them at any time "
        "under E-mail preferences in your portal."
    ),
    "feature_emails": N_(
        "Send me e-mails about new features of Konsil. You can stop them at any time under E-mail preferences "
        "in your portal."
    ),
}
# The short names of the purposes, for pages and reports.
PURPOSE_NAMES: dict[Purpose, str] = {
    "remember_device": N_("Remember camera and microphone"),
    "prefill_forms": N_("Fill in the form for me"),
    "onboarding_emails": N_("Tips for getting started"),
    "feature_emails": N_("News about features"),
}


def wording_version(purpose: Purpose) -> str:
    """The version of the wording shown for ``purpose``: 16 hex digits of its SHA-256."""
    return hashlib.sha256(WORDINGS[purpose].encode()).hexdigest()[:16]


VERSIONS: dict[Purpose, str] = {purpose: wording_version(purpose) for purpose in PURPOSES}


class ConsentEvent(Table, tablename="consent_event"):
    """One decision about one purpose (see the module). No personal data: the subject is
    a member id or a random device id."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    subject_kind = Varchar(length=8)  # member | device
    subject_id = UUID(index=True)
    purpose = Varchar(length=24)
    action = Varchar(length=12)  # granted | withdrawn
    wording_version = Varchar(length=16)
    language = Varchar(length=5, default="en")
    source = Varchar(length=24)
    at = Timestamptz(default=TimestamptzNow(), index=True)
    # A device's agreement lapses (None: holds until withdrawn).
    expires_at = Timestamptz(null=True, default=None)
    # Proof kept until then; None while the decision still holds (a member's).
    keep_until = Timestamptz(null=True, default=None, index=True)


class ConsentMail(Table, tablename="consent_mail"):
    """An onboarding or feature e-mail sent to a member, with the consent it was sent on
    (the evidence checks every one against the member's decisions)."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    member_id = UUID(index=True)
    purpose = Varchar(length=24)
    kind = Varchar(length=24)  # which mail (e.g. "getting_started")
    consent_event_id = UUID()
    sent_at = Timestamptz(default=TimestamptzNow(), index=True)
    keep_until = Timestamptz(index=True)


CONSENT_TABLES: list[type[Table]] = [ConsentEvent, ConsentMail]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The current decision of a subject for a purpose."""

    purpose: Purpose
    granted: bool
    at: dt.datetime | None  # None: never asked
    expires_at: dt.datetime | None = None
    event_id: uuid.UUID | None = None
    language: str = "en"


def subject_ref(kind: SubjectKind, subject_id: uuid.UUID) -> str:
    return f"{kind}:{subject_id}"


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)


class ConsentRefused(ValueError):
    """A decision that cannot be recorded (an unknown wording, a purpose of another kind)."""


async def decide(
    ctx: RegionContext,
    actor: Actor,
    org_id: uuid.UUID,
    kind: SubjectKind,
    subject_id: uuid.UUID,
    purpose: Purpose,
    granted: bool,
    *,
    version: str,
    language: str,
    source: Source,
) -> Decision:
    """Record one decision (and its access-log entry, in the same transaction); the
    subject's earlier decisions for the purpose stop holding now (their proof clock
    starts). Refuses a wording the page did not show in this release."""
    if purpose not in (MEMBER_PURPOSES if kind == "member" else DEVICE_PURPOSES):
        raise ConsentRefused(f"{purpose} is not asked of a {kind}")
    if version != VERSIONS[purpose]:
        raise ConsentRefused("the wording agreed to is not the current one; reload the page")
    now = clock.now()
    expires = now + dt.timedelta(days=DEVICE_CONSENT_DAYS) if kind == "device" and granted else None
    if not granted:
        keep_until: dt.datetime | None = now + PROOF
    elif expires is not None:
        keep_until = expires + PROOF
    else:
        keep_until = None
    event_id = uuid.uuid4()
    async with database.transaction(ctx.engine):
        await ConsentEvent.update({ConsentEvent.keep_until: now + PROOF}).where(
            (ConsentEvent.org_id == org_id)
            & (ConsentEvent.subject_id == subject_id)
            & (ConsentEvent.purpose == purpose)
            & ConsentEvent.keep_until.is_null()
        )
        await ConsentEvent.insert(
            ConsentEvent(
                id=event_id,
                org_id=org_id,
                subject_kind=kind,
                subject_id=subject_id,
                purpose=purpose,
                action="granted" if granted else "withdrawn",
                wording_version=version,
                language=language,
                source=source,
                at=now,
                expires_at=expires,
                keep_until=keep_until,
            )
        )
        await record(
            ctx,
            actor.for_purpose(f"record consent: {purpose} {'granted' if granted else 'withdrawn'}"),
            org_id,
            "create",
            "consent",
            event_id,
            subject_ref(kind, subject_id),
        )
    return Decision(purpose=purpose, granted=granted, at=now, expires_at=expires, event_id=event_id, language=language)


async def current(org_id: uuid.UUID, subject_id: uuid.UUID, purpose: Purpose) -> Decision:
    """The latest decision (a lapsed agreement counts as none)."""
    row = (
        await ConsentEvent.select()
        .where(
            (ConsentEvent.org_id == org_id)
            & (ConsentEvent.subject_id == subject_id)
            & (ConsentEvent.purpose == purpose)
        )
        .order_by(ConsentEvent.at, ascending=False)
        .first()
        .run()
    )
    if row is None:
        return Decision(purpose=purpose, granted=False, at=None)
    expires = _aware(row["expires_at"])
    lapsed = expires is not None and expires <= clock.now()
    return Decision(
        purpose=purpose,
        granted=row["action"] == "granted" and not lapsed,
        at=_aware(row["at"]),
        expires_at=expires,
        event_id=row["id"],
        language=row["language"],
    )


async def member_decisions(
    ctx: RegionContext, actor: Actor, org_id: uuid.UUID, member_id: uuid.UUID
) -> dict[Purpose, Decision]:
    """A member's current decisions, read for the member themselves (access-logged)."""
    found = {purpose: await current(org_id, member_id, purpose) for purpose in MEMBER_PURPOSES}
    await record(
        ctx, actor.for_purpose("show e-mail consent"), org_id, "read", "consent", member_id, f"member:{member_id}"
    )
    return found


async def may_send(org_id: uuid.UUID, member_id: uuid.UUID, purpose: Purpose) -> Decision | None:
    """The grant an onboarding or feature e-mail to this member may be sent on; None
    when there is none (never asked, or withdrawn): then no such e-mail goes out."""
    if purpose not in MEMBER_PURPOSES:
        raise ConsentRefused(f"{purpose} is not an e-mail purpose")
    decision = await current(org_id, member_id, purpose)
    return decision if decision.granted else None


async def start_proof_clock_of_removed_members(now: dt.datetime) -> int:
    """Decisions of members who are gone stop holding: their proof is kept
    ``PROOF_YEARS`` from ``now`` (the retention purge calls this before it deletes)."""
    rows = await ConsentEvent.select(ConsentEvent.id, ConsentEvent.org_id, ConsentEvent.subject_id).where(
        (ConsentEvent.subject_kind == "member") & ConsentEvent.keep_until.is_null()
    )
    gone: list[uuid.UUID] = []
    for row in rows:
        exists = await Member.exists().where((Member.id == row["subject_id"]) & (Member.org_id == row["org_id"]))
        if not exists:
            gone.append(row["id"])
    if gone:
        await ConsentEvent.update({ConsentEvent.keep_until: now + PROOF}).where(ConsentEvent.id.is_in(gone))
    return len(gone)
