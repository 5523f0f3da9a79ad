"""Compliance reports as auditors meet them (issue 13, items 6 and 7), through the running
stack: an auditor starts a GDPR report over the API and follows its progress; every
format downloads with its own type and file name, the PDF names the organisation and
period, the evidence ZIP verifies offline with the documented command against the
region's published key set, the OSCAL export parses with compliance-trestle; the start
and every download are in the access log as the auditor's; an ended grant, a role
without reports, another organisation and bad input are refused and start nothing;
``konsil report`` writes the same report from the command line.

One organisation and one finished report serve the whole module (the report is made
once, in the module fixture, as an auditor)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import os
import secrets
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from pypdf import PdfReader
from trestle.oscal.assessment_results import AssessmentResults

from konsil.compliance.reports.jobs import REPORT_TASK
from konsil.compliance.reports.json_report import decode_report
from konsil.platform.cli.launcher import start_processes, stop_processes, wait_healthy
from konsil.platform.core.settings import Settings, load_settings
from konsil.regions.tasks import CeleryRunner, queue_name
from tests.conftest import SESSION_TAG, Stack, auditor_access_until, fetch, free_port, rabbitmqctl, wait_until
from tests.e2e import test_purge_workers as purge_workers

pytestmark = pytest.mark.e2e

FORMATS = ("pdf", "json", "csv", "zip", "ropa", "oscal")
# What each download is, as a browser or an auditor's tool sees it.
CONTENT = {
    "pdf": ("application/pdf", ".pdf"),
    "json": ("application/json", ".json"),
    "csv": ("text/csv; charset=utf-8", ".csv"),
    "zip": ("application/zip", ".zip"),
    "ropa": ("text/csv; charset=utf-8", ".csv"),
    "oscal": ("application/json", ".json"),
}
PERIOD_DAYS = 30
# An auditor let in for this long when the module starts: ended by the time its test runs.
SHORT_GRANT_SECONDS = 5


def day_in_words(day: dt.date) -> str:
    return f"{day.day} {day:%B} {day.year}"


@dataclass
class Audited:
    """An EU organisation with an owner, an expert, an auditor, an auditor whose grant
    ends seconds after it is given, and one GDPR report the auditor made."""

    stack: Stack
    slug: str
    org_id: uuid.UUID
    name: str
    clients: dict[str, httpx.Client] = field(default_factory=dict)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    period: tuple[dt.date, dt.date] = (dt.date.min, dt.date.min)
    started: httpx.Response | None = None
    seen: list[dict[str, Any]] = field(default_factory=list)  # every progress answer, in order

    @property
    def base(self) -> str:
        return self.stack.region_url("eu")

    @property
    def api(self) -> str:
        return f"/api/v1/orgs/{self.slug}/reports"

    @property
    def report(self) -> dict[str, Any]:
        return self.seen[-1]

    def db(self, sql: str, *args: Any) -> list[Any]:
        return asyncio.run(fetch(self.stack.dsns["eu"], sql, *args))

    def jobs(self) -> int:
        return int(self.db("SELECT count(*) AS n FROM report_job WHERE org_id = $1", self.org_id)[0]["n"])

    def last_seq(self) -> int:
        rows = self.db("SELECT coalesce(max(seq), 0) AS seq FROM access_log_entry WHERE org_id = $1", self.org_id)
        return int(rows[0]["seq"])

    def report_log(self, after: int) -> list[dict[str, Any]]:
        rows = self.db(
            "SELECT actor, actor_role, action, object_id, outcome, purpose FROM access_log_entry"
            " WHERE org_id = $1 AND seq > $2 AND object_type = 'compliance report' ORDER BY seq",
            self.org_id,
            after,
        )
        return [dict(r) for r in rows]


def follow(client: httpx.Client, path: str, seen: list[dict[str, Any]], within: float = 120) -> dict[str, Any]:
    """Ask for a report's progress until it is done or failed, keeping every answer."""

    def finished() -> dict[str, Any] | None:
        answer = client.get(path)
        assert answer.status_code == 200, answer.text
        seen.append(answer.json())
        return seen[-1] if seen[-1]["status"] in {"done", "failed"} else None

    return wait_until(finished, "the report to finish", within=within, every=0.02)


