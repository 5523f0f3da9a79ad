"""The payment step's routes: the visitor's payment page (public, opened with the visit's
own cookie), the Stripe webhook of the region (public, signature-checked), and the
members' API for a visit's payment and its refund."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from babel.numbers import format_currency, get_currency_precision
from litestar import Request, Response, Router, get, post
from litestar.response import Redirect, Template

from konsil.platform.core import errors
from konsil.platform.core.authz import MANAGERS, rule
from konsil.platform.core.payments import PaymentDeclined, PaymentProvider, PaymentUnavailable, WebhookRejected
from konsil.platform.core.region import region_of
from konsil.platform.core.text import LINE_PATTERN, OPTIONAL_LINE_PATTERN
from konsil.platform.core.web import SECURITY_HEADERS
from konsil.platform.pages.rendering import locale_of, tr
from konsil.tenants import checkin, records, visitor_branding, visits
from konsil.tenants.actors import actor_of
from konsil.tenants.auth import Principal
from konsil.tenants.payments import service
from konsil.tenants.schemas import Email
from konsil.tenants.signaling import VISIT_COOKIE
from konsil.tenants.visitor_pages import _dead_end, _organisation, _room_or_dead_end, own_visit, visit_cookie_first

Req = Request[Any, Any, Any]
EXPERTS = ("owner", "admin", "expert")


# The single-use card token stripe.js made (its form, tok_..., is checked by the provider).
CardToken = Annotated[str, msgspec.Meta(min_length=4, max_length=255, pattern=LINE_PATTERN)]


class PayIn(msgspec.Struct, forbid_unknown_fields=True):
    """The token stripe.js made of the visitor's card, and an address for the receipt."""

    token: CardToken  # its form (tok_...) is checked by the provider
    # One line (the shared rule), checked as an address by ``pay`` to answer a bad one as such.
    email: Annotated[str, msgspec.Meta(max_length=254, pattern=OPTIONAL_LINE_PATTERN)] | None = None


class CheckIn(msgspec.Struct, forbid_unknown_fields=True):
    pass


def amount_text(amount_minor: int, currency: str, locale: str) -> str:
    """The fee as people of ``locale`` write it ("kr 500,00", "€25.00")."""
    code = currency.upper()
    value = amount_minor / 10 ** get_currency_precision(code)
    return format_currency(value, code, locale=locale.replace("-", "_"))


def page_policy(provider: PaymentProvider) -> dict[str, str]:
    """The payment page's content security policy: the usual one, plus the provider's own
    hosts for its script, its card fields (frames) and its API; no other outside host."""
    origins = sorted(
        {f"{p.scheme}://{p.netloc}" for p in (urlsplit(url) for url in provider.browser_origins) if p.netloc}
    )
    hosts = " ".join(origins)
    policy = SECURITY_HEADERS["content-security-policy"]
    policy = policy.replace("script-src 'self'", f"script-src 'self' {hosts}")
    policy = policy.replace("connect-src 'self'", f"connect-src 'self' {hosts}")
    policy = policy.replace("default-src 'self'", f"default-src 'self'; frame-src {hosts}")
    return {"content-security-policy": policy, "cache-control": "no-store"}


async def _visit_of_script(
    request: Req, slug: str, room_slug: str, visit_id: uuid.UUID
) -> tuple[records.Organisation, records.Room, records.Visit]:
    """The visitor's own visit for the payment page's script (JSON: 404 without it)."""
    org = await _organisation(request, slug)
    room = await _room_or_dead_end(request, org, room_slug)
    if isinstance(room, Template):
        raise errors.not_found("no such room")
    return org, room, await visits.visit_for_token(org, visit_id, request.cookies.get(VISIT_COOKIE))


def _needs_payment(visit: records.Visit, room: records.Room) -> bool:
    return "payment" in checkin.pending(visit, room)


def _payment_is_next(visit: records.Visit, room: records.Room) -> bool:
    """Whether paying is the visit's next step (its identity, where asked, is proven first)."""
    pending = checkin.pending(visit, room)
    return bool(pending) and pending[0] == "payment"


def _may_pay(visit: records.Visit, room: records.Room) -> None:
    if not _needs_payment(visit, room):
        raise errors.conflict("this visit has nothing to pay")
    if not _payment_is_next(visit, room):
        raise errors.conflict("prove who you are first, then pay; nothing was charged")


def _receipt_address(email: str | None) -> str | None:
    """The receipt's address, or a 400 the page tells from a refused card ("invalid_email")."""
    if not email:
        return None
    try:
        return msgspec.convert(email, Email)
    except msgspec.ValidationError:
        raise errors.AppError(400, "invalid_email", "this e-mail address is not valid; nothing was charged") from None


@contextmanager
def _provider_answers() -> Iterator[None]:
    """The payment service's refusals and outages as clear answers to the visitor's page."""
    try:
        yield
    except PaymentDeclined:
        raise errors.bad_request("the card details were not accepted; nothing was charged") from None
    except PaymentUnavailable:
        raise errors.AppError(503, "unavailable", "the payment service did not answer; nothing was charged") from None


