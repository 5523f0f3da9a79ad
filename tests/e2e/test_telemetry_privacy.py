"""A day of use with telemetry on, and not one personal datum in it.

A control plane, an EU region service (PostgreSQL, OpenBao, a real coturn) and the
region's Celery worker (RabbitMQ) run as separate processes with ``[telemetry]`` on:
OTLP/HTTP to a real receiver in this test (protobuf decoded as a collector would),
Prometheus ``/metrics`` on each process's ops port, and JSON log lines on stderr.
The day: a signup, members, rooms, visitors, a call over the signalling sockets, a
data-subject export, a purge; every name, e-mail address, phone number, password,
cookie and token of it is unique (seeded markers). Then every exported span and
metric, every scraped metrics page and every line the processes wrote is searched for
the seeds: none may appear. The same run shows that data was exported (spans from each
process, database and Vault spans, the konsil_ metrics), that a gateway request's
trace continues in the region service, and that a collector that is down neither fails
nor slows requests while its dropped spans are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from konsil.compliance.reports.jobs import REPORT_TASK
from konsil.platform.cli.launcher import wait_healthy
from konsil.platform.core.settings import Settings, load_settings
from konsil.regions.tasks import PURGE, CeleryRunner
from tests.conftest import (
    SESSION_TAG,
    coturn_server,
    fetch,
    free_port,
    openbao_server,
    rabbitmq_vhost,
    wait_until,
)
from tests.telemetry_receiver import Receiver, ReceiverServer

pytestmark = pytest.mark.e2e

MARK = secrets.token_hex(4)
PASSWORD = f"horse battery {MARK} staple"


def _phone() -> str:
    digits = "".join(secrets.choice("0123456789") for _ in range(7))
    return f"+47 4{digits[:2]} {digits[2:4]} {digits[4:]}"


@dataclass
class Seeds:
    """The day's personal data: each must never appear in telemetry."""

    org_name: str = f"Praxis Quokka{MARK}"
    slug: str = f"quokka-{MARK}"
    owner: tuple[str, str] = (f"Ottilie Quokka{MARK}", f"ottilie.{MARK}@owner.example")
    expert: tuple[str, str] = (f"Egon Wombat{MARK}", f"egon.{MARK}@expert.example")
    assistant: tuple[str, str] = (f"Asta Numbat{MARK}", f"asta.{MARK}@assist.example")
    visitors: list[tuple[str, str]] = field(
        default_factory=lambda: [(f"Vera Bilby{MARK}", _phone()), (f"Viggo Dingo{MARK}", _phone())]
    )
    secrets_seen: list[str] = field(default_factory=list)  # cookies, CSRF and visitor tokens as they are handed out

    def all(self) -> list[str]:
        found = [self.org_name, self.slug, PASSWORD, f"Quokka{MARK}", f"Wombat{MARK}", f"Bilby{MARK}"]
        for name, email in (self.owner, self.expert, self.assistant):
            found += [name, email, email.split("@")[0]]
        for name, phone in self.visitors:
            digits = phone.replace(" ", "").replace("+", "")
            found += [name, phone, digits, digits[2:], phone.replace(" ", "")]
        return found + [s for s in self.secrets_seen if len(s) >= 8]


