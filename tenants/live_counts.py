"""Region-wide live counts for the ops team: visitors waiting and calls going on now.

Counted from the region database every ``REFRESH_SECONDS`` by each region service
replica, and observed by the gauges of ``platform/core/telemetry/metrics.py``
(``konsil_waiting_visitors``, ``konsil_active_calls``). Counting changes where they
happen cannot be true: a visitor who leaves by timeout becomes "left" only when a
waiting list is next read, purges and erasures delete visits in the worker, and each
replica sees only its own admissions. The database sees them all.

Numbers only, and organisation ids (and slugs) only where ``organisation_attributes``
allows them: never a visit, a room or a person.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from piccolo.query.functions.aggregate import Count

from konsil.platform.core import clock
from konsil.platform.core.telemetry import metrics
from konsil.platform.core.telemetry.config import TelemetrySettings
from konsil.platform.core.telemetry.privacy import ORGANISATION_ID, ORGANISATION_SLUG
from konsil.tenants.tables import Call, Organisation, Visit
from konsil.tenants.visits import AWAY_LIMIT

log = logging.getLogger("konsil.telemetry")

# Often enough for a dashboard (a scrape is every 15-30 s), cheap for the database:
# two indexed counts per replica.
REFRESH_SECONDS = 15.0


async def waiting_by_organisation() -> dict[uuid.UUID, int]:
    """Visitors waiting now, by organisation: status "waiting" and not away longer than
    ``AWAY_LIMIT`` (those have left, whether or not a waiting list has said so yet)."""
    cutoff = clock.now() - AWAY_LIMIT
    rows = (
        await Visit.select(Visit.org_id, Count())
        .where((Visit.status == "waiting") & (Visit.away_since.is_null() | (Visit.away_since >= cutoff)))
        .group_by(Visit.org_id)
        .run()
    )
    return {row["org_id"]: int(row["count"]) for row in rows}


async def active_by_organisation() -> dict[uuid.UUID, int]:
    """Calls admitted and not yet ended, by organisation."""
    rows = await Call.select(Call.org_id, Count()).where(Call.ended_at.is_null()).group_by(Call.org_id).run()
    return {row["org_id"]: int(row["count"]) for row in rows}


async def _labels(orgs: set[uuid.UUID], organisation_attributes: str) -> dict[uuid.UUID, dict[str, str]]:
    labels = {org: {ORGANISATION_ID: str(org)} for org in orgs}
    if organisation_attributes == "slug" and orgs:
        query = Organisation.select(Organisation.id, Organisation.slug).where(Organisation.id.is_in(list(orgs)))
        for row in await query.run():
            labels[row["id"]][ORGANISATION_SLUG] = row["slug"]
    return labels


async def refresh(organisation_attributes: str = "none") -> None:
    """Count now and hand the numbers to the gauges (raises when the database does not
    answer; the gauges keep what they had until the caller clears them)."""
    waiting = await waiting_by_organisation()
    active = await active_by_organisation()
    split = organisation_attributes in ("id", "slug")
    labels = await _labels(set(waiting) | set(active), organisation_attributes) if split else {}
    metrics.waiting_visitors.set([(sum(waiting.values()), {})])
    metrics.active_calls.set([(sum(active.values()), {})])
    metrics.waiting_visitors_by_organisation.set([(n, labels[org]) for org, n in waiting.items()] if split else [])
    metrics.active_calls_by_organisation.set([(n, labels[org]) for org, n in active.items()] if split else [])


def forget() -> None:
    """Report nothing: the counts are unknown."""
    for gauge in (
        metrics.waiting_visitors,
        metrics.active_calls,
        metrics.waiting_visitors_by_organisation,
        metrics.active_calls_by_organisation,
    ):
        gauge.clear()


async def keep_counting(organisation_attributes: str = "none", every: float = REFRESH_SECONDS) -> None:
    """Refresh the counts every ``every`` seconds, for good. While the database does not
    answer the gauges report nothing (an absent series, not a stale number); the outage
    and the recovery are logged once each."""
    failing = False
    try:
        while True:
            try:
                await refresh(organisation_attributes)
            except Exception as exc:  # the next round tries again
                forget()
                if not failing:
                    log.warning(
                        "live counts: the region database did not answer (%s); konsil_waiting_visitors and "
                        "konsil_active_calls report nothing until it does",
                        type(exc).__name__,
                    )
                failing = True
            else:
                if failing:
                    log.info("live counts: the region database answers again; counting resumed")
                failing = False
            await asyncio.sleep(every)
    finally:
        forget()


def start(telemetry: TelemetrySettings) -> asyncio.Task[None] | None:
    """The counting task of a region service whose metrics go somewhere (None while
    telemetry is off: nobody would read the numbers)."""
    if not telemetry.enabled:
        return None
    return asyncio.create_task(keep_counting(telemetry.organisation_attributes))
