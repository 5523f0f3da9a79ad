"""The visitor's pages: a room's join link ``/{org}/{room}`` → a short notice of what
is stored and for how long → the form (name; phone optional; consent) → the visit
page (device check, waiting room, call, ended). No account, no tracking (P3, P14)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from konsil.platform.core import errors
from konsil.platform.core.ratelimit import wait_in_words
from konsil.platform.core.region import region_of
from konsil.tenants import organisations, records, rooms, visits
from konsil.tenants.actors import source_address
from konsil.tenants.signaling import VISIT_COOKIE

Req = Request[Any, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)


class JoinForm(msgspec.Struct):
    name: str = ""
    phone: str = ""
    consent: str = ""


async def _org_and_room(slug: str, room_slug: str) -> tuple[records.Organisation, records.Room]:
    org = await organisations.get(slug)
    if org is None:
        raise errors.not_found("no such room")
    return org, await rooms.by_slug(org, room_slug)


def _join_page(
    request: Req,
    org: records.Organisation,
    room: records.Room,
    *,
    error: str | None = None,
    values: JoinForm | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    return Template(
        "join.html",
        context={
            "org": org,
            "room": room,
            "error": error,
            "values": values or JoinForm(),
            "region": region_of(request).region.id,
        },
        status_code=status,
        headers=headers,
    )


@get("/{slug:str}/{room_slug:str}", opt={"public": True}, include_in_schema=False)
async def join_page(request: Req, slug: str, room_slug: str) -> Template:
    org, room = await _org_and_room(slug, room_slug)
    return _join_page(request, org, room)


@post("/{slug:str}/{room_slug:str}/visits", opt={"public": True}, include_in_schema=False)
async def join_submit(request: Req, slug: str, room_slug: str, data: Annotated[JoinForm, Form]) -> Response[Any]:
    ctx = region_of(request)
    org, room = await _org_and_room(slug, room_slug)
    # Only spaces are trimmed: a control character anywhere is refused by the same
    # rule as every other text field (konsil.platform.core.text), not quietly cut off.
    raw = {"name": data.name.strip(" "), "consent": data.consent == "yes", "phone": data.phone.replace(" ", "") or None}
    try:
        form = msgspec.convert(raw, visits.VisitorForm)
    except msgspec.ValidationError as exc:
        field = str(exc).rsplit("$.", 1)[-1].rstrip("`") if "$." in str(exc) else ""
        message = {
            "name": "Please enter your name (up to 200 characters).",
            "phone": "Please enter the phone number with country code, e.g. +47 12345678, or leave it empty.",
        }.get(field, "Please check the form.")
        return _join_page(request, org, room, error=message, values=data, status=400)
    if not form.consent:
        return _join_page(
            request,
            org,
            room,
            values=data,
            status=400,
            error="Please agree to the processing described above to continue.",
        )
    try:
        ctx.limits.join(room.id, source_address(request))
    except errors.AppError as exc:
        wait = exc.headers.get("retry-after", "60")
        return _join_page(
            request,
            org,
            room,
            values=data,
            status=429,
            headers={"retry-after": wait},
            error=f"Too many people are joining right now. Please wait {wait_in_words(wait)} and send the form again.",
        )
    visit_id, token = await visits.arrive(ctx, org, room, form, source_address(request))
    path = f"/{slug}/{room_slug}/visits/{visit_id}"
    secure = ctx.region.public_url.startswith("https://")
    return Redirect(
        path,
        status_code=303,
        cookies=[Cookie(key=VISIT_COOKIE, value=token, path=path, httponly=True, samesite="strict", secure=secure)],
    )


@get("/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}", opt={"public": True}, include_in_schema=False)
async def visit_page(request: Req, slug: str, room_slug: str, visit_id: uuid.UUID) -> Template:
    org, room = await _org_and_room(slug, room_slug)
    await visits.visit_for_token(org, visit_id, request.cookies.get(VISIT_COOKIE))
    return Template(
        "visit.html",
        context={
            "org": org,
            "room": room,
            "visit_id": str(visit_id),
            "ws_path": f"/{slug}/{room_slug}/visits/{visit_id}/ws",
            "region": region_of(request).region.id,
        },
    )


visitor_router = Router(path="/", route_handlers=[join_page, join_submit, visit_page])
