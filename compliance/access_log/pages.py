"""The organisation's access-log page in the portal (owners, admins, auditors) and its
CSV export: the log filtered by actor, data subject, period and outcome, newest first,
a page at a time, in the person's words and language (``words.py``). Showing it and
exporting it are access-logged as the API's reads are, with a read of each member
whose name the page shows. The integrity check the page runs is the API's
(``api.py``, ``integrity.py``).

Filters arrive as a GET form (links can be kept and shared); a filter that cannot be
read is said on the page at its field, and the view is then shown without it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
import zoneinfo
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from babel import dates as babel_dates
from babel import numbers as babel_numbers
from litestar import Request, Response, get
from litestar.response import Template

from konsil.compliance.access_log import service
from konsil.compliance.access_log.chain import EntryRecord
from konsil.compliance.access_log.words import Names, Words
from konsil.platform.core import clock, errors
from konsil.platform.core.authz import rule
from konsil.platform.core.keys.cipher import FieldDecryptionError, FieldRef
from konsil.platform.core.region import RegionContext, region_of
from konsil.platform.pages import i18n
from konsil.platform.pages.rendering import locale_of, tr
from konsil.tenants import members, records
from konsil.tenants.actors import Actor, actor_of, record, record_reads
from konsil.tenants.tables import ApiToken, Member

Req = Request[Any, Any, Any]
READERS = ("owner", "admin", "auditor")
PER_PAGE = 50
EXPORT_MAX = 50_000
VIEW_PURPOSE = "review the access log"
EXPORT_PURPOSE = "export the access log"
_ID_PART = re.compile(r"^[0-9a-f-]{4,36}\Z")
_REFERENCE = re.compile(service.FILTER_PATTERN)
_ZONE = re.compile(r"^[A-Za-z]+(?:/[A-Za-z0-9_+-]+){0,2}\Z")
# Actor choices that stand for a kind of actor rather than one.
KINDS = (
    ("visitor:*", i18n.N_("Visitors")),
    ("system*", i18n.N_("Konsil (automatic)")),
    ("operator:*", i18n.N_("Konsil operations")),
    ("anonymous", i18n.N_("Someone not logged in")),
)
OUTCOME_CHOICES = (
    ("success", i18n.N_("Done")),
    ("failure", i18n.N_("Failed")),
    ("denied", i18n.N_("Refused")),
)


@dataclass
class Filters:
    actor: str = ""
    subject: str = ""
    day_from: dt.date | None = None
    day_to: dt.date | None = None
    outcome: str = ""
    zone: str = "UTC"
    cursor: int | None = None
    errors: dict[str, str] = field(default_factory=dict)
    # As typed, to show them again in the form.
    typed: dict[str, str] = field(default_factory=dict)

    @property
    def tz(self) -> dt.tzinfo:
        return dt.UTC if self.zone == "UTC" else zoneinfo.ZoneInfo(self.zone)

    def bounds(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The period's [since, until) in UTC: whole days in the person's time zone."""
        since = until = None
        if self.day_from is not None:
            since = dt.datetime.combine(self.day_from, dt.time(), tzinfo=self.tz).astimezone(dt.UTC)
        if self.day_to is not None:
            until = dt.datetime.combine(self.day_to + dt.timedelta(days=1), dt.time(), tzinfo=self.tz)
            until = until.astimezone(dt.UTC)
        return since, until

    def query(self, **changes: Any) -> str:
        """The query string of this view (without the page unless given)."""
        values = {
            "actor": self.actor,
            "subject": self.subject,
            "from": self.day_from.isoformat() if self.day_from else "",
            "to": self.day_to.isoformat() if self.day_to else "",
            "outcome": self.outcome,
            "tz": "" if self.zone == "UTC" else self.zone,
        }
        values.update({k: "" if v is None else str(v) for k, v in changes.items()})
        return urlencode({k: v for k, v in values.items() if v})

    def service_query(self) -> dict[str, Any]:
        """The filters as ``service.page`` and ``service.count`` take them."""
        since, until = self.bounds()
        return {
            "outcome": self.outcome or None,
            "since": since,
            "until": until,
            "actor": self.actor or None,
            "subject": self.subject or None,
        }

    @property
    def active(self) -> bool:
        return bool(self.actor or self.subject or self.day_from or self.day_to or self.outcome)


def _day(request: Req, raw: str, name: str, found: Filters) -> dt.date | None:
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        found.errors[name] = tr(request, "Enter a date, such as %(example)s.", example=_example_day(request))
        return None


def _example_day(request: Req) -> str:
    return babel_dates.format_date(dt.date(2026, 3, 31), format="short", locale=i18n.babel_locale(locale_of(request)))


