"""What an operator running services mode sees and relies on, with real services:

- readiness (``/readyz``): database, Vault (sealed or not), broker and the relays' TURN
  secret reported separately; 503 while the database or Vault is down or sealed, while
  ``/healthz`` (liveness) stays 200;
- a region started before its TURN secret was written reads it once it is, without a
  restart (admits are refused until then, then work);
- every 5xx is logged with its cause and without the request's personal data (signup
  against an OpenBao whose Transit engine is not enabled);
- every process logs one line when it has started, naming what it is and where;
- a deleted organisation answers 410 Gone at the gateway, as the README promises;
- a missing RabbitMQ vhost is one clear line per retry, with backoff, no traceback.

The region and control plane run as child processes whose output is kept in files, so
the tests read the logs an operator would."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import itertools
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pika
import pytest

from konsil.media_nodes import heartbeat
from konsil.platform.cli.launcher import stop_processes, wait_healthy
from konsil.platform.core.settings import Settings, dump_settings
from tests.conftest import SESSION_TAG, bao_dev_process, fetch, services_config, wait_until
from tests.conftest import rabbitmq_vhost as vhost
from tests.e2e.test_faults import Bao, openbao_with_unseal_key, private_postgres

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
CLI = [sys.executable, "-m", "konsil.platform.cli.main"]


# --- processes whose output is kept ------------------------------------------------------------


@dataclass
class Logged:
    procs: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]

    def text(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def wait_for(self, name: str, words: str, within: float = 10) -> str:
        """The log of ``name`` once it holds ``words``: the processes log through a queue,
        so a line can reach the file just after the answer it belongs to."""

        def holding() -> str | None:
            log = self.text(name)
            return log if words in log else None

        return wait_until(holding, f"{words!r} in {name}'s log", within)


@contextlib.contextmanager
def logged(run_dir: Path, commands: dict[str, list[str]], child_env: Callable[..., dict[str, str]]) -> Iterator[Logged]:
    """Start each command (``konsil`` arguments) with its output in ``run_dir/<name>.log``."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    try:
        for name, args in commands.items():
            logs[name] = run_dir / f"{name.replace(' ', '-')}.log"
            with logs[name].open("wb") as out:
                procs[name] = subprocess.Popen(
                    [*CLI, *args], stdout=out, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True
                )
        yield Logged(procs, logs)
    finally:
        stop_processes(procs)


@contextlib.contextmanager
def control_and_region(
    settings: Settings, run_dir: Path, child_env: Callable[..., dict[str, str]], wait: bool = True
) -> Iterator[Logged]:
    control_config = run_dir / "control.toml"
    control_config.write_text(dump_settings(settings.for_control()))
    region_config = run_dir / "region-eu.toml"
    region_config.write_text(dump_settings(settings.for_region("eu")))
    commands = {
        "control": ["serve", "control", "--config", str(control_config)],
        "region eu": ["serve", "region", "--config", str(region_config)],
    }
    with logged(run_dir, commands, child_env) as running:
        if wait:
            urls = {"control": settings.require_control().public_url, "region eu": settings.region("eu").public_url}
            wait_healthy(urls, running.procs)
        yield running


def readyz(base: str) -> httpx.Response:
    return httpx.get(f"{base}/readyz", timeout=10)


def signup(settings: Settings, slug: str, **owner: str) -> httpx.Response:
    body = {
        "region": "eu",
        "organisation": {"name": f"Praxis {slug}", "slug": slug},
        "owner": {"name": f"Owner {slug}", "email": f"owner@{slug}.example", "password": PASSWORD} | owner,
    }
    return httpx.post(f"{settings.require_control().public_url}/api/v1/signup", json=body, timeout=30)


