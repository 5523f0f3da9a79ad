"""The visitor's page of the national eID check (``/{org}/{room}/visits/{visit}/identity``),
the start of the trip to the eID broker (``.../identity/start``) and the broker's way
back (``/identity/callback``). See ``flow.py`` for the steps.

The start is a plain link (GET), not a form: the pages' CSP allows forms to post only to
Konsil itself, and a browser applies that to a form's redirect as well. Its side effect
(a new attempt) needs the visit's own cookie, which the browser sends to this site's
pages only (SameSite=Strict).

The broker's answer comes back on a fixed address registered with the broker; it
carries no visit cookie (that one is SameSite=Strict, and this is a navigation from the
broker's site), so the attempt is found by its state, and the state is checked against
a cookie of its own (SameSite=Lax, sent on that navigation) set at the start.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Response, Router, get
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template

from konsil.platform.core.identity import Eid
from konsil.platform.core.keys.provider import KeyUnavailable
from konsil.platform.core.region import region_of
from konsil.platform.pages.i18n import N_
from konsil.platform.pages.rendering import locale_of, tr
from konsil.tenants import records, visitor_branding, visitor_pages
from konsil.tenants.actors import source_address
from konsil.tenants.identity import flow

Req = Request[Any, Any, Any]
STATE_COOKIE = "konsil_eid_state"

EID_NAMES: dict[Eid, str] = {
    "no_bankid": N_("Norwegian BankID"),
    "dk_mitid": N_("Danish MitID"),
    "se_bankid": N_("Swedish BankID"),
}
PROBLEMS: dict[flow.Problem, str] = {
    "unavailable": N_("The identity service did not answer. Nothing was saved. Please try again in a moment."),
    "rejected": N_("We could not confirm your identity from the answer we got. Nothing was saved. Please try again."),
    "cancelled": N_("The identity check stopped before it was finished. Nothing was saved. You can try again."),
    "replayed": N_("This identity check was already used. Please start it again."),
    "expired": N_("This identity check took too long. Please start it again."),
    "unknown": N_(
        "We could not match this identity check to your visit. Please start it again in the browser "
        "where you filled in the form."
    ),
    "off": N_("The identity check is not available right now. Please try again later."),
    "not_needed": N_("Your identity is already confirmed."),
}
STATUS: dict[flow.Problem, int] = {"unavailable": 503, "off": 503}


def _visit_path(slug: str, room_slug: str, visit_id: uuid.UUID | str) -> str:
    return f"/{slug}/{room_slug}/visits/{visit_id}"


def _page(
    request: Req,
    org: records.Organisation,
    room: records.Room,
    visit_id: uuid.UUID | str,
    *,
    has_logo: bool,
    problem: flow.Problem | None = None,
) -> Template:
    eid = flow.room_eid(room)
    base = _visit_path(org.slug, room.slug, visit_id)
    return Template(
        "identity.html",
        context={
            "org": org,
            "room": room,
            "has_logo": has_logo,
            "eid_name": tr(request, EID_NAMES[eid]) if eid else "",
            "start": f"{base}/identity/start",
            "problem": tr(request, PROBLEMS[problem]) if problem else None,
            "problem_kind": problem or "",
        },
        status_code=STATUS.get(problem, 400) if problem else 200,
    )


@get("/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}/identity", opt={"public": True}, include_in_schema=False)
async def identity_page(request: Req, slug: str, room_slug: str, visit_id: uuid.UUID) -> Template | Redirect:
    found = await visitor_pages.own_visit(request, slug, room_slug, visit_id)
    if isinstance(found, Template):
        return found
    org, room, visit = found
    if flow.room_eid(room) is None or not flow.needs_identity(visit, room):
        return Redirect(_visit_path(slug, room_slug, visit_id), status_code=303)
    has_logo = await visitor_branding.has_logo(org.id)
    problem: flow.Problem | None = "off" if region_of(request).identity is None else None
    return _page(request, org, room, visit_id, has_logo=has_logo, problem=problem)


@get("/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}/identity/start", opt={"public": True}, include_in_schema=False)
async def identity_start(request: Req, slug: str, room_slug: str, visit_id: uuid.UUID) -> Template | Redirect:
    found = await visitor_pages.own_visit(request, slug, room_slug, visit_id)
    if isinstance(found, Template):
        return found
    org, room, visit = found
    ctx = region_of(request)
    try:
        started = await flow.start(ctx, org, room, visit, locale_of(request))
    except flow.IdentityFlowError as exc:
        if exc.problem == "not_needed":
            return Redirect(_visit_path(slug, room_slug, visit_id), status_code=303)
        return _page(
            request, org, room, visit_id, has_logo=await visitor_branding.has_logo(org.id), problem=exc.problem
        )
    secure = ctx.region.public_url.startswith("https://")
    cookie = Cookie(
        key=STATE_COOKIE,
        value=started.state,
        path=flow.CALLBACK_PATH,
        max_age=flow.ATTEMPT_MINUTES * 60,
        httponly=True,
        samesite="lax",
        secure=secure,
    )
    return Redirect(started.authorize_url, status_code=303, cookies=[cookie])


@get(flow.CALLBACK_PATH, opt={"public": True}, include_in_schema=False)
async def identity_callback(request: Req) -> Response[Any]:
    ctx = region_of(request)
    query = request.query_params
    gone = Cookie(key=STATE_COOKIE, value="", path=flow.CALLBACK_PATH, max_age=0, httponly=True, samesite="lax")
    try:
        finished = await flow.finish(
            ctx,
            state=query.get("state") or "",
            code=query.get("code") or "",
            error=query.get("error") or "",
            browser_state=request.cookies.get(STATE_COOKIE),
            source=source_address(request),
        )
    except KeyUnavailable:
        return _lost(request, "unavailable", 503)
    except flow.IdentityFlowError as exc:
        if exc.where is None:
            return _lost(request, exc.problem, STATUS.get(exc.problem, 400))
        slug, room_slug, visit_id = exc.where
        if exc.problem == "not_needed":
            return Redirect(_visit_path(slug, room_slug, visit_id), status_code=303, cookies=[gone])
        org = await visitor_pages._organisation(request, slug)
        room = await visitor_pages._room_or_dead_end(request, org, room_slug)
        if isinstance(room, Template):
            return room
        # The state cookie stays until it expires: the same answer again is then told
        # that it was used already.
        return _page(
            request, org, room, visit_id, has_logo=await visitor_branding.has_logo(org.id), problem=exc.problem
        )
    path = _visit_path(finished.org.slug, finished.room.slug, finished.visit_id)
    return Redirect(path, status_code=303, cookies=[gone])


def _lost(request: Req, problem: flow.Problem, status: int) -> Template:
    """A way back from the broker that leads to no visit we can name."""
    return Template(
        "identity_lost.html",
        context={"problem": tr(request, PROBLEMS[problem]), "status": status},
        status_code=status,
    )


identity_router = Router(path="/", route_handlers=[identity_page, identity_start, identity_callback])