def read_filters(request: Req) -> Filters:
    """The view's filters from the query string; what cannot be read is left out and
    said at its field (``errors``)."""
    params = request.query_params
    raw = {name: str(params.get(name) or "").strip()[:100] for name in ("actor", "subject", "from", "to", "outcome")}
    found = Filters(typed=raw)
    zone = str(params.get("tz") or "")
    if zone and _ZONE.match(zone):
        try:
            zoneinfo.ZoneInfo(zone)
            found.zone = zone
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    actor = raw["actor"].lower()
    if actor:
        if _REFERENCE.match(actor):
            found.actor = actor
        else:
            found.errors["actor"] = tr(request, "Choose someone from the list.")
    subject = raw["subject"].lower()
    if subject:
        if (":" in subject and _REFERENCE.match(subject) and not subject.endswith("*")) or _ID_PART.match(subject):
            found.subject = subject
        else:
            found.errors["subject"] = tr(
                request, "Enter an id as the list shows it, such as %(example)s, or the whole id.", example="3f2a1b2c"
            )
    found.day_from = _day(request, raw["from"], "from", found)
    found.day_to = _day(request, raw["to"], "to", found)
    if found.day_from and found.day_to and found.day_to < found.day_from:
        found.errors["to"] = tr(request, "The last day must not be before the first day.")
        found.day_to = None
    outcome = raw["outcome"]
    if outcome in service.OUTCOMES:
        found.outcome = outcome
    elif outcome:
        found.errors["outcome"] = tr(request, "Choose an outcome from the list.")
    cursor = str(params.get("before") or "")
    if cursor.isdigit() and 0 < int(cursor) < 2**62:
        found.cursor = int(cursor)
    return found


async def _names(ctx: RegionContext, actor: Actor, org_id: uuid.UUID) -> Names:
    """The organisation's members by name (each name opened is a read of that member,
    logged as the members list logs it) and its integration tokens' labels (no
    personal data)."""
    rows = await Member.select(Member.id, Member.name, Member.role).where(Member.org_id == org_id).run()
    cipher = await ctx.keys.cipher(org_id) if rows else None
    shown: dict[str, tuple[str, str]] = {}
    reads: list[tuple[uuid.UUID, str]] = []
    for row in rows:
        member_id = row["id"] if isinstance(row["id"], uuid.UUID) else uuid.UUID(str(row["id"]))
        assert cipher is not None
        try:
            name = cipher.open(FieldRef(org_id, "member", "name", member_id), row["name"])
        except FieldDecryptionError:
            await record(ctx, actor, org_id, "read", "member", member_id, members.subject(member_id), "failure")
            continue  # shown as a former member's reference instead
        shown[members.subject(member_id)] = (name, str(row["role"]))
        reads.append((member_id, members.subject(member_id)))
    if reads:
        await record_reads(ctx, actor, org_id, "member", reads)
    tokens = await ApiToken.select(ApiToken.id, ApiToken.label).where(ApiToken.org_id == org_id).run()
    labels = {f"token:{t['id']}": str(t["label"]) for t in tokens if t["label"]}
    return Names(shown, labels, complete=len(shown) == len(rows))


def _when(at: dt.datetime, zone: dt.tzinfo, locale: str) -> str:
    return babel_dates.format_datetime(at, format="medium", tzinfo=zone, locale=i18n.babel_locale(locale))


def _row(entry: EntryRecord, words: Words, filters: Filters) -> dict[str, Any]:
    at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=dt.UTC)
    return {
        "seq": entry.seq,
        "iso": at.astimezone(dt.UTC).isoformat(),
        "when": _when(at, filters.tz, words.locale),
        "who": words.actor(entry.actor, entry.actor_role),
        "who_ref": entry.actor,
        "for": words.on_behalf_of(entry.actor, entry.on_behalf_of),
        "action": words.action(entry.action),
        "data": words.data(entry.object_type),
        "about": words.subject(entry.subject_ref),
        "about_ref": entry.subject_ref if entry.subject_ref not in ("", "*") else "",
        "why": words.purpose(entry.purpose),
        "outcome": words.outcome(entry.outcome),
        "outcome_code": entry.outcome,
        "from": entry.source_address,
    }