def owner_client(settings: Settings, slug: str) -> httpx.Client:
    made = signup(settings, slug)
    assert made.status_code == 201, made.text
    client = httpx.Client(base_url=settings.region("eu").public_url, timeout=15)
    login = client.post(
        f"/api/v1/orgs/{slug}/auth/login", json={"email": f"owner@{slug}.example", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    client.headers["x-csrf-token"] = login.json()["csrf_token"]
    return client


# --- a region with OpenBao, RabbitMQ and media-node relays ---------------------------------------


@dataclass
class Region:
    settings: Settings
    bao: Bao
    running: Logged
    vhost: str
    media_node_key: str

    @property
    def base(self) -> str:
        return str(self.settings.region("eu").public_url)

    @property
    def broker_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}"


@pytest.fixture(scope="module")
def region(
    pg_database: Callable[[str, str], str],
    tmp_path_factory: pytest.TempPathFactory,
    child_env: Callable[..., dict[str, str]],
) -> Iterator[Region]:
    """Control plane and region ``eu`` (services mode) with an OpenBao whose KV has no
    TURN secret yet, a RabbitMQ vhost of their own and a media-node key: the region
    hands out relays from its registry."""
    run_dir = tmp_path_factory.mktemp("operability")
    key = secrets.token_urlsafe(24)
    with openbao_with_unseal_key(run_dir) as bao, vhost(f"{SESSION_TAG}_ops") as name:
        region_dsn = pg_database("ops_eu", "region")
        control_dsn = pg_database("ops_control", "control")
        lines = [
            f'broker_url = "amqp://guest:guest@127.0.0.1:5672/{name}"',
            f'media_node_key = "{key}"',
            "[regions.vault]",
            'backend = "vault"',
            f'url = "{bao.url}"',
            f'token = "{bao.token}"',
            "timeout_seconds = 2",
            'turn_secret_path = "konsil/turn"',
        ]
        settings = services_config(run_dir, control_dsn, region_dsn, lines)
        with control_and_region(settings, run_dir, child_env) as running:
            yield Region(settings, bao, running, name, key)


class Heartbeats:
    """A media node's signed heartbeats (as its agent sends them), published every
    half second so the region's registry has one healthy node."""

    def __init__(self, region: Region, node_id: str = "eu-relay-1") -> None:
        self.region = region
        self.node_id = node_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.region.broker_url))
        channel = connection.channel()
        channel.exchange_declare(exchange=heartbeat.EXCHANGE, exchange_type="topic", durable=True)
        seq = 0
        try:
            while not self._stop.is_set():
                beat = heartbeat.Heartbeat(
                    region="eu",
                    node_id=self.node_id,
                    seq=seq,
                    sent_at=time.time(),
                    state="active",
                    healthy=True,
                    allocations=0,
                    relayed_kbps=0.0,
                    turn_urls=["turn:127.0.0.1:3478?transport=udp"],
                )
                body, signature = heartbeat.encode(self.region.media_node_key, beat)
                channel.basic_publish(
                    heartbeat.EXCHANGE,
                    heartbeat.routing_key("eu", self.node_id),
                    body,
                    pika.BasicProperties(headers={heartbeat.SIGNATURE_HEADER: signature}),
                )
                seq += 1
                self._stop.wait(0.5)
        finally:
            connection.close()


def waiting_visit(region: Region, slug: str) -> str:
    visit = httpx.post(f"{region.base}/{slug}/room/visits", data={"name": "Vera Visitor", "consent": "yes"})
    assert visit.status_code == 303, visit.text
    return str(visit.headers["location"].rsplit("/", 1)[1])


def test_a_turn_secret_written_after_start_is_read_without_a_restart(region: Region) -> None:
    slug = f"turn-{secrets.token_hex(3)}"
    owner = owner_client(region.settings, slug)
    assert owner.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "room", "title": "Room"}).status_code == 201
    with Heartbeats(region):
        refused = owner.post(f"/api/v1/orgs/{slug}/visits/{waiting_visit(region, slug)}/admit")
        assert refused.status_code == 503, refused.text
        assert "relay credentials are unavailable" in refused.json()["message"].lower()
        # A member's connection test is told the same, and both 503s are logged with their cause.
        assert owner.get(f"/api/v1/orgs/{slug}/network-tests/relays", params={"transport": "udp"}).status_code == 503
        ready = readyz(region.base)
        # Reported, but not a reason to take the region out of service (every replica shares it).
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["turn_secret"]["status"] == "failing"
        assert "no secret at secret/konsil/turn" in ready.json()["checks"]["turn_secret"]["detail"]

        region.bao.client().secrets.kv.v2.create_or_update_secret(
            path="konsil/turn", secret={"secret": secrets.token_urlsafe(24)}
        )
        started = time.monotonic()

        def admitted() -> httpx.Response | None:
            answer = owner.post(f"/api/v1/orgs/{slug}/visits/{waiting_visit(region, slug)}/admit")
            assert answer.status_code in (200, 503), answer.text
            return answer if answer.status_code == 200 else None

        wait_until(admitted, "an admit to work once the secret is in Vault", within=15, every=0.5)
        # An admit that finds the secret missing asks for a read at once: no backoff wait.
        assert time.monotonic() - started < 10
    # Readiness says so too, once its cached answer (at most 1.5 s old) is renewed.
    wait_until(
        lambda: (
            readyz(region.base).json()["checks"]["turn_secret"]
            == {"status": "ok", "detail": "the relays' TURN secret is read"}
        ),
        "readiness to report the secret read",
        within=5,
    )
    log = region.running.wait_for("region eu", "TURN secret is read")
    assert "POST /api/v1/orgs/{slug}/visits/{visit_id}/admit answered 503: Relay credentials are" in log
    assert "GET /api/v1/orgs/{slug}/network-tests/relays answered 503: relay credentials are" in log
    # Once per change, never per try: one line for the missing secret, one when it is read.
    assert len(re.findall(r"TURN secret could not be read", log)) == 1, log
    assert len(re.findall(r"TURN secret is read \(try \d+\)", log)) == 1, log


