"""HTTP API and portal page of compliance reports, for an organisation's owners, admins
and auditors: start a report (a background job in the organisation's own region), follow
its progress, download each format. Starting one and downloading a file are
access-logged, an auditor's as an auditor's."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.response import Template
from litestar.status_codes import HTTP_202_ACCEPTED

from konsil.compliance.reports import jobs
from konsil.compliance.reports.jobs import FORMATS, ReportJobOut, ReportRequest, ReportRequestError
from konsil.compliance.reports.json_report import published_schema
from konsil.compliance.reports.labels import COLLECTOR_LABELS
from konsil.platform.core import errors
from konsil.platform.core.access import AccessEvent
from konsil.platform.core.authz import AUDIT_WORK, PUBLIC, rule
from konsil.platform.core.region import region_of
from konsil.platform.pages.i18n import N_
from konsil.platform.pages.rendering import tr
from konsil.tenants.actors import Actor, actor_of, record

log = logging.getLogger("konsil.reports")

BASE = "/api/v1/orgs/{slug:str}/reports"
READERS = ("owner", "admin", "auditor")
TAGS = ["compliance reports"]
FRAMEWORK_CHOICES = (
    ("gdpr", N_("GDPR")),
    ("hipaa", N_("HIPAA Security Rule")),
    ("nen7510", N_("NEN 7510 / NEN 7513")),
    ("normen", N_("Normen")),
)

Req = Request[Any, Any, Any]


def _org_id(request: Req) -> uuid.UUID:
    org_id: uuid.UUID = request.state.org.id
    return org_id


def _event(request: Req, actor: Actor, action: str, object_id: str) -> AccessEvent:
    return AccessEvent(
        org_id=_org_id(request),
        actor=actor.actor,
        actor_role=actor.role,
        on_behalf_of=actor.on_behalf_of,
        subject_ref=f"org:{_org_id(request)}",
        action=action,  # type: ignore[arg-type]  # one of the literal actions
        object_type="compliance report",
        object_id=object_id,
        source_address=actor.source_address,
        outcome="success",
        purpose="compliance audit" if actor.role == "auditor" else actor.purpose,
        source=region_of(request).source,
    )


@get(BASE, opt=rule(*READERS), tags=TAGS)
async def list_reports(request: Req) -> list[ReportJobOut]:
    """The organisation's reports, newest first, with their progress."""
    return await jobs.listing(_org_id(request))


@post(BASE, opt={**rule(*READERS), **AUDIT_WORK}, status_code=HTTP_202_ACCEPTED, tags=TAGS)
async def start_report(request: Req, data: ReportRequest) -> ReportJobOut:
    """Start a report of one framework (gdpr, hipaa, nen7510 or normen) for a period of
    whole days (``from`` and ``to`` included, at most 3 years). It runs in the background:
    follow it with ``GET .../reports/{id}``; when done, every format can be downloaded."""
    region = region_of(request)
    if region.tasks is None:
        raise errors.unavailable("Reports cannot be started here: this region has no task runner.")
    try:
        job_id = await jobs.create(region, _org_id(request), data, _event(request, actor_of(request), "create", ""))
    except ReportRequestError as exc:
        raise errors.bad_request(str(exc)) from None
    try:
        region.tasks.submit(jobs.REPORT_TASK, job_id)
    except Exception:  # the region's broker is away: say so now, not an hour later
        log.exception("report job %s could not be handed to the region's workers", job_id)
        await jobs.mark_failed(job_id, jobs.QUEUE_DOWN)
        raise errors.unavailable("The report could not be started now; please try again in a few minutes.") from None
    made = await jobs.get(_org_id(request), job_id)
    assert made is not None
    return made


@get(BASE + "/{report_id:uuid}", opt=rule(*READERS), tags=TAGS)
async def read_report(request: Req, report_id: uuid.UUID) -> ReportJobOut:
    """One report: its status, progress and, once done, the formats to download."""
    found = await jobs.get(_org_id(request), report_id)
    if found is None:
        raise errors.not_found("There is no such report in this organisation.")
    return found


@get(BASE + "/{report_id:uuid}/files/{file_format:str}", opt=rule(*READERS), tags=TAGS)
async def download_report(request: Req, report_id: uuid.UUID, file_format: str) -> Response[bytes]:
    """A finished report's file: pdf, json, csv (evidence workbook), zip (signed evidence
    archive), ropa (record of processing activities, CSV) or oscal (assessment results)."""
    if file_format not in FORMATS:
        raise errors.bad_request(f"format: one of {', '.join(FORMATS)}")
    content = await jobs.file(_org_id(request), report_id, file_format)
    if content is None:
        raise errors.not_found("This report is not finished, or there is no such report in this organisation.")
    await record(
        region_of(request),
        actor_of(request).for_purpose("download a compliance report"),
        _org_id(request),
        "export",
        "compliance report",
        f"{report_id}/{file_format}",
        f"org:{_org_id(request)}",
    )
    name = f"konsil-report-{report_id}-{file_format}.{jobs.EXTENSIONS[file_format]}"
    return Response(
        content,
        media_type=jobs.MEDIA_TYPES[file_format],
        headers={"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"},
    )


def progress_texts(request: Req) -> dict[str, str]:
    """What a report's progress and failure say as stored (English), each in the
    request's language, for the page's script to show."""
    texts = {text: tr(request, text) for text in jobs.PERSON_TEXTS}
    for name, label in COLLECTOR_LABELS.items():
        stored = jobs.COLLECTING % {"what": jobs.collector_words(name)}
        texts[stored] = tr(request, jobs.COLLECTING, what=tr(request, label))
    return {stored: shown for stored, shown in texts.items() if stored != shown}


@get("/{slug:str}/portal/reports", opt={**rule(*READERS), "page": True}, include_in_schema=False)
async def reports_page(request: Req) -> Template:
    """The auditor's page: reports with progress, start one, download every format
    (the list is fetched by the page's script from the API above)."""
    org = request.state.org
    principal = request.state.principal
    return Template(
        "reports.html",
        context={
            "org_name": org.name,
            "slug": org.slug,
            "role": principal.role,
            "csrf": principal.csrf_token,
            "frameworks": FRAMEWORK_CHOICES,
            "progress_texts": progress_texts(request),
        },
        headers={"cache-control": "no-store"},
    )


@get("/schemas/konsil-report-v1.json", opt=PUBLIC, tags=TAGS, media_type="application/schema+json")
async def report_schema() -> dict[str, Any]:
    """The JSON Schema of a report's JSON document (``schema_version`` 1), published so
    an auditor's tools can validate what they download."""
    return published_schema()


reports_router = Router(
    path="/", route_handlers=[list_reports, start_report, read_report, download_report, reports_page, report_schema]
)