@pytest.fixture(scope="module")
def audited(stack: Stack) -> Audited:
    made = stack.signup("eu", slug=stack.unique("reported"))
    a = Audited(stack, made["slug"], uuid.UUID(made["organisation_id"]), f"Praxis {made['slug']}")
    owner = a.clients["owner"] = stack.login(a.base, a.slug, made["owner"]["email"])
    for role in ("auditor", "expert"):
        a.members[role] = stack.add_member(owner, a.slug, role)
        a.clients[role] = stack.login(a.base, a.slug, a.members[role]["email"])
    ending = auditor_access_until(days=SHORT_GRANT_SECONDS / 86400)
    a.members["ended"] = stack.add_member(owner, a.slug, "auditor", access_expires_at=ending)
    a.clients["ended"] = stack.login(a.base, a.slug, a.members["ended"]["email"])
    # Something to report on: a room and a visitor's arrival.
    room = owner.post(f"/api/v1/orgs/{a.slug}/rooms", json={"slug": "consult", "title": "Consultation"})
    assert room.status_code == 201, room.text
    joined = httpx.post(
        f"{a.base}/{a.slug}/consult/visits", data={"name": "Visitor", "consent": "yes"}, follow_redirects=False
    )
    assert joined.status_code == 303, joined.text

    today = dt.datetime.now(dt.UTC).date()
    a.period = (today - dt.timedelta(days=PERIOD_DAYS), today)
    body = {"framework": "gdpr", "from": a.period[0].isoformat(), "to": a.period[1].isoformat()}
    a.started = a.clients["auditor"].post(a.api, json=body)
    assert a.started.status_code == 202, a.started.text
    follow(a.clients["auditor"], f"{a.api}/{a.started.json()['id']}", a.seen)
    return a


# --- starting and following -------------------------------------------------------------------


def test_an_auditor_starts_a_report_and_follows_its_progress(audited: Audited) -> None:
    a = audited
    assert a.started is not None
    started = a.started.json()
    assert started["status"] == "queued" and started["progress"] == 0 and started["formats"] == []
    assert (started["framework"], started["from"], started["to"]) == (
        "gdpr",
        a.period[0].isoformat(),
        a.period[1].isoformat(),
    )

    report = a.report
    assert report["status"] == "done", report
    assert report["progress"] == 100 and report["message"] == "" and report["finished_at"]
    assert report["formats"] == list(FORMATS)
    assert len(report["report_sha256"]) == 64

    percents = [s["progress"] for s in a.seen]
    assert percents == sorted(percents), "progress never goes back"
    running = [s for s in a.seen if s["status"] == "running"]
    assert running and any(0 < s["progress"] < 100 for s in running), "the progress moved while it ran"
    steps = {s["step"] for s in running}
    assert len(steps) >= 2, steps
    # Steps are plain words a person reads, never a code name.
    for step in steps:
        assert step and step[0].isupper() and "_" not in step and "dsr" not in step.split(), step
    assert any(step.startswith("Collecting evidence") for step in steps), steps
    assert all(s["formats"] == [] for s in a.seen if s["status"] != "done"), "nothing offered before it is done"

    listed = a.clients["auditor"].get(a.api)
    assert listed.status_code == 200
    [mine] = [r for r in listed.json() if r["id"] == report["id"]]
    assert mine == report

    [logged] = [e for e in a.report_log(0) if e["action"] == "create" and e["object_id"] == report["id"]]
    assert logged == {
        "actor": f"member:{a.members['auditor']['id']}",
        "actor_role": "auditor",
        "action": "create",
        "object_id": report["id"],
        "outcome": "success",
        "purpose": logged["purpose"],
    }
    assert logged["purpose"].startswith("compliance audit")