def test_readiness_follows_a_sealed_vault_while_liveness_stays_ok(region: Region) -> None:
    ready = readyz(region.base)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] is True
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["vault"] == {"status": "ok", "detail": "Vault answers and is unsealed", "sealed": False}
    assert body["checks"]["broker"]["status"] == "ok"
    assert readyz(region.settings.require_control().public_url).json() == {
        "ready": True,
        "checks": {"database": {"status": "ok", "detail": "PostgreSQL answers"}},
    }

    region.bao.client().sys.seal()
    try:

        def not_ready() -> httpx.Response | None:
            answer = readyz(region.base)
            return answer if answer.status_code == 503 else None

        sealed = wait_until(not_ready, "readiness to see the sealed Vault", within=30)
        assert sealed.json()["ready"] is False
        assert sealed.json()["checks"]["vault"] == {"status": "failing", "detail": "Vault is sealed", "sealed": True}
        assert sealed.json()["checks"]["database"]["status"] == "ok"
        assert httpx.get(f"{region.base}/healthz").status_code == 200
    finally:
        region.bao.client().sys.submit_unseal_key(region.bao.unseal_key)
    wait_until(lambda: readyz(region.base).status_code == 200, "readiness after unsealing", within=30)


def test_readiness_answers_fast_and_from_its_cache(region: Region) -> None:
    """However many probes ask, a dependency is checked at most once per process in the
    cache's time; each answer comes within the checks' short timeout."""
    started = time.monotonic()
    answers = [readyz(region.base) for _ in range(20)]
    assert all(a.status_code == 200 for a in answers)
    assert time.monotonic() - started < 5
    assert answers[-1].headers["cache-control"] == "no-store"


def test_a_deleted_organisation_answers_410_at_the_gateway(region: Region) -> None:
    slug = f"gone-{secrets.token_hex(3)}"
    owner = owner_client(region.settings, slug)
    control = region.settings.require_control().public_url
    assert httpx.get(f"{control}/api/v1/orgs/{slug}/").status_code != 404
    deleted = owner.post(f"/api/v1/orgs/{slug}/delete", json={"confirm": slug})
    assert deleted.status_code == 200 and deleted.json()["directory_updated"] is True, deleted.text
    gone = httpx.get(f"{control}/api/v1/orgs/{slug}/rooms")
    assert gone.status_code == 410, gone.text
    assert gone.json() == {"error": "gone", "message": "this organisation was deleted; its data no longer exists"}
    assert httpx.get(f"{control}/{slug}/room", headers={"accept": "application/json"}).status_code == 410
    # An address never used is still unknown; the deleted one is not given to someone else.
    assert httpx.get(f"{control}/api/v1/orgs/never-{slug}/rooms").status_code == 404
    assert signup(region.settings, slug).status_code == 409
    # The control plane keeps the id, slug and region only (no personal data).
    [row] = asyncio.run(
        fetch(region.settings.require_control().database, "SELECT * FROM directory_organisation WHERE slug = $1", slug)
    )
    assert row["status"] == "deleted"


