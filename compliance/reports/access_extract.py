"""A person's "who accessed my data" extract as a PDF (NEN 7513 chapter 5; Normen,
innsyn i logg): every access-log entry about one data subject, in words.

For each access it says when, who (their role and pseudonymous reference, or their
name where the organisation supplies it in ``actor_names``), on whose behalf, what was
done to which data, why, and whether it went through. The data-subject request flow
selects the entries (one subject's, of one organisation) and calls
``access_extract_pdf``; nothing here reads a database.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import IO, Any, Final

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer

from konsil.compliance.access_log.chain import EntryRecord
from konsil.compliance.reports.labels import (
    action_label,
    date_text,
    object_label,
    outcome_label,
    role_label,
    time_text,
    utc,
)
from konsil.compliance.reports.pdf_common import STATUS_COLOURS, build, content_width, grid, para, styles, text

MEDIA_TYPE: Final = "application/pdf"
# Rows per table: ReportLab lays out a table as a whole, so long logs go in slices.
_ROWS_PER_TABLE: Final = 150


def _who(entry: EntryRecord, names: Mapping[str, str], s: dict[str, Any]) -> Paragraph:
    role = role_label(entry.actor_role)
    name = names.get(entry.actor)
    lines = [f"<b>{text(name)}</b>, {text(role)}" if name else f"<b>{text(role[:1].upper() + role[1:])}</b>"]
    if entry.actor not in ("system", "anonymous"):
        lines.append(f'<font size="7" color="#52606d">{text(entry.actor)}</font>')
    return Paragraph("<br/>".join(lines), s["cell"])


def _behalf(entry: EntryRecord, names: Mapping[str, str]) -> str:
    who = entry.on_behalf_of
    if entry.actor in ("system", "anonymous"):
        return "\u2013"  # an en dash: nobody on whose behalf
    if who == entry.actor:
        return "themselves"
    if who.startswith("org:"):
        return "the organisation"
    if who == "system":
        return "Konsil (automatic)"
    if who == "anonymous":
        return "no one signed in"
    return names.get(who, who)


def _what(entry: EntryRecord) -> str:
    return f"{action_label(entry.action).capitalize()} {object_label(entry.object_type)}"


def _why(entry: EntryRecord) -> str:
    purpose = entry.purpose
    if purpose.startswith("refused: "):
        return "Refused: " + purpose.removeprefix("refused: ")
    return purpose[:1].upper() + purpose[1:] if purpose else "Not stated"


def _outcome(entry: EntryRecord, s: dict[str, Any]) -> Paragraph:
    colour = {"success": "pass", "failure": "not_attested", "denied": "fail"}.get(entry.outcome, "not_applicable")
    hexval = STATUS_COLOURS[colour].hexval()[2:]
    return Paragraph(f'<font color="#{hexval}"><b>{text(outcome_label(entry.outcome))}</b></font>', s["cell"])


def access_extract_pdf(
    entries: Sequence[EntryRecord],
    *,
    org_name: str,
    region: str,
    subject_label: str,
    generated_at: datetime,
    request_ref: str | None = None,
    actor_names: Mapping[str, str] | None = None,
    period: tuple[datetime, datetime] | None = None,
) -> bytes:
    buffer = io.BytesIO()
    write_access_extract(
        buffer,
        entries,
        org_name=org_name,
        region=region,
        subject_label=subject_label,
        generated_at=generated_at,
        request_ref=request_ref,
        actor_names=actor_names,
        period=period,
    )
    return buffer.getvalue()


def write_access_extract(
    out: IO[bytes],
    entries: Sequence[EntryRecord],
    *,
    org_name: str,
    region: str,
    subject_label: str,
    generated_at: datetime,
    request_ref: str | None = None,
    actor_names: Mapping[str, str] | None = None,
    period: tuple[datetime, datetime] | None = None,
) -> None:
    """``subject_label`` says in words whose data this is (e.g. "your visits to the
    room 'Dr. Ås'"); ``actor_names`` maps pseudonymous references to the names the
    organisation is willing to show; ``period`` limits the words, not the entries."""
    s = styles()
    names = actor_names or {}
    ordered = sorted(entries, key=lambda e: (utc(e.at), e.seq))
    facts = [
        ("Organisation", org_name),
        ("About", subject_label),
        ("Made", time_text(generated_at)),
        ("Region", region),
    ]
    if request_ref:
        facts.insert(2, ("Your request", request_ref))
    if period is not None:
        facts.insert(2, ("Period", f"{date_text(period[0])} to {date_text(period[1])}"))
    width = content_width()
    story: list[Flowable] = [
        para("Who accessed your data", s["title"]),
        para(org_name, s["subtitle"]),
        grid(
            [[para(k, s["cell_bold"]), para(v, s["cell"])] for k, v in facts], [35 * mm, width - 35 * mm], header=False
        ),
        Spacer(1, 5 * mm),
        para(
            f"Every time someone at {org_name}, or Konsil's system on its behalf, opened, changed or deleted "
            "your data, an entry was written to the access log. This extract lists each one: when, who (their "
            "role, and the code that identifies them in the log), on whose behalf, what they did and why, and "
            "whether it went through. Refused attempts are listed too.",
            s["body"],
        ),
        Spacer(1, 4 * mm),
    ]
    if not ordered:
        story.append(para("No access to your data is recorded.", s["h2"]))
    else:
        refused = sum(1 for e in ordered if e.outcome == "denied")
        people = len({e.actor for e in ordered})
        first, last = date_text(ordered[0].at), date_text(ordered[-1].at)
        when = f"on {first}" if first == last else f"from {first} to {last}"
        summary = (
            f"{len(ordered)} access{'es' if len(ordered) != 1 else ''} by {people} "
            f"{'people or systems' if people != 1 else 'person or system'}, {when}"
        )
        if refused:
            summary += f"; {refused} refused"
        story.append(para(summary + ".", s["h2"]))
        header = [para(h, s["cell_bold"]) for h in ("When (UTC)", "Who", "On behalf of", "What", "Why", "Result")]
        widths = [27 * mm, 43 * mm, 25 * mm, 30 * mm, width - 145 * mm, 20 * mm]
        for start in range(0, len(ordered), _ROWS_PER_TABLE):
            rows: list[list[Any]] = [header]
            for entry in ordered[start : start + _ROWS_PER_TABLE]:
                at = utc(entry.at)
                rows.append(
                    [
                        para(f"{date_text(at)} {at:%H:%M}", s["cell"]),
                        _who(entry, names, s),
                        para(_behalf(entry, names), s["cell"]),
                        para(_what(entry), s["cell"]),
                        para(_why(entry), s["cell"]),
                        _outcome(entry, s),
                    ]
                )
            story.append(grid(rows, widths, zebra=True))
    story += [
        Spacer(1, 6 * mm),
        para(
            f"If an access looks wrong to you, ask {org_name}: they can tell you who is behind a code and why "
            "they needed your data. You may also complain to the data-protection authority of your country "
            "(in Norway Datatilsynet, in the Netherlands the Autoriteit Persoonsgegevens).",
            s["body"],
        ),
        Spacer(1, 2 * mm),
        para(
            "The access log is a hash chain: each entry includes a fingerprint of the one before, so an entry "
            "cannot be changed or removed without it showing.",
            s["small"],
        ),
    ]
    build(
        out,
        story,
        title=f"Who accessed your data: {org_name}",
        author=f"Konsil region {region}",
        subject="Access log extract",
        footer=f"Who accessed your data · {org_name} · made {date_text(generated_at)}",
    )
