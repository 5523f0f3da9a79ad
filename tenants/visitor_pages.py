"""The visitor's pages: a room's join link ``/{org}/{room}`` → a short notice of what
is stored and for how long, in the law of the organisation's region → the form (name;
phone optional; consent) → the visit page (device check, waiting room, call, ended).
No account, no tracking (P3, P14).

Every page is in the visitor's language; when their browser asks for none Konsil
speaks, the organisation's default applies (``state["org"]``, read by
``konsil.platform.pages.rendering.locale_of``). Dead ends a visitor can reach (a
mistyped room, a visit opened without its cookie) are pages in the organisation's
look, not JSON; scripts and API clients keep the JSON errors.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body
from litestar.response import Redirect, Template

from konsil.platform.core import errors
from konsil.platform.core.keys.provider import KeyUnavailable
from konsil.platform.core.phones import normalise_phone
from konsil.platform.core.region import RegionContext, region_of
from konsil.platform.pages import legal
from konsil.platform.pages.rendering import example_phone, format_phone, locale_of, tr, wants_html
from konsil.tenants import checkin, consent, organisations, records, rooms, visitor_branding, visits
from konsil.tenants.actors import source_address
from konsil.tenants.schemas import PersonName, Phone
from konsil.tenants.signaling import VISIT_COOKIE

Req = Request[Any, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)


class JoinForm(msgspec.Struct):
    name: str = ""
    phone: str = ""
    consent: str = ""


def law_area(ctx: RegionContext) -> str:
    """The legal texts of the region's jurisdiction ("us": HIPAA, else "eu": GDPR)."""
    text = ctx.region.jurisdiction.strip().lower()
    if "hipaa" in text or "united states" in text or text.split("/")[0].split()[0] in {"us", "usa", "u.s."}:
        return "us"
    return "eu"


def org_country(ctx: RegionContext, org: records.Organisation) -> str:
    """The organisation's country; in a US region, the US when none is set."""
    return org.country or ("US" if law_area(ctx) == "us" else "")


def _for_organisation(request: Req, org: records.Organisation) -> None:
    """The organisation's default language applies to this request from here on."""
    state = request.scope.setdefault("state", {})
    state["org"] = org
    state.pop("locale", None)


async def _organisation(request: Req, slug: str) -> records.Organisation:
    org = await organisations.get(slug)
    if org is None:
        raise errors.not_found("no such room")
    _for_organisation(request, org)
    return org


def _dead_end(
    org: records.Organisation,
    status: int,
    title: str,
    advice: str,
    *,
    again: str | None = None,
    has_logo: bool = False,
) -> Template:
    """A visitor's dead end as a page in the organisation's look."""
    return Template(
        "visitor_error.html",
        context={"org": org, "status": status, "title": title, "advice": advice, "again": again, "has_logo": has_logo},
        status_code=status,
    )


async def _room_or_dead_end(request: Req, org: records.Organisation, room_slug: str) -> records.Room | Template:
    try:
        return await rooms.by_slug(org, room_slug)
    except errors.AppError:
        if not wants_html(request):
            raise
        return _dead_end(
            org,
            404,
            tr(request, "We could not find this room"),
            tr(
                request,
                "Check the link you were given. If it came from %(org)s, ask them to send it again.",
                org=org.name,
            ),
            has_logo=await visitor_branding.has_logo(org.id),
        )


