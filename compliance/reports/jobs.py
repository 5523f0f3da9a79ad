"""Report jobs: one report of one organisation, framework and period, generated in the
organisation's own region as a background task (Celery on the region's queue in
services mode, the region service's in-process runner in the embedded default, or the
``konsil report`` command in the foreground), with its progress on the job's row.

The steps: a fresh signed checkpoint of the organisation's access log (the report
prints the one it covers), each evidence collector the framework's controls name (the
observations are stored, pinned to the report), the owners' attestations, then the six
formats. The files and the "done" mark are written in one transaction: a job killed
mid-way leaves no file, and running it again (a redelivered task has the same id)
starts it over, dropping what the dead attempt had stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, get_args

import msgspec

from konsil.compliance.access_log import certificates
from konsil.compliance.access_log.checkpoints import make_report_checkpoint
from konsil.compliance.attestations.service import current as current_attestations
from konsil.compliance.controls.catalog import FRAMEWORK_IDS, Framework, FrameworkId, load_catalogs
from konsil.compliance.evidence import store
from konsil.compliance.evidence.collectors import collect
from konsil.compliance.evidence.model import Observation, Scope
from konsil.compliance.reports import csv_workbook, json_report, oscal, pdf_report, ropa
from konsil.compliance.reports.evidence_zip import current_signing, evidence_zip_bytes
from konsil.compliance.reports.labels import collector_label
from konsil.compliance.reports.model import Attested, Checkpoint, ReportDocument, assemble, longer_than_allowed
from konsil.compliance.reports.tables import ReportFile, ReportJob
from konsil.compliance.subprocessors.register import for_region
from konsil.platform.core import clock, database
from konsil.platform.core.access import AccessEvent
from konsil.platform.core.region import RegionContext
from konsil.platform.pages.i18n import N_
from konsil.tenants.tables import Organisation

log = logging.getLogger("konsil.reports")

# What a report's progress and failure say (its ``step`` and ``message``), in English as
# stored; the portal's page shows them in the person's language (``PERSON_TEXTS``).
STEP_STARTING: Final = N_("Starting")
STEP_CHECKPOINT: Final = N_("Signing a checkpoint of the access log")
STEP_ATTESTATIONS: Final = N_("Reading the attestations")
STEP_DOCUMENTS: Final = N_("Writing the JSON document and the workbooks")
STEP_PDF: Final = N_("Writing the PDF")
STEP_ARCHIVE: Final = N_("Signing the evidence archive")
STEP_SAVING: Final = N_("Saving the files")
STEP_DONE: Final = N_("Done")
NO_ORGANISATION: Final = N_("There is no such organisation in this region.")
KEYS_DOWN: Final = N_("The region's key service is unavailable; start the report again when it is back.")
DATABASE_DOWN: Final = N_("The region's database was unavailable; start the report again.")
FAILED: Final = N_("The report could not be made; the region's operators have the details in the service log.")
QUEUE_DOWN: Final = N_("The report could not be started: the region's task queue is unavailable.")
COLLECTING: Final = N_("Collecting evidence: %(what)s")
PERSON_TEXTS: Final = (
    STEP_STARTING,
    STEP_CHECKPOINT,
    STEP_ATTESTATIONS,
    STEP_DOCUMENTS,
    STEP_PDF,
    STEP_ARCHIVE,
    STEP_SAVING,
    STEP_DONE,
    NO_ORGANISATION,
    KEYS_DOWN,
    DATABASE_DOWN,
    FAILED,
    QUEUE_DOWN,
)

# The task name on the region's queue (regions/tasks.py runs it).
REPORT_TASK: Final = "konsil.reports.generate"

Format = Literal["pdf", "json", "csv", "zip", "ropa", "oscal"]
FORMATS: tuple[str, ...] = get_args(Format)
# The CSV files are UTF-8; the web layer adds "; charset=utf-8" to every text/* type
# itself (naming it here too sent it twice).
MEDIA_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "json": "application/json",
    "csv": "text/csv",
    "zip": "application/zip",
    "ropa": "text/csv",
    "oscal": "application/json",
}
EXTENSIONS: dict[str, str] = {
    "pdf": "pdf",
    "json": "json",
    "csv": "csv",
    "zip": "zip",
    "ropa": "csv",
    "oscal": "json",
}
# A running job whose heartbeat is older than this was interrupted (its process died).
STALE_AFTER = dt.timedelta(minutes=10)
# A job still queued this long after it was asked for was lost before it started (the
# region service that was to run it in process stopped, or its task was dropped).
NEVER_STARTED_AFTER = dt.timedelta(hours=1)
KEY_SET_PATH = "/.well-known/konsil/keys"

Status = Literal["queued", "running", "done", "failed"]


class ReportRequestError(ValueError):
    """Input no report can be started from; the message names the field."""


class ReportRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What to report on: a framework and a period of whole days (UTC), both ends included."""

    framework: FrameworkId  # gdpr, hipaa, nen7510 or normen
    period_from: dt.date = msgspec.field(name="from")
    period_to: dt.date = msgspec.field(name="to")


