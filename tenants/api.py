"""The tenant API of a region service: organisation settings, members, rooms,
integration tokens, and member login. Handlers validate and call services."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.datastructures import Cookie
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from konsil.platform.core import errors
from konsil.platform.core.authz import MANAGERS, OWN_SESSION, PUBLIC, rule
from konsil.platform.core.keys.region_signing import KeySet
from konsil.platform.core.region import RegionContext, region_of
from konsil.platform.core.text import LINE_PATTERN
from konsil.tenants import api_tokens, logos, members, organisations, removal, rooms, visits
from konsil.tenants.actors import actor_of, source_address
from konsil.tenants.auth import SESSION_COOKIE, end_session, log_in, org_of, principal_of
from konsil.tenants.schemas import (
    LoginIn,
    LoginOut,
    LogoOut,
    MemberIn,
    MemberOut,
    MemberPatch,
    OrganisationOut,
    OrganisationPatch,
    RoomIn,
    RoomOut,
    RoomPatch,
    TokenCreated,
    TokenIn,
    TokenOut,
)

ALL_MEMBERS = ("owner", "admin", "expert", "auditor")
# Who reads the members and their roles: those who manage them, and auditors (each read
# of a member's personal data is access-logged, an auditor's as a compliance audit).
MEMBER_READERS = (*MANAGERS, "auditor")

Req = Request[Any, Any, Any]


def session_cookie(ctx: RegionContext, request: Req, value: str, max_age: int | None = None) -> Cookie:
    secure = ctx.region.public_url.startswith("https://") or request.url.scheme == "https"
    return Cookie(
        key=SESSION_COOKIE, value=value, httponly=True, samesite="lax", secure=secure, path="/", max_age=max_age
    )


# --- organisation ---------------------------------------------------------------------------


@get("/", opt=rule(*ALL_MEMBERS, scope="org:read"))
async def read_organisation(request: Req) -> OrganisationOut:
    return organisations.to_out(region_of(request), org_of(request))


@patch("/", opt=rule(*MANAGERS))
async def update_organisation(request: Req, data: OrganisationPatch) -> OrganisationOut:
    """Change the organisation's name, retention (1 to 90 days), contract end, the pages'
    default language (``locale``: en, nb, de, nl) or its ``country`` (ISO 3166-1 alpha-2:
    the supervisory authority its legal notices name; a region accepts the countries its
    legal texts know, e.g. NO, DK, SE, FI, DE, AT, NL, BE, IE, FR in the EU; empty for none)."""
    return await organisations.update(region_of(request), actor_of(request), org_of(request), data)


@dataclasses.dataclass
class _LogoUpload(Operation):
    """The logo upload's body in the OpenAPI document: raw image bytes (the handler reads
    them itself, so Litestar does not parse them as JSON)."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="The image's bytes (PNG, JPEG or WebP, at most 1 MB). Its format is read from its "
            "content; the content type sent and any file name are ignored.",
            content={
                "application/octet-stream": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
                )
            },
        )


@put(
    "/logo",
    opt={
        **rule(*MANAGERS),
        "errors": {
            400: "Not a PNG, JPEG or WebP image (`not_an_image`), an SVG (`svg_refused`), an empty body (`empty`) "
            "or more than 4096 pixels a side (`image_dimensions`); nothing was stored.",
            413: "The image is larger than 1 MB (`too_large`); nothing was stored.",
        },
    },
    status_code=HTTP_200_OK,
    operation_class=_LogoUpload,
)
async def upload_logo(request: Req) -> LogoOut:
    """Set or replace the organisation's logo, shown on its visitors' pages and served
    publicly at ``GET /{slug}/logo``. The body is the image's bytes; the whole image must
    decode; SVG is refused (it can carry scripts)."""
    data = await request.body()  # bounded by the service's max_body_bytes (1 MiB by default)
    return await logos.store(region_of(request), actor_of(request), org_of(request), data)


@get("/logo", opt=rule(*ALL_MEMBERS, scope="org:read"))
async def read_logo(request: Req) -> LogoOut:
    """The stored logo's facts (the image itself is at ``url``); 404 when there is none."""
    found = await logos.describe(org_of(request))
    if found is None:
        raise errors.not_found("this organisation has no logo")
    return found