async def _join_page(
    request: Req,
    org: records.Organisation,
    room: records.Room,
    *,
    problems: dict[str, str] | None = None,
    form_problem: str | None = None,
    wait_seconds: int | None = None,
    values: JoinForm | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    ctx = region_of(request)
    country = org_country(ctx, org)
    law = law_area(ctx)
    expert = await visitor_branding.expert_name(ctx, visitor_branding.anonymous(source_address(request)), room)
    return Template(
        "join.html",
        context={
            "org": org,
            "room": room,
            "expert": expert,
            "has_logo": await visitor_branding.has_logo(org.id),
            "legal": legal.legal_text(law, country, locale_of(request), org.name, org.retention_days),
            "law": law,
            "example": example_phone(country),
            "problems": problems or {},
            "form_problem": form_problem,
            # Too many joins: how long to wait (the page says it in words, in its language).
            "wait_seconds": wait_seconds,
            "wait_minutes": -(-wait_seconds // 60) if wait_seconds else 0,
            "values": values or JoinForm(),
            # What this browser may keep for the visitor, only if they tick it (tenants/consent.py).
            "device_choices": [(p, consent.VERSIONS[p], consent.WORDINGS[p]) for p in consent.DEVICE_PURPOSES],
        },
        status_code=status,
        headers=headers,
    )


@get("/{slug:str}/{room_slug:str}", opt={"public": True}, include_in_schema=False)
async def join_page(request: Req, slug: str, room_slug: str) -> Template:
    org = await _organisation(request, slug)
    room = await _room_or_dead_end(request, org, room_slug)
    if isinstance(room, Template):
        return room
    return await _join_page(request, org, room)


@get("/{slug:str}/{room_slug:str}/visits", opt={"public": True}, include_in_schema=False)
async def join_again(request: Req, slug: str, room_slug: str) -> Redirect:
    """The form's address opened as a page (a language chosen after an error, a reload):
    back to the join page, the language choice kept."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    return Redirect(f"/{slug}/{room_slug}" + (f"?{query}" if query else ""), status_code=303)


def _check(request: Req, org: records.Organisation, law: str, data: JoinForm) -> tuple[dict[str, str], str | None]:
    """Every problem of the form at once (field → message), and the phone in E.164."""
    problems: dict[str, str] = {}
    name = data.name.strip(" ")
    if not name:
        problems["name"] = tr(request, "Please enter your name.")
    else:
        try:
            msgspec.convert(name, PersonName)
        except msgspec.ValidationError:
            problems["name"] = tr(request, "Please enter your name as plain text of up to 200 characters.")
    phone: str | None = None
    if data.phone.strip():
        country = org_country(region_of(request), org)
        phone = normalise_phone(data.phone, country)
        try:
            msgspec.convert(phone, Phone)  # what the visit stores (E.164)
        except msgspec.ValidationError:
            phone = None
        if phone is None:
            problems["phone"] = tr(
                request,
                "Please check the phone number. Write it with the country code, for example %(example)s, "
                "or leave the field empty.",
                example=example_phone(country),
            )
    if data.consent != "yes":
        problems["consent"] = (
            tr(request, "Please confirm that you have read the notice above to continue.")
            if law == "us"
            else tr(request, "Please agree to the processing described above to continue.")
        )
    return problems, phone


@post("/{slug:str}/{room_slug:str}/visits", opt={"public": True}, include_in_schema=False)
async def join_submit(request: Req, slug: str, room_slug: str, data: Annotated[JoinForm, Form]) -> Response[Any]:
    ctx = region_of(request)
    org = await _organisation(request, slug)
    room = await _room_or_dead_end(request, org, room_slug)
    if isinstance(room, Template):
        return room
    problems, phone = _check(request, org, law_area(ctx), data)
    if phone is not None:  # shown as people write it when the form comes back
        data = msgspec.structs.replace(data, phone=format_phone(phone))
    if problems:
        return await _join_page(request, org, room, problems=problems, values=data, status=400)
    form = visits.VisitorForm(name=data.name.strip(" "), consent=True, phone=phone)
    try:
        ctx.limits.join(room.id, source_address(request))
    except errors.AppError as exc:
        wait = exc.headers.get("retry-after", "60")
        return await _join_page(
            request,
            org,
            room,
            values=data,
            status=429,
            headers={"retry-after": wait},
            wait_seconds=int(wait) if wait.isdigit() else 60,
        )
    try:
        visit_id, token = await visits.arrive(ctx, org, room, form, source_address(request))
    except KeyUnavailable:
        if not wants_html(request):
            raise
        return await _join_page(
            request,
            org,
            room,
            values=data,
            status=503,
            headers={"retry-after": "10"},
            form_problem=tr(
                request,
                "We could not save your details just now, so nothing was stored. Please try again in a minute.",
            ),
        )
    path = f"/{slug}/{room_slug}/visits/{visit_id}"
    secure = ctx.region.public_url.startswith("https://")
    return Redirect(
        path,
        status_code=303,
        cookies=[Cookie(key=VISIT_COOKIE, value=token, path=path, httponly=True, samesite="strict", secure=secure)],
    )


async def visit_cookie_first(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """Guard of a visitor's script calls that carry a body: without the cookie that opens
    this visit they answer 404 (as if there were no such visit) before the body is read."""
    params = connection.path_params
    org = await organisations.get(params.get("slug", ""))
    if org is None:
        raise errors.not_found("no such visit")
    await visits.visit_for_token(org, params["visit_id"], connection.cookies.get(VISIT_COOKIE))


async def own_visit(
    request: Req, slug: str, room_slug: str, visit_id: uuid.UUID
) -> tuple[records.Organisation, records.Room, records.Visit] | Template:
    """The visitor's own visit (its cookie's), with its organisation and room, for the
    visit's pages and its check-in steps' pages; else the page a visitor reads (a 404
    for a client that does not want a page)."""
    org = await _organisation(request, slug)
    room = await _room_or_dead_end(request, org, room_slug)
    if isinstance(room, Template):
        return room
    try:
        visit = await visits.visit_for_token(org, visit_id, request.cookies.get(VISIT_COOKIE))
    except errors.AppError:
        if not wants_html(request):
            raise
        return _dead_end(
            org,
            404,
            tr(request, "This visit cannot be opened here"),
            tr(
                request,
                "A visit opens only in the browser where the form was filled in, and only until it ends. "
                "To join again, open the room's page and fill in the form.",
            ),
            again=f"/{slug}/{room_slug}",
            has_logo=await visitor_branding.has_logo(org.id),
        )
    return org, room, visit


@get("/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}", opt={"public": True}, include_in_schema=False)
async def visit_page(request: Req, slug: str, room_slug: str, visit_id: uuid.UUID) -> Template | Redirect:
    ctx = region_of(request)
    found = await own_visit(request, slug, room_slug, visit_id)
    if isinstance(found, Template):
        return found
    org, room, visit = found
    step_page = checkin.next_page(f"/{slug}/{room_slug}/visits/{visit_id}", visit, room)
    if step_page is not None:  # an eID check or a fee first (tenants/checkin.py)
        return Redirect(step_page, status_code=303)
    if visit.status == "checking_in" and await checkin.move_on_if_done(ctx, org, room, visit.id):
        # The room stopped asking for the steps this visitor had left: they wait now.
        visit = msgspec.structs.replace(visit, status="waiting")
    actor = visitor_branding.visitor(visit.id, source_address(request))
    phone = await visitor_branding.own_phone(ctx, actor, visit) if visit.status == "waiting" else None
    return Template(
        "visit.html",
        context={
            "org": org,
            "room": room,
            "visit_id": str(visit_id),
            "ws_path": f"/{slug}/{room_slug}/visits/{visit_id}/ws",
            "expert": await visitor_branding.expert_name(ctx, actor, room),
            "has_logo": await visitor_branding.has_logo(org.id),
            "phone": format_phone(phone),
        },
    )


visitor_router = Router(path="/", route_handlers=[join_page, join_again, join_submit, visit_page])
