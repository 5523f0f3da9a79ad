"""Card payments: what the region's payment provider offers the rest of the platform,
whatever provider a region uses (Stripe: one account per region, the EU account for the
EU region, the US account for the US; ``tenants/payments/stripe_provider.py``).

The card never passes through Konsil: the visitor's browser hands the card to the
provider's own script, which gives back a single-use token; the region service makes
and confirms the payment with that token and keeps the card's brand and last four
digits only (P4).

Two kinds of failure, because callers treat them differently: ``PaymentDeclined`` is
the provider's answer about this card (declined, failed authentication) and the
visitor may try another card; ``PaymentUnavailable`` means the provider could not be
reached or failed itself, and a later try may succeed. Neither message carries a
credential or a card number.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

# What Konsil makes of a payment's state at the provider.
IntentStatus = Literal["open", "requires_action", "processing", "succeeded", "failed", "canceled"]


class CardShown(msgspec.Struct, frozen=True, kw_only=True):
    """All Konsil keeps of a card: its brand ("visa") and last four digits (P4)."""

    brand: str
    last4: str


class IntentState(msgspec.Struct, frozen=True, kw_only=True):
    """A payment at the provider as it is now (never as an event said it was).

    ``client_secret`` lets the visitor's browser finish a 3-D Secure check; it goes to
    that visitor's page only."""

    id: str
    status: IntentStatus
    amount_minor: int
    currency: str
    amount_refunded: int = 0
    client_secret: str = ""
    decline_reason: str = ""  # the provider's words for a failed attempt, for the visitor
    metadata: dict[str, str] = {}


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A verified provider event: its id (stored, so it is processed once), its type, and
    the payment it is about (its state is fetched again when processed)."""

    id: str
    type: str
    intent_id: str | None
    created: int


class PaymentError(Exception):
    """A payment step that did not happen; ``reason`` names no credential nor card."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PaymentDeclined(PaymentError):
    """The provider refused this card or this request (4xx): retrying the same cannot help."""


class PaymentUnavailable(PaymentError):
    """The provider could not be reached, timed out or failed (5xx, 429): try again later."""


class WebhookRejected(PaymentError):
    """A webhook whose signature does not verify (forged, altered, too old) or that cannot
    be read: answered 400, nothing changed."""


class PaymentProvider(Protocol):
    """A region's card payment provider."""

    @property
    def description(self) -> str:
        """The provider for an operator's eyes (no credential)."""
        ...

    @property
    def publishable_key(self) -> str:
        """The key the visitor's browser script uses (public by design)."""
        ...

    @property
    def script_url(self) -> str:
        """Where the visitor's page loads the provider's script from (its own host)."""
        ...

    @property
    def browser_origins(self) -> tuple[str, ...]:
        """The provider's hosts the visitor's page talks to (script, card frames, API):
        the only outside hosts its content security policy allows."""
        ...

    async def create_intent(
        self, amount_minor: int, currency: str, idempotency_key: str, metadata: dict[str, str]
    ) -> IntentState:
        """A new payment of ``amount_minor`` in ``currency``, not yet confirmed. The same
        ``idempotency_key`` returns the same payment."""
        ...

    async def card_of_token(self, token: str) -> tuple[str, CardShown]:
        """The card behind a token the browser's script made: (the provider's reference
        to pay with, its brand and last four digits). ``PaymentDeclined`` for a bad token."""
        ...

    async def confirm(self, intent_id: str, card_reference: str) -> IntentState:
        """Pay ``intent_id`` with the card; a declined card is a state ("failed") with the
        reason, not an exception. The state may ask for a 3-D Secure check ("requires_action")."""
        ...

    async def retrieve(self, intent_id: str) -> IntentState:
        """The payment's current state."""
        ...

    async def cancel(self, intent_id: str) -> None:
        """Cancel a payment that was never completed (a failed attempt)."""
        ...

    async def refund(self, intent_id: str, idempotency_key: str) -> IntentState:
        """Refund the whole payment; the state after the refund."""
        ...

    async def verify_webhook(self, payload: bytes, signature_header: str | None) -> WebhookEvent:
        """The event a webhook carries, after checking its signature; ``WebhookRejected``
        otherwise (``PaymentUnavailable`` when the signing secret cannot be read)."""
        ...