@delete("/logo", opt=rule(*MANAGERS), status_code=HTTP_204_NO_CONTENT)
async def remove_logo(request: Req) -> None:
    """Remove the logo (visitors' pages then show the organisation's name alone)."""
    await logos.remove(region_of(request), actor_of(request), org_of(request))


class DeleteOrganisation(msgspec.Struct, forbid_unknown_fields=True):
    confirm: Annotated[
        str, msgspec.Meta(max_length=40, pattern=LINE_PATTERN, description="the organisation's slug, to confirm")
    ]


@post("/delete", opt=rule("owner"), status_code=HTTP_200_OK)
async def delete_organisation(request: Req, data: DeleteOrganisation) -> dict[str, Any]:
    """Delete the organisation for good: its key is destroyed first (crypto-shredding)."""
    org = org_of(request)
    if data.confirm != org.slug:
        raise errors.bad_request("confirm with the organisation's slug")
    removed = await removal.remove_organisation(region_of(request), actor_of(request), org.id)
    return {"deleted": True, "directory_updated": removed.directory_updated}


# --- members --------------------------------------------------------------------------------


@get("/members", opt=rule(*MEMBER_READERS, scope="members:read", personal_data="member"))
async def list_members(request: Req) -> list[MemberOut]:
    return await members.list_members(region_of(request), actor_of(request), org_of(request))


@post("/members", opt=rule(*MANAGERS, scope="members:write", personal_data="member"))
async def invite_member(request: Req, data: MemberIn) -> MemberOut:
    region_of(request).limits.invitation(org_of(request).id)
    return await members.invite(region_of(request), actor_of(request), org_of(request), data)


@get("/members/{member_id:uuid}", opt=rule(*MEMBER_READERS, scope="members:read", personal_data="member"))
async def read_member(request: Req, member_id: uuid.UUID) -> MemberOut:
    return await members.get(region_of(request), actor_of(request), org_of(request), member_id)


@patch("/members/{member_id:uuid}", opt=rule(*MANAGERS, scope="members:write", personal_data="member"))
async def change_member(request: Req, member_id: uuid.UUID, data: MemberPatch) -> MemberOut:
    return await members.change(region_of(request), actor_of(request), org_of(request), member_id, data)


@delete(
    "/members/{member_id:uuid}",
    opt=rule(*MANAGERS, scope="members:write", personal_data="member"),
    status_code=HTTP_204_NO_CONTENT,
)
async def remove_member(request: Req, member_id: uuid.UUID) -> None:
    await members.remove(region_of(request), actor_of(request), org_of(request).id, member_id)


# --- rooms ----------------------------------------------------------------------------------


@get("/rooms", opt=rule(*ALL_MEMBERS, scope="rooms:read"))
async def list_rooms(request: Req) -> list[RoomOut]:
    return await rooms.list_rooms(org_of(request))


@post("/rooms", opt=rule("owner", "admin", "expert", scope="rooms:write"))
async def create_room(request: Req, data: RoomIn) -> RoomOut:
    return await rooms.create(region_of(request), actor_of(request), principal_of(request), org_of(request), data)


@get("/rooms/{room_id:uuid}", opt=rule(*ALL_MEMBERS, scope="rooms:read"))
async def read_room(request: Req, room_id: uuid.UUID) -> RoomOut:
    return rooms.to_out(org_of(request), await rooms.get(org_of(request), room_id))


@patch("/rooms/{room_id:uuid}", opt=rule("owner", "admin", "expert", scope="rooms:write"))
async def change_room(request: Req, room_id: uuid.UUID, data: RoomPatch) -> RoomOut:
    """Rename a room (``title``), set the ``welcome_text`` its visitors read in the waiting
    room (plain text, at most 500 characters; line breaks kept), or give it to another
    expert of the organisation (``expert_id``; owners and admins only). Experts change
    their own rooms only. The room's address (``slug``) does not change: links already
    sent keep working."""
    return await rooms.change(
        region_of(request), actor_of(request), principal_of(request), org_of(request), room_id, data
    )


@delete(
    "/rooms/{room_id:uuid}", opt=rule("owner", "admin", "expert", scope="rooms:write"), status_code=HTTP_204_NO_CONTENT
)
async def remove_room(request: Req, room_id: uuid.UUID) -> None:
    await rooms.remove(region_of(request), actor_of(request), principal_of(request), org_of(request), room_id)


