"""The pages a person reaches from a mail, before they are logged in: asking for a
password-reset link (``/password-reset``), choosing the new password behind it
(``/password-reset/{token}``), and accepting an invitation (``/invitations/{token}``).

Forms carry a double-submit CSRF token (a cookie on the page's path and a hidden field).
Every message is in the person's language: the one they chose, else the language the
link was sent in, else their browser's. Form errors are shown all at once, each linked
to its field."""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from konsil.platform.core import errors
from konsil.platform.core.region import region_of
from konsil.platform.pages import i18n
from konsil.platform.pages.i18n import N_
from konsil.platform.pages.rendering import locale_of
from konsil.tenants import consent, invitations, password_reset
from konsil.tenants.actors import source_address
from konsil.tenants.api import session_cookie
from konsil.tenants.auth import start_session
from konsil.tenants.mails import ROLE_LABELS
from konsil.tenants.schemas import PASSWORD_PATTERN, Email, PersonName

FORM_CSRF_COOKIE = "konsil_form_csrf"
Req = Request[Any, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)
MIN_PASSWORD = 12
MAX_PASSWORD = 200


class ResetAskForm(msgspec.Struct):
    email: str = ""
    csrf: str = msgspec.field(default="", name="_csrf")


class NewPasswordForm(msgspec.Struct):
    password: str = ""
    confirm: str = ""
    csrf: str = msgspec.field(default="", name="_csrf")


class AcceptForm(msgspec.Struct):
    name: str = ""
    password: str = ""
    confirm: str = ""
    # The optional e-mails (tenants/consent.py): "yes" when ticked.
    onboarding_emails: Literal["", "yes"] = ""
    feature_emails: Literal["", "yes"] = ""
    csrf: str = msgspec.field(default="", name="_csrf")


FORM_EXPIRED = N_("Your form expired. Please try again.")
TOO_MANY = N_("Too many attempts. Please wait a minute, then try again.")


def _prefer(request: Req, language: str) -> None:
    """Show the page in ``language`` (the link's) unless the person chose one."""
    chosen = request.query_params.get(i18n.LANG_QUERY) or request.cookies.get(i18n.LANG_COOKIE)
    if chosen in i18n.LOCALES or language not in i18n.LOCALES:
        return
    request.scope.setdefault("state", {})["locale"] = language


