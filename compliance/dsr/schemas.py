"""What the data-subject request API accepts and answers, and the export format.

The subject's identifier (e-mail or phone) is normalised and validated here, at the
edge; an invalid one is refused with a message naming the field, never the value.

The export (``SubjectExport``) is a stable, versioned format: ``format`` and
``version`` name it; fields are only ever added in a version, and a change that
renames or removes one bumps ``version``. All times are ISO 8601 in UTC.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Literal

import msgspec

from konsil.platform.core.lookup import normalise_email
from konsil.platform.core.text import LINE_PATTERN
from konsil.tenants.schemas import EMAIL_LOCAL_CHAR, PersonName

Kind = Literal["access", "rectification", "erasure", "portability"]
KINDS: tuple[str, ...] = ("access", "rectification", "erasure", "portability")
IdentifierKind = Literal["email", "phone"]
Status = Literal["received", "completed", "rejected"]
RejectReason = Literal["identity_not_verified", "manifestly_unfounded", "duplicate", "withdrawn"]

EXPORT_FORMAT = "konsil.data-subject-export"
EXPORT_VERSION = 1

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_EMAIL = re.compile(rf"^{EMAIL_LOCAL_CHAR}{{1,64}}@{_LABEL}(?:\.{_LABEL})+\Z")
_PHONE_SEPARATORS = re.compile(r"[\s().\-/]")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}\Z")

# Raw identifiers, normalised below: still single-line text (konsil.platform.core.text).
RawEmail = Annotated[
    str, msgspec.Meta(max_length=320, pattern=LINE_PATTERN, description="the data subject's e-mail address")
]
RawPhone = Annotated[
    str,
    msgspec.Meta(
        max_length=40, pattern=LINE_PATTERN, description="the data subject's phone, with country code: +47 123 45 678"
    ),
]


def normalise_subject_email(raw: str) -> str:
    """The form members' blind indexes use (tenants/members.py); ValueError if invalid."""
    email = normalise_email(raw)
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValueError("email: not a valid e-mail address")
    return email


def normalise_subject_phone(raw: str) -> str:
    """E.164 without separators, as visits and members store it; ValueError if invalid."""
    phone = _PHONE_SEPARATORS.sub("", raw)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not _E164.match(phone):
        raise ValueError("phone: not a phone number with country code, e.g. +47 123 45 678")
    return phone


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class RequestIn(Strict):
    """A request: its kind, and who it is about (exactly one of ``email`` or ``phone``)."""

    kind: Kind
    email: RawEmail | None = None
    phone: RawPhone | None = None

    def __post_init__(self) -> None:
        if (self.email is None) == (self.phone is None):
            raise ValueError("give the data subject's email or phone (one of them)")
        if self.email is not None:
            self.email = normalise_subject_email(self.email)
        if self.phone is not None:
            self.phone = normalise_subject_phone(self.phone)

    @property
    def identifier(self) -> tuple[IdentifierKind, str]:
        if self.email is not None:
            return "email", self.email
        assert self.phone is not None
        return "phone", self.phone


class Rectification(Strict):
    """Corrections applied to every record of the subject that holds the field."""

    name: PersonName | msgspec.UnsetType = msgspec.UNSET
    phone: RawPhone | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        if isinstance(self.phone, str):
            self.phone = normalise_subject_phone(self.phone)
        if self.name is msgspec.UNSET and self.phone is msgspec.UNSET:
            raise ValueError("nothing to change: give name and/or phone")


class Erasure(Strict):
    confirm: Annotated[Literal["erase"], msgspec.Meta(description='"erase", to confirm')]


class Rejection(Strict):
    reason: RejectReason


class RequestOut(msgspec.Struct):
    """A request as listed: no personal data (the identifier is not shown here)."""

    id: uuid.UUID
    kind: str
    identifier_kind: str
    received_at: dt.datetime
    due_at: dt.datetime
    status: str
    overdue: bool
    completed_at: dt.datetime | None
    fulfilled_by: str
    # How it was answered: the records changed or found (counts), or why it was rejected
    # (``reason``); empty while it is open. No personal data.
    outcome: dict[str, int | str]