# --- downloading -------------------------------------------------------------------------------


def test_every_format_downloads_checks_out_and_each_download_is_logged_as_the_auditors(
    audited: Audited, tmp_path: Path
) -> None:
    a = audited
    report = a.report
    auditor = a.clients["auditor"]
    seq = a.last_seq()
    files: dict[str, bytes] = {}
    for name in FORMATS:
        got = auditor.get(f"{a.api}/{report['id']}/files/{name}")
        assert got.status_code == 200, (name, got.text)
        media_type, extension = CONTENT[name]
        assert got.headers["content-type"] == media_type, name
        disposition = got.headers["content-disposition"]
        assert disposition.startswith("attachment; filename=") and disposition.endswith(f'{extension}"'), disposition
        assert got.headers["cache-control"] == "no-store"
        files[name] = got.content

    # The PDF a person reads: the organisation, the framework and the period on it.
    pdf = PdfReader(io.BytesIO(files["pdf"]))
    text = "\n".join(page.extract_text() for page in pdf.pages)
    first, last = a.period
    assert a.name in text and "GDPR" in text
    assert f"{day_in_words(first)} to {day_in_words(last)}" in text, text[:2000]
    assert report["report_sha256"] in text.replace("\n", ""), "the PDF prints the SHA-256 of its JSON document"
    assert pdf.metadata is not None and a.name in str(pdf.metadata.title)

    # The JSON document is the one the job names by its SHA-256.
    assert hashlib.sha256(files["json"]).hexdigest() == report["report_sha256"]
    document = decode_report(files["json"])
    assert (document.org_id, document.org_name, document.framework.id) == (a.org_id, a.name, "gdpr")
    assert document.period_start.date() == first and document.period_end.date() == last + dt.timedelta(days=1)
    # ... and it validates against the schema the region publishes (no login needed).
    published = httpx.get(f"{a.base}/schemas/konsil-report-v1.json", timeout=10)
    assert published.status_code == 200 and published.headers["content-type"].startswith("application/schema+json")
    jsonschema.validate(json.loads(files["json"]), published.json())

    # The workbooks read as CSV: one row per check of every observation, and one per
    # processing activity.
    evidence = list(csv.DictReader(io.StringIO(files["csv"].decode("utf-8-sig"))))
    assert len(evidence) == sum(len(o.checks) for o in document.observations) > 0
    assert {row["Observation id"] for row in evidence} == {str(o.id) for o in document.observations}
    ropa = list(csv.reader(io.StringIO(files["ropa"].decode("utf-8-sig"))))
    assert len(ropa) > 2 and all(len(row) == len(ropa[0]) for row in ropa)

    # The evidence archive verifies offline, with the key set fetched from the region.
    keys = httpx.get(f"{a.base}/.well-known/konsil/keys", timeout=10)
    assert keys.status_code == 200
    (tmp_path / "keys.json").write_bytes(keys.content)
    (tmp_path / "report.zip").write_bytes(files["zip"])
    verified = verify_zip(tmp_path / "report.zip", tmp_path / "keys.json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("VERIFIED") and "Warning" not in verified.stdout
    with zipfile.ZipFile(io.BytesIO(files["zip"])) as archive:
        assert archive.read("report.json") == files["json"]
    # ... and not once one byte of the report in it changed.
    (tmp_path / "changed.zip").write_bytes(changed_member(files["zip"], "report.json"))
    refused = verify_zip(tmp_path / "changed.zip", tmp_path / "keys.json")
    assert refused.returncode == 1 and "report.json" in refused.stdout, refused.stdout

    # The OSCAL assessment results parse with compliance-trestle, one finding a control.
    oscal = json.loads(files["oscal"])
    results = AssessmentResults.model_validate(oscal["assessment-results"])
    [result] = results.results
    assert result.findings is not None and len(result.findings) == len(document.findings)

    # Each download is in the organisation's access log as the auditor's, for an audit.
    downloads = [e for e in a.report_log(seq) if e["action"] == "export"]
    assert [e["object_id"] for e in downloads] == [f"{report['id']}/{name}" for name in FORMATS]
    for entry in downloads:
        assert entry["actor"] == f"member:{a.members['auditor']['id']}"
        assert entry["actor_role"] == "auditor" and entry["outcome"] == "success"
        assert entry["purpose"] == "compliance audit: download a compliance report", entry


def verify_zip(archive: Path, keys: Path) -> subprocess.CompletedProcess[str]:
    """The documented offline check, as an auditor runs it."""
    return subprocess.run(
        [sys.executable, "-m", "konsil.compliance.reports.verify_zip", str(archive), "--keys", str(keys)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def changed_member(data: bytes, name: str) -> bytes:
    """The archive again, with one byte of one member changed (a well-formed ZIP)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as copy:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == name:
                content = content[:10] + bytes([content[10] ^ 1]) + content[11:]
            copy.writestr(info, content)
    return out.getvalue()


# --- who may ----------------------------------------------------------------------------------


def every_route(a: Audited, report_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", a.api),
        ("POST", a.api),
        ("GET", f"{a.api}/{report_id}"),
        *(("GET", f"{a.api}/{report_id}/files/{name}") for name in FORMATS),
    ]


def test_an_auditor_whose_grant_ended_is_refused_on_every_reports_route(audited: Audited) -> None:
    a = audited
    ended = a.clients["ended"]
    body = {"framework": "gdpr", "from": a.period[0].isoformat(), "to": a.period[1].isoformat()}
    jobs, seq = a.jobs(), a.last_seq()

    def ended_now() -> httpx.Response | None:
        answer = ended.get(a.api)
        return answer if answer.status_code != 200 else None

    # The first refusal says why; the session is gone from then on.
    first = wait_until(ended_now, "the short grant to end", within=SHORT_GRANT_SECONDS + 10)
    assert first.status_code == 401 and first.json()["error"] == "access_expired", first.text
    assert "your auditor access to this organisation ended on" in first.json()["message"]
    for method, path in every_route(a, a.report["id"]):
        refused = ended.request(method, path, json=body if method == "POST" else None)
        assert refused.status_code == 401, (method, path, refused.text)
    page = ended.get(f"/{a.slug}/portal/reports", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login", "the page sends them to log in"
    assert a.jobs() == jobs, "nothing started"
    assert not [e for e in a.report_log(seq) if e["outcome"] == "success"], "no report read or started"


def test_an_expert_is_refused_and_starts_nothing(audited: Audited) -> None:
    a = audited
    expert = a.clients["expert"]
    body = {"framework": "gdpr", "from": a.period[0].isoformat(), "to": a.period[1].isoformat()}
    jobs = a.jobs()
    for method, path in [*every_route(a, a.report["id"]), ("GET", f"/{a.slug}/portal/reports")]:
        refused = expert.request(method, path, json=body if method == "POST" else None)
        assert refused.status_code == 403, (method, path, refused.text)
    assert a.jobs() == jobs


def test_another_organisations_report_is_not_found(stack: Stack, audited: Audited) -> None:
    a = audited
    other = stack.signup("eu")
    owner = stack.login(a.base, other["slug"], other["owner"]["email"])
    theirs = f"/api/v1/orgs/{other['slug']}/reports"
    report_id = a.report["id"]
    for path in (f"{theirs}/{report_id}", *(f"{theirs}/{report_id}/files/{name}" for name in FORMATS)):
        answer = owner.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert report_id not in answer.text
    assert owner.get(theirs).json() == [], "another organisation's reports are not listed"
    # To this organisation's auditor, the other one does not exist.
    assert a.clients["auditor"].get(f"{theirs}/{report_id}").status_code == 404
    # Nor is the organisation served by another region.
    us = httpx.get(f"{stack.region_url('us')}{a.api}/{report_id}", cookies=a.clients["auditor"].cookies, timeout=10)
    assert us.status_code == 404, us.text


def test_a_report_lost_before_it_started_reads_as_failed_in_words(audited: Audited) -> None:
    """A job asked for two hours ago and never started (the region service that was to
    run it stopped first) must not read "waiting to start" for ever."""
    a = audited
    lost = uuid.uuid4()
    start = dt.datetime.combine(a.period[0], dt.time(), tzinfo=dt.UTC)
    a.db(
        "INSERT INTO report_job (id, org_id, framework, period_start, period_end, status, progress, step,"
        " requested_by, created_at, attempts, message, report_sha256)"
        " VALUES ($1, $2, 'gdpr', $3, $4, 'queued', 0, '', $5,"
        " now() - interval '2 hours', 0, '', '')",
        lost,
        a.org_id,
        start,
        start + dt.timedelta(days=30),
        f"member:{a.members['auditor']['id']}",
    )
    shown = a.clients["auditor"].get(f"{a.api}/{lost}").json()
    assert (shown["status"], shown["formats"]) == ("failed", []), shown
    assert shown["message"].startswith("The report never started") and "Start it again" in shown["message"]
    listed = {r["id"]: r for r in a.clients["auditor"].get(a.api).json()}
    assert listed[str(lost)]["status"] == "failed"
    early = a.clients["auditor"].get(f"{a.api}/{lost}/files/pdf")
    assert early.status_code == 404 and "not finished" in early.json()["message"]


# --- bad input ---------------------------------------------------------------------------------


def test_bad_input_is_a_400_naming_the_field_and_starts_nothing(audited: Audited) -> None:
    a = audited
    today = dt.datetime.now(dt.UTC).date()
    days = dt.timedelta
    auditor = a.clients["auditor"]
    cases: list[tuple[Any, str]] = [
        ({"framework": "iso27001", "from": "2025-01-01", "to": "2025-01-31"}, "framework"),
        ({"framework": "gdpr", "from": str(today), "to": str(today - days(1))}, "to"),
        ({"framework": "gdpr", "from": str(today - days(3 * 365 + 10)), "to": str(today)}, "to"),
        ({"framework": "gdpr", "from": str(today + days(1)), "to": str(today + days(2))}, "from"),
        ({"framework": "gdpr", "from": "2025-13-01", "to": "2025-12-31"}, "from"),
        ({"framework": "gdpr", "from": "2025-01-01", "to": "31.12.2025"}, "to"),
        ({"framework": "gdpr", "from": "2025-01-01"}, "to"),
        ({"framework": 7, "from": "2025-01-01", "to": "2025-01-31"}, "framework"),
    ]
    jobs, seq = a.jobs(), a.last_seq()
    for body, named in cases:
        refused = auditor.post(a.api, json=body)
        assert refused.status_code == 400, (body, refused.text)
        answer = refused.json()
        said = " ".join([answer["message"], *answer.get("details", [])])
        assert named in said.replace("`", " ").replace("$.", " ").split() or said.startswith(f"{named}:"), (
            body,
            said,
        )
    unknown = auditor.get(f"{a.api}/{a.report['id']}/files/docx")
    assert unknown.status_code == 400 and unknown.json()["message"].startswith("format:"), unknown.text
    assert a.jobs() == jobs, "no bad request started a report"
    assert a.report_log(seq) == [], "nor wrote anything in the log as if it had"


# --- the command line --------------------------------------------------------------------------


def konsil_report(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    config = stack.run_dir / "region-eu.toml"
    return subprocess.run(
        [sys.executable, "-m", "konsil.platform.cli.main", "report", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")} | {"COLUMNS": "160"},
    )


def test_konsil_report_writes_the_file_and_refuses_bad_input(audited: Audited, tmp_path: Path) -> None:
    a = audited
    first, last = a.period
    period = ("--from", first.isoformat(), "--to", last.isoformat())
    out = tmp_path / "report.pdf"
    made = konsil_report(
        a.stack, "--org", a.slug, "--framework", "nen7510", *period, "--format", "pdf", "--out", str(out)
    )
    assert made.returncode == 0, made.stderr
    assert f"written to {out}" in made.stdout, made.stdout
    text = "\n".join(page.extract_text() for page in PdfReader(out).pages)
    assert a.name in text and f"{day_in_words(first)} to {day_in_words(last)}" in text
    assert "NEN 7510" in text
    # The job is the organisation's like any other: listed, with every format.
    listed = [r for r in a.clients["auditor"].get(a.api).json() if r["framework"] == "nen7510"]
    assert [r["status"] for r in listed] == ["done"] and listed[0]["formats"] == list(FORMATS)

    jobs = a.jobs()
    backwards = konsil_report(
        a.stack, "--org", a.slug, "--framework", "gdpr", "--from", last.isoformat(), "--to", first.isoformat(),
        "--format", "pdf", "--out", str(tmp_path / "b.pdf"),
    )  # fmt: skip
    assert backwards.returncode == 2 and "to: the period ends before it starts" in backwards.stderr, backwards.stderr
    malformed = konsil_report(a.stack, "--org", a.slug, "--framework", "gdpr", "--from", "2025-13-01", "--to",
                              "2025-12-31", "--format", "pdf")  # fmt: skip
    assert malformed.returncode == 2 and "--from" in malformed.stderr, malformed.stderr
    unknown = konsil_report(a.stack, "--org", "no-such-practice", "--framework", "gdpr", *period, "--format", "pdf")
    assert unknown.returncode == 2 and "no organisation 'no-such-practice'" in unknown.stderr, unknown.stderr

    kept = tmp_path / "kept.pdf"
    kept.write_bytes(b"an earlier report")
    again = konsil_report(
        a.stack, "--org", a.slug, "--framework", "gdpr", *period, "--format", "pdf", "--out", str(kept)
    )
    assert again.returncode == 2 and "exists already" in again.stderr, again.stderr
    assert kept.read_bytes() == b"an earlier report", "an existing file is never overwritten"
    assert a.jobs() == jobs, "no refused command started a report"
    assert not list(tmp_path.glob("b.pdf")) and not list(Path.cwd().glob("konsil-no-such-practice-*"))


# --- on the region's Celery workers (services mode) ----------------------------------------------


@dataclass
class OnWorkers:
    """A control plane and region EU's service in services mode, EU and US each with
    its own RabbitMQ vhost and PostgreSQL database; no worker runs until a test starts one."""

    settings: Settings
    dsns: dict[str, str]

    @property
    def base(self) -> str:
        return str(self.settings.region("eu").public_url)


LABELS = {"control": "control", "eu": "region", "us": "region"}  # database: its migrations


@pytest.fixture(scope="module")
def on_workers(pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnWorkers]:
    run_dir = tmp_path_factory.mktemp("report-workers")
    vhosts = {region: f"{SESSION_TAG}_reports_{region}" for region in ("eu", "us")}
    dsns = {label: pg_database(f"reports_{label}", app) for label, app in LABELS.items()}
    ports = {name: free_port() for name in ("control", "eu", "us")}
    lines = [
        'mode = "services"',
        f'data_dir = "{run_dir}"',
        f'discovery_key = "{secrets.token_urlsafe(24)}"',
        "[control]",
        f'database = "{dsns["control"]}"',
        f'listen = "127.0.0.1:{ports["control"]}"',
        f'public_url = "http://127.0.0.1:{ports["control"]}"',
    ]
    for region in ("eu", "us"):
        lines += [
            "[[regions]]",
            f'id = "{region}"',
            f'jurisdiction = "{region.upper()}"',
            f'public_url = "http://127.0.0.1:{ports[region]}"',
            f'listen = "127.0.0.1:{ports[region]}"',
            f'database = "{dsns[region]}"',
            f'internal_secret = "{region}-{secrets.token_urlsafe(24)}"',
            f'broker_url = "amqp://guest:guest@127.0.0.1:5672/{vhosts[region]}"',
            "[regions.vault]",
            'backend = "local"',
            f'keyring_path = "{run_dir / f"keyring-{region}"}"',
        ]
    (run_dir / "konsil.toml").write_text("\n".join(lines) + "\n")
    settings = load_settings(run_dir / "konsil.toml")
    for vhost in vhosts.values():
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    procs = start_processes(settings, run_dir, regions=["eu"])
    try:
        wait_healthy({"control": settings.require_control().public_url, "region eu": ports_url(ports["eu"])}, procs)
        yield OnWorkers(settings, dsns)
    finally:
        stop_processes(procs)
        for vhost in vhosts.values():
            with contextlib.suppress(subprocess.SubprocessError):
                rabbitmqctl("delete_vhost", vhost)


def ports_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def test_a_report_is_made_by_the_regions_worker_and_never_by_another_regions(on_workers: OnWorkers) -> None:
    d = on_workers
    slug = f"workers-{secrets.token_hex(3)}"
    signed_up = httpx.post(
        f"{d.settings.require_control().public_url}/api/v1/signup",
        json={
            "region": "eu",
            "organisation": {"name": "Praxis on workers", "slug": slug},
            "owner": {"name": "Owner", "email": f"owner@{slug}.example", "password": "correct horse battery"},
        },
        timeout=30,
    )
    assert signed_up.status_code == 201, signed_up.text
    org_id = uuid.UUID(signed_up.json()["organisation_id"])
    owner = httpx.Client(base_url=d.base, timeout=30)
    login = owner.post(
        f"/api/v1/orgs/{slug}/auth/login", json={"email": f"owner@{slug}.example", "password": "correct horse battery"}
    )
    assert login.status_code == 200, login.text
    owner.headers["x-csrf-token"] = login.json()["csrf_token"]
    api = f"/api/v1/orgs/{slug}/reports"
    today = dt.datetime.now(dt.UTC).date()
    # NEN 7510: its evidence includes the access log, whose reads the job logs with its source.
    period = {"from": str(today - dt.timedelta(days=7)), "to": str(today)}
    started = owner.post(api, json={"framework": "nen7510", **period})
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]

    # The worst case first: the job's task put straight into the US region's queue. The
    # US worker refuses it; and all that while the region service itself ran nothing.
    with purge_workers.konsil(d.settings, "worker", "--region", "us") as us_worker:
        CeleryRunner(d.settings, "us").app.send_task(
            REPORT_TASK, kwargs={"region": "eu"}, task_id=job_id, queue=queue_name("us")
        )
        wait_until(
            lambda: "refused a task of region 'eu'" in us_worker.log.read_text(errors="replace"),  # type: ignore[attr-defined]
            "the US worker to refuse the EU report",
            within=60,
        )
    waiting = owner.get(f"{api}/{job_id}").json()
    assert (waiting["status"], waiting["progress"]) == ("queued", 0), "nobody but the EU worker may make it"
    assert asyncio.run(fetch(d.dsns["us"], "SELECT id FROM report_job")) == []

    # The EU region's worker makes it, from the task the API put on the EU queue.
    with purge_workers.konsil(d.settings, "worker", "--region", "eu") as eu_worker:
        seen: list[dict[str, Any]] = []
        report = follow(owner, f"{api}/{job_id}", seen, within=120)
        log = eu_worker.log  # type: ignore[attr-defined]
        wait_until(lambda: f"konsil.reports.generate[{job_id}]" in log.read_text(errors="replace"), "the worker's log")
    assert report["status"] == "done" and report["formats"] == list(FORMATS), report
    # What the job logged itself (its reads of the access log, as evidence) names the worker.
    sources = asyncio.run(
        fetch(
            d.dsns["eu"],
            "SELECT DISTINCT source FROM access_log_entry WHERE org_id = $1 AND object_id LIKE 'evidence:%'",
            org_id,
        )
    )
    assert [r["source"] for r in sources] == ["region:eu/worker"]
    pdf = owner.get(f"{api}/{job_id}/files/pdf")
    assert pdf.status_code == 200 and "Praxis on workers" in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
