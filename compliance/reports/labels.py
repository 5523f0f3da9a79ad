"""Plain words for what the code calls by name: check names, figure keys, collectors,
statuses, roles and actions. Everything a person reads in a report or an access
extract goes through here, so no internal field name reaches the page."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Final

from konsil.platform.pages.i18n import N_

# Every check of controls.catalog.COLLECTOR_RULES (a test keeps the two in step).
CHECK_LABELS: Final[dict[str, str]] = {
    "data_within_retention": "Data kept no longer than its retention period",
    "purges_ran": "Scheduled deletion runs completed",
    "audit_records_kept": "Audit records kept for their full period",
    "sealed_columns": "Personal data fields encrypted",
    "transport_encrypted": "Connections encrypted in transit",
    "calls_end_to_end": "Calls end-to-end encrypted",
    "key_rotation": "Encryption keys rotated on time",
    "key_service_reachable": "Key service reachable",
    "chain_verifies": "Access log intact (hash chain verifies)",
    "entries_in_period": "Accesses logged in the period",
    "individual_actors": "Every access names an individual user",
    "nen7513_fields": "Log entries complete (NEN 7513 fields)",
    "log_reads_logged": "Reading the log is itself logged",
    "admin_access_with_reason": "Administrative access states a reason",
    "subject_extract": "A person's access extract can be produced",
    "receipts_valid": "Every call has a valid residency receipt",
    "control_plane_holds_none": "No personal data outside the region",
    "access_within_deadline": "Access requests answered within 28 days",
    "rectification_logged": "Corrections recorded",
    "erasure_complete": "Erasure complete",
    "export_valid": "Data exports valid",
    "idle_timeout": "Idle sessions signed out",
    "strong_sign_in": "Strong sign-in",
    "role_review": "Roles reviewed",
    "auditor_grants": "Auditor access time-limited",
    "processing_agreements": "Processing agreements signed",
    "transfer_mechanisms": "Transfers outside the region covered",
    "business_associate_agreements": "Business associate agreements in place",
    "results_unlinked": "Network test results not linked to people",
    "consent_recorded": "Consent decisions recorded with purpose, time and wording",
    "mails_with_consent": "Onboarding and feature e-mails only with consent",
}

# Every collector of controls.catalog.COLLECTORS.
# Marked for the catalogs: the portal shows a report's progress in the person's language.
COLLECTOR_LABELS: Final[dict[str, str]] = {
    "retention": N_("Retention and deletion"),
    "encryption": N_("Encryption coverage"),
    "keys": N_("Key management"),
    "access_log": N_("Access log"),
    "residency": N_("Data residency"),
    "dsr": N_("Data-subject requests"),
    "sessions": N_("Sign-in and sessions"),
    "subprocessors": N_("Subprocessors"),
    "network_tests": N_("Network test results"),
    "consent": N_("Consent records"),
}

STATUS_LABELS: Final[dict[str, str]] = {
    "pass": "Pass",
    "fail": "Fail",
    "attested": "Attested",
    "not_attested": "Not attested",
    "not_applicable": "Not applicable",
}

METHOD_LABELS: Final[dict[str, str]] = {
    "TEST": "tested against live data",
    "EXAMINE": "examined records and settings",
}

DATA_CATEGORY_LABELS: Final[dict[str, str]] = {
    "contact": "contact details",
    "phone": "phone numbers",
    "payment": "payment details",
    "invoicing": "invoicing details",
    "national_id": "national ID number and verified name",
    "call_metadata": "call records",
    "support": "support requests",
    "usage": "usage data",
    "technical": "technical data",
    "none": "no personal data",
}

LOCATION_LABELS: Final[dict[str, str]] = {"eu_eea": "EU/EEA", "us": "United States"}

TRANSFER_LABELS: Final[dict[str, str]] = {
    "none_needed": "none needed",
    "adequacy": "adequacy decision",
    "eu_us_dpf": "EU-US Data Privacy Framework",
    "scc": "standard contractual clauses",
}

ROLE_LABELS: Final[dict[str, str]] = {
    "owner": "owner of the organisation",
    "admin": "administrator",
    "expert": "expert",
    "auditor": "auditor",
    "integration": "connected system (API token)",
    "system": "Konsil itself (automatic)",
    "anonymous": "someone not signed in",
    "visitor": "visitor",
    "support": "Konsil support",
    "operator": "Konsil operations",
}

ACTION_LABELS: Final[dict[str, str]] = {
    "create": "created",
    "read": "viewed",
    "update": "changed",
    "delete": "deleted",
    "export": "exported",
    "search": "searched",
}

OUTCOME_LABELS: Final[dict[str, str]] = {
    "success": "done",
    "failure": "failed",
    "denied": "refused",
}

OBJECT_LABELS: Final[dict[str, str]] = {
    "visit": "visit details",
    "call": "call record",
    "member": "member account",
    "room": "room",
    "api_token": "API token",
    "payment": "payment record",
    "payment_record": "payment record",
    "dsr": "data-subject request",
    "data_subject_request": "data-subject request",
    "access_log_entry": "access log",
    "residency_receipt": "residency receipt",
    "telemetry": "troubleshooting data",
}

# Figure keys collectors are known to use; others are turned into words by ``figure_label``.
FIGURE_LABELS: Final[dict[str, str]] = {
    "retention_days": "Retention setting (days)",
    "rows_past_retention": "Rows past their retention",
    "oldest_age_days": "Oldest remaining record (days)",
    "purge_runs": "Deletion runs in the period",
    "failed_runs": "Failed deletion runs",
    "columns": "Encrypted columns scanned",
    "values": "Values scanned",
    "sealed": "Values encrypted",
    "plaintext": "Values not encrypted",
    "sealed_share": "Share encrypted (%)",
    "key_version": "Current key version",
    "key_age_days": "Age of the current key (days)",
    "last_rotation": "Last rotation",
    "retired_versions": "Retired key versions",
    "entries": "Log entries",
    "entries_in_period": "Log entries in the period",
    "complete_share": "Share of entries with all NEN 7513 fields (%)",
    "calls": "Calls",
    "receipts_valid": "Calls with a valid receipt",
    "calls_without_receipt": "Calls without a valid receipt",
    "requests": "Requests",
    "closed_on_time": "Closed within 28 days",
    "overdue": "Overdue",
    "idle_timeout_minutes": "Idle sign-out after (minutes)",
    "auditor_grants": "Auditor grants",
    "expired_grants_used": "Expired grants used",
    "processors": "Subprocessors",
    "without_mechanism": "Transfers without a mechanism",
}

_UNITS: Final[dict[str, str]] = {
    "days": "days",
    "hours": "hours",
    "minutes": "minutes",
    "seconds": "seconds",
    "ms": "milliseconds",
    "percent": "%",
    "pct": "%",
    "bytes": "bytes",
    "count": "number",
}
_WORDS: Final[dict[str, str]] = {
    "dsr": "data-subject request",
    "dsrs": "data-subject requests",
    "nen7513": "NEN 7513",
    "kid": "key id",
    "ttl": "lifetime",
    "sha256": "SHA-256",
    "id": "id",
    "ids": "ids",
    "db": "database",
    "pii": "personal data",
    "tls": "TLS",
    "mfa": "multi-factor",
}


def check_label(name: str) -> str:
    return CHECK_LABELS.get(name) or _words(name)


def collector_label(name: str) -> str:
    return COLLECTOR_LABELS.get(name) or _words(name)


def figure_label(key: str) -> str:
    """A figure key in words: the known ones by table, the rest by splitting the key
    ("oldest_visit_age_days" becomes "Oldest visit age (days)")."""
    if key in FIGURE_LABELS:
        return FIGURE_LABELS[key]
    parts = [p for p in re.split(r"[_\s]+", key) if p]
    unit = ""
    if len(parts) > 1 and parts[-1].lower() in _UNITS:
        unit = _UNITS[parts.pop().lower()]
    text = " ".join(_WORDS.get(p.lower(), p.lower()) for p in parts) or key
    text = text[0].upper() + text[1:]
    return f"{text} ({unit})" if unit else text


def _words(name: str) -> str:
    text = " ".join(_WORDS.get(p.lower(), p.lower()) for p in re.split(r"[_\s]+", name) if p) or name
    return text[0].upper() + text[1:]


def figure_value(value: int | float | str | bool | None) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}".replace(",", " ")
        return f"{value:,.2f}".replace(",", " ")
    return value


def role_label(role: str) -> str:
    return ROLE_LABELS.get(role) or _words(role).lower()


def action_label(action: str) -> str:
    return ACTION_LABELS.get(action) or _words(action).lower()


def outcome_label(outcome: str) -> str:
    return OUTCOME_LABELS.get(outcome) or _words(outcome).lower()


def object_label(object_type: str) -> str:
    return OBJECT_LABELS.get(object_type) or _words(object_type).lower()


def utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# Month names fixed here rather than taken from the process's locale.
_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def day_text(day: date) -> str:
    """``3 March 2025``: day month year in words, so no reader confuses day and month."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def date_text(at: datetime) -> str:
    """The UTC date of ``at`` in words (``day_text``)."""
    return day_text(utc(at).date())


def time_text(at: datetime) -> str:
    at = utc(at)
    return f"{date_text(at)}, {at:%H:%M} UTC"


def period_text(start: datetime, end: datetime) -> str:
    """A period whose end is exclusive, in words: [1 Jan, 1 Apr) reads "1 January 2025
    to 31 March 2025"; an end that is not at midnight is printed with its time."""
    start, end = utc(start), utc(end)
    first = date_text(start) if start.time() == datetime.min.time() else time_text(start)
    if end.time() == datetime.min.time():
        last = date_text(end - timedelta(days=1))
    else:
        last = time_text(end)
    return f"{first} to {last}"
