"""The members administration page of the portal (``/{slug}/portal/members``), for
owners and admins: the members with their roles, inviting by e-mail, the pending
invitations (send again, revoke), changing a role or an auditor's end of access, and
removing a member. The page works without its script (plain forms, each answered with
the page again); ``members.js`` adds confirmations and the auditor's date field.

Every view reads the members' and invitees' personal data through the same services as
the API, so each view is access-logged the same way; every change goes through the
member and invitation services and their rules (only an owner gives the owner, admin
and auditor roles; an organisation keeps at least one owner)."""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from konsil.platform.core import clock, errors
from konsil.platform.core.authz import MANAGERS, rule
from konsil.platform.core.region import region_of
from konsil.platform.pages.i18n import LANGUAGE_NAMES, LOCALES, N_
from konsil.platform.pages.rendering import locale_of
from konsil.tenants import invitations, members, records
from konsil.tenants.actors import actor_of
from konsil.tenants.auth import Principal
from konsil.tenants.invitations import InvitationIn
from konsil.tenants.mails import ROLE_LABELS
from konsil.tenants.pages import CsrfForm
from konsil.tenants.schemas import Email, MemberPatch
from konsil.tenants.tables import Member

Req = Request[Any, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)
PAGE = {**rule(*MANAGERS, personal_data="member"), "page": True}
FORM = {**PAGE, "csrf": "form"}

NOTICES = {
    "invited": N_("The invitation was sent."),
    "resent": N_("The invitation was sent again with a new link. The previous link no longer works."),
    "revoked": N_("The invitation was revoked. Its link no longer works."),
    "role": N_("The change was saved."),
    "unchanged": N_("Nothing was changed."),
    "removed": N_("The member was removed. Their sessions have ended."),
}
# Outcomes that went through but need the person's attention.
WARNINGS = {
    "invited_unsent": N_(
        "The invitation was saved, but the e-mail could not be sent. It stays valid: use “Send again” later."
    ),
    "resent_unsent": N_("The e-mail could not be sent. The invitation stays valid: try “Send again” later."),
}
IN_WORDS = {
    "last_owner": N_("An organisation keeps at least one owner. Make another member an owner first, then try again."),
    "member_has_rooms": N_(
        "This member still has rooms. Delete their rooms or give them to another expert first, then try again."
    ),
    "already_member": N_("This e-mail address already belongs to a member of the organisation."),
    "already_invited": N_("This e-mail address already has a pending invitation. Send it again or revoke it below."),
    "forbidden": N_("Only an owner can do this."),
    "not_found": N_("This member or invitation no longer exists. The lists below are up to date."),
    "too_many_requests": N_("Too many invitations in a short time. Please wait a minute, then try again."),
}
SOMETHING_WRONG = N_("That did not work. Reload the page and try again.")
ACCESS_END = N_("Choose the last day of the auditor's access: a day within the coming year.")
FORM_EXPIRED = N_("Your form expired. Reload the page and try again.")
# What a change that was refused comes back with (``?error=``: a code, never personal data).
ERRORS = {**IN_WORDS, "access_end": ACCESS_END, "form_expired": FORM_EXPIRED, "failed": SOMETHING_WRONG}


class InviteForm(msgspec.Struct):
    email: str = ""
    role: str = ""
    access_until: str = ""
    tz_offset: str = ""
    language: str = ""
    csrf: str = msgspec.field(default="", name="_csrf")


class RoleForm(msgspec.Struct):
    role: str = ""
    access_until: str = ""
    tz_offset: str = ""
    csrf: str = msgspec.field(default="", name="_csrf")


def _org(request: Req) -> records.Organisation:
    org: records.Organisation = request.scope["state"]["org"]
    return org


def _principal(request: Req) -> Principal:
    principal: Principal = request.scope["state"]["principal"]
    return principal


def _csrf_ok(request: Req, sent: str) -> bool:
    expected = _principal(request).csrf_token
    return bool(expected) and hmac.compare_digest(expected or "", sent)


def grantable(role: str) -> list[str]:
    """The roles a member with ``role`` may give (members.check_grant)."""
    return ["owner", "admin", "expert", "auditor"] if role == "owner" else ["expert"]


def _row(member: Any, principal: Principal) -> dict[str, Any]:
    may_touch = principal.role == "owner" or member.role not in members.MANAGER_ROLES
    choices = [r for r in ("owner", "admin", "expert", "auditor") if r == member.role or r in grantable(principal.role)]
    return {
        "m": member,
        "is_self": member.id == principal.id,
        "may_remove": may_touch,
        # A role form when there is something to choose, or an auditor's end to move (owners).
        "choices": choices if may_touch and (len(choices) > 1 or member.role == "auditor") else [],
        "may_set_end": principal.role == "owner",
    }


