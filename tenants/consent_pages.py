"""Where people make their consent decisions (tenants/consent.py):

- ``POST /{org}/{room}/consent``: the join page's script records a visitor device's
  choice (remember the camera and microphone, fill in the form) under a random device
  id the browser made; no personal data travels. Only with an agreement on record does
  the page keep anything in the browser, and a withdrawal clears it there.
- ``/{org}/portal/email-preferences``: a member agrees to, or stops, onboarding and
  feature e-mails (a form with the session's CSRF token; works without scripts).
"""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from konsil.platform.core import errors
from konsil.platform.core.authz import rule
from konsil.platform.core.ratelimit import RateLimit, too_many_requests
from konsil.platform.core.region import region_of
from konsil.platform.core.text import LINE_PATTERN
from konsil.platform.pages.rendering import locale_of
from konsil.tenants import consent, member_emails, organisations, records, rooms
from konsil.tenants.actors import Actor, actor_of, source_address
from konsil.tenants.auth import Principal

Req = Request[Any, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)
EMAIL_PREFERENCES = "/{slug:str}/portal/email-preferences"
# A visitor's choices are cheap to send: bounded per address so nobody fills the table.
DEVICE_CHOICES = RateLimit("consent choices per address", 30, 60)
# Who decides about e-mails (an auditor's access is read-only and gets no such e-mails).
DECIDERS = ("owner", "admin", "expert")


class DeviceChoice(msgspec.Struct, forbid_unknown_fields=True):
    device: uuid.UUID
    purpose: Literal["remember_device", "prefill_forms"]
    granted: bool
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=LINE_PATTERN)]


class DeviceDecision(msgspec.Struct):
    purpose: str
    granted: bool
    at: dt.datetime
    expires_at: dt.datetime | None


@post("/{slug:str}/{room_slug:str}/consent", opt={"public": True}, include_in_schema=False, status_code=200)
async def device_choice(request: Req, slug: str, room_slug: str, data: DeviceChoice) -> DeviceDecision:
    ctx = region_of(request)
    org = await organisations.get(slug)
    if org is None:
        raise errors.not_found("no such room")
    await rooms.by_slug(org, room_slug)  # 404 for a room that does not exist
    address = source_address(request)
    wait = DEVICE_CHOICES.retry_after(f"address:{address}")
    if wait is not None:
        raise too_many_requests(wait)
    DEVICE_CHOICES.hit(f"address:{address}")
    actor = Actor("anonymous", "visitor", consent.subject_ref("device", data.device), address)
    try:
        decision = await consent.decide(
            ctx,
            actor,
            org.id,
            "device",
            data.device,
            data.purpose,
            data.granted,
            version=data.version,
            language=locale_of(request),
            source="join_page",
        )
    except consent.ConsentRefused as exc:
        raise errors.bad_request(str(exc), "consent_refused") from None
    assert decision.at is not None
    return DeviceDecision(
        purpose=decision.purpose, granted=decision.granted, at=decision.at, expires_at=decision.expires_at
    )


class PreferencesForm(msgspec.Struct):
    onboarding_emails: Literal["", "yes"] = ""
    feature_emails: Literal["", "yes"] = ""
    csrf: str = msgspec.field(default="", name="_csrf")


PAGE = {**rule(*DECIDERS), "page": True}


async def _page(request: Req, saved: bool = False, status: int = 200) -> Template:
    org: records.Organisation = request.state.org
    principal: Principal = request.state.principal
    decisions = await consent.member_decisions(region_of(request), actor_of(request), org.id, principal.id)
    return Template(
        "email_preferences.html",
        context={
            "org_name": org.name,
            "slug": org.slug,
            "role": principal.role,
            "csrf": principal.csrf_token,
            "decisions": decisions,
            "wordings": consent.WORDINGS,
            "names": consent.PURPOSE_NAMES,
            "saved": saved,
        },
        status_code=status,
    )


@get(EMAIL_PREFERENCES, opt=PAGE, include_in_schema=False)
async def preferences_page(request: Req) -> Template:
    return await _page(request)


@post(EMAIL_PREFERENCES, opt={**PAGE, "csrf": "form"}, include_in_schema=False, status_code=200)
async def preferences_submit(request: Req, data: Annotated[PreferencesForm, Form]) -> Template:
    """Records a decision for each purpose whose answer changed (or was never given)."""
    principal: Principal = request.state.principal
    if not principal.csrf_token or not hmac.compare_digest(principal.csrf_token, data.csrf):
        raise errors.AppError(403, "csrf", "your form expired; reload the page")
    ctx = region_of(request)
    org: records.Organisation = request.state.org
    actor = actor_of(request)
    for purpose in consent.MEMBER_PURPOSES:
        wanted = getattr(data, purpose) == "yes"
        now = await consent.current(org.id, principal.id, purpose)
        if now.at is not None and now.granted == wanted:
            continue
        decision = await consent.decide(
            ctx,
            actor,
            org.id,
            "member",
            principal.id,
            purpose,
            wanted,
            version=consent.VERSIONS[purpose],
            language=locale_of(request),
            source="email_preferences",
        )
        await member_emails.mail_after(ctx, org, principal.id, decision)
    return await _page(request, saved=True)


consent_router = Router(path="/", route_handlers=[device_choice, preferences_page, preferences_submit])
