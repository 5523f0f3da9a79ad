"""The region's login page and the new owner's sign-in link, for people.

``/login`` logs a member in (a double-submit CSRF cookie before login). When the e-mail
address and password are not valid in this region, the page asks the control plane's
login discovery where else the address logs in; if that is another region, the person
is sent there (303, its login page says why) instead of being told the password is
wrong. Discovery's answer is all that is used, so nothing is revealed that discovery
would not reveal anyway (it answers an unknown address with a region too).

``/welcome/{token}`` opens the session of an owner who has just signed up (the
control plane sends their browser there, tenants/welcome.py), then their portal.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import re
import secrets
import time
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import msgspec
from babel import dates as babel_dates
from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from konsil.platform.core import errors
from konsil.platform.core.authz import PUBLIC
from konsil.platform.core.region import RegionContext, region_of
from konsil.platform.core.web import SECURITY_HEADERS
from konsil.platform.pages import i18n, jurisdictions
from konsil.platform.pages.rendering import locale_of, tr
from konsil.tenants import welcome
from konsil.tenants.actors import source_address
from konsil.tenants.api import session_cookie
from konsil.tenants.auth import log_in, start_session
from konsil.tenants.schemas import Email

log = logging.getLogger("konsil.login")

LOGIN_CSRF_COOKIE = "konsil_login_csrf"
DISCOVERY_PATH = "/internal/v1/login-discovery"
REGIONS_PATH = "/internal/v1/regions"
MOVED = "moved"  # ?moved=1: the person was sent here from another region's login page
PLACES_SECONDS = 300.0  # how long the regions' addresses are kept (a failure: 30 s)
Req = Request[Any, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)


class LoginForm(msgspec.Struct):
    email: str = ""
    password: str = ""
    organisation: str | None = None
    csrf: str = msgspec.field(default="", name="_csrf")


class Place(msgspec.Struct, frozen=True):
    """A region as the control plane names it (tenants code never sees other regions'
    settings): where its login page is."""

    region: str
    jurisdiction: str
    public_url: str
    login_url: str


class _Places(msgspec.Struct):
    regions: list[Place]


class OtherRegion(msgspec.Struct, frozen=True):
    words: jurisdictions.RegionWords
    login_url: str


# The regions' addresses, per control plane: (until, places).
_places: dict[str, tuple[float, list[Place]]] = {}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def every_place(ctx: RegionContext) -> list[Place]:
    """Every region's address, from the control plane (kept a few minutes); [] when
    it cannot be asked (the login page then only posts to itself)."""
    key = ctx.control.base_url
    kept = _places.get(key)
    now = time.monotonic()
    if kept and kept[0] > now:
        return kept[1]
    found: list[Place] = []
    try:
        response = await ctx.control.get(REGIONS_PATH, within=2.0)
        if response.status_code == 200:
            found = msgspec.json.decode(response.content, type=_Places).regions
    except (httpx.HTTPError, msgspec.DecodeError) as exc:
        log.warning("the regions' addresses could not be read from the control plane (%s)", type(exc).__name__)
    _places[key] = (now + (PLACES_SECONDS if found else 30.0), found)
    return found


def page_headers(places: list[Place]) -> dict[str, str]:
    """The CSP of the login page: its form may lead (by the answer's redirect) to another
    region's login page, which Chromium checks against form-action."""
    others = " ".join(sorted({_origin(p.public_url) for p in places}))
    policy = SECURITY_HEADERS["content-security-policy"]
    if others:
        policy = policy.replace("form-action 'self'", f"form-action 'self' {others}")
    return {"content-security-policy": policy}


async def where_else(ctx: RegionContext, email: str) -> list[Place] | None:
    """Login discovery's answer for ``email``; None when it cannot be asked."""
    try:
        response = await ctx.control.post(DISCOVERY_PATH, msgspec.json.encode({"email": email}), within=3.0)
    except httpx.HTTPError as exc:
        log.warning("login discovery could not be asked (%s)", type(exc).__name__)
        return None
    if response.status_code != 200:
        return None
    try:
        return msgspec.json.decode(response.content, type=_Places).regions
    except msgspec.DecodeError:
        return None


def wait_words(request: Req, retry_after: str) -> str:
    """A Retry-After value as a person reads it, in their language."""
    seconds = int(retry_after) if retry_after.isdigit() else 60
    if seconds < 90:
        return i18n.ngettext(locale_of(request), "%(num)d second", "%(num)d seconds", seconds)
    return i18n.ngettext(locale_of(request), "about %(num)d minute", "about %(num)d minutes", -(-seconds // 60))


_ENDED = re.compile(r"ended on (\d{1,2} \w+ \d{4} at \d{2}:\d{2}) UTC")


def access_ended(request: Req, message: str) -> str:
    """An auditor whose access ended, told when, in their language."""
    found = _ENDED.search(message)
    if found:
        try:
            when = dt.datetime.strptime(found.group(1), "%d %B %Y at %H:%M").replace(tzinfo=dt.UTC)
        except ValueError:
            when = None
        if when is not None:
            text = babel_dates.format_datetime(
                when, format="long", tzinfo=dt.UTC, locale=i18n.babel_locale(locale_of(request))
            )
            return tr(
                request,
                "Your auditor access to this organisation ended on %(when)s. Ask one of its owners for a new grant.",
                when=text,
            )
    return tr(request, "Your auditor access to this organisation has ended. Ask one of its owners for a new grant.")


async def _login_page(
    request: Req,
    error: str | None = None,
    organisations: list[str] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    others: list[OtherRegion] | None = None,
) -> Template:
    token = secrets.token_urlsafe(24)
    ctx = region_of(request)
    moved = request.query_params.get(MOVED) == "1"
    return Template(
        "login.html",
        context={
            "csrf": token,
            "error": error,
            "organisations": organisations or [],
            "others": others or [],
            "here": jurisdictions.words(ctx.region.id, ctx.region.jurisdiction) if moved else None,
        },
        status_code=status,
        headers={**page_headers(await every_place(ctx)), **(headers or {})},
        cookies=[
            Cookie(
                key=LOGIN_CSRF_COOKIE,
                value=token,
                httponly=True,
                samesite="strict",
                path="/login",
                secure=ctx.region.public_url.startswith("https://"),
            )
        ],
    )


@get("/login", opt=PUBLIC, include_in_schema=False)
async def login_page(request: Req) -> Template:
    return await _login_page(request)


async def _not_here(request: Req, email: str) -> Response[Any]:
    """The address and password are not valid in this region: where discovery says the
    address logs in, if that is elsewhere; else the usual answer."""
    ctx = region_of(request)
    wrong = tr(request, "E-mail address or password is wrong.")
    found = await where_else(ctx, email)
    if not found:
        return await _login_page(request, wrong, status=401)
    others = [p for p in found if p.region != ctx.region.id]
    if not others:
        return await _login_page(request, wrong, status=401)
    choices = [OtherRegion(jurisdictions.words(p.region, p.jurisdiction), p.login_url) for p in others]
    here = len(others) < len(found)
    allowed = {_origin(p.public_url) for p in await every_place(ctx)}
    if not here and len(others) == 1 and _origin(others[0].public_url) in allowed:
        return Redirect(f"{others[0].login_url}?{MOVED}=1&lang={locale_of(request)}", status_code=303)
    if here:
        message = tr(request, "E-mail address or password is wrong. Your address is also used in another region:")
    else:
        message = tr(request, "Your organisation's account is kept in another region. Log in there:")
    return await _login_page(request, message, status=401, others=choices)


@post("/login", opt=PUBLIC, include_in_schema=False)
async def login_submit(request: Req, data: Annotated[LoginForm, Form]) -> Response[Any]:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, data.csrf):
        return await _login_page(request, tr(request, "Your form expired. Please try again."), status=403)
    if not data.email:
        return await _login_page(request, tr(request, "Enter your e-mail address."), status=400)
    try:
        msgspec.convert(data.email, Email)
    except msgspec.ValidationError:
        return await _login_page(request, tr(request, "That is not a valid e-mail address."), status=400)
    ctx = region_of(request)
    try:
        found = await log_in(ctx, data.email, data.password[:200], data.organisation or None, source_address(request))
    except errors.AppError as exc:
        if exc.status == 429:
            wait = exc.headers.get("retry-after", "60")
            message = tr(
                request, "Too many attempts. Please wait %(wait)s, then try again.", wait=wait_words(request, wait)
            )
            return await _login_page(request, message, status=429, headers={"retry-after": wait})
        if exc.code == "access_expired":  # the password was right: say why they cannot come in
            return await _login_page(request, access_ended(request, exc.message), status=403)
        return await _not_here(request, data.email)
    if isinstance(found, list):
        return await _login_page(
            request, tr(request, "Choose the organisation to open."), organisations=found, status=409
        )
    return Redirect(
        f"/{found.organisation.slug}/portal", status_code=303, cookies=[session_cookie(ctx, request, found.cookie)]
    )


@get("/welcome/{token:str}", opt=PUBLIC, include_in_schema=False)
async def welcome_link(request: Req, token: str) -> Response[Any]:
    """The new owner's one-time sign-in link: their session, then their portal."""
    ctx = region_of(request)
    locale_of(request)  # a language chosen at signup (?lang=) is kept for the portal
    opened = await welcome.redeem(token)
    if opened is None:
        return Template("welcome_expired.html", status_code=410, headers={"cache-control": "no-store"})
    member, org = opened
    cookie, _csrf = await start_session(ctx, member, source_address(request))
    return Redirect(
        f"/{org.slug}/portal",
        status_code=303,
        cookies=[session_cookie(ctx, request, cookie)],
        headers={"cache-control": "no-store"},
    )


login_router = Router(path="/", route_handlers=[login_page, login_submit, welcome_link])