def access_end(day: str, tz_offset: str, now: dt.datetime) -> dt.datetime | None:
    """The end of an auditor's access chosen as a day: the end of that day (23:59) where
    the person is (``tz_offset``: the browser's minutes behind UTC, as
    ``Date.getTimezoneOffset`` gives; UTC without it). None when it is no day within
    the coming year."""
    try:
        chosen = dt.date.fromisoformat(day.strip())
        offset = max(-14 * 60, min(14 * 60, int(tz_offset))) if tz_offset.strip() else 0
    except ValueError:
        return None
    end = dt.datetime.combine(chosen, dt.time(23, 59), tzinfo=dt.UTC) + dt.timedelta(minutes=offset)
    if end <= now or end > now + members.MAX_AUDITOR_ACCESS:
        return None
    return end


async def _render(
    request: Req,
    *,
    status: int = 200,
    error: str | None = None,
    invite_errors: dict[str, str] | None = None,
    invite_values: InviteForm | None = None,
) -> Template:
    ctx, org, principal = region_of(request), _org(request), _principal(request)
    actor = actor_of(request)
    shown = await members.list_members(ctx, actor, org)
    pending = await invitations.list_pending(ctx, actor, org)
    done = request.query_params.get("done", "") if status == 200 and not error else ""
    if status == 200 and not error:
        error = ERRORS.get(request.query_params.get("error", ""))
    today = clock.now().date()
    values = invite_values or InviteForm(language=locale_of(request))
    return Template(
        "members.html",
        context={
            "org_name": org.name,
            "slug": org.slug,
            "role": principal.role,
            "nav": "members",
            "csrf": principal.csrf_token,
            "rows": [_row(m, principal) for m in shown],
            "invitations": pending,
            "invite_roles": [r for r in grantable(principal.role) if r in invitations.INVITABLE_ROLES],
            "role_labels": ROLE_LABELS,
            "languages": LANGUAGE_NAMES,
            "values": values,
            "invite_errors": invite_errors or {},
            "notice": NOTICES.get(done),
            "warning": WARNINGS.get(done),
            "error": error,
            "min_day": (today + dt.timedelta(days=1)).isoformat(),
            "max_day": (today + dt.timedelta(days=364)).isoformat(),
        },
        status_code=status,
    )


def _done(request: Req, what: str, anchor: str = "") -> Redirect:
    return Redirect(f"/{_org(request).slug}/portal/members?done={what}{anchor}", status_code=303)


def _error_code(exc: errors.AppError) -> str:
    if exc.code in IN_WORDS:
        return exc.code
    if exc.status == 400 and "access_expires_at" in exc.message:
        return "access_end"
    return "failed"


def _in_words(exc: errors.AppError) -> str:
    return ERRORS[_error_code(exc)]


def _refused(request: Req, code: str) -> Redirect:
    """Back to the page, saying why (after a post, so that reloading or choosing another
    language does not send the form again)."""
    return Redirect(f"/{_org(request).slug}/portal/members?error={code}", status_code=303)


@get("/{slug:str}/portal/members", opt=PAGE, include_in_schema=False)
async def members_page(request: Req) -> Template:
    return await _render(request)


@get("/{slug:str}/portal/members/invite", opt=PAGE, include_in_schema=False)
async def invite_page(request: Req) -> Redirect:
    """Where the invite form's answer lives: opened again (another language, a reload
    after the answer), it is the members page."""
    lang = request.query_params.get("lang", "")
    return Redirect(
        f"/{_org(request).slug}/portal/members" + (f"?lang={lang}" if lang in LOCALES else ""), status_code=303
    )


