"""Text for ``konsil audit verify --org SLUG``: one line an auditor can paste into a
report, naming the first entry that was modified, deleted or reordered."""

from __future__ import annotations

from konsil.compliance.access_log.service import VerifyReport


def _count(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def format_report(report: VerifyReport, slug: str) -> str:
    prefix = f"audit log of org {slug!r}"
    problem = report.problem
    if report.pruned:
        prefix += f" (entries #1 to #{report.pruned} removed by retention)"
    if report.ok or problem is None:
        return f"{prefix}: OK, {_count(report.checked)} verified"
    entry = f"entry #{problem.seq}"
    if problem.entry_id is not None:
        entry += f" (id {problem.entry_id})"
    return f"{prefix}: {entry} was {problem.kind}: {problem.detail} ({_count(report.checked)} before it verified)"
