"""What the tenant API accepts and answers (msgspec Structs validated at the edge)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from konsil.platform.core.text import LINE_CHAR, LINE_PATTERN, MULTILINE_PATTERN, OPTIONAL_LINE_PATTERN

Role = Literal["owner", "admin", "expert", "auditor"]
ROLES: tuple[str, ...] = ("owner", "admin", "expert", "auditor")

Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9](?:[a-z0-9-]{1,38}[a-z0-9])\Z", max_length=40)]
RoomSlug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9](?:[a-z0-9-]{1,58}[a-z0-9])\Z", max_length=60)]
# Free text: the shared single-line rule (konsil.platform.core.text), spelt out as Annotated
# so that mypy sees a type.
PersonName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=LINE_PATTERN)]
OrgName = Annotated[str, msgspec.Meta(min_length=2, max_length=200, pattern=LINE_PATTERN)]
# The local part: any single-line character (konsil.platform.core.text) except the ones an
# address cannot carry unquoted; the domain: letters, digits and hyphens.
EMAIL_LOCAL_CHAR = rf"(?:(?![@\s<>\"(),;:]){LINE_CHAR})"
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=254,
        pattern=rf"^{EMAIL_LOCAL_CHAR}{{1,64}}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+\Z",
    ),
]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+[1-9][0-9]{6,14}\Z", description="E.164, e.g. +4712345678")]
# Any characters but controls (spaces and symbols are a password's business).
PASSWORD_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\ud800-\udfff]*\Z"  # noqa: S105 - a pattern
Password = Annotated[str, msgspec.Meta(min_length=12, max_length=200, pattern=PASSWORD_PATTERN)]
RetentionDays = Annotated[int, msgspec.Meta(ge=1, le=90, description="visitor data retention, 1..90 days")]
RoomTitle = Annotated[str, msgspec.Meta(min_length=1, max_length=120, pattern=LINE_PATTERN)]
TokenLabel = Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=LINE_PATTERN)]
# What visitors read in a room's waiting room: plain text over a few lines (no controls but
# tab and line breaks), written by the organisation.
WELCOME_TEXT_MAX = 500
WelcomeText = Annotated[
    str,
    msgspec.Meta(
        max_length=WELCOME_TEXT_MAX,
        pattern=MULTILINE_PATTERN,
        description="plain text shown to visitors in the room's waiting room (at most 500 characters)",
    ),
]
# The pages' languages (konsil.platform.pages.i18n.LOCALES).
Locale = Literal["en", "nb", "de", "nl"]
# ISO 3166-1 alpha-2; which ones a region accepts is checked by tenants/organisations.py
# (the countries with a supervisory authority in its legal texts), "" for none chosen.
Country = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(?:[A-Z]{2})?\Z",
        max_length=2,
        description="ISO 3166-1 alpha-2 country of the organisation (its supervisory authority), or empty",
    ),
]
Scope = Literal["org:read", "members:read", "members:write", "rooms:read", "rooms:write"]
SCOPES: tuple[str, ...] = ("org:read", "members:read", "members:write", "rooms:read", "rooms:write")


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class OwnerIn(Strict):
    name: PersonName
    email: Email
    password: Password
    phone: Phone | None = None


class NewOrganisation(Strict):
    """Internal: what the control plane asks a region to create."""

    id: uuid.UUID
    slug: Slug
    name: OrgName
    owner: OwnerIn
    retention_days: RetentionDays = 30
    locale: Locale = "en"
    country: Country = ""


class CreatedOrganisation(msgspec.Struct):
    id: uuid.UUID
    slug: str
    owner_id: uuid.UUID
    email_lookup: str
    # The owner's one-time sign-in link token (tenants/welcome.py): the control plane
    # sends the browser that signed up to /welcome/{token}; "" for a repeated create.
    welcome_token: str = ""


class OrganisationOut(msgspec.Struct):
    id: uuid.UUID
    slug: str
    name: str
    region: str
    retention_days: int
    contract_end: dt.date | None
    relay_only: bool
    locale: str = "en"
    country: str = ""


class OrganisationPatch(Strict):
    name: OrgName | msgspec.UnsetType = msgspec.UNSET
    retention_days: RetentionDays | msgspec.UnsetType = msgspec.UNSET
    contract_end: dt.date | msgspec.UnsetType | None = msgspec.UNSET
    relay_only: bool | msgspec.UnsetType = msgspec.UNSET
    # The pages' language when a visitor's browser asks for none Konsil speaks.
    locale: Locale | msgspec.UnsetType = msgspec.UNSET
    country: Country | msgspec.UnsetType = msgspec.UNSET


class LogoOut(msgspec.Struct):
    """The organisation's logo as stored: served at ``url`` (public, for visitors' pages)."""

    url: str
    content_type: str
    sha256: str
    size_bytes: int
    width: int
    height: int


# When an auditor's access ends: required for the auditor role (at most a year ahead,
# tenants/members.py checks it against the clock), refused for every other role.
AccessExpiresAt = Annotated[
    dt.datetime,
    msgspec.Meta(tz=True, description="when an auditor's access ends (auditors only; at most 365 days ahead)"),
]


class MemberIn(Strict):
    name: PersonName
    email: Email
    role: Role
    # Optional: a member added without one cannot log in. Integration tokens may not set it.
    password: Password | None = None
    phone: Phone | None = None
    access_expires_at: AccessExpiresAt | None = None


class MemberPatch(Strict):
    role: Role | msgspec.UnsetType = msgspec.UNSET
    name: PersonName | msgspec.UnsetType = msgspec.UNSET
    phone: Phone | msgspec.UnsetType | None = msgspec.UNSET
    # A new end of an auditor's access (owners only), or the end of the grant that makes
    # a member an auditor (with ``role``).
    access_expires_at: AccessExpiresAt | msgspec.UnsetType = msgspec.UNSET


class MemberOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    email: str
    phone: str | None
    role: str
    created_at: dt.datetime
    # Auditors only: when their access ends (or ended), who gave it and when.
    access_expires_at: dt.datetime | None = None
    access_granted_at: dt.datetime | None = None
    access_granted_by: uuid.UUID | None = None


# The card fee a room asks before the waiting list (tenants/checkin.py): the currencies
# the regions' Stripe accounts settle, in Stripe's lower-case ISO 4217 codes.
FeeCurrency = Literal["nok", "dkk", "sek", "eur", "usd", "gbp", "chf"]
# A national eID check: Norwegian BankID, Danish MitID, Swedish BankID ("" for none).
IdentityCheck = Literal["", "no_bankid", "dk_mitid", "se_bankid"]
# Empty, or one line of text (the shared rule): "" means no description.
FeeDescription = Annotated[str, msgspec.Meta(max_length=120, pattern=OPTIONAL_LINE_PATTERN)]


class RoomFee(Strict):
    """A room's fee, in the currency's minor unit (øre, cents): 50000 nok is 500.00 kr."""

    amount_minor: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)]
    currency: FeeCurrency
    description: FeeDescription = ""


class RoomIn(Strict):
    slug: RoomSlug
    title: RoomTitle
    expert_id: uuid.UUID | None = None
    welcome_text: WelcomeText = ""
    fee: RoomFee | None = None
    identity_check: IdentityCheck = ""


class RoomPatch(Strict):
    """A change of a room: its title, its welcome text, or its expert (owners and admins
    only; an expert changes their own rooms' title and welcome text)."""

    title: RoomTitle | msgspec.UnsetType = msgspec.UNSET
    welcome_text: WelcomeText | msgspec.UnsetType = msgspec.UNSET
    expert_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET
    # null removes the fee.
    fee: RoomFee | msgspec.UnsetType | None = msgspec.UNSET
    identity_check: IdentityCheck | msgspec.UnsetType = msgspec.UNSET


class RoomOut(msgspec.Struct):
    id: uuid.UUID
    slug: str
    title: str
    expert_id: uuid.UUID
    join_path: str
    welcome_text: str = ""
    fee: RoomFee | None = None
    identity_check: IdentityCheck = ""


class TokenIn(Strict):
    label: TokenLabel
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=5)]


class TokenOut(msgspec.Struct):
    id: uuid.UUID
    label: str
    scopes: list[str]
    created_at: dt.datetime
    revoked: bool
    last_used_at: dt.datetime | None = None  # within minutes (tenants/auth.py notes each use)


class TokenCreated(msgspec.Struct):
    id: uuid.UUID
    token: str  # shown once


class LoginIn(Strict):
    email: Email
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=PASSWORD_PATTERN)]
    organisation: Slug | None = None


class LoginOut(msgspec.Struct):
    organisation: str
    member_id: uuid.UUID
    role: str
    csrf_token: str