class Found(msgspec.Struct):
    """How many records of the subject the organisation holds."""

    members: int
    visits: int
    calls: int
    telemetry: int
    relay_receipts: int
    payments: int  # under legal hold (P9): kept by an erasure


class RequestDetail(RequestOut):
    identifier: str
    found: Found


class FulfilmentOut(msgspec.Struct):
    request: RequestOut
    changed: dict[str, int]


# --- the export (format "konsil.data-subject-export", version 1) ----------------------------


class ExportOrganisation(msgspec.Struct):
    """The controller that holds the data, and where."""

    slug: str
    name: str
    region: str
    jurisdiction: str
    retention_days: int  # visits, calls and telemetry are deleted after this many days
    # ISO 3166 country (its supervisory authority in the notes); "" when not set. Added in version 1.
    country: str = ""


class ExportRequest(msgspec.Struct):
    id: uuid.UUID
    kind: str
    identifier_kind: str
    identifier: str
    received_at: dt.datetime
    due_at: dt.datetime
    status: str


class MemberData(msgspec.Struct):
    """The subject's account as a member (expert, admin, …) of the organisation."""

    id: uuid.UUID
    name: str
    email: str
    phone: str | None
    role: str
    created_at: dt.datetime


class TelemetryData(msgspec.Struct):
    """Troubleshooting data of a call (P5): network quality or an in-call action."""

    participant: str
    kind: str
    at: dt.datetime
    data: msgspec.Raw


class RelayReceiptData(msgspec.Struct):
    """The signed record of where a call's media was relayed (region and relays)."""

    region: str
    jurisdiction: str
    relays: list[str]
    issued_at: str
    signature: str
    # The region key that made ``signature`` (its key set, docs/verifying.md); "" for a
    # receipt signed before the region had a key of its own, which proves nothing.
    key_id: str = ""


class CallData(msgspec.Struct):
    id: uuid.UUID
    expert_id: uuid.UUID
    started_at: dt.datetime
    ended_at: dt.datetime | None
    duration_seconds: int | None
    telemetry: list[TelemetryData]
    relay_receipt: RelayReceiptData | None


class VisitData(msgspec.Struct):
    """A visit as the visitor filled it in, and its calls."""

    id: uuid.UUID
    room: str
    name: str
    phone: str | None
    status: str
    consented_at: dt.datetime
    arrived_at: dt.datetime
    admitted_at: dt.datetime | None
    ended_at: dt.datetime | None
    expires_at: dt.datetime
    calls: list[CallData]


class PaymentData(msgspec.Struct):
    """A card payment: kept 5 years by law (P9), so an erasure leaves it."""

    id: uuid.UUID
    visit_id: uuid.UUID | None
    provider: str
    provider_reference: str
    amount_minor: int
    currency: str
    card_brand: str
    card_last4: str
    payer_name: str | None
    payer_email: str | None
    created_at: dt.datetime
    keep_until: dt.datetime
    legal_hold: bool = True


class AccessData(msgspec.Struct):
    """One access-log entry about the subject's records: who accessed what, when, why."""

    at: dt.datetime
    actor: str  # pseudonymous: member:<id>, token:<id>, visitor:<id>, system, operator:…
    actor_role: str
    on_behalf_of: str
    action: str
    object_type: str
    object_id: str
    purpose: str
    outcome: str
    source: str


class SubjectExport(msgspec.Struct):
    """Everything the organisation holds about one data subject (P17: access and
    portability), and who accessed it."""

    format: str
    version: int
    generated_at: dt.datetime
    organisation: ExportOrganisation
    request: ExportRequest
    members: list[MemberData]
    visits: list[VisitData]
    payments: list[PaymentData]
    accessed_by: list[AccessData]
    notes: list[str]
