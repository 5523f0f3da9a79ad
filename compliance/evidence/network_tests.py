"""Network-test evidence (P10; GDPR 25(2)): the stored results of the pre-call
connection test carry no link to a visit or a visitor.

Two things could link a result: a column that names a visit, call, member, token or
person (the table's columns as the database has them now, not as the code declares
them, are compared with the reviewed unlinkable set), or a value that does (a result
whose id is the id of a visit, call or member of the organisation, or a runner that
is not one of the two kinds). Reads this region's database only.
"""

from __future__ import annotations

import uuid
from typing import Any

from piccolo.custom_types import Combinable
from piccolo.table import Table

from konsil.compliance.evidence.common import listed, named, observation, plural
from konsil.compliance.evidence.model import Check, Observation, Scope
from konsil.media_nodes.network_test.tables import NetworkTestResult
from konsil.platform.core import database
from konsil.platform.core.region import RegionContext
from konsil.tenants.tables import Call, Member, Visit

COLLECTOR = "network_tests"
TABLE = "network_test_result"
BATCH = 5000
# The columns reviewed as unlinkable (media_nodes/network_test/tables.py): the
# organisation, when, the transport, the figures and verdict, and the browser's family,
# major version and language. Any other column fails until it is reviewed.
REVIEWED_COLUMNS = frozenset(
    {
        "id",
        "org_id",
        "created_at",
        "runner",
        "transport",
        "verdict",
        "reason",
        "connect_ms",
        "rtt_ms",
        "jitter_ms",
        "loss_percent",
        "throughput_kbps",
        "probes_sent",
        "probes_answered",
        "browser",
        "browser_version",
        "language",
    }
)
RUNNERS = frozenset({"visitor", "member"})  # who ran it, never which one
# Tables whose ids would link a result to a visit or a person.
LINKABLE: tuple[type[Table], ...] = (Visit, Call, Member)


async def live_columns(region: RegionContext) -> list[str]:
    """The table's columns as the region's database has them."""
    if database.is_postgres(region.engine):
        rows = await NetworkTestResult.raw(
            "SELECT column_name AS name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = {}",
            TABLE,
        )
    else:
        rows = await NetworkTestResult.raw("SELECT name FROM pragma_table_info({})", TABLE)
    return sorted(str(row["name"]) for row in rows)


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


async def _filled(region: RegionContext, scope: Scope, column: str) -> int:
    """How many of the organisation's results hold a value in ``column``."""
    org: Any = scope.org_id if database.is_postgres(region.engine) else str(scope.org_id)
    rows = await NetworkTestResult.raw(
        f"SELECT count(*) AS n FROM {TABLE} WHERE org_id = {{}} AND {_quoted(column)} IS NOT NULL",  # noqa: S608 - the name comes from the database's catalog, quoted
        org,
    )
    return int(rows[0]["n"])


async def _ids(scope: Scope, after: uuid.UUID | None) -> list[uuid.UUID]:
    where: Combinable = NetworkTestResult.org_id == scope.org_id
    if after is not None:
        where &= NetworkTestResult.id > after
    rows = await NetworkTestResult.select(NetworkTestResult.id).where(where).order_by(NetworkTestResult.id).limit(BATCH)
    return [row["id"] for row in rows]


async def _shared_ids(scope: Scope) -> dict[str, list[str]]:
    """Results whose id is also the id of a visit, call or member of the organisation."""
    shared: dict[str, list[str]] = {table._meta.tablename: [] for table in LINKABLE}
    after: uuid.UUID | None = None
    while batch := await _ids(scope, after):
        after = batch[-1]
        for table in LINKABLE:
            id_column: Any = table._meta.primary_key
            org_column: Any = table._meta.get_column_by_name("org_id")
            rows = await table.select(id_column).where((org_column == scope.org_id) & id_column.is_in(batch)).run()
            shared[table._meta.tablename] += [str(row["id"]) for row in rows]
    return shared


async def results_unlinked(region: RegionContext, scope: Scope) -> tuple[Check, dict[str, Any]]:
    columns = await live_columns(region)
    unreviewed = [c for c in columns if c not in REVIEWED_COLUMNS]
    filled = {c: await _filled(region, scope, c) for c in unreviewed}
    held = await NetworkTestResult.count().where(NetworkTestResult.org_id == scope.org_id)
    in_period = await NetworkTestResult.count().where(
        (NetworkTestResult.org_id == scope.org_id)
        & (NetworkTestResult.created_at >= scope.period_start)
        & (NetworkTestResult.created_at < scope.period_end)
    )
    odd_runners = [
        str(row["id"])
        for row in await NetworkTestResult.select(NetworkTestResult.id)
        .where((NetworkTestResult.org_id == scope.org_id) & NetworkTestResult.runner.not_in(sorted(RUNNERS)))
        .run()
    ]
    shared = await _shared_ids(scope)
    linked_ids = sorted({i for ids in shared.values() for i in ids} | set(odd_runners))
    evidence = {
        "table": TABLE,
        "columns": columns,
        "unreviewed_columns": {c: {"rows_with_a_value": n} for c, n in filled.items()},
        "results_held": held,
        "results_in_period": in_period,
        "ids_shared_with": {table: listed(ids) for table, ids in shared.items()},
        "runner_not_a_kind": listed(odd_runners),
    }
    figures: dict[str, int | float | str | bool | None] = {
        "results_held": held,
        "results_in_period": in_period,
        "unreviewed_columns": len(unreviewed),
        "linked_results": len(linked_ids),
    }
    looked = (
        f"Looked at the {plural(held, 'network-test result')} the organisation holds ({in_period} from the period) "
        f"and at the {len(columns)} columns the results table has in the database"
    )
    problems = []
    if unreviewed:
        problems.append(
            f"the table has {plural(len(unreviewed), 'column')} that could link a result to a visit or visitor "
            "and has not been reviewed ("
            + ", ".join(f"{c}: {plural(n, 'result')} with a value" for c, n in filled.items())
            + ")"
        )
    for table, ids in shared.items():
        if ids:
            problems.append(f"{plural(len(ids), 'result')} with the id of a {table} ({named(ids)})")
    if odd_runners:
        problems.append(
            f"{plural(len(odd_runners), 'result')} whose runner is neither 'visitor' nor 'member' "
            f"({named(odd_runners)})"
        )
    if problems:
        reason = f"{looked}. Fails: {'; '.join(problems)}."
        return Check(name="results_unlinked", result="fail", reason=reason, figures=figures), evidence
    reason = (
        f"{looked}: no column or value links a result to a visit, call, member or person; a result says only "
        "whether a visitor or a member ran it."
    )
    return Check(name="results_unlinked", result="pass", reason=reason, figures=figures), evidence


async def collect(region: RegionContext, scope: Scope) -> Observation:
    result, evidence = await results_unlinked(region, scope)
    return observation(
        scope,
        COLLECTOR,
        "TEST",
        "Compared the network-test results table's columns in the region's database with the reviewed "
        "unlinkable set, and tested each stored result of the organisation for an id shared with a visit, call "
        "or member and for a runner other than 'visitor' or 'member'.",
        [result],
        evidence,
    )