@dataclass
class Running:
    settings: Settings
    procs: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]
    metrics: dict[str, str]  # process → its /metrics URL
    control_dsn: str
    region_dsn: str

    @property
    def control(self) -> str:
        return self.settings.require_control().public_url

    @property
    def region(self) -> str:
        return str(self.settings.region("eu").public_url)

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs.values())

    def json_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def telemetry_stack(
    pg_database: Callable[[str, str], str], run_dir: Path, label: str, otlp_endpoint: str, worker: bool = True
) -> Iterator[Running]:
    """Control plane, EU region service and (``worker``) its Celery worker, telemetry on."""
    with contextlib.ExitStack() as stack:
        vault_url, vault_token, _ = stack.enter_context(openbao_server())
        turn_secret = secrets.token_urlsafe(24)
        turn_port = stack.enter_context(coturn_server(turn_secret))
        vhost = f"{SESSION_TAG}_{label}"
        stack.enter_context(rabbitmq_vhost(vhost))
        control_dsn = pg_database(f"{label}_control", "control")
        region_dsn = pg_database(f"{label}_eu", "region")
        ports = {name: free_port() for name in ("control", "eu")}
        lines = [
            'mode = "services"',
            f'data_dir = "{run_dir}"',
            f'discovery_key = "{secrets.token_urlsafe(24)}"',
            "[telemetry]",
            f'otlp_endpoint = "{otlp_endpoint}"',
            'log_format = "json"',
            "export_timeout_seconds = 1",
            "trace_sample_ratio = 1.0",  # every span of the day, to be searched
            "[control]",
            f'database = "{control_dsn}"',
            f'listen = "127.0.0.1:{ports["control"]}"',
            f'public_url = "http://127.0.0.1:{ports["control"]}"',
            "[[regions]]",
            'id = "eu"',
            'jurisdiction = "EU/EEA"',
            f'public_url = "http://127.0.0.1:{ports["eu"]}"',
            f'listen = "127.0.0.1:{ports["eu"]}"',
            f'database = "{region_dsn}"',
            f'internal_secret = "eu-{secrets.token_urlsafe(24)}"',
            f'broker_url = "amqp://guest:guest@127.0.0.1:5672/{vhost}"',
            f'ice_servers = ["turn:127.0.0.1:{turn_port}?transport=udp"]',
            f'turn_secret = "{turn_secret}"',
            "[regions.lifecycle]",
            'runner = "celery"',
            "purge_every_seconds = 86400",
            "[regions.vault]",
            'backend = "vault"',
            f'url = "{vault_url}"',
            f'token = "{vault_token}"',
        ]
        config = run_dir / "konsil.toml"
        config.write_text("\n".join(lines) + "\n")
        settings = load_settings(config)
        commands = {
            "control": ["serve", "control"],
            "region eu": ["serve", "region", "--region", "eu"],
            **({"worker": ["worker", "--region", "eu"]} if worker else {}),
        }
        procs: dict[str, subprocess.Popen[bytes]] = {}
        logs: dict[str, Path] = {}
        metrics: dict[str, str] = {}
        stack.callback(_stop, procs)
        for name, command in commands.items():
            port = free_port()
            metrics[name] = f"http://127.0.0.1:{port}/metrics"
            logs[name] = run_dir / f"{label}-{name.replace(' ', '-')}.log"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("KONSIL_", "OTEL_", "PICCOLO_"))}
            env |= {
                "KONSIL_TELEMETRY__METRICS_LISTEN": f"127.0.0.1:{port}",
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
            }
            with logs[name].open("wb") as out:
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "konsil.platform.cli.main", *command, "--config", str(config)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
        wait_healthy({"control": settings.require_control().public_url, "region eu": ports_url(ports["eu"])}, procs)
        yield Running(settings, procs, logs, metrics, control_dsn, region_dsn)


def ports_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with ReceiverServer() as running:
        yield running


@pytest.fixture(scope="module")
def day(
    pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[tuple[Running, Seeds]]:
    with telemetry_stack(pg_database, tmp_path_factory.mktemp("telemetry"), "telemetry", receiver.url) as running:
        seeds = Seeds()
        asyncio.run(_a_day_of_use(running, seeds))
        # The day's last work (the worker's purge) exported: its task span and its metric.
        wait_until(
            lambda: (
                any(s.attributes.get("konsil.task") == PURGE for s in receiver.spans())
                and "konsil_purge_rows_deleted" in receiver.metric_names()
            ),
            "the purge's span and metric to be exported",
            within=90,
            every=0.5,
        )
        yield running, seeds


def _client(base: str, seeds: Seeds) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, timeout=30)


