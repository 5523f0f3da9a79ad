"""How pages are rendered for people, shared by the control plane and the region
services: the language of each request, the Jinja environment with the catalogs, the
shared page shell (``base.html``) and friendly error pages for browsers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import phonenumbers
from babel import dates as babel_dates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template import TemplateConfig
from litestar.types import Message, Scope

from konsil.platform.pages import i18n

PAGES = Path(__file__).resolve().parent
TEMPLATES = PAGES / "templates"
STATIC = PAGES / "static"
Req = Request[Any, Any, Any]

_LANG_MAX_AGE = 365 * 24 * 3600


def locale_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The language of this request (see ``konsil.platform.pages.i18n``), decided once.
    An organisation found for the request (``state["org"]``) gives its default."""
    state = connection.scope.setdefault("state", {})
    found = state.get("locale")
    if found:
        return str(found)
    query = connection.query_params.get(i18n.LANG_QUERY)
    if query in i18n.LOCALES:
        state["lang_chosen"] = query
    chosen = query if query in i18n.LOCALES else connection.cookies.get(i18n.LANG_COOKIE)
    org = state.get("org")
    locale = i18n.choose(chosen, connection.headers.get("accept-language"), getattr(org, "locale", None))
    state["locale"] = locale
    return locale


def tr(connection: ASGIConnection[Any, Any, Any, Any], message: str, **params: Any) -> str:
    """``message`` (an English message id) in the request's language."""
    return i18n.gettext(locale_of(connection), message, **params)


async def remember_language(message: Message, scope: Scope) -> None:
    """``before_send`` hook: a language chosen with ``?lang=`` is kept in a cookie (no
    personal data, only the language)."""
    if message["type"] != "http.response.start":
        return
    chosen = scope.get("state", {}).get("lang_chosen")
    if not chosen:
        return
    cookie = f"{i18n.LANG_COOKIE}={chosen}; Path=/; Max-Age={_LANG_MAX_AGE}; SameSite=Lax"
    message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]


def _request_locale(context: Context) -> str:
    request = context.get("request")
    if request is None:
        return i18n.DEFAULT_LOCALE
    return locale_of(request)


@pass_context
def _gettext(context: Context, message: str, **params: Any) -> str:
    return i18n.gettext(_request_locale(context), message, **params)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int, **params: Any) -> str:
    return i18n.ngettext(_request_locale(context), singular, plural, n, **params)


@pass_context
def _format_date(context: Context, value: dt.date | dt.datetime | None, style: str = "long") -> str:
    if value is None:
        return ""
    return babel_dates.format_date(value, format=style, locale=i18n.babel_locale(_request_locale(context)))


@pass_context
def _format_datetime(context: Context, value: dt.datetime | None, style: str = "medium") -> str:
    if value is None:
        return ""
    return babel_dates.format_datetime(
        value, format=style, tzinfo=dt.UTC, locale=i18n.babel_locale(_request_locale(context))
    )


def format_phone(value: str | None) -> str:
    """An E.164 number grouped as people write it (+47 406 12 345); as given if unparsable."""
    if not value:
        return ""
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return value
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def example_phone(country: str | None) -> str:
    """An example mobile number of the organisation's country, formatted (the join form's hint)."""
    region = (country or "").upper()
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE) if region else None
    if example is None:
        example = phonenumbers.example_number_for_type("GB", phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        return "+44 7400 123456"
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


@pass_context
def _script_strings(context: Context) -> dict[str, str]:
    return i18n.script_strings(_request_locale(context))


@pass_context
def _current_locale(context: Context) -> str:
    return _request_locale(context)


def _configure(environment: Environment) -> None:
    environment.add_extension("jinja2.ext.i18n")
    environment.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    environment.filters["date"] = _format_date
    environment.filters["datetime"] = _format_datetime
    environment.filters["phone"] = format_phone
    environment.globals["script_strings"] = _script_strings
    environment.globals["current_locale"] = _current_locale
    environment.globals["LANGUAGES"] = i18n.LANGUAGE_NAMES
    environment.globals["example_phone"] = example_phone


def environment(*folders: Path) -> Environment:
    """The Jinja environment of an app: its areas' template folders, then the shared ones."""
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(folder)) for folder in (*folders, TEMPLATES)]),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=False,
    )
    _configure(env)
    return env


def template_config(*folders: Path) -> TemplateConfig[JinjaTemplateEngine]:
    env = environment(*folders)
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))


# Errors in people's words, by status: a title and what to do next.
ERROR_TEXTS: Mapping[int, tuple[str, str]] = {
    400: (
        i18n.N_("Something in the request was not right"),
        i18n.N_("Go back, check what you entered and try again."),
    ),
    401: (i18n.N_("Please log in"), i18n.N_("This page is for members of the organisation. Log in to continue.")),
    403: (
        i18n.N_("You cannot open this page"),
        i18n.N_("Your account does not give access to it, or the form expired. Go back, reload and try again."),
    ),
    404: (
        i18n.N_("We could not find this page"),
        i18n.N_("Check the link you were given. If it came from your clinic or adviser, ask them to send it again."),
    ),
    405: (i18n.N_("This page cannot be opened like this"), i18n.N_("Go back and use the buttons on the page.")),
    409: (
        i18n.N_("This was changed in the meantime"),
        i18n.N_("Reload the page to see the latest state, then try again."),
    ),
    410: (
        i18n.N_("This is no longer available"),
        i18n.N_("The organisation no longer uses this service, or the link has ended."),
    ),
    413: (i18n.N_("That was too large"), i18n.N_("Go back and send something smaller.")),
    415: (i18n.N_("Something in the request was not right"), i18n.N_("Go back and use the form on the page.")),
    429: (i18n.N_("Too many attempts"), i18n.N_("Please wait a minute, then try again.")),
    500: (
        i18n.N_("Something went wrong on our side"),
        i18n.N_("Nothing you did caused this. Please try again in a minute."),
    ),
    503: (
        i18n.N_("The service is briefly unavailable"),
        i18n.N_("Nothing was lost. Please try again in a minute."),
    ),
}


def wants_html(request: Req) -> bool:
    """A browser opening a page (not the API, not an internal call, not a script's fetch)."""
    path = request.scope.get("path", "")
    if path.startswith(("/api/", "/internal/", "/schema", "/.well-known/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def error_page(request: Req, status: int, headers: Mapping[str, str] | None = None) -> Template:
    title, advice = ERROR_TEXTS.get(status) or ERROR_TEXTS[500 if status >= 500 else 400]
    return Template(
        "error.html",
        context={"status": status, "title": title, "advice": advice},
        status_code=status,
        headers=dict(headers or {}),
    )


Handler = Callable[[Req, Any], Response[Any]]


def for_people(handlers: Mapping[Any, Handler]) -> dict[Any, Handler]:
    """Exception handlers that answer browsers with an error page in their language and
    everyone else (the API, scripts) with the JSON error as before."""

    def wrap(handler: Handler) -> Handler:
        def handle(request: Req, exc: Any) -> Response[Any]:
            answer = handler(request, exc)
            status = answer.status_code or 500
            if not wants_html(request) or status < 400:
                return answer
            return error_page(request, status, dict(answer.headers.items()))

        return handle

    return {key: wrap(handler) for key, handler in handlers.items()}
