"""Region tables of the tenant area: organisations, members, rooms, tokens, sessions.

These live only in a region database. Personal-data columns (``EncryptedText``,
listed in ``PERSONAL_COLUMNS``) hold only values sealed with the organisation's
``OrgCipher`` (platform/core/keys/cipher.py).
"""

from __future__ import annotations

from piccolo.columns import UUID, Boolean, Bytea, Date, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from konsil.platform.core.keys.tables import EncryptedText, TenantDataKey


class Organisation(Table, tablename="organisation"):
    id = UUID(primary_key=True)
    slug = Varchar(length=40, unique=True, index=True)
    name = Varchar(length=200)
    retention_days = Integer(default=30)
    contract_end = Date(null=True, default=None)
    # Calls go through the region's TURN relays only, so participants never learn
    # each other's network addresses.
    relay_only = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())
    # The pages' language when a visitor's browser asks for none Konsil speaks (en, nb, de, nl).
    locale = Varchar(length=5, default="en")
    # ISO 3166 country of the organisation: its supervisory authority in the legal notices.
    country = Varchar(length=2, default="")


class Member(Table, tablename="member"):
    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    name = EncryptedText()
    email = EncryptedText()
    # Keyed hash with the region's discovery key: login across the region's
    # organisations and the control plane's login-discovery index.
    email_lookup = Varchar(length=64, index=True)
    # Blind indexes under the organisation's own index key (lookups inside it).
    email_index = Varchar(length=64, index=True, default="")
    phone = EncryptedText(null=True, default=None)
    phone_index = Varchar(length=64, index=True, null=True, default=None)
    # "Text me when someone is waiting": an SMS to ``phone`` when a visitor enters the
    # waiting list of one of their rooms (tenants/messaging/alerts.py).
    sms_alerts = Boolean(default=False)
    role = Varchar(length=16)
    password_hash = Text()
    created_at = Timestamptz(default=TimestamptzNow())
    # An auditor's access is time-boxed: it ends at this moment (login, sessions and the
    # tokens they made are refused from then on). None for every other role. Who gave
    # the current grant and when (the grant itself, or its latest change), for the
    # evidence of who let an outsider in and for how long.
    access_expires_at = Timestamptz(null=True, default=None)
    access_granted_at = Timestamptz(null=True, default=None)
    access_granted_by = UUID(null=True, default=None)


class LoginIndexChange(Table, tablename="login_index_change"):
    """A member's e-mail lookup whose entry in the control plane's login-discovery index
    may be out of date: written in the transaction that adds or removes the member,
    deleted once the control plane holds what the region holds (tenants/login_index.py)."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    email_lookup = Varchar(length=64)
    created_at = Timestamptz(default=TimestamptzNow())
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(default=TimestamptzNow(), index=True)


class Invitation(Table, tablename="invitation"):
    """A new member invited by e-mail with a one-time link (tenants/invitations.py): only
    the link's SHA-256 is stored; valid 7 days, once, until revoked. The e-mail address
    is sealed with the organisation's key and cleared once the invitation is accepted or
    revoked; the row then only answers a second use of the link."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    email = EncryptedText(null=True, default=None)
    email_index = Varchar(length=64, index=True, null=True, default=None)
    role = Varchar(length=16)
    access_expires_at = Timestamptz(null=True, default=None)  # auditors: when their access ends
    language = Varchar(length=5, default="en")  # of the mail and the page behind the link
    token_hash = Varchar(length=64, unique=True)
    created_by = UUID(null=True, default=None)  # the inviting member; None for an integration token
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(index=True)
    mailed_at = Timestamptz(null=True, default=None)  # None: the last mail could not be sent
    accepted_at = Timestamptz(null=True, default=None)
    member_id = UUID(null=True, default=None)  # the member it became
    revoked_at = Timestamptz(null=True, default=None)


