"""The integrity check an organisation runs on its own access log from the portal (and
the API): exactly what ``konsil audit verify`` runs (``checkpoints.verify_log``: the
chain, the head's seal and the region's latest stored checkpoint), its result as
figures a page puts into words, and the check itself written to the log as a read of
it, as the command's is."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from konsil.compliance.access_log.checkpoints import verify_log
from konsil.compliance.access_log.service import ProblemKind, VerifyReport
from konsil.compliance.access_log.verify_text import format_report
from konsil.platform.core import clock
from konsil.platform.core.region import RegionContext
from konsil.tenants.actors import Actor, record

PURPOSE = "check the access log's integrity"


class ProblemOut(msgspec.Struct, frozen=True, kw_only=True):
    """The first entry that does not verify."""

    seq: int  # its number in the chain
    kind: ProblemKind  # modified, deleted, reordered, rewritten, forged, uncheckable or tampered


class IntegrityOut(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the organisation's access log verifies, and how far."""

    ok: bool
    # Entries that verified: all of them when ok, else those before the first problem.
    verified: int
    # The first and last entry checked (entries before ``first_seq`` were removed by
    # retention after their 6 years); when ok, the log verifies up to ``last_seq``.
    first_seq: int
    last_seq: int
    problem: ProblemOut | None
    sealed: bool  # the chain head carries the region's seal
    # Times the region itself recorded finding the chain head tampered with.
    alarms: int
    checked_at: dt.datetime
    # What ``konsil audit verify`` prints for the same result (English, for tools and auditors).
    summary: str


def result(report: VerifyReport, slug: str, at: dt.datetime) -> IntegrityOut:
    problem = report.problem if not report.ok else None
    return IntegrityOut(
        ok=report.ok,
        verified=report.checked,
        first_seq=report.pruned + 1,
        last_seq=report.pruned + report.checked,
        problem=ProblemOut(seq=problem.seq, kind=problem.kind) if problem is not None else None,
        sealed=report.sealed,
        alarms=len(report.alarms),
        checked_at=at,
        summary=format_report(report, slug),
    )


async def check(ctx: RegionContext, actor: Actor, org_id: uuid.UUID, slug: str) -> IntegrityOut:
    """Verify the log as ``konsil audit verify --org`` does, then log the check (after the
    walk: the entry it writes is the next one, checked the next time)."""
    key_set = await ctx.signer.key_set()
    report = await verify_log(org_id, key_set)
    seen = "verified" if report.ok else f"problem at #{report.problem.seq}" if report.problem else "problem"
    await record(ctx, actor.for_purpose(PURPOSE), org_id, "read", "access_log", seen, "access_log")
    return result(report, slug, clock.now())