class ReportJobOut(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    framework: str
    period_from: dt.date = msgspec.field(name="from")
    period_to: dt.date = msgspec.field(name="to")
    status: Status
    progress: int  # percent
    step: str  # what it is doing now, in words
    message: str  # why it failed
    created_at: dt.datetime
    finished_at: dt.datetime | None
    report_sha256: str
    formats: list[str]  # the files ready to download (all six once done)


def period_of(request: ReportRequest, today: dt.date) -> tuple[FrameworkId, dt.datetime, dt.datetime]:
    """The framework and the period's [start, end) in UTC, or ReportRequestError naming the field."""
    if request.framework not in FRAMEWORK_IDS:
        raise ReportRequestError(
            f"framework: unknown framework {request.framework!r}; one of {', '.join(FRAMEWORK_IDS)}"
        )
    if request.period_to < request.period_from:
        raise ReportRequestError("to: the period ends before it starts")
    if request.period_from > today:
        raise ReportRequestError("from: the period starts in the future")
    start = dt.datetime.combine(request.period_from, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(request.period_to + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    if longer_than_allowed(start, end):
        raise ReportRequestError("to: a period may be at most 3 years long")
    framework: FrameworkId = request.framework
    return framework, start, end


def _status_of(row: dict[str, Any], now: dt.datetime) -> tuple[Status, str]:
    status: Status = row["status"]
    beat = row["heartbeat_at"] or row["started_at"]
    if status == "running" and beat is not None and now - beat > STALE_AFTER:
        return "failed", "The report was interrupted (its process stopped). Start it again."
    if status == "queued" and now - row["created_at"] > NEVER_STARTED_AFTER:
        return "failed", "The report never started (the region's background work stopped). Start it again."
    return status, row["message"]


def job_out(row: dict[str, Any], formats: list[str], now: dt.datetime | None = None) -> ReportJobOut:
    status, message = _status_of(row, now or clock.now())
    return ReportJobOut(
        id=row["id"],
        framework=row["framework"],
        period_from=row["period_start"].astimezone(dt.UTC).date(),
        period_to=(row["period_end"].astimezone(dt.UTC) - dt.timedelta(days=1)).date(),
        status=status,
        progress=row["progress"],
        step=row["step"],
        message=message,
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        report_sha256=row["report_sha256"],
        formats=formats if status == "done" else [],
    )


async def create(
    region: RegionContext, org_id: uuid.UUID, request: ReportRequest, requested_by: AccessEvent
) -> uuid.UUID:
    """Validate and queue a report job; ``requested_by`` is the access-log event of the
    request (written in the same transaction). Raises ReportRequestError, nothing queued."""
    framework, start, end = period_of(request, clock.now().date())
    job_id = uuid.uuid4()
    async with database.transaction(region.engine):
        await ReportJob.insert(
            ReportJob(
                id=job_id,
                org_id=org_id,
                framework=framework,
                period_start=start,
                period_end=end,
                requested_by=requested_by.actor[:80],
                created_at=clock.now(),
            )
        )
        await region.access_log.append_many([msgspec.structs.replace(requested_by, object_id=str(job_id))])
    return job_id


async def get(org_id: uuid.UUID, job_id: uuid.UUID) -> ReportJobOut | None:
    row = await ReportJob.select().where((ReportJob.id == job_id) & (ReportJob.org_id == org_id)).first()
    if row is None:
        return None
    return job_out(row, await _formats(job_id))


async def listing(org_id: uuid.UUID, limit: int = 100) -> list[ReportJobOut]:
    rows = (
        await ReportJob.select()
        .where(ReportJob.org_id == org_id)
        .order_by(ReportJob.created_at, ascending=False)
        .limit(limit)
    )
    done = [r["id"] for r in rows if r["status"] == "done"]
    formats: dict[uuid.UUID, list[str]] = {}
    if done:
        for f in await ReportFile.select(ReportFile.report_id, ReportFile.format).where(
            ReportFile.report_id.is_in(done)
        ):
            formats.setdefault(f["report_id"], []).append(f["format"])
    now = clock.now()
    return [job_out(r, sorted(formats.get(r["id"], []), key=FORMATS.index), now) for r in rows]


async def _formats(job_id: uuid.UUID) -> list[str]:
    rows = await ReportFile.select(ReportFile.format).where(ReportFile.report_id == job_id)
    return sorted((r["format"] for r in rows), key=FORMATS.index)


async def file(org_id: uuid.UUID, job_id: uuid.UUID, file_format: str) -> bytes | None:
    """A finished report's file, or None (no such job of this organisation, not done)."""
    job = await ReportJob.select(ReportJob.id).where((ReportJob.id == job_id) & (ReportJob.org_id == org_id)).first()
    if job is None:
        return None
    row = (
        await ReportFile.select(ReportFile.content)
        .where((ReportFile.report_id == job_id) & (ReportFile.format == file_format))
        .first()
    )
    return None if row is None else bytes(row["content"])


async def mark_failed(job_id: uuid.UUID, message: str) -> None:
    """A job that cannot run (its task could not be queued), with why in words."""
    await _set(job_id, status="failed", message=message[:300], finished_at=clock.now())


# --- generating -----------------------------------------------------------------------


Progress = Callable[[int, str], Awaitable[None]]


async def _set(job_id: uuid.UUID, **values: Any) -> None:
    await ReportJob.update({getattr(ReportJob, k): v for k, v in values.items()}).where(ReportJob.id == job_id)


def collector_words(name: str) -> str:
    """A collector as the progress line shows it ("data-subject requests", not "dsr")."""
    label = collector_label(name)
    return label[:1].lower() + label[1:]


def _collectors(framework: Framework) -> list[str]:
    return sorted({c.check.collector for c in framework.controls if c.check is not None})


async def _attested(org_id: uuid.UUID, framework: str, at: dt.datetime) -> list[Attested]:
    return [
        Attested(
            framework=a.framework,
            control_id=a.control_id,
            statement=a.statement,
            signed_by=f"member {a.signed_by}",
            signed_at=a.signed_at,
            expires_at=a.expires_at,
        )
        for a in await current_attestations(org_id, framework, at)
    ]


async def build_document(
    region: RegionContext, job: dict[str, Any], org_name: str, progress: Progress
) -> ReportDocument:
    """Checkpoint, evidence, attestations → the report document (stored observations pinned to the job)."""
    framework = load_catalogs()[job["framework"]]
    org_id: uuid.UUID = job["org_id"]
    await progress(2, STEP_CHECKPOINT)
    made = await make_report_checkpoint(region, org_id)
    signed = made.signed
    checkpoint = Checkpoint(
        seq=signed.checkpoint.seq,
        head_hash=signed.checkpoint.head_hash,
        kid=signed.signature.kid,
        made_at=dt.datetime.fromisoformat(signed.checkpoint.at),
        document=msgspec.to_builtins(signed),
    )
    now = clock.now()
    # The checkpoint's walk is handed to the access-log evidence, which builds on it only
    # when it covers the chain from its start (a first checkpoint): one walk per report.
    scope = Scope(
        org_id=org_id,
        period_start=job["period_start"],
        period_end=job["period_end"],
        now=now,
        chain_walked=made.walked,
    )
    names = _collectors(framework)
    observations: list[Observation] = []
    for index, name in enumerate(names):
        await progress(5 + 70 * index // len(names), COLLECTING % {"what": collector_words(name)})
        observations.extend(await collect(region, scope, [name]))
    await store.store(observations, report_id=job["id"])
    await progress(76, STEP_ATTESTATIONS)
    attestations = await _attested(org_id, framework.id, job["period_end"])
    signing = await current_signing(region.signer, region.region.public_url.rstrip("/") + KEY_SET_PATH)
    return assemble(
        framework,
        observations,
        attestations,
        org_id=org_id,
        org_name=org_name,
        region=region.region.id,
        jurisdiction=region.region.jurisdiction,
        period_start=job["period_start"],
        period_end=job["period_end"],
        generated_at=now,
        checkpoint=checkpoint,
        subprocessors=for_region(region.region.id),
        signing=signing,
        report_id=job["id"],
    )


async def render(region: RegionContext, doc: ReportDocument, progress: Progress) -> dict[str, bytes]:
    """Every format of ``doc``; the CPU-bound ones in a worker thread."""
    files: dict[str, bytes] = {}
    await progress(80, STEP_DOCUMENTS)
    files["json"] = json_report.json_bytes(doc)
    files["csv"] = await asyncio.to_thread(csv_workbook.csv_bytes, doc)
    files["ropa"] = await asyncio.to_thread(ropa.ropa_bytes, doc)
    files["oscal"] = await asyncio.to_thread(oscal.oscal_bytes, doc)
    await progress(85, STEP_PDF)
    files["pdf"] = await asyncio.to_thread(pdf_report.pdf_bytes, doc)
    await progress(92, STEP_ARCHIVE)
    files["zip"] = await evidence_zip_bytes(doc, region.signer)
    return files


async def generate(region: RegionContext, job_id: uuid.UUID, on_progress: Progress | None = None) -> Status:
    """Run one job to its end (done or failed) and return its status. Safe to run again
    with the same id: a finished job is left as it is; an interrupted one starts over."""
    job = await ReportJob.select().where(ReportJob.id == job_id).first()
    if job is None:
        raise LookupError(f"no report job {job_id} in region {region.region.id}")
    if job["status"] == "done":
        return "done"
    org_name = await _org_name(job["org_id"])
    if org_name is None:
        message = NO_ORGANISATION
        await _set(job_id, status="failed", message=message, finished_at=clock.now())
        return "failed"

    async def progress(percent: int, step: str) -> None:
        await _set(job_id, progress=percent, step=step[:120], heartbeat_at=clock.now())
        if on_progress is not None:
            await on_progress(percent, step)

    await _set(
        job_id,
        status="running",
        progress=0,
        step=STEP_STARTING,
        message="",
        started_at=clock.now(),
        heartbeat_at=clock.now(),
        attempts=job["attempts"] + 1,
    )
    try:
        await store.discard(job_id)  # what an interrupted attempt stored
        doc = await build_document(region, job, org_name, progress)
        files = await render(region, doc, progress)
        await progress(97, STEP_SAVING)
        async with database.transaction(region.engine):
            await ReportFile.delete().where(ReportFile.report_id == job_id)
            await ReportFile.insert(
                *(
                    ReportFile(
                        id=uuid.uuid4(),
                        report_id=job_id,
                        format=name,
                        content=content,
                        sha256=hashlib.sha256(content).hexdigest(),
                        size=len(content),
                    )
                    for name, content in files.items()
                )
            )
            await _set(
                job_id,
                status="done",
                progress=100,
                step=STEP_DONE,
                finished_at=clock.now(),
                report_sha256=json_report.report_sha256(doc),
            )
    except Exception as exc:
        log.exception("report job %s failed", job_id)  # ids only: no personal data
        await _set(job_id, status="failed", message=_safe_reason(exc), finished_at=clock.now())
        return "failed"
    log.info("report job %s done (%s, org %s)", job_id, job["framework"], job["org_id"])
    return "done"


async def _org_name(org_id: uuid.UUID) -> str | None:
    """The organisation's name; for one removed by crypto-shredding (its access log and
    reports outlive it), its slug and removal date from its deletion certificate."""
    row = await Organisation.select(Organisation.name).where(Organisation.id == org_id).first()
    if row is not None:
        return str(row["name"])
    certificate = await certificates.stored_certificate(org_id)
    if certificate is None:
        return None
    removed = certificate.certificate.removed_at[:10]
    return f"{certificate.certificate.slug} (removed on {removed})"


def _safe_reason(exc: Exception) -> str:
    """Why a job failed, in words that name no personal data and no internals."""
    name = type(exc).__name__
    if name in {"KeyUnavailable", "SigningUnavailable"}:
        return KEYS_DOWN
    if name in {"ConnectionRefusedError", "OSError", "InterfaceError", "ConnectionDoesNotExistError"}:
        return DATABASE_DOWN
    return FAILED