# --- visits and calls (the expert's dashboard) ----------------------------------------------

EXPERTS = ("owner", "admin", "expert")


@get("/visits/waiting", opt=rule(*EXPERTS, personal_data="visit"))
async def waiting_visits(request: Req) -> list[visits.WaitingVisit]:
    """Visitors waiting in your rooms (all rooms for owners and admins)."""
    principal = principal_of(request)
    return await visits.waiting_list(
        region_of(request), actor_of(request), org_of(request), principal.id, principal.role
    )


@get("/visits/{visit_id:uuid}", opt=rule(*EXPERTS, personal_data="visit"))
async def open_visit(request: Req, visit_id: uuid.UUID) -> visits.WaitingVisit:
    """One visit of your rooms (an access-logged read of the visitor's data)."""
    principal = principal_of(request)
    return await visits.open_visit(
        region_of(request), actor_of(request), org_of(request), visit_id, principal.id, principal.role
    )


@post("/visits/{visit_id:uuid}/admit", opt=rule(*EXPERTS, personal_data="visit"), status_code=HTTP_200_OK)
async def admit_visit(request: Req, visit_id: uuid.UUID) -> visits.CallOut:
    """Let a waiting visitor in: the call starts. 503 when the call could not connect
    (relay only, and no healthy relay in the region): the visitor keeps waiting."""
    principal = principal_of(request)
    return await visits.admit(
        region_of(request), actor_of(request), org_of(request), visit_id, principal.id, principal.role
    )


@get("/calls/today", opt=rule(*EXPERTS, personal_data="call"))
async def calls_today(request: Req, since: dt.datetime | None = None) -> list[visits.CallOut]:
    """Today's calls in your rooms, with start, end, duration and the visitor's name
    (each name shown is an access-logged read of the visit). ``since`` is the start of
    the caller's day (the browser's local midnight); default UTC midnight."""
    principal = principal_of(request)
    if since is not None and since.tzinfo is None:
        raise errors.bad_request("since needs a time zone, e.g. 2026-11-28T00:00:00+01:00")
    now = dt.datetime.now(dt.UTC)
    if since is not None and not (now - dt.timedelta(hours=38) <= since <= now):
        raise errors.bad_request("since must be within the last day")
    return await visits.calls_today(
        region_of(request), actor_of(request), org_of(request), principal.id, principal.role, since
    )


@get("/calls/{call_id:uuid}/receipt", opt=rule("owner", "admin", "expert", "auditor", personal_data="call"))
async def call_receipt(request: Req, call_id: uuid.UUID) -> visits.ReceiptOut:
    """The call's signed residency receipt: the region and relays that carried it."""
    principal = principal_of(request)
    org = org_of(request)
    # Auditors see every call's receipt, as owners and admins do; experts their own.
    role = "admin" if principal.role == "auditor" else principal.role
    call = await visits.call_for_member(org, call_id, principal.id, role)
    return await visits.receipt_of(region_of(request), org, call)


@post("/calls/{call_id:uuid}/end", opt=rule(*EXPERTS, personal_data="call"), status_code=HTTP_200_OK)
async def end_call(request: Req, call_id: uuid.UUID) -> dict[str, Any]:
    principal = principal_of(request)
    org = org_of(request)
    await visits.call_for_member(org, call_id, principal.id, principal.role)
    ended = await visits.end_call(region_of(request), actor_of(request), org.id, call_id)
    return {"ended": True, "duration_seconds": ended.duration_seconds if ended else None}


# --- integration tokens (members only: a token cannot mint tokens) --------------------------


@get("/tokens", opt=rule(*MANAGERS))
async def list_tokens(request: Req) -> list[TokenOut]:
    return await api_tokens.list_tokens(org_of(request))


@post("/tokens", opt=rule(*MANAGERS))
async def issue_token(request: Req, data: TokenIn) -> TokenCreated:
    return await api_tokens.issue(region_of(request), actor_of(request), principal_of(request), org_of(request), data)