def _page(
    request: Req,
    template: str,
    path: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Template:
    """A page with a fresh CSRF token in its form and in a cookie on ``path``."""
    token = secrets.token_urlsafe(24)
    secure = region_of(request).region.public_url.startswith("https://")
    return Template(
        template,
        context={"csrf": token, "errors": {}, **context},
        status_code=status,
        headers=headers,
        cookies=[Cookie(key=FORM_CSRF_COOKIE, value=token, httponly=True, samesite="strict", path=path, secure=secure)],
    )


def _csrf_ok(request: Req, sent: str) -> bool:
    cookie = request.cookies.get(FORM_CSRF_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie, sent)


def _password_errors(password: str, confirm: str) -> dict[str, str]:
    found: dict[str, str] = {}
    if len(password) < MIN_PASSWORD:
        found["password"] = N_("Choose a password of at least 12 characters.")
    elif len(password) > MAX_PASSWORD:
        found["password"] = N_("A password may have at most 200 characters.")
    elif not _fits(password, PASSWORD_PATTERN):
        found["password"] = N_("The password contains characters that cannot be typed, such as line breaks.")
    if "password" not in found and password != confirm:
        found["confirm"] = N_("The two passwords are not the same.")
    return found


def _fits(value: str, pattern: str) -> bool:
    return re.search(pattern, value) is not None


# --- password reset -------------------------------------------------------------------------

RESET_PATH = "/password-reset"


@get(RESET_PATH, opt={"public": True}, include_in_schema=False)
async def reset_page(request: Req) -> Template:
    return _page(request, "password_reset.html", RESET_PATH, state="ask", email="")


@post(RESET_PATH, opt={"public": True}, include_in_schema=False)
async def reset_ask(request: Req, data: Annotated[ResetAskForm, Form]) -> Template:
    """Always the same answer, whether or not the address belongs to a member."""
    if not _csrf_ok(request, data.csrf):
        return _page(request, "password_reset.html", RESET_PATH, 403, state="ask", email="", error=FORM_EXPIRED)
    email = data.email.strip()
    problem = None
    if not email:
        problem = N_("Enter your e-mail address.")
    else:
        try:
            msgspec.convert(email, Email)
        except msgspec.ValidationError:
            problem = N_("Enter an e-mail address like name@example.org.")
    if problem:
        return _page(
            request, "password_reset.html", RESET_PATH, 400, state="ask", email=email, errors={"email": problem}
        )
    ctx = region_of(request)
    try:
        ctx.limits.password_reset_source(source_address(request))
    except errors.AppError as exc:
        wait = exc.headers.get("retry-after", "60")
        headers = {"retry-after": wait}
        return _page(request, "password_reset.html", RESET_PATH, 429, headers, state="ask", email=email, error=TOO_MANY)
    password_reset.ask(ctx, email, locale_of(request), source_address(request))
    return _page(request, "password_reset.html", RESET_PATH, state="sent", email="")


def _reset_link_page(request: Req, token: str, state: str, status: int = 200, **context: Any) -> Template:
    if state not in ("valid", "done") and status == 200:
        status = 404 if state == "unknown" else 410
    return _page(request, "password_reset_new.html", RESET_PATH, status, state=state, token=token, **context)


@get(RESET_PATH + "/{token:str}", opt={"public": True}, include_in_schema=False)
async def reset_link(request: Req, token: str) -> Template:
    opened = await password_reset.open_link(token)
    _prefer(request, opened.language)
    return _reset_link_page(request, token, opened.state)


@post(RESET_PATH + "/{token:str}", opt={"public": True}, include_in_schema=False)
async def reset_set(request: Req, token: str, data: Annotated[NewPasswordForm, Form]) -> Template:
    opened = await password_reset.open_link(token)
    _prefer(request, opened.language)
    if opened.state != "valid":
        return _reset_link_page(request, token, opened.state)
    if not _csrf_ok(request, data.csrf):
        return _reset_link_page(request, token, "valid", 403, error=FORM_EXPIRED)
    found = _password_errors(data.password, data.confirm)
    if found:
        return _reset_link_page(request, token, "valid", 400, errors=found)
    try:
        org = await password_reset.complete(region_of(request), token, data.password, source_address(request))
    except password_reset.LinkNotValid as exc:
        return _reset_link_page(request, token, exc.state)
    return _reset_link_page(request, token, "done", org_name=org.name)


# --- invitations ----------------------------------------------------------------------------

INVITATION_PATH = "/invitations"


def _invitation_page(
    request: Req, token: str, opened: invitations.Opened, status: int = 200, **context: Any
) -> Template:
    invitation, org = opened.invitation, opened.organisation
    state = context.pop("state", opened.state)
    if state not in ("valid",) and status == 200:
        status = 404 if state == "unknown" else 409 if state == "member" else 410
    return _page(
        request,
        "invitation.html",
        INVITATION_PATH,
        status,
        state=state,
        token=token,
        org_name=org.name if org else "",
        role_name=ROLE_LABELS.get(invitation.role, "") if invitation else "",
        access_expires_at=invitation.access_expires_at if invitation else None,
        email=opened.email,
        values=context.pop("values", AcceptForm()),
        email_choices=invitations.EMAIL_CHOICES,
        wordings=consent.WORDINGS,
        names=consent.PURPOSE_NAMES,
        **context,
    )


@get(INVITATION_PATH + "/{token:str}", opt={"public": True}, include_in_schema=False)
async def invitation_page(request: Req, token: str) -> Template:
    opened = await invitations.open_link(region_of(request), token, source_address(request))
    if opened.invitation is not None:
        _prefer(request, opened.invitation.language)
    return _invitation_page(request, token, opened)


@post(INVITATION_PATH + "/{token:str}", opt={"public": True}, include_in_schema=False)
async def invitation_accept(request: Req, token: str, data: Annotated[AcceptForm, Form]) -> Response[Any]:
    ctx = region_of(request)
    opened = await invitations.open_link(ctx, token, source_address(request))
    if opened.invitation is not None:
        _prefer(request, opened.invitation.language)
    if opened.state != "valid":
        return _invitation_page(request, token, opened)
    values = AcceptForm(name=data.name, onboarding_emails=data.onboarding_emails, feature_emails=data.feature_emails)
    if not _csrf_ok(request, data.csrf):
        return _invitation_page(request, token, opened, 403, values=values, error=FORM_EXPIRED)
    name = data.name.strip(" ")
    found: dict[str, str] = {}
    if not name:
        found["name"] = N_("Enter your name.")
    else:
        try:
            msgspec.convert(name, PersonName)
        except msgspec.ValidationError:
            found["name"] = N_("Enter your name in up to 200 characters, without < or >.")
    found |= _password_errors(data.password, data.confirm)
    if found:
        return _invitation_page(request, token, opened, 400, values=values, errors=found)
    ticked = frozenset(purpose for purpose in invitations.EMAIL_CHOICES if getattr(data, purpose) == "yes")
    answer = invitations.Acceptance(name=name, password=data.password, emails=ticked, language=locale_of(request))
    try:
        member, org = await invitations.accept(ctx, token, answer, source_address(request))
    except invitations.LinkNotValid as exc:
        return _invitation_page(request, token, opened, state=exc.state)
    except errors.AppError as exc:
        if exc.code == "already_member":
            return _invitation_page(request, token, opened, state="member")
        if exc.status == 400:  # an auditor's access that ended before it was accepted
            return _invitation_page(request, token, opened, state="ended")
        raise
    cookie, _csrf = await start_session(ctx, member, source_address(request))
    # The portal goes on in the language the person accepted in (only the language is kept).
    language = Cookie(key=i18n.LANG_COOKIE, value=locale_of(request), path="/", max_age=365 * 24 * 3600, samesite="lax")
    return Redirect(f"/{org.slug}/portal", status_code=303, cookies=[session_cookie(ctx, request, cookie), language])


account_router = Router(
    path="/", route_handlers=[reset_page, reset_ask, reset_link, reset_set, invitation_page, invitation_accept]
)