@get("/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}/payment", opt={"public": True}, include_in_schema=False)
async def payment_page(request: Req, slug: str, room_slug: str, visit_id: uuid.UUID) -> Template | Redirect:
    ctx = region_of(request)
    found = await own_visit(request, slug, room_slug, visit_id)
    if isinstance(found, Template):
        return found
    org, room, visit = found
    visit_path = f"/{slug}/{room_slug}/visits/{visit_id}"
    if not _payment_is_next(visit, room):  # paid, or the identity step comes first
        return Redirect(visit_path, status_code=303)
    has_logo = await visitor_branding.has_logo(org.id)
    if ctx.payments is None:
        return _dead_end(
            org,
            503,
            tr(request, "The fee cannot be paid online right now"),
            tr(request, "Nothing was charged. Please contact %(org)s.", org=org.name),
            has_logo=has_logo,
        )
    try:
        shown = await service.view(ctx, org, room, visit)
    except (PaymentUnavailable, PaymentDeclined):
        return _dead_end(
            org,
            503,
            tr(request, "The payment service does not answer right now"),
            tr(request, "Nothing was charged. Please reload this page in a minute."),
            again=f"{visit_path}/payment",
            has_logo=has_logo,
        )
    if shown.outcome == "paid":
        return Redirect(visit_path, status_code=303)
    return Template(
        "payment.html",
        context={
            "org": org,
            "room": room,
            "has_logo": has_logo,
            "amount": amount_text(shown.amount_minor, shown.currency, locale_of(request)),
            "description": room.fee_description,
            "outcome": shown.outcome,
            "publishable_key": ctx.payments.publishable_key,
            "script_url": ctx.payments.script_url,
            "visit_path": visit_path,
        },
        headers=page_policy(ctx.payments),
    )


@post(
    "/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}/payment",
    opt={"public": True},
    guards=[visit_cookie_first],
    include_in_schema=False,
    status_code=200,
)
async def pay(request: Req, slug: str, room_slug: str, visit_id: uuid.UUID, data: PayIn) -> service.PaymentView:
    ctx = region_of(request)
    org, from_room, visit = await _visit_of_script(request, slug, room_slug, visit_id)
    email = _receipt_address(data.email)
    _may_pay(visit, from_room)
    with _provider_answers():
        return await service.pay(ctx, org, from_room, visit, data.token, email)


@post(
    "/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}/payment/check",
    opt={"public": True},
    guards=[visit_cookie_first],
    include_in_schema=False,
    status_code=200,
)
async def check_payment(request: Req, slug: str, room_slug: str, visit_id: uuid.UUID) -> service.PaymentView:
    ctx = region_of(request)
    org, from_room, visit = await _visit_of_script(request, slug, room_slug, visit_id)
    if not _needs_payment(visit, from_room):
        # Paid already (the webhook came first): the page moves on; no payment is made here.
        settled = await service.settled(visit)
        if settled is None:
            raise errors.conflict("this visit has nothing to pay")
        return settled
    _may_pay(visit, from_room)
    with _provider_answers():
        return await service.check(ctx, org, from_room, visit)


@post("/webhooks/stripe", opt={"public": True}, include_in_schema=False, status_code=200)
async def stripe_webhook(request: Req) -> Response[Any]:
    """Stripe's events for this region's account (register this URL in the account's
    dashboard): signature checked with the region's webhook secret, stored once,
    processed by a background task."""
    ctx = region_of(request)
    if ctx.payments is None:
        return Response({"error": "not_found", "message": "this region takes no card payments"}, status_code=404)
    payload = await request.body()
    try:
        event = await ctx.payments.verify_webhook(payload, request.headers.get("stripe-signature"))
    except WebhookRejected as exc:
        return Response({"error": "invalid_signature", "message": exc.reason}, status_code=400)
    except PaymentUnavailable as exc:
        return Response({"error": "unavailable", "message": exc.reason}, status_code=503)
    outcome = await service.receive(ctx, event)
    return Response({"received": outcome}, status_code=200)


@get("/visits/{visit_id:uuid}/payment", opt=rule(*EXPERTS, personal_data="payment_record"))
async def visit_payment(request: Req, visit_id: uuid.UUID) -> service.PaymentOut:
    """A visit's payment: paid or not, the card's brand and last 4 digits only."""
    org: records.Organisation = request.scope["state"]["org"]
    principal: Principal = request.scope["state"]["principal"]
    return await service.payment_of_visit(
        region_of(request), actor_of(request), org, visit_id, principal.id, principal.role
    )


@post(
    "/visits/{visit_id:uuid}/payment/refund",
    opt=rule(*MANAGERS, personal_data="payment_record"),
    status_code=200,
)
async def refund_payment(request: Req, visit_id: uuid.UUID) -> service.PaymentOut:
    """Give the visit's whole fee back (owners and admins); a refunded payment is answered as it is."""
    org: records.Organisation = request.scope["state"]["org"]
    try:
        return await service.refund(region_of(request), actor_of(request), org, visit_id)
    except PaymentUnavailable:
        raise errors.AppError(503, "unavailable", "the payment service did not answer; try again") from None
    except PaymentDeclined:
        raise errors.conflict("the payment service refused the refund") from None


payment_pages_router = Router(path="/", route_handlers=[payment_page, pay, check_payment, stripe_webhook])
payments_api_router = Router(
    path="/api/v1/orgs/{slug:str}", route_handlers=[visit_payment, refund_payment], tags=["payments"]
)