async def _login(base: str, slug: str, email: str, seeds: Seeds) -> httpx.AsyncClient:
    client = _client(base, seeds)
    response = await client.post(f"/api/v1/orgs/{slug}/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.headers["x-csrf-token"] = response.json()["csrf_token"]
    seeds.secrets_seen += [response.json()["csrf_token"], *(c.value for c in client.cookies.jar if c.value)]
    return client


async def _a_day_of_use(running: Running, seeds: Seeds) -> None:
    slug = seeds.slug
    async with httpx.AsyncClient(base_url=running.control, timeout=30) as public:
        # Signup on the control plane (which creates the organisation in the region).
        signup = await public.post(
            "/api/v1/signup",
            json={
                "region": "eu",
                "organisation": {"name": seeds.org_name, "slug": slug},
                "owner": {"name": seeds.owner[0], "email": seeds.owner[1], "password": PASSWORD},
            },
        )
        assert signup.status_code == 201, signup.text
        # Login discovery by e-mail (the control plane's keyed hash).
        found = await public.post("/api/v1/login-discovery", json={"email": seeds.owner[1]})
        assert found.status_code == 200, found.text

    # The owner works through the gateway: members, rooms, lists with query strings.
    owner = await _login(running.control, slug, seeds.owner[1], seeds)
    for role, (name, email) in (("expert", seeds.expert), ("admin", seeds.assistant)):
        added = await owner.post(
            f"/api/v1/orgs/{slug}/members", json={"name": name, "email": email, "role": role, "password": PASSWORD}
        )
        assert added.status_code == 201, added.text
    assert (await owner.get(f"/api/v1/orgs/{slug}/members", params={"search": seeds.expert[0]})).status_code < 500
    expert = await _login(running.control, slug, seeds.expert[1], seeds)
    room = await expert.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "sprechstunde", "title": seeds.expert[0]})
    assert room.status_code == 201, room.text
    session = next(c.value for c in expert.cookies.jar if c.name == "konsil_session")

    # Visitors arrive in the region (the visitor pages), one is admitted and the call runs.
    arrivals = []
    async with httpx.AsyncClient(base_url=running.region, timeout=30) as browser:
        for name, phone in seeds.visitors:
            joined = await browser.post(
                f"/{slug}/sprechstunde/visits", data={"name": name, "phone": phone, "consent": "yes"}
            )
            assert joined.status_code == 303, joined.text
            token = str(next(c.value for c in joined.cookies.jar if c.name == "konsil_visit"))
            seeds.secrets_seen.append(token)
            arrivals.append((joined.headers["location"], token))
    waiting = await expert.get(f"/api/v1/orgs/{slug}/visits/waiting")
    assert waiting.status_code < 500
    path, token = arrivals[0]
    visit_id = path.rsplit("/", 1)[1]
    ws_base = running.region.replace("http://", "ws://")
    visitor_ws_url = f"{ws_base}{path}/ws"
    async with connect(visitor_ws_url, additional_headers={"cookie": f"konsil_visit={token}"}) as visitor_ws:
        assert json.loads(await visitor_ws.recv())["type"] == "waiting"
        admitted = await expert.post(f"/api/v1/orgs/{slug}/visits/{visit_id}/admit")
        assert admitted.status_code == 200, admitted.text
        call_id = admitted.json()["id"]
        assert json.loads(await visitor_ws.recv())["type"] == "joined"
        call_ws_url = f"{ws_base}/{slug}/calls/{call_id}/ws"
        async with connect(call_ws_url, additional_headers={"cookie": f"konsil_session={session}"}) as expert_ws:
            assert json.loads(await expert_ws.recv())["type"] == "joined"
            for ws in (visitor_ws, expert_ws):  # media flows: the first quality samples
                await ws.send(json.dumps({"type": "quality", "rtt_ms": 40, "jitter_ms": 3, "bitrate_kbps": 900}))
            await expert_ws.send(json.dumps({"type": "action", "action": "mute"}))
            await asyncio.sleep(0.5)
            ended = await expert.post(f"/api/v1/orgs/{slug}/calls/{call_id}/end")
            assert ended.status_code == 200, ended.text
    # The second visitor leaves before being admitted.
    path, token = arrivals[1]
    async with connect(f"{ws_base}{path}/ws", additional_headers={"cookie": f"konsil_visit={token}"}) as leaving:
        assert json.loads(await leaving.recv())["type"] == "waiting"
        await leaving.send(json.dumps({"type": "hangup"}))
        assert json.loads(await leaving.recv())["type"] == "ended"

    # A data-subject access request by phone, exported.
    filed = await owner.post(f"/api/v1/orgs/{slug}/dsr", json={"kind": "access", "phone": seeds.visitors[0][1]})
    assert filed.status_code == 201, filed.text
    exported = await owner.post(f"/api/v1/orgs/{slug}/dsr/{filed.json()['id']}/export")
    assert exported.status_code == 200, exported.text
    assert seeds.visitors[0][0] in exported.text  # the export itself holds the data, of course

    # A refused internal call with an e-mail address and a token in its query string: logged.
    async with httpx.AsyncClient(base_url=running.region, timeout=30) as stranger:
        refused = await stranger.post(f"/internal/v1/orgs?email={seeds.owner[1]}&token={seeds.secrets_seen[0]}")
        assert refused.status_code == 401
    # A compliance report: started through the gateway, made by the region's Celery worker.
    today = dt.datetime.now(dt.UTC).date()
    period = {"from": str(today - dt.timedelta(days=7)), "to": str(today)}
    started = await owner.post(f"/api/v1/orgs/{slug}/reports", json={"framework": "gdpr", **period})
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 120
    while (report := (await owner.get(f"/api/v1/orgs/{slug}/reports/{started.json()['id']}")).json())["status"] not in (
        "done",
        "failed",
    ):
        assert time.monotonic() < deadline, report
        await asyncio.sleep(0.5)
    assert report["status"] == "done", report
    for client in (owner, expert):
        await client.aclose()

    # The visits are past their retention: the worker's purge removes them.
    await fetch(running.region_dsn, "UPDATE organisation SET retention_days = 1 WHERE slug = $1", slug)
    await fetch(
        running.region_dsn,
        "UPDATE visit SET arrived_at = now() - interval '30 days' "
        "WHERE org_id = (SELECT id FROM organisation WHERE slug = $1)",
        slug,
    )
    CeleryRunner(running.settings, "eu").submit(PURGE, uuid.uuid4())

    async def purged() -> bool:
        rows = await fetch(
            running.region_dsn,
            "SELECT count(*) AS n FROM visit WHERE org_id = (SELECT id FROM organisation WHERE slug = $1)",
            slug,
        )
        return int(rows[0]["n"]) == 0

    deadline = time.monotonic() + 60
    while not await purged():
        assert time.monotonic() < deadline, "the purge did not remove the expired visits"
        await asyncio.sleep(0.3)


