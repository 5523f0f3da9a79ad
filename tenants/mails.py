"""The mails of the tenant area, in the recipient's language: an invitation to join an
organisation, a password-reset link. Plain text with a simple HTML alternative; they
name the organisation and nobody else (no visitor, no member)."""

from __future__ import annotations

import datetime as dt
import html

from babel import dates as babel_dates

from konsil.platform.core.mail import Mail
from konsil.platform.pages import i18n
from konsil.platform.pages.i18n import N_

# The roles as people read them, on the pages and in the mails.
ROLE_LABELS = {
    "owner": N_("Owner"),
    "admin": N_("Administrator"),
    "expert": N_("Expert"),
    "auditor": N_("Auditor"),
}


def when(value: dt.datetime, language: str) -> str:
    """A moment as people of ``language`` write it, in UTC: "6 December 2026, 14:05 UTC"."""
    locale = i18n.babel_locale(language)
    at = value.astimezone(dt.UTC)
    day = babel_dates.format_date(at, format="long", locale=locale)
    time = babel_dates.format_time(at, format="HH:mm", tzinfo=dt.UTC, locale=locale)
    return f"{day}, {time} UTC"


def _mail(to: str, language: str, subject: str, paragraphs: list[str], link: str) -> Mail:
    """The mail: ``paragraphs`` with the link after the one that leads to it (marked by
    an empty string)."""
    text = "\n\n".join(link if p == "" else p for p in paragraphs) + "\n"
    parts = []
    for paragraph in paragraphs:
        if paragraph == "":
            href = html.escape(link, quote=True)
            parts.append(f'<p><a href="{href}">{href}</a></p>')
        else:
            parts.append(f"<p>{html.escape(paragraph)}</p>")
    body = "\n".join(parts)
    page = (
        f'<!doctype html>\n<html lang="{language}"><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )
    return Mail(to=to, subject=subject, text=text, html=page, language=language)


def invitation(
    to: str,
    language: str,
    org_name: str,
    role: str,
    link: str,
    expires_at: dt.datetime,
    access_expires_at: dt.datetime | None,
) -> Mail:
    def t(message: str, **params: str) -> str:
        return i18n.gettext(language, message, **params)

    role_name = t(ROLE_LABELS.get(role, role))
    paragraphs = [
        t(N_("Hello,")),
        t(N_("You have been invited to join %(org)s on Konsil."), org=org_name)
        + " "
        + t(N_("Your role: %(role)s."), role=role_name),
    ]
    if access_expires_at is not None:
        paragraphs.append(t(N_("Your access as an auditor ends on %(date)s."), date=when(access_expires_at, language)))
    paragraphs += [
        t(N_("To accept, open this link and choose your name and password:")),
        "",
        t(
            N_(
                "The link works once, until %(date)s. "
                "If you did not expect this invitation, you can ignore this e-mail."
            ),
            date=when(expires_at, language),
        ),
        t(N_("Konsil, on behalf of %(org)s"), org=org_name),
    ]
    subject = t(N_("Invitation to %(org)s on Konsil"), org=org_name)
    return _mail(to, language, subject, paragraphs, link)


def password_reset(to: str, language: str, org_name: str, link: str) -> Mail:
    def t(message: str, **params: str) -> str:
        return i18n.gettext(language, message, **params)

    paragraphs = [
        t(N_("Hello,")),
        t(
            N_(
                "Someone asked to reset the password of your account at %(org)s on Konsil. "
                "If it was you, open this link to choose a new password:"
            ),
            org=org_name,
        ),
        "",
        t(
            N_(
                "The link works once, for 30 minutes. If you did not ask for it, ignore this e-mail: "
                "your password stays as it is."
            )
        ),
        t(N_("Konsil, on behalf of %(org)s"), org=org_name),
    ]
    return _mail(to, language, t(N_("Reset your Konsil password")), paragraphs, link)
