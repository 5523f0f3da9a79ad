"""What the evidence collectors share: building an observation, checks and the plain
values evidence may hold (JSON: strings, numbers, booleans, lists, objects; times as
ISO 8601 strings in UTC)."""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from konsil.compliance.evidence.model import Check, Method, Observation, Scope, evidence_sha256

# Rows may outlive their retention by a day before it counts (purges run daily).
GRACE = timedelta(hours=24)
# How many offending records an observation names (by table and id); the count is complete.
NAMED = 10

Figure = int | float | str | bool | None


def observation(
    scope: Scope,
    collector: str,
    method: Method,
    description: str,
    checks: list[Check],
    evidence: dict[str, Any],
    observation_id: uuid.UUID | None = None,
) -> Observation:
    return Observation(
        id=observation_id or uuid.uuid4(),
        org_id=scope.org_id,
        collector=collector,
        method=method,
        description=description,
        period_start=scope.period_start,
        period_end=scope.period_end,
        collected_at=scope.now,
        checks=checks,
        evidence=evidence,
        evidence_sha256=evidence_sha256(evidence),
    )


def passed(name: str, reason: str, **figures: Figure) -> Check:
    return Check(name=name, result="pass", reason=reason, figures=figures)


def failed(name: str, reason: str, **figures: Figure) -> Check:
    return Check(name=name, result="fail", reason=reason, figures=figures)


def not_applicable(name: str, reason: str, **figures: Figure) -> Check:
    return Check(name=name, result="not_applicable", reason=reason, figures=figures)


def aware(value: datetime) -> datetime:
    """Both engines store UTC; SQLite hands some values back without a zone."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    return aware(value).astimezone(UTC).isoformat(timespec="seconds") if value is not None else None


def day(value: datetime | None) -> str:
    """A date as a person reads it in a reason."""
    return aware(value).astimezone(UTC).strftime("%Y-%m-%d") if value is not None else "never"


def days(span: timedelta) -> float:
    return round(span.total_seconds() / 86_400, 1)


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def listing(items: Iterable[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    values = list(items)
    if len(values) <= 1:
        return "".join(values)
    return ", ".join(values[:-1]) + " and " + values[-1]


def months_back(as_of: datetime, months: int) -> datetime:
    """Calendar months back; a day the target month lacks becomes its last day."""
    month = as_of.month - months
    year = as_of.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    return as_of.replace(year=year, month=month, day=min(as_of.day, calendar.monthrange(year, month)[1]))