def _scrapes(running: Running) -> dict[str, str]:
    return {name: httpx.get(url, timeout=5).text for name, url in running.metrics.items()}


def test_no_seed_in_any_span_metric_or_log_line(day: tuple[Running, Seeds], receiver: Receiver) -> None:
    running, seeds = day
    scrapes = _scrapes(running)
    places = {
        "exported (OTLP)": "\n".join(receiver.texts()),
        **{f"/metrics of {name}": text for name, text in scrapes.items()},
        **{f"output of {name}": path.read_text(errors="replace") for name, path in running.logs.items()},
    }
    hits = [(seed, where) for seed in seeds.all() for where, text in places.items() if seed.lower() in text.lower()]
    assert hits == []

    # Not vacuous: every process exported spans, with database, Vault and task spans among them.
    spans = receiver.spans()
    assert {s.service for s in spans} >= {"konsil-control", "konsil-region", "konsil-worker"}
    assert any(s.attributes.get("db.system") == "postgresql" and s.service == "konsil-region" for s in spans)
    assert any(s.attributes.get("db.system") == "postgresql" and s.service == "konsil-worker" for s in spans)
    assert any(s.attributes.get("konsil.vault.operation", "").startswith("POST transit/") for s in spans)
    assert any(s.attributes.get("konsil.task") == PURGE for s in spans)
    assert len(spans) > 100
    routes = {s.attributes.get("http.route") for s in spans}
    assert {"/{slug}/{room_slug}/visits", "/{slug}/calls/{call_id}/ws", "/api/v1/orgs/{path:path}"} <= routes
    # ... the metrics of the day, exported and scraped.
    exported = receiver.metric_names()
    assert {
        "konsil_waiting_visitors",
        "konsil_active_calls",
        "konsil_admit_to_connected",
        "konsil_key_cache_lookups",
        "konsil_vault_request",
        "konsil_access_log_appends",
        "konsil_purge_rows_deleted",
    } <= exported
    region_page = scrapes["region eu"]
    for name in (
        "konsil_admit_to_connected_seconds_count",
        "konsil_key_cache_lookups_total",
        "konsil_vault_request_seconds_bucket",
        "konsil_access_log_appends_total",
        "konsil_active_calls",
        "konsil_waiting_visitors",
    ):
        assert name in region_page, name
    # Region-wide counts from the database; no organisation on them by default.
    assert "_by_organisation" not in region_page
    assert "konsil_purge_rows_deleted_total" in scrapes["worker"]
    # ... and JSON log lines, the refused call's among them, with its trace id and scrubbed path.
    lines = running.json_lines()
    refused = [line for line in lines if line.get("message", "").startswith("refused internal call")]
    assert refused and refused[0]["trace_id"] and refused[0]["logger"] == "konsil.web"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)


