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
from konsil.tenants import records, visits
from konsil.tenants.api import session_cookie
from konsil.tenants.auth import Principal, end_session

Req = Request[Any, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)


class CsrfForm(msgspec.Struct):
    csrf: str = msgspec.field(default="", name="_csrf")


@get("/{slug:str}/portal", opt={**rule("owner", "admin", "expert", "auditor"), "page": True}, include_in_schema=False)
async def portal(request: Req) -> Template:
    """The expert's dashboard: live waiting list, admit, calls today (auditors see
    their role only)."""
    org: records.Organisation = request.state.org
    principal: Principal = request.state.principal
    return Template(
        "portal.html",
        context={
            "org_name": org.name,
            "slug": org.slug,
            "role": principal.role,
            "csrf": principal.csrf_token,
            "region": region_of(request).region.id,
            "is_expert": principal.role in ("owner", "admin", "expert"),
        },
    )


@get(
    "/{slug:str}/calls/{call_id:uuid}", opt={**rule("owner", "admin", "expert"), "page": True}, include_in_schema=False
)
async def call_page(request: Req, call_id: uuid.UUID) -> Template:
    org: records.Organisation = request.state.org
    principal: Principal = request.state.principal
    await visits.call_for_member(org, call_id, principal.id, principal.role)
    return Template(
        "call.html",
        context={
            "slug": org.slug,
            "org_name": org.name,
            "call_id": str(call_id),
            "csrf": principal.csrf_token,
            "ws_path": f"/{org.slug}/calls/{call_id}/ws",
            "region": region_of(request).region.id,
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
