"""What an evidence collector produces: one ``Observation`` per collector, organisation
and period, holding named ``Check`` results (the ``rules`` a control's catalog entry
names, ``controls.catalog.COLLECTOR_RULES``) and the evidence they were decided on.

OSCAL-shaped (COMPLIANCE.md §1): Control → automated check → Observation (method,
collected, evidence hash) → finding (pass/fail/not applicable and a reason). Evidence
never holds personal data: counts, ages, pseudonymous ids (uuids), hashes, settings.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

import msgspec

from konsil.compliance.access_log.service import Walked
from konsil.platform.core.region import RegionContext

Result = Literal["pass", "fail", "not_applicable"]
# OSCAL observation methods: TEST (we ran something against live data), EXAMINE (we
# read records or settings).
Method = Literal["TEST", "EXAMINE"]


class Scope(msgspec.Struct, frozen=True, kw_only=True):
    """What one collection run looks at: one organisation of this region, one period."""

    org_id: uuid.UUID
    period_start: datetime  # inclusive, UTC
    period_end: datetime  # exclusive, UTC
    now: datetime  # the collection time; every age is measured from it
    # The walk of the organisation's access log that the report's own checkpoint made
    # moments before, handed on by the job (``reports/jobs.py``): the access-log collector
    # builds on it when it covers the chain from its start (``access_log.service.verify``).
    chain_walked: Walked | None = None


class Check(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # one of COLLECTOR_RULES[collector]
    result: Result
    # One or two sentences an auditor reads: what was found, and for a fail, why it
    # fails (naming records by pseudonymous id only, never by a person's data).
    reason: str
    figures: dict[str, int | float | str | bool | None] = {}


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    org_id: uuid.UUID
    collector: str  # one of controls.catalog.COLLECTORS
    method: Method
    description: str  # how the evidence was collected, in words
    period_start: datetime
    period_end: datetime
    collected_at: datetime
    checks: list[Check]
    evidence: dict[str, Any]  # the figures and records the checks were decided on (JSON-able)
    evidence_sha256: str  # sha256 of evidence_bytes(evidence)

    def check(self, name: str) -> Check:
        for item in self.checks:
            if item.name == name:
                return item
        raise KeyError(name)

    @property
    def result(self) -> Result:
        """The worst of its checks: fail over pass over not applicable."""
        results = {c.result for c in self.checks}
        if "fail" in results:
            return "fail"
        return "pass" if "pass" in results else "not_applicable"


_encoder = msgspec.json.Encoder(order="sorted")


def evidence_bytes(evidence: dict[str, Any]) -> bytes:
    """The canonical bytes of an evidence document: JSON, keys sorted, no spaces,
    UTF-8; its SHA-256 is what an observation records and a manifest lists."""
    return _encoder.encode(evidence)


def evidence_sha256(evidence: dict[str, Any]) -> str:
    return hashlib.sha256(evidence_bytes(evidence)).hexdigest()


# One evidence collector: ``async def collect(region, scope) -> Observation``, reading
# only ``region``'s own database and services (never another region, never the control
# plane's copy). ``compliance/evidence/collectors.py`` names them all.
Collect = Callable[[RegionContext, Scope], Awaitable[Observation]]
