"""Server-rendered member pages: portal, call, log out. Forms carry the session's CSRF
token. Logging in is tenants/login_pages.py."""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from konsil.platform.core import errors
from konsil.platform.core.authz import OWN_SESSION, rule
from konsil.platform.core.region import region_of
from konsil.platform.pages.i18n import N_
from konsil.tenants import members, records, visits
from konsil.tenants.actors import actor_of
from konsil.tenants.api import session_cookie
from konsil.tenants.auth import Principal, end_session
from konsil.tenants.identity import store as identity_store

Req = Request[Any, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)


class CsrfForm(msgspec.Struct):
    csrf: str = msgspec.field(default="", name="_csrf")


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
    # A visitor who confirmed who they are with a national eID (number masked; access-logged).
    identity = (await identity_store.shown(ctx, actor, org.id, [call.visit_id])).get(call.visit_id)
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
            "identity": identity,
            "visit_id": str(call.visit_id),
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


pages_router = Router(path="/", route_handlers=[portal, call_page, logout_submit])