def test_each_process_says_it_started_and_where(region: Region) -> None:
    control_listen = region.settings.require_control().listen
    region_log = region.running.wait_for("region eu", "konsil region service started")
    control_log = region.running.wait_for("control", "konsil control plane started")
    assert (
        f"konsil region service started, region eu, mode services, listening on {region.settings.region('eu').listen}"
        in region_log
    )
    assert f"konsil control plane started, listening on {control_listen}" in control_log
    for log in (region_log, control_log):
        assert len(re.findall(r"konsil .* started", log)) == 1
        assert region.bao.token not in log and region.media_node_key not in log


# --- 5xx logged with their cause -----------------------------------------------------------------


def test_signup_without_transit_is_a_clear_503_logged_with_its_cause(
    pg_database: Callable[[str, str], str], tmp_path: Path, child_env: Callable[..., dict[str, str]]
) -> None:
    home = tmp_path / "bao-home"
    home.mkdir()
    with bao_dev_process(home) as (url, token, _):  # a dev server: KV, but no Transit engine
        wait_until(lambda: _answers(url), "OpenBao to start")
        vault = ["[regions.vault]", 'backend = "vault"', f'url = "{url}"', f'token = "{token}"', "timeout_seconds = 2"]
        settings = services_config(
            tmp_path, pg_database("notransit_control", "control"), pg_database("notransit_eu", "region"), vault
        )
        slug = f"nt-{secrets.token_hex(3)}"
        personal = {"name": f"Ngozi {secrets.token_hex(4)}", "email": f"ngozi-{secrets.token_hex(4)}@seed.example"}
        password = f"pw-{secrets.token_hex(8)}"
        with control_and_region(settings, tmp_path, child_env) as running:
            answer = signup(settings, slug, password=password, **personal)
            assert answer.status_code == 503, answer.text
            message = answer.json()["message"]
            # The caller learns that nothing was created, not how the region is set up.
            assert message == "region eu could not create the organisation; nothing was created, try again later"

            def cause_logged() -> str | None:
                log = running.text("region eu")
                return log if "no secrets engine is enabled at Vault mount 'transit'" in log else None

            region_log = wait_until(cause_logged, "the region to log the cause")
            # (The control plane's undo of the half-made signup may be refused for the same reason.)
            [line] = [line for line in region_log.splitlines() if "POST /internal/v1/orgs answered" in line]
            assert "POST /internal/v1/orgs answered 503: the region's key service: key service misconfigured" in line
            assert "ERROR" in line and "(KeyServiceMisconfigured)" in line
            control_log = running.wait_for("control", "answered 503")
            [line] = [line for line in control_log.splitlines() if "answered 503" in line]
            assert "POST /api/v1/signup answered 503: region eu could not create the organisation" in line
            [why] = [line for line in control_log.splitlines() if "could not create an organisation:" in line]
            assert "the region's key service is not set up for this" in why
    for log in (region_log, control_log):
        for value in (*personal.values(), password, f"Praxis {slug}", token):
            assert value not in log


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/sys/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_readiness_says_the_database_is_down(tmp_path: Path, child_env: Callable[..., dict[str, str]]) -> None:
    """Both processes' databases on a PostgreSQL of their own, stopped under them: 503
    with the database failing, liveness still 200; started again, ready again."""
    from konsil.platform.cli.migrations import Target, migrate_target

    with private_postgres() as pg:
        asyncio.run(fetch(pg.dsn("postgres"), "CREATE DATABASE control"))
        asyncio.run(fetch(pg.dsn("postgres"), "CREATE DATABASE eu"))
        migrate_target(Target("control", "control", pg.dsn("control")))
        migrate_target(Target("eu", "region", pg.dsn("eu")))
        settings = services_config(tmp_path, pg.dsn("control"), pg.dsn("eu"))
        with control_and_region(settings, tmp_path, child_env):
            region_base = settings.region("eu").public_url
            control_base = settings.require_control().public_url
            assert readyz(region_base).json()["checks"]["vault"] == {
                "status": "not_configured",
                "detail": "keys are kept in a local keyring (no Vault)",
                "sealed": None,
            }
            pg.ctl("-m", "fast", "-w", "stop")
            for base in (region_base, control_base):
                down = wait_until(functools.partial(_not_ready, base), f"{base} to see its database down", within=30)
                assert down.json()["checks"]["database"]["status"] == "failing", down.text
                assert "does not accept connections" in down.json()["checks"]["database"]["detail"]
                assert httpx.get(f"{base}/healthz").status_code == 200
            pg.ctl("-w", "start")
            for base in (region_base, control_base):
                wait_until(functools.partial(_ready, base), f"{base} to be ready again", within=30)


