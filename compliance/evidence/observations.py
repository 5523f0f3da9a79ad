"""Small helpers the residency, dsr, sessions, subprocessors and network_tests
collectors share: building an ``Observation`` with its evidence hash, and naming
records (by pseudonymous id only) in a reason without letting it grow unbounded."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from konsil.compliance.evidence.model import Check, Method, Observation, Scope, evidence_sha256

# How many ids a reason names before it says "and N more"; the evidence lists more
# (up to ``LISTED``) and always the full count.
NAMED_IN_REASON = 10
LISTED = 1000


def observation(
    collector: str,
    method: Method,
    description: str,
    scope: Scope,
    checks: list[Check],
    evidence: dict[str, Any],
) -> Observation:
    return Observation(
        id=uuid.uuid4(),
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


def named(ids: Sequence[object], limit: int = NAMED_IN_REASON) -> str:
    """``a, b, c and 7 more``: the first ids of a list, for a reason."""
    shown = ", ".join(str(i) for i in ids[:limit])
    rest = len(ids) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def listed(items: Iterable[Any], limit: int = LISTED) -> list[Any]:
    """At most ``limit`` items for the evidence (its counts say how many there were)."""
    out: list[Any] = []
    for item in items:
        if len(out) >= limit:
            break
        out.append(item)
    return out


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"
