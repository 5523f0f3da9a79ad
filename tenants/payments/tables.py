"""The payments area's own rows: each attempt to pay a visit's fee (one Stripe
PaymentIntent each) and each provider event received (stored by its id, so a replayed
webhook is processed once). The payment that succeeded is a ``PaymentRecord``
(tenants/tables.py), kept 5 years (P9)."""

from __future__ import annotations

from piccolo.columns import UUID, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from konsil.platform.core.keys.tables import EncryptedText


class PaymentAttempt(Table, tablename="payment_attempt"):
    """One try at paying a visit's fee: a payment at the provider created when the
    visitor opens the payment page (idempotency key per visit and attempt), confirmed
    with the card they give. A declined card ends the attempt; the next try is a new
    attempt. Only the card's brand and last four digits are kept (P4). Deleted with the
    visit's organisation; expires with the visit."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    visit_id = UUID(index=True)
    number = Integer(default=1)
    intent_id = Varchar(length=100, unique=True)
    # open | confirming | requires_action | processing | succeeded | failed | canceled | refunded
    status = Varchar(length=16, default="open")
    amount_minor = Integer()
    currency = Varchar(length=3)
    card_brand = Varchar(length=20, default="")
    card_last4 = Varchar(length=4, default="")
    # The address the visitor gave for the receipt (optional), sealed; copied to the record.
    payer_email = EncryptedText(null=True, default=None)
    decline_reason = Varchar(length=200, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(index=True)


class PaymentEvent(Table, tablename="payment_event"):
    """A provider event received by the webhook (no personal data: ids and a type). Its
    unique ``event_id`` makes a replayed delivery a no-op; the row's ``id`` is the id of
    the background task that processes it."""

    id = UUID(primary_key=True)
    event_id = Varchar(length=255, unique=True)
    type = Varchar(length=64)
    intent_id = Varchar(length=100, null=True, default=None)
    status = Varchar(length=12, default="received")  # received | done | ignored | failed
    attempts = Integer(default=0)
    received_at = Timestamptz(default=TimestamptzNow())
    done_at = Timestamptz(null=True, default=None)


PAYMENT_TABLES: list[type[Table]] = [PaymentAttempt, PaymentEvent]
# Deleted with their organisation (events hold no organisation's data; records stay, P9).
PAYMENT_ORGANISATION_OWNED: list[type[Table]] = [PaymentAttempt]
