"""The control plane's pages for people: what Konsil is (``/``), signing an organisation
up (``/signup``) and finding where to log in (``/login``). They work without scripts
(plain forms answered on the server); ``/static/signup.js`` only suggests the web
address from the name and narrows the countries to the region chosen.

Signup calls the same service as ``POST /api/v1/signup`` and then sends the browser
(303) to the owner's one-time sign-in link in their region, so they land in their
portal logged in. Login asks login discovery on the server and sends the person (303)
to their region's login page; no e-mail address or other personal data is ever put in
a URL. Forms carry a double-submit CSRF token (a cookie and a hidden field).
"""

from __future__ import annotations

import hmac
import re
import secrets
import unicodedata
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from konsil.platform.control import discovery, signup
from konsil.platform.control.context import ControlContext
from konsil.platform.control.tables import DirectoryOrganisation
from konsil.platform.core import errors
from konsil.platform.core.authz import PUBLIC
from konsil.platform.core.lookup import normalise_email
from konsil.platform.core.text import Email
from konsil.platform.core.web import SECURITY_HEADERS
from konsil.platform.pages import i18n, jurisdictions
from konsil.platform.pages.rendering import locale_of, tr

Req = Request[Any, Any, Any]
Form = Body(media_type=RequestEncodingType.URL_ENCODED)
SIGNUP_CSRF_COOKIE = "konsil_signup_csrf"
LOGIN_CSRF_COOKIE = "konsil_find_login_csrf"
MIN_PASSWORD = 12
MAX_PASSWORD = 200
_SLUG = re.compile(signup.SLUG_PATTERN)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The country an organisation most likely has, by the language its owner reads.
_COUNTRY_OF_LOCALE = {"nb": "NO", "de": "DE", "nl": "NL"}
# Letters that Unicode does not decompose into a base letter and a mark.
_TRANSLITERATE = str.maketrans({"æ": "ae", "ø": "o", "å": "a", "ß": "ss", "œ": "oe", "ð": "d", "þ": "th", "ł": "l"})


class SignupForm(msgspec.Struct):
    """The signup form as posted (raw strings: each is checked and answered in words)."""

    name: str = ""
    slug: str = ""
    region: str = ""
    country: str = ""
    locale: str = ""
    owner_name: str = ""
    email: str = ""
    password: str = ""
    csrf: str = msgspec.field(default="", name="_csrf")


class FindLoginForm(msgspec.Struct):
    email: str = ""
    csrf: str = msgspec.field(default="", name="_csrf")


class RegionChoice(msgspec.Struct, frozen=True):
    id: str
    words: jurisdictions.RegionWords
    countries: list[tuple[str, str]]  # (code, name in the page's language)
    login_url: str = ""


# --- helpers ----------------------------------------------------------------------------------


def control_of(request: Req) -> ControlContext:
    ctx: ControlContext = request.app.state.control
    return ctx


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_headers(ctx: ControlContext) -> dict[str, str]:
    """The pages' CSP, with the regions' addresses as places a form may lead to: signup
    and login answer a form with a redirect to a region (Chromium checks form-action on
    the redirect too)."""
    regions = " ".join(sorted({origin(r.public_url) for r in ctx.regions.values()}))
    policy = SECURITY_HEADERS["content-security-policy"].replace("form-action 'self'", f"form-action 'self' {regions}")
    return {"content-security-policy": policy, "cache-control": "no-store"}


def suggest_slug(name: str) -> str:
    """A web address from an organisation's name: "Legesenteret Ås" -> "legesenteret-as"."""
    text = unicodedata.normalize("NFKD", name.lower().translate(_TRANSLITERATE))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40].strip("-")
    return text if len(text) >= 3 else ""


def country_names(locale: str, codes: list[str]) -> list[tuple[str, str]]:
    territories = i18n.babel_locale(locale).territories
    named = [(code, str(territories.get(code, code))) for code in codes]
    return sorted(named, key=lambda item: item[1])


def region_choices(ctx: ControlContext, locale: str) -> list[RegionChoice]:
    choices = []
    for region_id in sorted(ctx.regions):
        region = ctx.regions[region_id]
        choices.append(
            RegionChoice(
                id=region_id,
                words=jurisdictions.words(region_id, region.jurisdiction),
                countries=country_names(locale, signup.countries_of(ctx, region_id)),
                login_url=f"{region.public_url.rstrip('/')}/login",
            )
        )
    # The EU first, then the US, then any other (the order people expect on a European site).
    order = {"eu": 0, "us": 1, "": 2}
    return sorted(choices, key=lambda c: (order[c.words.kind], c.id))


