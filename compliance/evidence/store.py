"""Storing and reading observations (``tables.EvidenceObservation``).

The evidence is stored as its canonical bytes (``model.evidence_bytes``), so what is
read back re-hashes to the SHA-256 recorded at collection; ``load`` and ``latest``
check that and refuse an observation whose evidence was changed since.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from konsil.compliance.evidence.model import Check, Observation, evidence_bytes, evidence_sha256
from konsil.compliance.evidence.tables import EvidenceObservation


class EvidenceAltered(Exception):
    """A stored observation whose evidence no longer hashes to its recorded SHA-256."""


_checks_encoder = msgspec.json.Encoder()
_checks_decoder = msgspec.json.Decoder(list[Check])


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _row(observation: Observation, report_id: uuid.UUID | None) -> EvidenceObservation:
    if evidence_sha256(observation.evidence) != observation.evidence_sha256:
        raise ValueError(f"observation {observation.id}: evidence_sha256 does not match its evidence")
    return EvidenceObservation(
        id=observation.id,
        org_id=observation.org_id,
        collector=observation.collector,
        method=observation.method,
        description=observation.description,
        period_start=observation.period_start,
        period_end=observation.period_end,
        collected_at=observation.collected_at,
        result=observation.result,
        checks=_checks_encoder.encode(observation.checks).decode(),
        evidence=evidence_bytes(observation.evidence).decode(),
        evidence_sha256=observation.evidence_sha256,
        report_id=report_id,
    )


async def store(observations: Sequence[Observation], report_id: uuid.UUID | None = None) -> None:
    """Insert the observations in one statement, pinned to ``report_id`` if given.
    Refuses (ValueError) an observation whose hash does not match its evidence."""
    rows = [_row(observation, report_id) for observation in observations]
    if rows:
        await EvidenceObservation.insert(*rows).run()


async def discard(report_id: uuid.UUID) -> None:
    """Drop what an interrupted run of report ``report_id`` stored, before it runs again."""
    await EvidenceObservation.delete().where(EvidenceObservation.report_id == report_id).run()


def _observation(row: dict[str, Any]) -> Observation:
    evidence = msgspec.json.decode(row["evidence"])
    if not isinstance(evidence, dict) or evidence_sha256(evidence) != row["evidence_sha256"]:
        raise EvidenceAltered(f"observation {row['id']}: its evidence no longer matches the SHA-256 recorded with it")
    return Observation(
        id=uuid.UUID(str(row["id"])),
        org_id=uuid.UUID(str(row["org_id"])),
        collector=row["collector"],
        method=row["method"],
        description=row["description"],
        period_start=_aware(row["period_start"]),
        period_end=_aware(row["period_end"]),
        collected_at=_aware(row["collected_at"]),
        checks=_checks_decoder.decode(row["checks"]),
        evidence=evidence,
        evidence_sha256=row["evidence_sha256"],
    )


async def load(report_id: uuid.UUID) -> list[Observation]:
    """The observations a report pinned, by collector."""
    rows = await (
        EvidenceObservation.select()
        .where(EvidenceObservation.report_id == report_id)
        .order_by(EvidenceObservation.collector)
        .order_by(EvidenceObservation.collected_at)
        .run()
    )
    return [_observation(row) for row in rows]


async def latest(org_id: uuid.UUID, collector: str) -> Observation | None:
    """The organisation's most recent observation by ``collector``, if any."""
    row = await (
        EvidenceObservation.select()
        .where((EvidenceObservation.org_id == org_id) & (EvidenceObservation.collector == collector))
        .order_by(EvidenceObservation.collected_at, ascending=False)
        .first()
        .run()
    )
    return _observation(row) if row is not None else None
