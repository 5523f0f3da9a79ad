"""What is kept how long (docs/promises.md, retention table) and the cutoff of each
data class for a run's clock ``as_of``. Cutoffs come from the organisations'
*current* settings, so a changed retention applies to existing data at the next run."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Literal, get_args

DataClass = Literal[
    "visits",
    "support_metadata",
    "member_contact",
    "payment_records",
    "messaging_records",
    "payment_events",
    "dsr_records",
    "consent_records",
    "access_log",
    "audit_records",
]
# In the order a purge run takes them: the audit records after the access log (what they
# may remove depends on what the log's purge removed).
DATA_CLASSES: tuple[DataClass, ...] = get_args(DataClass)

SUPPORT_METADATA_MONTHS = 9  # P10
ACCESS_LOG_YEARS = 6  # HIPAA documentation rule (and more than NEN 7513's Dutch practice of 5)
# The other audit records (evidence, reports, attestations, checkpoints, deletion
# certificates): HIPAA 164.316(b)(2)(i), documentation kept 6 years, as the log.
AUDIT_RECORD_YEARS = ACCESS_LOG_YEARS
CONTACT_DAYS_AFTER_CONTRACT = 90  # P18
# The payment provider's webhook events as received (event id, type, payment id; no
# personal data): long enough to answer a late replay or a question about a payment,
# far shorter than the payment records themselves (5 years).
PAYMENT_EVENT_DAYS = 90
MIN_RETENTION_DAYS, MAX_RETENTION_DAYS = 1, 90  # P7


class RetentionPolicy:
    """The cutoffs: a record older than its cutoff (strictly) is past retention."""

    @staticmethod
    def visits(as_of: dt.datetime, retention_days: int) -> dt.datetime:
        """Visits, their calls, telemetry and relay receipts, by ``Visit.arrived_at``."""
        if not MIN_RETENTION_DAYS <= retention_days <= MAX_RETENTION_DAYS:
            # Never widen a purge on a bad setting: refuse it (the API already validates 1..90).
            raise ValueError(f"retention of {retention_days} days is outside 1..90")
        return as_of - dt.timedelta(days=retention_days)

    @staticmethod
    def support_metadata(as_of: dt.datetime) -> dt.datetime:
        """Nine calendar months back (the 31st becomes the month's last day)."""
        return _months_back(as_of, SUPPORT_METADATA_MONTHS)

    @staticmethod
    def dsr_records(as_of: dt.datetime, keep_days: int) -> dt.datetime:
        """Closed data-subject requests, by ``completed_at`` (open ones never match)."""
        return as_of - dt.timedelta(days=keep_days)

    @staticmethod
    def access_log(as_of: dt.datetime) -> dt.datetime:
        """Six calendar years back (29 February becomes the 28th)."""
        return _months_back(as_of, 12 * ACCESS_LOG_YEARS)

    @staticmethod
    def audit_records(as_of: dt.datetime) -> dt.datetime:
        """Six calendar years back, as the access log; each table says which of its
        times it is measured by (``audit_records.py``)."""
        return _months_back(as_of, 12 * AUDIT_RECORD_YEARS)

    @staticmethod
    def member_contact(as_of: dt.datetime) -> dt.date:
        """Organisations whose contract ended before this date are past retention."""
        return as_of.date() - dt.timedelta(days=CONTACT_DAYS_AFTER_CONTRACT)

    @staticmethod
    def messaging_records(as_of: dt.datetime) -> dt.datetime:
        """SMS alert and client-invitation send records carry their own ``expires_at``
        (the organisation's visitor retention when they were written)."""
        return as_of

    @staticmethod
    def consent_records(as_of: dt.datetime) -> dt.datetime:
        """Consent records carry their own ``keep_until``: 3 years after the decision
        stops holding (tenants/consent.py ``PROOF_YEARS``), as proof of consent (GDPR 7(1))."""
        return as_of

    @staticmethod
    def payment_events(as_of: dt.datetime) -> dt.datetime:
        """Webhook events of the payment provider, by ``received_at``: 90 days."""
        return as_of - dt.timedelta(days=PAYMENT_EVENT_DAYS)

    @staticmethod
    def payment_records(as_of: dt.datetime) -> dt.datetime:
        """Payment records carry their own ``keep_until`` (5 years, set at creation)."""
        return as_of


def _months_back(as_of: dt.datetime, months: int) -> dt.datetime:
    """Calendar months back; a day the target month lacks becomes its last day."""
    month = as_of.month - months
    year = as_of.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    day = min(as_of.day, calendar.monthrange(year, month)[1])
    return as_of.replace(year=year, month=month, day=day)