def wait_words(request: Req, retry_after: str) -> str:
    seconds = int(retry_after) if retry_after.isdigit() else 60
    if seconds < 90:
        return i18n.ngettext(locale_of(request), "%(num)d second", "%(num)d seconds", seconds)
    return i18n.ngettext(locale_of(request), "about %(num)d minute", "about %(num)d minutes", -(-seconds // 60))


def _csrf_cookie(name: str, path: str, value: str, request: Req) -> Cookie:
    secure = control_of(request).settings.control.public_url.startswith("https://")
    return Cookie(key=name, value=value, httponly=True, samesite="strict", path=path, secure=secure)


def _csrf_ok(request: Req, cookie_name: str, sent: str) -> bool:
    cookie = request.cookies.get(cookie_name, "")
    return bool(cookie) and hmac.compare_digest(cookie, sent)


# --- the landing page -------------------------------------------------------------------------


@get("/", opt=PUBLIC, include_in_schema=False)
async def home(request: Req) -> Template:
    ctx = control_of(request)
    return Template(
        "home.html",
        context={"regions": region_choices(ctx, locale_of(request))},
        headers=page_headers(ctx),
    )


# --- signup -----------------------------------------------------------------------------------


def _signup_page(
    request: Req,
    form: SignupForm | None = None,
    problems: dict[str, str] | None = None,
    general: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    ctx = control_of(request)
    locale = locale_of(request)
    token = secrets.token_urlsafe(24)
    values = form or SignupForm(locale=locale, country=_COUNTRY_OF_LOCALE.get(locale, ""))
    return Template(
        "signup.html",
        context={
            "csrf": token,
            "form": values,
            "problems": problems or {},
            "general": general,
            "regions": region_choices(ctx, locale),
            "min_password": MIN_PASSWORD,
            "locales": i18n.LANGUAGE_NAMES,
        },
        status_code=status,
        headers={**page_headers(ctx), **(headers or {})},
        cookies=[_csrf_cookie(SIGNUP_CSRF_COOKIE, "/signup", token, request)],
    )


@get("/signup", opt=PUBLIC, include_in_schema=False)
async def signup_page(request: Req) -> Template:
    return _signup_page(request)


def _is(value: str, kind: Any) -> bool:
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return False
    return True


async def check_signup(request: Req, form: SignupForm) -> dict[str, str]:
    """Every problem of the form at once, by field, in the person's words."""
    ctx = control_of(request)
    problems: dict[str, str] = {}
    if not form.name:
        problems["name"] = tr(request, "Enter the name of your organisation.")
    elif not _is(form.name, signup.OrgName):
        problems["name"] = tr(request, "Use 2 to 200 characters, without < or >.")
    if not form.slug:
        problems["slug"] = tr(request, "Choose a web address for your organisation.")
    elif not _SLUG.match(form.slug):
        problems["slug"] = tr(
            request, "Use 3 to 40 lower-case letters, digits and hyphens, starting and ending with a letter or digit."
        )
    elif form.slug in signup.RESERVED_SLUGS:
        problems["slug"] = tr(request, "This web address is reserved. Please choose another one.")
    elif await DirectoryOrganisation.exists().where(DirectoryOrganisation.slug == form.slug).run():
        problems["slug"] = tr(request, "This web address is already taken. Please choose another one.")
    if form.region not in ctx.regions:
        problems["region"] = (
            tr(request, "Choose where your organisation's data is kept.")
            if not form.region
            else tr(request, "This region is not offered. Please choose one of those listed.")
        )
    else:
        allowed = signup.countries_of(ctx, form.region)
        if allowed and not form.country:
            problems["country"] = tr(request, "Choose the country of your organisation.")
        elif allowed and form.country not in allowed:
            problems["country"] = tr(request, "This country is not in the region you chose.")
        elif not allowed and form.country:
            problems["country"] = tr(request, "Leave the country empty for this region.")
    if form.locale not in i18n.LOCALES:
        problems["locale"] = tr(request, "Choose one of the languages listed.")
    if not form.owner_name:
        problems["owner_name"] = tr(request, "Enter your name.")
    elif not _is(form.owner_name, signup.PersonName):
        problems["owner_name"] = tr(request, "Use at most 200 characters, without < or >.")
    if not form.email:
        problems["email"] = tr(request, "Enter your e-mail address.")
    elif not _is(form.email, Email):
        problems["email"] = tr(request, "That is not a valid e-mail address.")
    if len(form.password) < MIN_PASSWORD:
        problems["password"] = tr(
            request, "The password is too weak: use at least %(count)d characters.", count=MIN_PASSWORD
        )
    elif len(form.password) > MAX_PASSWORD:
        problems["password"] = tr(request, "Use at most %(count)d characters.", count=MAX_PASSWORD)
    elif _CONTROLS.search(form.password):
        problems["password"] = tr(request, "The password cannot contain control characters.")
    elif form.password.strip().lower() in {form.email.lower(), form.slug, form.name.lower(), form.owner_name.lower()}:
        problems["password"] = tr(request, "The password is too weak: do not use your name or e-mail address.")
    return problems


def _cleaned(form: SignupForm) -> SignupForm:
    name = form.name.strip()
    slug = form.slug.strip().lower() or suggest_slug(name)
    region = form.region.strip()
    country = form.country.strip().upper()
    return msgspec.structs.replace(
        form,
        name=name,
        slug=slug,
        region=region,
        country=country,
        locale=form.locale.strip(),
        owner_name=form.owner_name.strip(),
        email=form.email.strip(),
    )


def _as_signup(form: SignupForm) -> signup.SignupIn:
    return msgspec.convert(
        {
            "region": form.region,
            "organisation": {"name": form.name, "slug": form.slug, "locale": form.locale, "country": form.country},
            "owner": {"name": form.owner_name, "email": form.email, "password": form.password},
        },
        signup.SignupIn,
    )


@post("/signup", opt=PUBLIC, include_in_schema=False)
async def signup_submit(request: Req, data: Annotated[SignupForm, Form]) -> Response[Any]:
    ctx = control_of(request)
    form = _cleaned(data)
    shown = msgspec.structs.replace(form, password="")  # never sent back to the browser
    if not _csrf_ok(request, SIGNUP_CSRF_COOKIE, data.csrf):
        return _signup_page(request, shown, general=tr(request, "Your form expired. Please try again."), status=403)
    # With one country in the region (the US), it needs no choosing.
    allowed = signup.countries_of(ctx, form.region)
    if not form.country and len(allowed) == 1:
        form = msgspec.structs.replace(form, country=allowed[0])
        shown = msgspec.structs.replace(shown, country=allowed[0])
    problems = await check_signup(request, form)
    if problems:
        return _signup_page(request, shown, problems, status=400)
    try:
        ctx.signups_per_address.hit(request.client.host if request.client else "unknown")
        created = await signup.create(ctx, _as_signup(form))
    except errors.AppError as exc:
        return _refused(request, shown, exc)
    except msgspec.ValidationError:
        return _signup_page(request, shown, general=tr(request, "Please check the form and try again."), status=400)
    # The language read here goes with the person (it is no personal data).
    return Redirect(f"{created.next_url}?lang={locale_of(request)}", status_code=303, headers=page_headers(ctx))


def _refused(request: Req, shown: SignupForm, exc: errors.AppError) -> Template:
    """What the signup service refused, in the person's words (nothing was created)."""
    message = exc.message.lower()
    if exc.status == 409 and "taken" in message:
        problems = {"slug": tr(request, "This web address is already taken. Please choose another one.")}
        return _signup_page(request, shown, problems, status=409)
    if exc.status == 409 and "reserved" in message:
        problems = {"slug": tr(request, "This web address is reserved. Please choose another one.")}
        return _signup_page(request, shown, problems, status=409)
    if exc.status == 429:
        wait = exc.headers.get("retry-after", "60")
        general = tr(
            request, "Too many signups from your network. Please wait %(wait)s.", wait=wait_words(request, wait)
        )
        return _signup_page(request, shown, general=general, status=429, headers={"retry-after": wait})
    if exc.status >= 500:
        general = tr(
            request, "The region you chose cannot be reached right now. Nothing was created; please try again shortly."
        )
        return _signup_page(request, shown, general=general, status=exc.status)
    general = tr(request, "Please check the form and try again. Nothing was created.")
    return _signup_page(request, shown, general=general, status=exc.status)


# --- finding where to log in ------------------------------------------------------------------


def _login_page(
    request: Req,
    problem: str | None = None,
    choices: list[RegionChoice] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    ctx = control_of(request)
    token = secrets.token_urlsafe(24)
    return Template(
        "find_login.html",
        context={"csrf": token, "problem": problem, "choices": choices or []},
        status_code=status,
        headers={**page_headers(ctx), **(headers or {})},
        cookies=[_csrf_cookie(LOGIN_CSRF_COOKIE, "/login", token, request)],
    )


@get("/login", opt=PUBLIC, include_in_schema=False)
async def find_login_page(request: Req) -> Template:
    return _login_page(request)


@post("/login", opt=PUBLIC, include_in_schema=False)
async def find_login_submit(request: Req, data: Annotated[FindLoginForm, Form]) -> Response[Any]:
    ctx = control_of(request)
    if not _csrf_ok(request, LOGIN_CSRF_COOKIE, data.csrf):
        return _login_page(request, tr(request, "Your form expired. Please try again."), status=403)
    email = data.email.strip()
    if not email:
        return _login_page(request, tr(request, "Enter your e-mail address."), status=400)
    if not _is(email, Email):
        return _login_page(request, tr(request, "That is not a valid e-mail address."), status=400)
    try:
        ctx.discoveries_per_address.hit(request.client.host if request.client else "unknown")
        ctx.discoveries_per_email.hit(normalise_email(email))
    except errors.AppError as exc:
        wait = exc.headers.get("retry-after", "60")
        message = tr(
            request, "Too many attempts. Please wait %(wait)s, then try again.", wait=wait_words(request, wait)
        )
        return _login_page(request, message, status=429, headers={"retry-after": wait})
    found = await discovery.discover(ctx, discovery.DiscoveryIn(email=email))
    if len(found.regions) == 1:
        target = f"{found.regions[0].login_url}?lang={locale_of(request)}"
        return Redirect(target, status_code=303, headers=page_headers(ctx))
    by_id = {c.id: c for c in region_choices(ctx, locale_of(request))}
    choices = [by_id[r.region] for r in found.regions if r.region in by_id]
    return _login_page(request, choices=choices)


pages_router = Router(
    path="/",
    route_handlers=[home, signup_page, signup_submit, find_login_page, find_login_submit],
    include_in_schema=False,
)
