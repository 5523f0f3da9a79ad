"""Stripe as a region's payment provider (``platform.core.payments.PaymentProvider``),
with the official ``stripe`` library's ``StripeClient``: one client per region, with
that region's own key and API address (no global ``stripe.api_key``: two regions in one
process never share), and its asynchronous methods on an httpx client.

What both Stripe and localstripe (the tests' stand-in) support decides the calls: a
payment is created without a card (idempotency key per visit and attempt), the card
token the browser made with stripe.js is read back here for its card, set on the
payment with an update and confirmed without arguments; a 3-D Secure check is finished
in the browser with ``stripe.confirmCardPayment(client_secret)``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import stripe

from konsil.platform.core.payments import (
    CardShown,
    IntentState,
    IntentStatus,
    PaymentDeclined,
    PaymentUnavailable,
    WebhookEvent,
    WebhookRejected,
)
from konsil.platform.core.settings import PaymentSettings

log = logging.getLogger(__name__)

STRIPE_API = "https://api.stripe.com"
STRIPE_JS = "https://js.stripe.com/v3/"
# A webhook signed longer ago than this is refused (Stripe's own default): a replay of an
# old delivery cannot be made to look new.
WEBHOOK_TOLERANCE_SECONDS = 300

SecretSource = Callable[[], Awaitable[str]]


class _EventObject(msgspec.Struct):
    object: str = ""
    id: str = ""
    payment_intent: str | None = None


class _EventData(msgspec.Struct):
    object: _EventObject


class _Event(msgspec.Struct):
    id: str
    type: str
    created: int
    data: _EventData


def _status(intent: dict[str, Any]) -> IntentStatus:
    status = intent.get("status")
    if status == "succeeded":
        return "succeeded"
    if status == "requires_action":
        return "requires_action"
    if status in ("processing", "requires_capture"):
        return "processing"
    if status == "canceled":
        return "canceled"
    if status == "requires_payment_method" and intent.get("last_payment_error"):
        return "failed"
    return "open"


def _state(intent: dict[str, Any]) -> IntentState:
    charge = intent.get("latest_charge")
    refunded = int(charge.get("amount_refunded") or 0) if isinstance(charge, dict) else 0
    error = intent.get("last_payment_error") or {}
    return IntentState(
        id=str(intent["id"]),
        status=_status(intent),
        amount_minor=int(intent["amount"]),
        currency=str(intent["currency"]),
        amount_refunded=refunded,
        client_secret=str(intent.get("client_secret") or ""),
        decline_reason=str(error.get("message") or "") if isinstance(error, dict) else "",
        metadata={str(k): str(v) for k, v in (intent.get("metadata") or {}).items()},
    )


class StripePayments:
    """A region's Stripe account."""

    def __init__(
        self,
        settings: PaymentSettings,
        secret_key: str | SecretSource,
        webhook_secret: str | SecretSource,
    ) -> None:
        self._api = (settings.api_base or STRIPE_API).rstrip("/")
        self._script = settings.script_url or (f"{self._api}/js.stripe.com/v3/" if settings.api_base else STRIPE_JS)
        self._publishable: str = settings.publishable_key
        self._timeout = settings.timeout_seconds
        self._secret_key = secret_key
        self._webhook_secret = webhook_secret
        self._client: stripe.StripeClient | None = None

    @property
    def description(self) -> str:
        mode = "live" if self._publishable.startswith("pk_live_") else "test"
        return f"stripe ({mode} keys) at {self._api}"

    @property
    def publishable_key(self) -> str:
        return self._publishable

    @property
    def script_url(self) -> str:
        return self._script

    @property
    def browser_origins(self) -> tuple[str, ...]:
        if self._api == STRIPE_API:  # stripe.js, its card frames and 3-D Secure pages, its API
            return (self._script, "https://js.stripe.com", "https://hooks.stripe.com", STRIPE_API)
        return (self._script, self._api)

    async def _secret(self, source: str | SecretSource, what: str) -> str:
        if isinstance(source, str):
            return source
        try:
            value: str = await source()
        except Exception as exc:  # Vault down or the secret missing: a later try may succeed
            raise PaymentUnavailable(f"the Stripe {what} could not be read ({type(exc).__name__})") from None
        return value

    async def _stripe(self) -> stripe.StripeClient:
        if self._client is None:
            key = await self._secret(self._secret_key, "secret key")
            self._secret_key = key
            self._client = stripe.StripeClient(
                key,
                base_addresses={"api": self._api},
                http_client=stripe.HTTPXClient(timeout=self._timeout),
                max_network_retries=1,
            )
        return self._client

    async def _call(self, what: str, call: Callable[[stripe.StripeClient], Awaitable[Any]]) -> Any:
        client = await self._stripe()
        try:
            return await call(client)
        except stripe.CardError:
            raise
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            log.warning("payments: stripe %s: %s", what, type(exc).__name__)
            raise PaymentUnavailable("the payment service could not be reached; please try again") from None
        except stripe.AuthenticationError:
            log.error("payments: stripe refused the region's secret key (%s)", what)
            raise PaymentUnavailable("the payment service refused this region's credentials") from None
        except stripe.InvalidRequestError as exc:
            log.warning("payments: stripe refused %s (%s, %s)", what, exc.http_status, exc.code or "no code")
            raise PaymentDeclined("the payment service refused the request") from None
        except stripe.StripeError as exc:
            log.warning("payments: stripe %s failed (%s)", what, exc.http_status)
            raise PaymentUnavailable("the payment service failed; please try again") from None

    async def create_intent(
        self, amount_minor: int, currency: str, idempotency_key: str, metadata: dict[str, str]
    ) -> IntentState:
        intent = await self._call(
            "create a payment",
            lambda c: c.v1.payment_intents.create_async(
                params={
                    "amount": amount_minor,
                    "currency": currency,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            ),
        )
        return _state(intent.to_dict())

    async def card_of_token(self, token: str) -> tuple[str, CardShown]:
        if not token.startswith("tok_") or len(token) > 255 or not token.isascii():
            raise PaymentDeclined("the card details were not accepted")
        found = await self._call("read a card token", lambda c: c.v1.tokens.retrieve_async(token))
        card = found.to_dict().get("card") or {}
        if not card.get("id"):
            raise PaymentDeclined("the card details were not accepted")
        brand = str(card.get("brand") or "").lower().replace(" ", "_")[:20]
        return str(card["id"]), CardShown(brand=brand, last4=str(card.get("last4") or "")[-4:])

    async def retrieve(self, intent_id: str) -> IntentState:
        intent = await self._call(
            "read a payment",
            lambda c: c.v1.payment_intents.retrieve_async(intent_id, params={"expand": ["latest_charge"]}),
        )
        return _state(intent.to_dict())

    async def confirm(self, intent_id: str, card_reference: str) -> IntentState:
        await self._call(
            "set the card",
            lambda c: c.v1.payment_intents.update_async(intent_id, params={"payment_method": card_reference}),
        )
        try:
            await self._call("confirm a payment", lambda c: c.v1.payment_intents.confirm_async(intent_id))
        except stripe.CardError as exc:
            # Declined: the payment's state says so (and why); the visitor may try another card.
            log.info("payments: a card was declined (%s)", exc.code or "no code")
        return await self.retrieve(intent_id)

    async def cancel(self, intent_id: str) -> None:
        try:
            await self._call("cancel a payment", lambda c: c.v1.payment_intents.cancel_async(intent_id))
        except PaymentDeclined:
            pass  # already completed or canceled: nothing to cancel

    async def refund(self, intent_id: str, idempotency_key: str) -> IntentState:
        await self._call(
            "refund a payment",
            lambda c: c.v1.refunds.create_async(
                params={"payment_intent": intent_id}, options={"idempotency_key": idempotency_key}
            ),
        )
        return await self.retrieve(intent_id)

    async def verify_webhook(self, payload: bytes, signature_header: str | None) -> WebhookEvent:
        secret = await self._secret(self._webhook_secret, "webhook signing secret")
        self._webhook_secret = secret
        if not signature_header:
            raise WebhookRejected("the Stripe-Signature header is missing")
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(text, signature_header, secret, WEBHOOK_TOLERANCE_SECONDS)
        except (UnicodeDecodeError, stripe.SignatureVerificationError):
            raise WebhookRejected("the webhook's signature does not verify") from None
        try:
            event = msgspec.json.decode(payload, type=_Event)
        except msgspec.ValidationError:
            raise WebhookRejected("the webhook is not a Stripe event") from None
        body = event.data.object
        intent_id = body.id if body.object == "payment_intent" else body.payment_intent
        return WebhookEvent(id=event.id, type=event.type, intent_id=intent_id or None, created=event.created)


def build_payments(
    settings: PaymentSettings, secret_key: SecretSource | None, webhook_secret: SecretSource | None
) -> StripePayments | None:
    """The region's payment provider by its ``payments`` settings (None for "none");
    secrets kept in the region's Vault come as readers."""
    if settings.provider == "none":
        return None
    return StripePayments(settings, secret_key or settings.secret_key, webhook_secret or settings.webhook_secret)
