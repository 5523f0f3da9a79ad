"""The organisation's access-log view: who read or changed personal data, and who was
refused (NEN 7513 fields; entries hold pseudonymous references only, never decrypted
personal data), and its integrity check (what ``konsil audit verify`` runs). For
owners, admins and auditors; reading or checking it is itself access-logged. The
portal's page of the same is ``pages.py``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get
from litestar.params import Parameter

from konsil.compliance.access_log import integrity, service
from konsil.compliance.access_log.integrity import IntegrityOut
from konsil.compliance.access_log.pages import access_log_export, access_log_page
from konsil.compliance.access_log.service import FILTER_PATTERN, EntryRecord, Outcome
from konsil.platform.core import errors
from konsil.platform.core.authz import rule
from konsil.platform.core.region import region_of
from konsil.tenants.actors import actor_of, record

Req = Request[Any, Any, Any]
MAX_PAGE = 500
READERS = ("owner", "admin", "auditor")
ActorFilter = Annotated[
    str | None,
    Parameter(
        pattern=FILTER_PATTERN,
        max_length=81,
        description="only this actor's entries: member:<id>, token:<id>, anonymous, system; "
        "ending in * for every actor it begins (visitor:*, system*)",
    ),
]
SubjectFilter = Annotated[
    str | None,
    Parameter(
        pattern=FILTER_PATTERN,
        max_length=80,
        description="only entries about this data subject: visit:<id>, member:<id>, dsr:<id>, payment:<id>; "
        "or an id (or its first characters) of any of them",
    ),
]


class EntryOut(msgspec.Struct):
    """One entry, in NEN 7513 terms."""

    seq: int
    at: dt.datetime
    actor: str
    actor_role: str
    on_behalf_of: str
    subject_ref: str
    action: str
    object_type: str
    object_id: str
    source_address: str
    outcome: str
    purpose: str
    source: str


class AccessLogPage(msgspec.Struct):
    entries: list[EntryOut]
    # Pass as ``cursor`` for the next (older) page; null when there is none.
    next_cursor: int | None
    # Entries with outcome "denied" in the period asked for (since/until), all pages together.
    denied: int


def _out(record: EntryRecord) -> EntryOut:
    return EntryOut(
        seq=record.seq,
        at=record.at,
        actor=record.actor,
        actor_role=record.actor_role,
        on_behalf_of=record.on_behalf_of,
        subject_ref=record.subject_ref,
        action=record.action,
        object_type=record.object_type,
        object_id=record.object_id,
        source_address=record.source_address,
        outcome=record.outcome,
        purpose=record.purpose,
        source=record.source,
    )


@get("/api/v1/orgs/{slug:str}/access-log", opt=rule(*READERS, personal_data="access_log"), tags=["access log"])
async def read_access_log(
    request: Req,
    outcome: Outcome | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[int | None, Parameter(ge=1, description="next_cursor of the page before")] = None,
    actor: ActorFilter = None,
    subject: SubjectFilter = None,
) -> AccessLogPage:
    """The organisation's access log, newest first: every read or change of personal
    data and every refused attempt. ``since`` is inclusive, ``until`` exclusive; both
    need a time zone. ``actor`` and ``subject`` narrow it to one actor or data subject
    (``denied`` then counts theirs)."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise errors.bad_request(f"{name} needs a time zone, e.g. 2026-11-28T00:00:00Z")
    if since is not None and until is not None and since >= until:
        raise errors.bad_request("since must be before until")
    if subject is not None and subject.endswith("*"):
        raise errors.bad_request("subject: a reference or an id, without *")
    org_id: uuid.UUID = request.state.org.id
    who = {"actor": actor, "subject": subject}
    records = await service.page(
        org_id, limit=limit + 1, before_seq=cursor, outcome=outcome, since=since, until=until, **who
    )
    denied = await service.count(org_id, outcome="denied", since=since, until=until, **who)
    shown = records[:limit]
    await record(
        request.app.state.region,
        actor_of(request).for_purpose("review the access log"),
        org_id,
        "read",
        "access_log",
        f"entries:{len(shown)}",
        "access_log",
    )
    return AccessLogPage(
        entries=[_out(r) for r in shown],
        next_cursor=shown[-1].seq if len(records) > limit else None,
        denied=denied,
    )


@get(
    "/api/v1/orgs/{slug:str}/access-log/verify",
    opt=rule(*READERS, personal_data="access_log"),
    tags=["access log"],
)
async def verify_access_log(request: Req) -> IntegrityOut:
    """Check the organisation's access log as ``konsil audit verify`` does: every entry's
    hash and its link to the one before, the chain head and its seal, and the region's
    latest signed checkpoint. Answers whether it verifies, up to which entry, or the first
    entry that does not; the check is logged as a read of the log."""
    org = request.state.org
    return await integrity.check(region_of(request), actor_of(request), org.id, org.slug)


access_log_router = Router(
    path="/", route_handlers=[read_access_log, verify_access_log, access_log_page, access_log_export]
)
