"""A data subject's export as an overview a person reads, in their language: what the
organisation holds about them, who accessed it (in words, not the log's codes), how
long it is kept, and their rights with the supervisory authority of the organisation's
jurisdiction and country (``konsil.platform.pages.legal``: GDPR and the country's
authority in the EU, HIPAA and HHS in the US). Nothing here reads a database."""

from __future__ import annotations

import datetime as dt

from babel import dates as babel_dates
from babel import numbers as babel_numbers

from konsil.compliance.access_log.words import Words
from konsil.compliance.dsr.schemas import AccessData, SubjectExport
from konsil.platform.pages import i18n
from konsil.platform.pages.i18n import N_
from konsil.platform.pages.legal import LegalText, legal_text
from konsil.platform.pages.rendering import format_phone

KINDS = {
    "access": N_("access to their data"),
    "portability": N_("their data, machine-readable"),
    "rectification": N_("a correction"),
    "erasure": N_("erasure"),
}
STATUSES = {"received": N_("received, not answered yet"), "completed": N_("answered"), "rejected": N_("rejected")}
ITEM = "  - "
SUB_ITEM = "      "
VISIT_STATUSES = {
    "waiting": N_("waiting"),
    "admitted": N_("in a call"),
    "ended": N_("ended"),
    "left": N_("left before the call"),
}


def legal_for(region_id: str, country: str, locale: str, org_name: str, days: int) -> LegalText:
    """The legal wording of an organisation: its region is its jurisdiction."""
    return legal_text(region_id, country, locale, org_name, days)


def complaint_note(legal: LegalText) -> str:
    """Where to complain, with the authority's address."""
    return f"{legal.complaint} {legal.authority.url}"


class _Text:
    def __init__(self, locale: str) -> None:
        self.locale = locale
        self.babel = i18n.babel_locale(locale)

    def gettext(self, message: str, **params: object) -> str:
        return i18n.gettext(self.locale, message, **params)

    def day(self, value: dt.datetime | dt.date) -> str:
        return babel_dates.format_date(value, format="medium", locale=self.babel)

    def when(self, value: dt.datetime) -> str:
        return babel_dates.format_datetime(value, format="medium", tzinfo=dt.UTC, locale=self.babel)

    def time(self, value: dt.datetime) -> str:
        return babel_dates.format_time(value, format="short", tzinfo=dt.UTC, locale=self.babel)

    def money(self, minor: int, currency: str) -> str:
        try:
            return babel_numbers.format_currency(minor / 100, currency, locale=self.babel)
        except (ValueError, babel_numbers.UnknownCurrencyError):
            return f"{minor / 100:.2f} {currency}"

    def duration(self, seconds: int | None) -> str:
        if seconds is None:
            return self.gettext("still going on")
        minutes, rest = divmod(seconds, 60)
        if minutes == 0:
            return self.gettext("%(seconds)s seconds", seconds=rest)
        return self.gettext("%(minutes)s min %(seconds)s s", minutes=minutes, seconds=rest)


def _access(words: Words, text: _Text, a: AccessData) -> str:
    behalf = words.on_behalf_of(a.actor, a.on_behalf_of)
    who = words.actor(a.actor, a.actor_role)
    if behalf:
        who = text.gettext("%(who)s on behalf of %(behalf)s", who=who, behalf=behalf)
    return ITEM + text.gettext(
        "%(when)s: %(who)s. %(action)s: %(data)s. %(why)s. %(outcome)s.",
        when=text.when(a.at),
        who=who,
        action=words.action(a.action),
        data=words.data(a.object_type),
        why=words.purpose(a.purpose),
        outcome=words.outcome(a.outcome),
    )


def overview_text(data: SubjectExport, locale: str = i18n.DEFAULT_LOCALE) -> str:
    """The export as a plain-text overview in ``locale`` (English by default)."""
    t = _Text(locale)
    words = Words(locale)
    org = data.organisation
    legal = legal_for(org.region, org.country, locale, org.name, org.retention_days)
    request = data.request
    lines = [
        t.gettext(
            "Data held about %(who)s by %(org)s",
            who=format_phone(request.identifier) if request.identifier_kind == "phone" else request.identifier,
            org=org.name,
        ),
        t.gettext(
            "Request for %(kind)s, received %(received)s, to be answered by %(due)s: %(status)s.",
            kind=t.gettext(KINDS[request.kind]) if request.kind in KINDS else request.kind,
            received=t.day(request.received_at),
            due=t.day(request.due_at),
            status=t.gettext(STATUSES[request.status]) if request.status in STATUSES else request.status,
        ),
        t.gettext("Where the data is kept: %(where)s.", where=org.jurisdiction),
        t.gettext("Made %(when)s (UTC).", when=t.when(data.generated_at)),
        "",
        t.gettext("Member accounts: %(count)s", count=len(data.members)),
    ]
    for m in data.members:
        lines.append(
            ITEM
            + t.gettext(
                "%(name)s <%(email)s>, phone %(phone)s, %(role)s, since %(since)s",
                name=m.name,
                email=m.email,
                phone=format_phone(m.phone) or "\u2013",
                role=words.role(m.role),
                since=t.day(m.created_at),
            )
        )
    lines.append(t.gettext("Visits: %(count)s", count=len(data.visits)))
    for v in data.visits:
        lines.append(
            ITEM
            + t.gettext(
                "%(when)s, room “%(room)s”: %(name)s, phone %(phone)s, %(status)s; deleted after %(until)s",
                when=t.when(v.arrived_at),
                room=v.room,
                name=v.name,
                phone=format_phone(v.phone) or "\u2013",
                status=t.gettext(VISIT_STATUSES[v.status]) if v.status in VISIT_STATUSES else v.status,
                until=t.day(v.expires_at),
            )
        )
        for c in v.calls:
            line = SUB_ITEM + t.gettext(
                "Call at %(time)s (UTC), %(duration)s, troubleshooting records: %(count)s",
                time=t.time(c.started_at),
                duration=t.duration(c.duration_seconds),
                count=len(c.telemetry),
            )
            if c.relay_receipt is not None:
                line += t.gettext("; relayed in %(where)s", where=c.relay_receipt.jurisdiction)
            lines.append(line)
    lines.append(t.gettext("Payments (kept 5 years by law): %(count)s", count=len(data.payments)))
    for p in data.payments:
        lines.append(
            ITEM
            + t.gettext(
                "%(day)s: %(amount)s, %(card)s ending in %(last4)s, kept until %(until)s",
                day=t.day(p.created_at),
                amount=t.money(p.amount_minor, p.currency),
                card=p.card_brand,
                last4=p.card_last4,
                until=t.day(p.keep_until),
            )
        )
    lines.append(t.gettext("Accesses to these records: %(count)s", count=len(data.accessed_by)))
    lines += [_access(words, t, a) for a in data.accessed_by]
    lines += [
        "",
        t.gettext(
            "Visits, calls and their troubleshooting data are deleted automatically after %(days)s days.",
            days=org.retention_days,
        ),
        t.gettext(
            "Payment records are kept for 5 years because the law requires it; an erasure request does not remove them."
        ),
        t.gettext("Calls are end-to-end encrypted and never recorded: no audio or video is stored."),
        legal.rights,
        complaint_note(legal),
    ]
    return "\n".join(lines) + "\n"
