"""Report jobs end to end on the real PostgreSQL region database: a job makes a signed
checkpoint, runs every collector its framework names, stores the observations pinned to
it, renders the six formats and saves them with its "done" mark; progress is recorded;
bad input starts nothing; a job that dies leaves no file and runs again from its start;
a removed organisation is still reported on."""

from __future__ import annotations

import datetime as dt
import io
import uuid
import zipfile

import msgspec
import pytest
from pypdf import PdfReader

from konsil.compliance.access_log.checkpoints import make_checkpoint
from konsil.compliance.access_log.tables import AccessLogEntry, AccessLogHead
from konsil.compliance.controls.catalog import FrameworkId
from konsil.compliance.evidence import store
from konsil.compliance.reports import jobs
from konsil.compliance.reports.jobs import FORMATS, ReportRequest, ReportRequestError
from konsil.compliance.reports.json_report import decode_report
from konsil.compliance.reports.model import ReportDocument
from konsil.compliance.reports.tables import ReportFile, ReportJob
from konsil.compliance.reports.verify_zip import verify_zip
from konsil.platform.core import clock
from konsil.platform.core.access import AccessEvent
from konsil.platform.core.region import RegionContext
from konsil.tenants import removal
from konsil.tenants.actors import Actor
from konsil.tenants.tables import Visit
from tests.compliance.evidence.conftest import (
    OWNER_NAME,
    VISITOR_NAME,
    VISITOR_PHONE,
    new_org,
    new_request,
    new_visit,
)


def _request(framework: FrameworkId = "gdpr", days: int = 30) -> ReportRequest:
    today = clock.now().date()
    return ReportRequest(framework=framework, period_from=today - dt.timedelta(days=days), period_to=today)


def _event(org_id: uuid.UUID) -> AccessEvent:
    return AccessEvent(
        org_id=org_id,
        actor="member:test-auditor",
        actor_role="auditor",
        subject_ref=f"org:{org_id}",
        action="create",
        object_type="compliance report",
        object_id="",
        source_address="127.0.0.1",
        outcome="success",
        purpose="compliance audit",
        source="region:eu/test",
    )