class PasswordReset(Table, tablename="password_reset"):
    """A member's one-time password-reset link (tenants/password_reset.py): only its
    SHA-256 is stored; valid 30 minutes, once."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    member_id = UUID(index=True)
    token_hash = Varchar(length=64, unique=True)
    language = Varchar(length=5, default="en")
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(index=True)
    used_at = Timestamptz(null=True, default=None)


class Room(Table, tablename="room"):
    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    slug = Varchar(length=60, index=True)  # unique per organisation (index room_org_slug)
    title = Varchar(length=120)
    expert_id = UUID(index=True)
    created_at = Timestamptz(default=TimestamptzNow())
    # Shown to visitors in the waiting room (no personal data: written by the organisation).
    welcome_text = Text(default="")
    # Check-in steps a visitor completes before the waiting list (tenants/checkin.py):
    # a fee paid by card (minor units and ISO 4217 code, lower case as Stripe writes it),
    # and a national eID check ("" for none, else "no_bankid", "dk_mitid" or "se_bankid").
    fee_amount = Integer(null=True, default=None)
    fee_currency = Varchar(length=3, null=True, default=None)
    fee_description = Varchar(length=120, default="")
    identity_check = Varchar(length=16, default="")


class OrganisationLogo(Table, tablename="organisation_logo"):
    """The organisation's logo on its visitors' pages (an image, not personal data)."""

    org_id = UUID(primary_key=True)
    content_type = Varchar(length=40)
    image = Bytea()
    sha256 = Varchar(length=64)
    updated_at = Timestamptz(default=TimestamptzNow())


class ApiToken(Table, tablename="api_token"):
    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    label = Varchar(length=80)
    token_hash = Varchar(length=64, unique=True, index=True)
    scopes = Varchar(length=200)
    created_by = UUID()
    created_at = Timestamptz(default=TimestamptzNow())
    revoked_at = Timestamptz(null=True, default=None)
    last_used_at = Timestamptz(null=True, default=None)


class MemberSession(Table, tablename="member_session"):
    id = Varchar(length=64, primary_key=True)  # sha256 of the cookie value
    org_id = UUID(index=True)
    member_id = UUID(index=True)
    csrf_token = Varchar(length=64)
    created_at = Timestamptz(default=TimestamptzNow())
    last_seen_at = Timestamptz(default=TimestamptzNow())


class WelcomeToken(Table, tablename="welcome_token"):
    """A new owner's one-time sign-in link after signup (tenants/welcome.py): only its
    SHA-256 is kept; it opens one session, once, within minutes."""

    token_hash = Varchar(length=64, primary_key=True)
    org_id = UUID(index=True)
    member_id = UUID()
    expires_at = Timestamptz(index=True)


class Visit(Table, tablename="visit"):
    """One visitor's visit to a room. It stands alone: no visitor profile links
    visits (P8). Deleted with its calls and telemetry after the organisation's
    retention (``expires_at``)."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    room_id = UUID(index=True)
    name = EncryptedText()
    phone = EncryptedText(null=True, default=None)
    # Blind index of the normalised phone under the organisation's index key: lets a
    # data-subject request find this visit (P17); it links nothing across organisations.
    phone_index = Varchar(length=64, index=True, null=True, default=None)
    # checking_in (steps of tenants/checkin.py to do) | waiting | admitted | ended | left
    status = Varchar(length=12, default="waiting")
    # While waiting: since when the visitor's page has had no socket open (closed tab,
    # lost network); None while it is connected. Long enough away, the visit is "left".
    away_since = Timestamptz(null=True, default=None)
    token_hash = Varchar(length=64, unique=True)  # the visitor's token for this visit only
    consented_at = Timestamptz()
    arrived_at = Timestamptz(default=TimestamptzNow())
    admitted_at = Timestamptz(null=True, default=None)
    ended_at = Timestamptz(null=True, default=None)
    expires_at = Timestamptz(index=True)
    # When the visit's check-in steps were done (None: not done, or the room asks none).
    identity_checked_at = Timestamptz(null=True, default=None)
    paid_at = Timestamptz(null=True, default=None)


class Call(Table, tablename="call"):
    """A call between a room's expert and one visit. Media never passes here: the
    record holds who, when and how long (P4)."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    room_id = UUID(index=True)
    visit_id = UUID(index=True)
    expert_id = UUID(index=True)
    started_at = Timestamptz(default=TimestamptzNow())
    ended_at = Timestamptz(null=True, default=None)
    duration_seconds = Integer(null=True, default=None)
    expires_at = Timestamptz(index=True)


class CallTelemetry(Table, tablename="call_telemetry"):
    """Troubleshooting data of a call (P5): network-quality samples and in-call
    actions. No personal data; deleted with the visit."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    call_id = UUID(index=True)
    visit_id = UUID(index=True)
    participant = Varchar(length=8)  # visitor | expert
    kind = Varchar(length=8)  # quality | action
    data = Text()  # JSON of a validated msgspec struct
    at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(index=True)


class CallRelayReceipt(Table, tablename="call_relay_receipt"):
    """The signed residency receipt of a call: the region and relays that carried it.
    Deleted with the call (same expiry)."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    call_id = UUID(index=True)
    body = Text()  # canonical JSON of media_nodes.receipts.ResidencyReceipt: the signed bytes
    signature = Varchar(length=100)  # base64 Ed25519 signature
    # The id of the region key that signed it (its key set, GET /.well-known/konsil/keys);
    # "" on receipts signed before the region had a key of its own (not counted as proof).
    key_id = Varchar(length=32, default="")
    issued_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(index=True)


class PaymentRecord(Table, tablename="payment_record"):
    """A card payment of a visit (P9): the provider's reference and the card's brand
    and last four digits only. Kept 5 years by law (``keep_until``) and exempt from
    erasure requests; not deleted with the visit it paid for."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    visit_id = UUID(null=True, default=None)  # dangles once the visit is purged
    provider = Varchar(length=16, default="stripe")
    provider_reference = Varchar(length=100)  # e.g. the Stripe PaymentIntent id
    amount_minor = Integer()
    currency = Varchar(length=3)
    card_brand = Varchar(length=20, default="")
    card_last4 = Varchar(length=4, default="")
    payer_name = EncryptedText(null=True, default=None)
    payer_email = EncryptedText(null=True, default=None)
    payer_email_index = Varchar(length=64, index=True, null=True, default=None)
    payer_phone_index = Varchar(length=64, index=True, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    keep_until = Timestamptz(index=True)
    # A refund (owners and admins; tenants/payments): the amount given back and when.
    refunded_minor = Integer(default=0)
    refunded_at = Timestamptz(null=True, default=None)


TENANT_TABLES: list[type[Table]] = [
    Organisation,
    Member,
    LoginIndexChange,
    Invitation,
    PasswordReset,
    Room,
    OrganisationLogo,
    ApiToken,
    MemberSession,
    WelcomeToken,
    Visit,
    Call,
    CallTelemetry,
    CallRelayReceipt,
    PaymentRecord,
    TenantDataKey,
]


def personal_columns(tables: list[type[Table]]) -> frozenset[tuple[str, str]]:
    """(table, column) pairs declared as personal data (EncryptedText)."""
    return frozenset(
        (table._meta.tablename, column._meta.name)
        for table in tables
        for column in table._meta.columns
        if isinstance(column, EncryptedText)
    )


PERSONAL_COLUMNS = personal_columns(TENANT_TABLES)
