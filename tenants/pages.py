"""Server-rendered member pages: log in, portal, log out. Forms carry a CSRF token:
a double-submit cookie before login, the session's token after."""

from __future__ import annotations

import hmac
import secrets
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from konsil.platform.core import errors
from konsil.platform.core.authz import OWN_SESSION, PUBLIC, rule
from konsil.platform.core.ratelimit import wait_in_words
from konsil.platform.core.region import region_of
from konsil.platform.pages.i18n import N_
from konsil.tenants import members, records, visits
from konsil.tenants.actors import actor_of, source_address
from konsil.tenants.api import session_cookie
from konsil.tenants.auth import Principal, end_session, log_in
from konsil.tenants.schemas import Email

LOGIN_CSRF_COOKIE = "konsil_login_csrf"
Req = Request[Any, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)


class LoginForm(msgspec.Struct):
    email: str = ""
    password: str = ""
    organisation: str | None = None
    csrf: str = msgspec.field(default="", name="_csrf")


class CsrfForm(msgspec.Struct):
    csrf: str = msgspec.field(default="", name="_csrf")


def _login_page(
    request: Req,
    error: str | None = None,
    organisations: list[str] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    token = secrets.token_urlsafe(24)
    ctx = region_of(request)
    return Template(
        "login.html",
        context={"csrf": token, "error": error, "organisations": organisations or [], "region": ctx.region.id},
        status_code=status,
        headers=headers,
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
    return _login_page(request)


@post("/login", opt=PUBLIC, include_in_schema=False)
async def login_submit(request: Req, data: Annotated[LoginForm, Form]) -> Response[Any]:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, data.csrf):
        return _login_page(request, "Your form expired. Please try again.", status=403)
    if not data.email:
        return _login_page(request, "Enter your e-mail address.", status=400)
    try:
        msgspec.convert(data.email, Email)
    except msgspec.ValidationError:
        return _login_page(request, "That is not a valid e-mail address.", status=400)
    ctx = region_of(request)
    try:
        found = await log_in(ctx, data.email, data.password[:200], data.organisation or None, source_address(request))
    except errors.AppError as exc:
        if exc.status == 429:
            wait = exc.headers.get("retry-after", "60")
            message = f"Too many attempts. Please wait {wait_in_words(wait)}, then try again."
            return _login_page(request, message, status=429, headers={"retry-after": wait})
        if exc.code == "access_expired":  # the password was right: say why they cannot come in
            return _login_page(request, exc.message[:1].upper() + exc.message[1:] + ".", status=403)
        return _login_page(request, "E-mail address or password is wrong.", status=401)
    if isinstance(found, list):
        return _login_page(request, "Choose the organisation to open.", organisations=found, status=409)
    return Redirect(
        f"/{found.organisation.slug}/portal", status_code=303, cookies=[session_cookie(ctx, request, found.cookie)]
    )


# The member roles in people's words (the dashboard says whom you are signed in as).
ROLE_NAMES = {"owner": N_("Owner"), "admin": N_("Administrator"), "expert": N_("Expert"), "auditor": N_("Auditor")}


@get("/{slug:str}/portal", opt={**rule("owner", "admin", "expert", "auditor"), "page": True}, include_in_schema=False)
async def portal(request: Req) -> Template:
    """The expert's dashboard: live waiting list with arrival alerts, admit, calls
    today (auditors see their role and the navigation only). The lists come from the
    API, where each read of a visitor's data is access-logged."""
    org: records.Organisation = request.state.org
    principal: Principal = request.state.principal
    return Template(
        "portal.html",
        context={
            "org_name": org.name,
            "slug": org.slug,
            "role": principal.role,
            "role_name": ROLE_NAMES.get(principal.role, principal.role),
            "csrf": principal.csrf_token,
            "is_expert": principal.role in ("owner", "admin", "expert"),
        },
    )


@get(
    "/{slug:str}/calls/{call_id:uuid}",
    opt={**rule("owner", "admin", "expert", personal_data="call"), "page": True},
    include_in_schema=False,
)
async def call_page(request: Req, call_id: uuid.UUID) -> Template:
    """The expert's side of a call, headed with the visitor's name (an access-logged
    read of the visit); the expert's own name goes to the visitor's page over the
    call's data channel, browser to browser."""
    org: records.Organisation = request.state.org
    principal: Principal = request.state.principal
    ctx = region_of(request)
    actor = actor_of(request)
    call = await visits.call_for_member(org, call_id, principal.id, principal.role)
    visitor_name = await visits.visitor_name(ctx, actor, org, call)
    try:
        expert_name: str | None = (await members.get(ctx, actor, org, principal.id)).name
    except errors.AppError:
        expert_name = None  # a record that failed its integrity check (logged): the call goes on without it
    return Template(
        "call.html",
        context={
            "slug": org.slug,
            "org_name": org.name,
            "call_id": str(call_id),
            "csrf": principal.csrf_token,
            "ws_path": f"/{org.slug}/calls/{call_id}/ws",
            "visitor_name": visitor_name,
            "expert_name": expert_name,
        },
    )


@post(
    "/{slug:str}/logout",
    opt={**rule("owner", "admin", "expert", "auditor"), "page": True, "csrf": "form", **OWN_SESSION},
    include_in_schema=False,
)
async def logout_submit(request: Req, data: Annotated[CsrfForm, Form]) -> Response[Any]:
    principal: Principal = request.state.principal
    if not principal.csrf_token or not hmac.compare_digest(principal.csrf_token, data.csrf):
        raise errors.AppError(403, "csrf", "your form expired; reload the page")
    if principal.session_id:
        await end_session(principal.session_id)
    return Redirect("/login", status_code=303, cookies=[session_cookie(region_of(request), request, "", max_age=0)])


pages_router = Router(path="/", route_handlers=[login_page, login_submit, portal, call_page, logout_submit])
