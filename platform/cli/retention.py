"""``konsil purge [--dry-run] [--region ID] [--org SLUG]``: a retention purge by hand,
with a progress bar; ``--dry-run`` only counts what a purge would remove."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import uuid

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from konsil.compliance.retention.policy import DATA_CLASSES, DataClass
from konsil.compliance.retention.purge import ClassResult, PurgeRequest, UnknownOrganisation, purge, summary
from konsil.platform.core.settings import load_settings
from konsil.regions.container import open_region


def _table(region: str, results: list[ClassResult], dry_run: bool) -> RichTable:
    table = RichTable(title=f"region {region}: {'would remove (dry run)' if dry_run else 'removed'}")
    for column in ("data class", "cutoff", "rows", "outcome"):
        table.add_column(column)
    totals = summary(results)
    for data_class in DATA_CLASSES:
        mine = [r for r in results if r.data_class == data_class]
        if not mine:
            continue
        cutoffs = sorted({r.cutoff for r in mine if r.cutoff is not None})
        if not cutoffs:
            cutoff = "-"
        elif len(cutoffs) == 1:
            cutoff = cutoffs[0].isoformat(timespec="seconds")
        else:
            cutoff = f"per organisation ({len(cutoffs)} cutoffs)"
        outcomes = sorted({r.outcome for r in mine})
        messages = sorted({r.message for r in mine if r.message})
        table.add_row(data_class, cutoff, str(totals[data_class]), ", ".join(outcomes + messages))
    return table


async def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    regions = [settings.region(args.region)] if args.region else list(settings.regions)
    console = Console(stderr=False)
    found = args.org is None
    failed = False
    for region in regions:
        async with open_region(settings.for_region(region.id), region) as ctx:
            ctx.service_name = "cli"
            as_of = dt.datetime.now(dt.UTC)
            size = args.batch_size or region.lifecycle.purge_batch_size
            plan_request = PurgeRequest(
                run_id=uuid.uuid4(), as_of=as_of, trigger="cli", org_slug=args.org, dry_run=True, batch_size=size
            )
            try:
                plan = await purge(ctx, plan_request)
            except UnknownOrganisation:
                continue
            found = True
            if args.dry_run:
                console.print(_table(region.id, plan, True))
                continue
            totals = summary(plan)
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress:
                bars = {
                    data_class: progress.add_task(f"{region.id} {data_class}", total=totals.get(data_class, 0))
                    for data_class in DATA_CLASSES
                    if data_class in totals
                }

                def advance(data_class: DataClass, rows: int, bars: dict[DataClass, TaskID] = bars) -> None:
                    if data_class in bars:
                        progress.advance(bars[data_class], rows)

                request = PurgeRequest(
                    run_id=uuid.uuid4(), as_of=as_of, trigger="cli", org_slug=args.org, batch_size=size
                )
                results = await purge(ctx, request, advance)
                for data_class, bar in bars.items():  # rows that expired during the run count too
                    progress.update(bar, total=max(totals.get(data_class, 0), summary(results).get(data_class, 0)))
                    progress.update(bar, completed=summary(results).get(data_class, 0))
            console.print(_table(region.id, results, False))
            console.print(f"evidence: purge run {request.run_id}")
            failed = failed or any(r.outcome == "failure" for r in results)
    if not found:
        print(f"no organisation {args.org!r} in the configured region(s)", file=sys.stderr)
        return 2
    return 1 if failed else 0