def test_a_gateway_requests_trace_continues_in_the_region(day: tuple[Running, Seeds], receiver: Receiver) -> None:
    spans = receiver.spans()
    gateway = [
        s
        for s in spans
        if s.service == "konsil-control"
        and s.span.kind == s.span.SPAN_KIND_SERVER
        and s.attributes.get("http.route") == "/api/v1/orgs/{path:path}"
    ]
    assert gateway
    by_trace = {s.span.trace_id: s for s in gateway}
    continued = [
        s
        for s in spans
        if s.service == "konsil-region"
        and s.span.kind == s.span.SPAN_KIND_SERVER
        and s.span.trace_id in by_trace
        and s.span.parent_span_id == by_trace[s.span.trace_id].span.span_id
    ]
    assert len(continued) >= 5  # logins, members, rooms, admit, the export... each continued
    assert {s.attributes["http.route"] for s in continued} >= {
        "/api/v1/orgs/{slug}/members",
        "/api/v1/orgs/{slug}/visits/{visit_id}/admit",
    }
    # The signup's signed internal call continues the control plane's trace too.
    assert any(
        s.attributes.get("http.route", "").startswith("/internal/")
        and s.span.trace_id in {g.span.trace_id for g in spans if g.service == "konsil-control"}
        for s in spans
        if s.service == "konsil-region"
    )


def test_a_task_sent_by_the_region_continues_its_trace_in_the_worker(
    day: tuple[Running, Seeds], receiver: Receiver
) -> None:
    spans = receiver.spans()
    started = [
        s
        for s in spans
        if s.service == "konsil-region" and s.attributes.get("http.route") == "/api/v1/orgs/{slug}/reports"
    ]
    [run] = [s for s in spans if s.service == "konsil-worker" and s.attributes.get("konsil.task") == REPORT_TASK]
    assert [s.span.span_id for s in started if s.span.trace_id == run.span.trace_id] == [run.span.parent_span_id]
    # ... and the worker's database and Vault spans belong to that trace.
    assert any(s.attributes.get("db.system") and s.span.trace_id == run.span.trace_id for s in spans)


class _Blackhole:
    """A collector that accepts connections and never answers (a hung endpoint)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


def test_a_collector_that_is_down_fails_and_slows_no_request_and_drops_are_counted(
    pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    hole = _Blackhole()
    try:
        run_dir = tmp_path_factory.mktemp("telemetry-down")
        with telemetry_stack(pg_database, run_dir, "telemetry_down", hole.url, worker=False) as running:
            asyncio.run(_timed_requests(running))
            dropped = wait_until(lambda: _dropped(running), "dropped spans to be counted", within=30)
            assert dropped > 0
            lines = [line for line in running.json_lines() if "spans are being dropped" in line.get("message", "")]
            assert 1 <= len(lines) <= 2  # once per process that dropped, not once per span
    finally:
        hole.close()


def _dropped(running: Running) -> float | None:
    total = 0.0
    for text in _scrapes(running).values():
        for line in text.splitlines():
            if line.startswith("konsil_telemetry_dropped_spans_total"):
                total += float(line.rsplit(" ", 1)[1])
    return total or None


async def _timed_requests(running: Running) -> None:
    """A signup, then 300 requests through the gateway: each answered, none waiting for the collector."""
    slug = f"down-{MARK}"
    async with httpx.AsyncClient(base_url=running.control, timeout=30) as public:
        signup = await public.post(
            "/api/v1/signup",
            json={
                "region": "eu",
                "organisation": {"name": "Praxis", "slug": slug},
                "owner": {"name": "Owner", "email": f"o-{MARK}@down.example", "password": PASSWORD},
            },
        )
        assert signup.status_code == 201, signup.text
    client = await _login(running.control, slug, f"o-{MARK}@down.example", Seeds())
    took = []
    for _ in range(300):
        started = time.perf_counter()
        response = await client.get(f"/api/v1/orgs/{slug}/members")
        took.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    await client.aclose()
    # An export waits up to export_timeout_seconds (1 s) for the hung collector: no request may.
    assert max(took) < 0.9, max(took)
    assert statistics.median(took) < 0.1, statistics.median(took)