@delete("/tokens/{token_id:uuid}", opt=rule(*MANAGERS), status_code=HTTP_204_NO_CONTENT)
async def revoke_token(request: Req, token_id: uuid.UUID) -> None:
    await api_tokens.revoke(region_of(request), actor_of(request), org_of(request), token_id)


# --- member sessions ------------------------------------------------------------------------


async def _login(request: Req, data: LoginIn, org_slug: str | None) -> Response[Any]:
    ctx = region_of(request)
    found = await log_in(ctx, data.email, data.password, org_slug, source_address(request))
    if isinstance(found, list):
        return Response(
            {
                "error": "choose_organisation",
                "message": "this login opens several organisations",
                "organisations": found,
            },
            status_code=409,
        )
    body = LoginOut(
        organisation=found.organisation.slug,
        member_id=found.member.id,
        role=found.member.role,
        csrf_token=found.csrf_token,
    )
    return Response(body, status_code=HTTP_200_OK, cookies=[session_cookie(ctx, request, found.cookie)])


# Public, and answers 401 to a wrong password (documented in the OpenAPI document).
PUBLIC_LOGIN = {**PUBLIC, "errors": {401: "The e-mail address or password is wrong."}}


@post("/auth/login", opt=PUBLIC_LOGIN, status_code=HTTP_200_OK)
async def org_login(request: Req, slug: str, data: LoginIn) -> Response[Any]:
    return await _login(request, data, slug)


@post("/api/v1/login", opt=PUBLIC_LOGIN, status_code=HTTP_200_OK)
async def region_login(request: Req, data: LoginIn) -> Response[Any]:
    return await _login(request, data, data.organisation)


@get("/auth/me", opt=rule(*ALL_MEMBERS))
async def who_am_i(request: Req) -> dict[str, Any]:
    principal = principal_of(request)
    return {"organisation": org_of(request).slug, "member_id": str(principal.id), "role": principal.role}


@post("/auth/logout", opt={**rule(*ALL_MEMBERS), **OWN_SESSION}, status_code=HTTP_200_OK)
async def logout(request: Req) -> Response[Any]:
    principal = principal_of(request)
    if principal.session_id:
        await end_session(principal.session_id)
    return Response({"ok": True}, cookies=[session_cookie(region_of(request), request, "", max_age=0)])


KEY_SET_PATH = "/.well-known/konsil/keys"


@get(KEY_SET_PATH, opt=PUBLIC)
async def region_keys(request: Req) -> Response[KeySet]:
    """The region's public signing keys (JWK-shaped, RFC 8037): the current one and every
    retired one, each with its id, so anything the region ever signed (residency receipts,
    access-log checkpoints, evidence manifests, deletion certificates) can be checked
    with them alone (docs/verifying.md). Caches may keep it a minute."""
    key_set = await region_of(request).signer.key_set()
    return Response(key_set, headers={"cache-control": "public, max-age=60"})


@get("/.well-known/konsil/receipt-key", opt=PUBLIC)
async def receipt_key(request: Req) -> dict[str, str]:
    """The region's current signing key alone (Ed25519, standard base64, with its id);
    receipts signed before a rotation need the key set at ``KEY_SET_PATH``."""
    current = (await region_of(request).signer.key_set()).current()
    raw = base64.urlsafe_b64decode(current.x + "=" * (-len(current.x) % 4))
    return {
        "region": region_of(request).region.id,
        "algorithm": "Ed25519",
        "kid": current.kid,
        "public_key": base64.b64encode(raw).decode(),
        "key_set": KEY_SET_PATH,
    }


org_router = Router(
    path="/api/v1/orgs/{slug:str}",
    route_handlers=[
        read_organisation,
        update_organisation,
        upload_logo,
        read_logo,
        remove_logo,
        delete_organisation,
        list_members,
        invite_member,
        read_member,
        change_member,
        remove_member,
        list_rooms,
        create_room,
        read_room,
        change_room,
        remove_room,
        waiting_visits,
        open_visit,
        admit_visit,
        calls_today,
        call_receipt,
        end_call,
        list_tokens,
        issue_token,
        revoke_token,
        org_login,
        who_am_i,
        logout,
    ],
    tags=["tenant"],
)
region_login_router = Router(path="/", route_handlers=[region_login, region_keys, receipt_key], tags=["login"])

__all__ = ["errors", "org_router", "region_login_router"]
