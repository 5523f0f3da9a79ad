"""The organisation's retention evidence: the purge runs that removed its data past
retention (and the region's runs of classes kept for the whole region), for owners,
admins and auditors. No personal data: classes, cutoffs, counts and outcomes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get
from litestar.params import Parameter
from piccolo.custom_types import Combinable

from konsil.compliance.retention.tables import PurgeRun
from konsil.platform.core import errors
from konsil.platform.core.authz import rule

Req = Request[Any, Any, Any]
READERS = ("owner", "admin", "auditor")
MAX_PAGE = 500


class PurgeRunOut(msgspec.Struct, frozen=True, kw_only=True):
    run_id: uuid.UUID
    data_class: str
    # True for this organisation's own run; False for a run over the whole region
    # (its counts are the region's, of every organisation, so they are not shown).
    own: bool
    trigger: str
    as_of: dt.datetime
    cutoff: dt.datetime | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str
    message: str
    rows_removed: int | None
    rows_by_table: dict[str, int] | None


def _out(row: dict[str, Any]) -> PurgeRunOut:
    own = row["org_id"] is not None
    return PurgeRunOut(
        run_id=row["run_id"],
        data_class=row["data_class"],
        own=own,
        trigger=row["trigger"],
        as_of=row["as_of"],
        cutoff=row["cutoff"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        outcome=row["outcome"],
        message=row["message"],
        rows_removed=row["rows_removed"] if own else None,
        rows_by_table=msgspec.json.decode(row["detail"] or "{}", type=dict[str, int]) if own else None,
    )


@get("/api/v1/orgs/{slug:str}/retention/purge-runs", opt=rule(*READERS), tags=["retention"])
async def list_purge_runs(
    request: Req,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 100,
) -> list[PurgeRunOut]:
    """Purge runs that started in the period (``since`` inclusive, ``until`` exclusive;
    both with a time zone), newest first."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise errors.bad_request(f"{name} needs a time zone, e.g. 2026-11-28T00:00:00Z")
    if since is not None and until is not None and since >= until:
        raise errors.bad_request("since must be before until")
    org_id: uuid.UUID = request.state.org.id
    where: Combinable = (PurgeRun.org_id == org_id) | PurgeRun.org_id.is_null()
    if since is not None:
        where &= PurgeRun.started_at >= since
    if until is not None:
        where &= PurgeRun.started_at < until
    rows = await PurgeRun.select().where(where).order_by(PurgeRun.started_at, ascending=False).limit(limit).run()
    return [_out(row) for row in rows]


retention_router = Router(path="/", route_handlers=[list_purge_runs])

__all__ = ["retention_router"]