def _ready(base: str) -> bool:
    return readyz(base).status_code == 200


def _logged_at(line: str) -> float:
    """The time of a log line (``2026-11-29 08:32:12,508 WARNING ...``), in seconds."""
    return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _not_ready(base: str) -> httpx.Response | None:
    answer = readyz(base)
    return answer if answer.status_code == 503 else None


# --- a missing RabbitMQ vhost ------------------------------------------------------------------


def test_a_missing_vhost_is_one_line_per_retry(
    pg_database: Callable[[str, str], str], tmp_path: Path, child_env: Callable[..., dict[str, str]]
) -> None:
    missing = f"{SESSION_TAG}_missing"
    settings = services_config(
        tmp_path,
        pg_database("novhost_control", "control"),
        pg_database("novhost_eu", "region"),
        top_lines=(),
        region_lines=[
            f'broker_url = "amqp://guest:guest@127.0.0.1:5672/{missing}"',
            f'media_node_key = "{secrets.token_urlsafe(24)}"',
            'turn_secret = "eu-turn-secret-0123456789"',
            "[regions.vault]",
            'backend = "local"',
            f'keyring_path = "{tmp_path / "keyring-eu"}"',
        ],
    )
    config = tmp_path / "konsil.toml"
    commands = {
        "worker": ["worker", "--region", "eu", "--config", str(config)],
        "beat": ["beat", "--region", "eu", "--config", str(config)],
    }
    with control_and_region(settings, tmp_path, child_env) as services, logged(tmp_path, commands, child_env) as tasks:
        region_base = settings.region("eu").public_url
        broker_check = readyz(region_base).json()["checks"]["broker"]
        # /readyz is public: it says what fails, never where the broker is.
        assert broker_check == {
            "status": "failing",
            "detail": "RabbitMQ vhost does not exist or the user has no access to it",
        }
        expected = f"RabbitMQ vhost '{missing}' does not exist or the user has no access to it; retrying in"

        def tries(name: str) -> list[str]:
            return [line for line in tasks.text(name).splitlines() if expected in line]

        def tried_thrice(name: str) -> bool:
            return len(tries(name)) >= 3

        # Three tries each (1 + 2 s of backoff after the start, which a busy machine delays).
        for name in ("worker", "beat"):
            wait_until(functools.partial(tried_thrice, name), f"the {name} to retry three times", within=90)
        for proc in tasks.procs.values():
            assert proc.poll() is None, "a worker or beat gave up instead of retrying"
        for name in ("worker", "beat"):
            log = tasks.text(name)
            assert f"konsil {name} started, region eu, mode services, queue konsil.eu.lifecycle" in log, log
            lines = tries(name)
            assert all("WARNING" in line for line in lines), lines
            # Backoff from 1 s doubling, with jitter (0.75 to 1.25): the announced waits, and
            # the time between tries at least that long (never five a second).
            waits = [float(line.rsplit("retrying in ", 1)[1].split()[0]) for line in lines]
            assert all(round(0.75 * 2**i) <= wait <= round(1.25 * 2**i) + 0.5 for i, wait in enumerate(waits)), lines
            gaps = [b - a for a, b in itertools.pairwise(_logged_at(line) for line in lines)]
            assert all(gap >= 0.75 * 2**i - 0.05 for i, gap in enumerate(gaps)), (gaps, lines)
            assert "Traceback" not in log and "ERROR" not in log, log
            assert "guest:guest" not in log
        region_log = services.text("region eu")
        beats = [line for line in region_log.splitlines() if "media-node heartbeats of region eu" in line]
        assert beats and all(f"RabbitMQ vhost '{missing}' does not exist" in line for line in beats), region_log
        # The consumer backs off from 0.5 s doubling to 10 s: one line per try, no pika trace.
        announced = [float(line.rsplit("retrying in ", 1)[1].split()[0]) for line in beats]
        assert announced == [min(10.0, 0.5 * 2**i) for i in range(len(beats))], region_log
        assert "Traceback" not in region_log and "pika" not in region_log, region_log
