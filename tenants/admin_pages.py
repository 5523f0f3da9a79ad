"""The portal's administration pages: organisation settings (with the logo), rooms and
integration tokens, and the public logo every visitor page shows.

The pages are shells: their scripts (``tenants/static/settings.js``, ``rooms.js``,
``tokens.js``) read and change everything through the tenant API with the session's CSRF
token, so each change goes through the same validation, authorization and access log as
any API call. Each page is a route with an authorization rule like the API's (``page``:
a visitor without a session is sent to the login page).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Request, Response, Router, get
from litestar.response import Template
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from konsil.platform.core import errors
from konsil.platform.core.authz import MANAGERS, PUBLIC, rule
from konsil.platform.core.region import region_of
from konsil.platform.pages import i18n
from konsil.platform.pages.i18n import N_
from konsil.platform.pages.rendering import locale_of
from konsil.tenants import logos, organisations
from konsil.tenants.auth import org_of, principal_of
from konsil.tenants.schemas import WELCOME_TEXT_MAX

Req = Request[Any, Any, Any]
PAGE = {"page": True}
# How long after its contract end an organisation's data is deleted (P18; the purge's
# CONTACT_DAYS_AFTER_CONTRACT in compliance/retention, a layer above this one).
KEPT_AFTER_CONTRACT = dt.timedelta(days=90)

# What each scope lets a token do, in words (the tokens page; tenants/api_tokens.py).
SCOPE_WORDS: dict[str, str] = {
    "org:read": N_("Read the organisation's settings"),
    "members:read": N_("See the members, with their names and e-mail addresses"),
    "members:write": N_("Add, change and remove members"),
    "rooms:read": N_("See the rooms"),
    "rooms:write": N_("Create, change and remove rooms"),
}


def _common(request: Req) -> dict[str, Any]:
    org, principal = org_of(request), principal_of(request)
    return {"org_name": org.name, "slug": org.slug, "role": principal.role, "csrf": principal.csrf_token}


def _country_names(request: Req, codes: list[str]) -> list[tuple[str, str]]:
    """(code, name in the page's language), by name."""
    territories = i18n.babel_locale(locale_of(request)).territories
    return sorted(((code, territories.get(code, code)) for code in codes), key=lambda pair: pair[1])


@get("/{slug:str}/portal/settings", opt={**rule(*MANAGERS), **PAGE}, include_in_schema=False)
async def settings_page(request: Req) -> Template:
    """Name, retention, contract end, the pages' default language, country, logo."""
    org = org_of(request)
    ctx = region_of(request)
    logo = await logos.describe(org)
    return Template(
        "settings.html",
        context={
            **_common(request),
            "org": org,
            "countries": _country_names(request, organisations.countries(ctx)),
            "eu": organisations.legal_jurisdiction(ctx) == "eu",
            "logo": logo,
            "deletion_date": org.contract_end + KEPT_AFTER_CONTRACT if org.contract_end else None,
            "logo_max_bytes": logos.MAX_BYTES,
        },
    )


@get("/{slug:str}/portal/rooms", opt={**rule("owner", "admin", "expert"), **PAGE}, include_in_schema=False)
async def rooms_page(request: Req) -> Template:
    """The rooms with their links; experts see and change their own."""
    principal = principal_of(request)
    return Template(
        "rooms.html",
        context={
            **_common(request),
            "manager": principal.role in MANAGERS,
            "member_id": str(principal.id),
            "welcome_max": WELCOME_TEXT_MAX,
            # Without a payment provider in the region, the fee fields are shown switched off.
            "card_fees": region_of(request).payments is not None,
        },
    )


@get("/{slug:str}/portal/tokens", opt={**rule(*MANAGERS), **PAGE}, include_in_schema=False)
async def tokens_page(request: Req) -> Template:
    """Integration tokens: list, create with scopes (shown once), revoke."""
    return Template("tokens.html", context={**_common(request), "scopes": list(SCOPE_WORDS.items())})


@get("/{slug:str}/logo", opt=PUBLIC, include_in_schema=False)
async def logo(request: Req, slug: str) -> Response[bytes]:
    """The organisation's logo for its visitors' pages (public: it is on every join
    link). Revalidated with its SHA-256 as the ETag, so a replaced logo shows at once."""
    org = await organisations.get(slug)
    stored = await logos.find(org.id) if org is not None else None
    if stored is None:
        raise errors.not_found("this organisation has no logo")
    etag = f'"{stored.sha256}"'
    headers = {"etag": etag, "cache-control": "public, no-cache"}
    sent = request.headers.get("if-none-match", "")
    if etag in {tag.strip() for tag in sent.split(",")} or sent.strip() == "*":
        return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
    headers["content-disposition"] = "inline"
    return Response(stored.image, media_type=stored.content_type, headers=headers)


admin_pages_router = Router(path="/", route_handlers=[settings_page, rooms_page, tokens_page, logo])