def _actor_choices(words: Words, filters: Filters) -> list[tuple[str, str]]:
    people = sorted(
        ((ref, words.actor(ref, role)) for ref, (_name, role) in words.names.members.items()),
        key=lambda choice: choice[1].casefold(),
    )
    systems = sorted(
        ((ref, words.actor(ref, "integration")) for ref in words.names.tokens), key=lambda c: c[1].casefold()
    )
    kinds = [(value, words.gettext(label)) for value, label in KINDS]
    choices = [*people, *systems, *kinds]
    if filters.actor and filters.actor not in {value for value, _ in choices}:
        choices.insert(0, (filters.actor, words.actor(filters.actor, "")))
    return choices


@get(
    "/{slug:str}/portal/access-log",
    opt={**rule(*READERS, personal_data="access_log"), "page": True},
    include_in_schema=False,
)
async def access_log_page(request: Req) -> Template:
    """The access log, filtered and a page at a time, in words; reading it is logged."""
    org: records.Organisation = request.state.org
    principal = request.state.principal
    ctx = region_of(request)
    filters = read_filters(request)
    query = filters.service_query()
    found = await service.page(org.id, limit=PER_PAGE + 1, before_seq=filters.cursor, **query)
    total = await service.count(org.id, **query)
    shown = found[:PER_PAGE]
    actor = actor_of(request).for_purpose(VIEW_PURPOSE)
    names = await _names(ctx, actor, org.id)
    await record(ctx, actor, org.id, "read", "access_log", f"entries:{len(shown)}", "access_log")
    words = Words(locale_of(request), names, org.id)
    older = shown[-1].seq if len(found) > PER_PAGE else None
    return Template(
        "access_log.html",
        context={
            "org_name": org.name,
            "slug": org.slug,
            "role": principal.role,
            "csrf": principal.csrf_token,
            "filters": filters,
            "rows": [_row(entry, words, filters) for entry in shown],
            "total": total,
            "actors": _actor_choices(words, filters),
            "outcomes": OUTCOME_CHOICES,
            "older": f"?{filters.query(before=older)}" if older else None,
            "newest": f"?{filters.query()}" if filters.cursor else None,
            "export": f"/{org.slug}/portal/access-log/export?{filters.query()}",
            "export_max": babel_numbers.format_decimal(EXPORT_MAX, locale=i18n.babel_locale(words.locale)),
            "zone": filters.zone,
        },
        headers={"cache-control": "no-store"},
    )


def csv_text(rows: list[dict[str, Any]], request: Req, zone: str) -> str:
    """The rows as CSV with headings in words (UTF-8 with a byte-order mark, so that
    spreadsheet programs read the names right)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        [
            tr(request, "Entry"),
            tr(request, "Time (%(zone)s)", zone=zone),
            tr(request, "Who"),
            tr(request, "On behalf of"),
            tr(request, "What was done"),
            tr(request, "Data"),
            tr(request, "About"),
            tr(request, "Why"),
            tr(request, "Outcome"),
            tr(request, "From (network address)"),
        ]
    )
    for row in rows:
        writer.writerow(
            [
                row["seq"],
                row["csv_time"],
                row["who"],
                row["for"],
                row["action"],
                row["data"],
                row["about"],
                row["why"],
                row["outcome"],
                row["from"],
            ]
        )
    return out.getvalue()


@get(
    "/{slug:str}/portal/access-log/export",
    opt=rule(*READERS, personal_data="access_log"),
    include_in_schema=False,
)
async def access_log_export(request: Req) -> Response[bytes]:
    """The filtered view as a CSV file (newest first, every page, at most EXPORT_MAX
    entries); the export is logged as one."""
    org: records.Organisation = request.state.org
    ctx = region_of(request)
    filters = read_filters(request)
    if filters.errors:
        raise errors.bad_request(" ".join(filters.errors.values()))
    query = filters.service_query()
    entries: list[EntryRecord] = []
    cursor = None  # from the newest: the whole filtered view, not the page shown
    while len(entries) < EXPORT_MAX:
        want = min(5000, EXPORT_MAX - len(entries))
        batch = await service.page(org.id, limit=want, before_seq=cursor, **query)
        entries.extend(batch)
        if len(batch) < want:
            break
        cursor = batch[-1].seq
    actor = actor_of(request).for_purpose(EXPORT_PURPOSE)
    names = await _names(ctx, actor, org.id)
    await record(ctx, actor, org.id, "export", "access_log", f"entries:{len(entries)}", "access_log")
    words = Words(locale_of(request), names, org.id)
    zone = filters.tz
    rows = []
    for entry in entries:
        row = _row(entry, words, filters)
        at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=dt.UTC)
        row["csv_time"] = at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(row)
    today = clock.now().astimezone(zone).date().isoformat()
    name = f"access-log-{org.slug}-{today}.csv"
    return Response(
        csv_text(rows, request, filters.zone).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"},
    )
