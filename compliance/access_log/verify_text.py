"""The result of verifying an organisation's access log as one line an auditor can
paste into a report, naming the first problem: what ``konsil audit verify`` prints and
the access-log API's integrity check answers alongside its figures."""

from __future__ import annotations

from konsil.compliance.access_log.service import Problem, VerifyReport


def _count(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def problem_text(problem: Problem, checked: int | None = None) -> str:
    if problem.kind == "tampered":  # the detail names the entry, the time and the reason
        return problem.detail if checked is None else f"{problem.detail} (apart from this, {_count(checked)} verified)"
    entry = f"entry #{problem.seq}"
    if problem.entry_id is not None:
        entry += f" (id {problem.entry_id})"
    if problem.kind == "uncheckable":
        text = f"the checkpoint cannot be checked: {problem.detail}"
    elif problem.kind == "rewritten" and problem.entry_id is None:
        text = f"the log was rewritten (at entry #{problem.seq}): {problem.detail}"
    else:
        text = f"{entry} was {problem.kind}: {problem.detail}"
    return text if checked is None else f"{text} ({_count(checked)} before it verified)"


def format_report(report: VerifyReport, slug: str, *, removed: str = "") -> str:
    prefix = f"audit log of org {slug!r}"
    if removed:
        prefix += f" (organisation removed {removed})"
    if report.pruned:
        prefix += f" (entries #1 to #{report.pruned} removed by retention)"
    problem = report.problem
    if not report.ok and problem is not None:
        line = f"{prefix}: {problem_text(problem, report.checked)}"
        if problem.kind == "tampered":
            if len(report.alarms) > 1:
                line += f"; the log records {_more_findings(len(report.alarms) - 1)} after it"
            return line + _assurances(report)
        if report.alarms:  # found by the region before the entry that does not verify
            line += f"; before it, {report.alarms[0].detail}"
            if len(report.alarms) > 1:
                line += f", and {_more_findings(len(report.alarms) - 1)}"
        return line
    return f"{prefix}: OK, {_count(report.checked)} verified" + _assurances(report)


def _more_findings(n: int) -> str:
    return f"{n} more such finding" if n == 1 else f"{n} more such findings"


def _assurances(report: VerifyReport) -> str:
    line = ""
    if report.sealed:
        line += "; the head carries the region's seal"
    for checkpoint in report.extends:
        line += f"; it extends the region's checkpoint of {checkpoint.at} (#{checkpoint.seq})"
    return line
