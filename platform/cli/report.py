"""``konsil report``: a compliance report of one organisation, framework and period,
made in the foreground in the organisation's own region (the same job the portal and
the API start in the background), with progress on the terminal; the file of the
chosen format is written to ``--out``. A removed organisation is still found by slug or
id (its access log and certificate outlive it).

Exit code 0 when the report was made, 1 when the job failed (the reason is printed),
2 for bad input or an organisation that is not in the configured region(s)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn

from konsil.compliance.reports import jobs
from konsil.compliance.reports.jobs import EXTENSIONS, ReportRequest, ReportRequestError
from konsil.platform.cli.audit import Found, in_region
from konsil.platform.core import clock
from konsil.platform.core.access import AccessEvent
from konsil.platform.core.region import RegionContext

OPERATOR = "operator:cli"


def _out_path(args: argparse.Namespace, slug: str) -> Path:
    if args.out:
        return Path(args.out)
    name = f"konsil-{slug}-{args.framework}-{args.period_from}-{args.period_to}"
    suffix = "-ropa" if args.format == "ropa" else "-oscal" if args.format == "oscal" else ""
    return Path(f"{name}{suffix}.{EXTENSIONS[args.format]}")


async def run(args: argparse.Namespace) -> int:
    """``konsil report --org SLUG --framework F --from D --to D --format X [--out FILE]``."""
    request = ReportRequest(framework=args.framework, period_from=args.period_from, period_to=args.period_to)
    try:
        jobs.period_of(request, clock.now().date())
    except ReportRequestError as exc:
        print(f"konsil report: {exc}", file=sys.stderr)
        return 2
    if args.out and await asyncio.to_thread(Path(args.out).exists):
        print(f"konsil report: {args.out} exists already; choose another file", file=sys.stderr)
        return 2

    async def make(ctx: RegionContext, found: Found) -> int:
        event = AccessEvent(
            org_id=found.org_id,
            actor=OPERATOR,
            actor_role="operator",
            subject_ref=f"org:{found.org_id}",
            action="create",
            object_type="compliance report",
            object_id="",
            source_address="local",
            outcome="success",
            purpose="compliance audit",
            source=ctx.source,
        )
        job_id = await jobs.create(ctx, found.org_id, request, event)
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%")) as bar:
            task = bar.add_task(f"{args.framework} report of {found.slug}", total=100)

            async def progress(percent: int, step: str) -> None:
                bar.update(task, completed=percent, description=f"{found.slug}: {step}")

            status = await jobs.generate(ctx, job_id, progress)
        made = await jobs.get(found.org_id, job_id)
        assert made is not None
        if status != "done":
            print(f"konsil report: the report could not be made: {made.message}", file=sys.stderr)
            return 1
        content = await jobs.file(found.org_id, job_id, args.format)
        assert content is not None
        out = _out_path(args, found.slug)
        await asyncio.to_thread(out.write_bytes, content)
        print(f"report {job_id}: {args.format} written to {out} ({len(content):,} bytes)")
        print(f"SHA-256 of its report.json (printed in the PDF): {made.report_sha256}")
        return 0

    return await in_region(args, make)