@post("/{slug:str}/portal/members/invite", opt=FORM, include_in_schema=False)
async def invite_submit(request: Req, data: Annotated[InviteForm, Form]) -> Response[Any]:
    if not _csrf_ok(request, data.csrf):
        return await _render(request, status=403, error=FORM_EXPIRED)
    ctx, org, principal = region_of(request), _org(request), _principal(request)
    found: dict[str, str] = {}
    email = data.email.strip()
    if not email:
        found["email"] = N_("Enter the e-mail address of the person to invite.")
    else:
        try:
            msgspec.convert(email, Email)
        except msgspec.ValidationError:
            found["email"] = N_("Enter an e-mail address like name@example.org.")
    if data.role not in grantable(principal.role) or data.role not in invitations.INVITABLE_ROLES:
        found["role"] = N_("Choose a role.")
    end = None
    if data.role == "auditor":
        end = access_end(data.access_until, data.tz_offset, clock.now())
        if end is None:
            found["access_until"] = ACCESS_END
    values = msgspec.structs.replace(data, email=email, csrf="")
    if found:
        return await _render(request, status=400, invite_errors=found, invite_values=values)
    language = data.language if data.language in LOCALES else locale_of(request)
    new = InvitationIn(email=email, role=data.role, access_expires_at=end, language=language)  # type: ignore[arg-type]
    try:
        ctx.limits.invitation(org.id)
        made = await invitations.create(ctx, actor_of(request), org, new)
    except errors.AppError as exc:
        if exc.status >= 500:
            raise
        field = "email" if exc.code in ("already_member", "already_invited") else "form"
        return await _render(request, status=exc.status, invite_errors={field: _in_words(exc)}, invite_values=values)
    return _done(request, "invited" if made.mail_sent else "invited_unsent", "#invitations")


@post("/{slug:str}/portal/invitations/{invitation_id:uuid}/resend", opt=FORM, include_in_schema=False)
async def resend_submit(request: Req, invitation_id: uuid.UUID, data: Annotated[CsrfForm, Form]) -> Response[Any]:
    if not _csrf_ok(request, data.csrf):
        return _refused(request, "form_expired")
    ctx, org = region_of(request), _org(request)
    try:
        ctx.limits.invitation(org.id)
        made = await invitations.resend(ctx, actor_of(request), org, invitation_id)
    except errors.AppError as exc:
        if exc.status >= 500:
            raise
        return _refused(request, _error_code(exc))
    return _done(request, "resent" if made.mail_sent else "resent_unsent", "#invitations")


@post("/{slug:str}/portal/invitations/{invitation_id:uuid}/revoke", opt=FORM, include_in_schema=False)
async def revoke_submit(request: Req, invitation_id: uuid.UUID, data: Annotated[CsrfForm, Form]) -> Response[Any]:
    if not _csrf_ok(request, data.csrf):
        return _refused(request, "form_expired")
    try:
        await invitations.revoke(region_of(request), actor_of(request), _org(request), invitation_id)
    except errors.AppError as exc:
        if exc.status >= 500:
            raise
        return _refused(request, _error_code(exc))
    return _done(request, "revoked", "#invitations")


@post("/{slug:str}/portal/members/{member_id:uuid}/role", opt=FORM, include_in_schema=False)
async def role_submit(request: Req, member_id: uuid.UUID, data: Annotated[RoleForm, Form]) -> Response[Any]:
    if not _csrf_ok(request, data.csrf):
        return _refused(request, "form_expired")
    ctx, org = region_of(request), _org(request)
    if data.role not in ("owner", "admin", "expert", "auditor"):
        return _refused(request, "failed")
    patch = MemberPatch(role=data.role)  # type: ignore[arg-type]
    if data.role == "auditor":
        end = access_end(data.access_until, data.tz_offset, clock.now())
        if end is None:
            return _refused(request, "access_end")
        patch = MemberPatch(role="auditor", access_expires_at=end)
    current = await Member.select(Member.role).where((Member.id == member_id) & (Member.org_id == org.id)).first().run()
    if current is not None and current["role"] == data.role and data.role != "auditor":
        return _done(request, "unchanged")
    try:
        await members.change(ctx, actor_of(request), org, member_id, patch)
    except errors.AppError as exc:
        if exc.status >= 500:
            raise
        return _refused(request, _error_code(exc))
    return _done(request, "role")


@post("/{slug:str}/portal/members/{member_id:uuid}/remove", opt=FORM, include_in_schema=False)
async def remove_submit(request: Req, member_id: uuid.UUID, data: Annotated[CsrfForm, Form]) -> Response[Any]:
    if not _csrf_ok(request, data.csrf):
        return _refused(request, "form_expired")
    try:
        await members.remove(region_of(request), actor_of(request), _org(request).id, member_id)
    except errors.AppError as exc:
        if exc.status >= 500:
            raise
        return _refused(request, _error_code(exc))
    if member_id == _principal(request).id:  # they removed themselves: their session is gone
        return Redirect("/login", status_code=303)
    return _done(request, "removed")


members_pages_router = Router(
    path="/",
    route_handlers=[members_page, invite_page, invite_submit, resend_submit, revoke_submit, role_submit, remove_submit],
)