async def test_a_report_job_makes_every_format_with_progress_and_the_checkpoint(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    await new_request(ctx, org)
    job_id = await jobs.create(ctx, org.id, _request("nen7510"), _event(org.id))
    seen: list[tuple[int, str]] = []

    async def progress(percent: int, step: str) -> None:
        seen.append((percent, step))

    assert await jobs.generate(ctx, job_id, progress) == "done"

    made = await jobs.get(org.id, job_id)
    assert made is not None and made.status == "done" and made.progress == 100
    assert made.formats == list(FORMATS)
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and len(seen) >= 10
    assert any("Collecting evidence: access log" in step for _, step in seen)
    # The JSON document: every control of the framework, the observations pinned to the job.
    document = decode_report((await jobs.file(org.id, job_id, "json")) or b"")
    assert document.id == job_id and document.framework.id == "nen7510"
    assert {f.control_id for f in document.findings} >= {"A.10.1.2", "A.12.4.1", "NEN 7513 ch.5"}
    assert [o.id for o in await store.load(job_id)] == [
        o.id for o in sorted(document.observations, key=lambda o: o.collector)
    ]
    # The checkpoint the report covers is the log's head when it was made.
    head = await AccessLogHead.select().where(AccessLogHead.org_id == org.id).first()
    assert head is not None and 0 < document.checkpoint.seq <= head["seq"]
    # The PDF prints the checkpoint and the report's hash; it names no visitor.
    pdf = (await jobs.file(org.id, job_id, "pdf")) or b""
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert f"#{document.checkpoint.seq}" in text or str(document.checkpoint.seq) in text
    assert made.report_sha256[:16] in text.replace("\n", "")
    for personal in (VISITOR_NAME, VISITOR_PHONE, OWNER_NAME):
        assert personal not in text
    # The evidence archive verifies against the region's key set, and not after a change.
    archive = (await jobs.file(org.id, job_id, "zip")) or b""
    key_set = await ctx.signer.key_set()
    assert verify_zip(io.BytesIO(archive), key_set).ok
    with zipfile.ZipFile(io.BytesIO(archive)) as original:
        members = {name: original.read(name) for name in original.namelist()}
    members["report.json"] = members["report.json"].replace(b'"nen7510"', b'"gdpr"   ', 1)
    changed = io.BytesIO()
    with zipfile.ZipFile(changed, "w") as out:
        for name, data in members.items():
            out.writestr(name, data)
    assert not verify_zip(io.BytesIO(changed.getvalue()), key_set).ok
    # Running it again leaves a finished report as it is.
    assert await jobs.generate(ctx, job_id) == "done"
    assert await ReportFile.count().where(ReportFile.report_id == job_id) == len(FORMATS)


@pytest.mark.parametrize(
    ("framework", "start", "end", "field"),
    [
        ("gdpr", 0, -1, "to: the period ends before it starts"),
        ("gdpr", -(3 * 366), 0, "to: a period may be at most 3 years long"),
        ("gdpr", 2, 3, "from: the period starts in the future"),
    ],
)
async def test_bad_input_names_the_field_and_starts_nothing(
    ctx: RegionContext, framework: FrameworkId, start: int, end: int, field: str
) -> None:
    org = await new_org(ctx)
    today = clock.now().date()
    request = ReportRequest(
        framework=framework, period_from=today + dt.timedelta(days=start), period_to=today + dt.timedelta(days=end)
    )
    with pytest.raises(ReportRequestError) as refused:
        await jobs.create(ctx, org.id, request, _event(org.id))
    assert str(refused.value).startswith(field)
    assert await ReportJob.count().where(ReportJob.org_id == org.id) == 0


def test_an_unknown_framework_is_refused_at_the_edge_naming_the_field() -> None:
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.convert({"framework": "iso27001", "from": "2026-01-01", "to": "2026-01-31"}, ReportRequest)
    assert "$.framework" in str(refused.value)


async def test_a_job_that_dies_leaves_no_file_and_runs_again_from_its_start(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    job_id = await jobs.create(ctx, org.id, _request(), _event(org.id))

    class Killed(BaseException):
        """The worker process dies mid-way (not an error the job could record)."""

    async def dies_while_rendering(percent: int, step: str) -> None:
        if percent >= 85:
            raise Killed

    with pytest.raises(Killed):
        await jobs.generate(ctx, job_id, dies_while_rendering)
    assert await ReportFile.count().where(ReportFile.report_id == job_id) == 0
    stored = await store.load(job_id)
    assert stored, "the dead attempt had stored its observations"
    # Its heartbeat stops: after a while it shows as interrupted, with what to do.
    stale = clock.now() - jobs.STALE_AFTER - dt.timedelta(minutes=1)
    await ReportJob.update({ReportJob.heartbeat_at: stale}).where(ReportJob.id == job_id)
    shown = await jobs.get(org.id, job_id)
    assert shown is not None and shown.status == "failed" and "interrupted" in shown.message and shown.formats == []
    # The redelivered task runs the same job again, from its start.
    assert await jobs.generate(ctx, job_id) == "done"
    again = await store.load(job_id)
    assert {o.id for o in again}.isdisjoint({o.id for o in stored}), "the dead attempt's observations were dropped"
    assert await ReportFile.count().where(ReportFile.report_id == job_id) == len(FORMATS)


async def test_a_failing_step_marks_the_job_failed_with_a_reason_and_no_file(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    job_id = await jobs.create(ctx, org.id, _request(), _event(org.id))

    async def signing_breaks(percent: int, step: str) -> None:
        if step.startswith("Signing the evidence archive"):
            raise OSError("disk gone")

    assert await jobs.generate(ctx, job_id, signing_breaks) == "failed"
    failed = await jobs.get(org.id, job_id)
    assert failed is not None and failed.status == "failed" and failed.formats == []
    assert "disk" not in failed.message and failed.message
    assert await ReportFile.count().where(ReportFile.report_id == job_id) == 0


async def test_a_removed_organisation_is_still_reported_on_by_id(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    operator = Actor("operator:cli", "operator", "operator:cli", "local", "delete the customer account")
    await removal.remove_organisation(ctx, operator, org.id)
    job_id = await jobs.create(ctx, org.id, _request("hipaa"), _event(org.id))

    assert await jobs.generate(ctx, job_id) == "done"

    document = decode_report((await jobs.file(org.id, job_id, "json")) or b"")
    assert document.org_name.startswith(org.record.slug) and "removed on" in document.org_name
    assert msgspec.json.encode(document).count(b"chain_verifies") >= 1


async def test_a_row_left_past_its_retention_makes_the_report_say_fail_with_the_reason(ctx: RegionContext) -> None:
    org = await new_org(ctx, retention_days=7)
    visit_id, _ = await new_visit(ctx, org)
    # A purge that never ran: the visit is 10 days old with a 7-day retention.
    await Visit.update({Visit.arrived_at: clock.now() - dt.timedelta(days=10)}).where(Visit.id == visit_id)
    job_id = await jobs.create(ctx, org.id, _request("normen"), _event(org.id))

    assert await jobs.generate(ctx, job_id) == "done"

    document = decode_report((await jobs.file(org.id, job_id, "json")) or b"")
    finding = next(f for f in document.findings if f.control_id == "FA 25")
    assert finding.status == "fail"
    assert "Kept longer than allowed" in finding.reason and str(visit_id) in finding.reason
    pdf = (await jobs.file(org.id, job_id, "pdf")) or b""
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).replace("\n", " ")
    assert "Kept longer than allowed" in text


def _chain_findings(document: ReportDocument) -> list[tuple[str, str]]:
    """(control, status) of every finding resting on the access-log chain check."""
    return [(f.control_id, f.status) for f in document.findings if any(c.name == "chain_verifies" for c in f.checks)]


async def test_a_first_report_walks_the_chain_once_and_still_verifies_it_to_its_head(ctx: RegionContext) -> None:
    """No checkpoint before: the report's own checkpoint walks the chain from its start,
    and the access-log evidence builds on that walk, verifying only the entries after it."""
    org = await new_org(ctx)
    await new_visit(ctx, org)
    job_id = await jobs.create(ctx, org.id, _request("hipaa"), _event(org.id))

    assert await jobs.generate(ctx, job_id) == "done"

    document = decode_report((await jobs.file(org.id, job_id, "json")) or b"")
    [evidence] = [o for o in document.observations if o.collector == "access_log"]
    chain = evidence.evidence["chain"]
    assert chain["ok"] and evidence.check("chain_verifies").result == "pass"
    assert chain["verified_by_report_checkpoint"] == document.checkpoint.seq
    # Every entry up to the head counted, the collection's own entries after the checkpoint too.
    assert chain["checked"] == chain["head_seq"] > document.checkpoint.seq
    assert _chain_findings(document) and all(status == "pass" for _, status in _chain_findings(document))


async def test_an_early_entry_edited_after_a_checkpoint_fails_the_reports_chain_control(ctx: RegionContext) -> None:
    """The region checkpointed the log; then entry #5 is edited in the database. The
    report's own checkpoint walks only what came after the region's last one, so it
    signs; the access-log evidence must still walk the chain from its start."""
    org = await new_org(ctx)
    await new_visit(ctx, org)
    await make_checkpoint(ctx, org.id)  # as the region's schedule makes them
    await AccessLogEntry.raw(
        "UPDATE access_log_entry SET purpose = 'nothing happened' WHERE org_id = {} AND seq = 5", org.id
    )
    job_id = await jobs.create(ctx, org.id, _request("hipaa"), _event(org.id))

    assert await jobs.generate(ctx, job_id) == "done"

    document = decode_report((await jobs.file(org.id, job_id, "json")) or b"")
    [evidence] = [o for o in document.observations if o.collector == "access_log"]
    check = evidence.check("chain_verifies")
    assert check.result == "fail"
    assert "entry #5" in check.reason and "modified" in check.reason
    assert evidence.evidence["chain"]["verified_by_report_checkpoint"] == 0
    assert _chain_findings(document) and all(status == "fail" for _, status in _chain_findings(document))
    pdf = (await jobs.file(org.id, job_id, "pdf")) or b""
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).replace("\n", " ")
    assert "entry #5" in text


async def test_an_early_entry_edited_before_a_first_report_is_never_reported_as_intact(ctx: RegionContext) -> None:
    """With no checkpoint before it, the report's own checkpoint walks from the start,
    finds entry #5 changed and the region refuses to sign: no report says the log is fine."""
    org = await new_org(ctx)
    await new_visit(ctx, org)
    await AccessLogEntry.raw(
        "UPDATE access_log_entry SET purpose = 'nothing happened' WHERE org_id = {} AND seq = 5", org.id
    )
    job_id = await jobs.create(ctx, org.id, _request("hipaa"), _event(org.id))

    assert await jobs.generate(ctx, job_id) == "failed"
    assert await ReportFile.count().where(ReportFile.report_id == job_id) == 0


async def test_a_tamper_alarm_inside_the_reused_walk_still_fails_the_reports_chain_control(ctx: RegionContext) -> None:
    """A forged head (its seal blanked) is found by the next append, which records an
    alarm entry in the chain; the report's first walk covers that entry and the
    access-log evidence builds on the walk: the alarm must still fail the control."""
    org = await new_org(ctx)
    await new_visit(ctx, org)
    await AccessLogHead.update({AccessLogHead.seal: "", AccessLogHead.seal_key: ""}).where(
        AccessLogHead.org_id == org.id
    )
    await new_visit(ctx, org)  # a legitimate append over the unsealed head: the alarm goes first
    job_id = await jobs.create(ctx, org.id, _request("hipaa"), _event(org.id))

    assert await jobs.generate(ctx, job_id) == "done"

    document = decode_report((await jobs.file(org.id, job_id, "json")) or b"")
    [evidence] = [o for o in document.observations if o.collector == "access_log"]
    assert evidence.evidence["chain"]["verified_by_report_checkpoint"] > 0, "the walk was reused"
    check = evidence.check("chain_verifies")
    assert check.result == "fail" and "tampered" in check.reason, check.reason
    assert _chain_findings(document) and all(status == "fail" for _, status in _chain_findings(document))
