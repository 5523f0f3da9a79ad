"""Faults with real services: a region's PostgreSQL restarted during traffic, its
RabbitMQ restarted during a purge, its OpenBao sealed during a call. Each ends in
clear errors while the service is gone, recovery without restarting anything of
Konsil, and no write lost or made twice.

The PostgreSQL and RabbitMQ broken here are private ones, started for the test in a
temporary folder on free ports; the shared servers are never touched."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hvac
import pytest
from websockets.asyncio.client import ClientConnection, connect

from konsil.platform.cli.launcher import start_processes, stop_processes, wait_healthy
from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core.settings import Settings, load_settings
from konsil.regions.tasks import PURGE, CeleryRunner, queue_name
from tests.conftest import bao_dev_process, fetch, free_port, services_config, wait_until, wait_until_async
from tests.e2e import test_purge_workers as purge_workers

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


# --- a private PostgreSQL -------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name) or name


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of its own (initdb in a temporary folder, trust auth)."""

    base: Path
    port: int
    as_owner: list[str] = field(default_factory=list)  # initdb and pg_ctl refuse to run as root

    @property
    def data(self) -> Path:
        return self.base / "data"

    def dsn(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *self.as_owner,
                _pg_bin("pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.base / "log"),
                "-o",
                options,
                *args,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    # Not under pytest's tmp_path: the server's own user must be able to reach the folder.
    base = Path(tempfile.mkdtemp(prefix="konsil-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    pg = PrivatePostgres(base, free_port(), as_owner)
    subprocess.run(
        [*as_owner, _pg_bin("initdb"), "-D", str(pg.data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pg.ctl("-w", "start")
    try:
        yield pg
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            pg.ctl("-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


# --- a running control plane and region --------------------------------------------------------


@contextlib.contextmanager
def running(settings: Settings, run_dir: Path) -> Iterator[dict[str, Any]]:
    procs = start_processes(settings, run_dir, regions=["eu"])
    try:
        wait_healthy(
            {"control": settings.require_control().public_url, "region eu": settings.region("eu").public_url}, procs
        )
        yield procs
    finally:
        stop_processes(procs)


def signup_and_login(settings: Settings, slug: str) -> httpx.Client:
    control = settings.require_control().public_url
    owner = {"name": f"Owner {slug}", "email": f"owner@{slug}.example", "password": PASSWORD}
    made = httpx.post(
        f"{control}/api/v1/signup",
        json={"region": "eu", "organisation": {"name": f"Praxis {slug}", "slug": slug}, "owner": owner},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    client = httpx.Client(base_url=settings.region("eu").public_url, timeout=10)
    login = client.post(f"/api/v1/orgs/{slug}/auth/login", json={"email": owner["email"], "password": PASSWORD})
    assert login.status_code == 200, login.text
    client.headers["x-csrf-token"] = login.json()["csrf_token"]
    return client


def assert_clear_unavailable(response: httpx.Response) -> None:
    """A 503 a client can act on: JSON with a code and a message, a Retry-After, no trace."""
    assert response.status_code == 503, (response.status_code, response.text[:300])
    body = response.json()
    assert body["error"] == "unavailable" and body["message"], body
    assert int(response.headers["retry-after"]) > 0
    assert "Traceback" not in response.text and "asyncpg" not in response.text


# --- 1. PostgreSQL restarted during traffic ----------------------------------------------------


async def test_the_region_database_restarted_during_traffic(
    pg_database: Callable[[str, str], str], tmp_path: Path
) -> None:
    """Writes (rooms) and reads go on while the region's PostgreSQL stops and starts
    again: while it is down every answer is a clear 503, the region recovers by itself,
    and every room that was answered 201 is stored exactly once."""
    with private_postgres() as pg:
        region_dsn = pg.dsn("konsil_fault_eu")
        await asyncio.to_thread(migrate_target, Target("fault eu", "region", region_dsn))
        control_dsn = await asyncio.to_thread(pg_database, "fault_pg_control", "control")
        settings = services_config(tmp_path, control_dsn, region_dsn)
        slug = f"fault-{secrets.token_hex(3)}"
        with running(settings, tmp_path) as procs:
            client = await asyncio.to_thread(signup_and_login, settings, slug)
            cookies, csrf = dict(client.cookies), client.headers["x-csrf-token"]
            client.close()
            outcomes: dict[str, int] = {}  # room slug → status
            unavailable: list[httpx.Response] = []
            reads: list[int] = []
            odd: list[httpx.Response] = []
            phase = {"up_again": 0.0, "done": False}

            async def writer(http: httpx.AsyncClient) -> None:
                n = 0
                while not phase["done"]:
                    n += 1
                    room = f"room-{n}"
                    try:
                        answer = await http.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": room, "title": room})
                    except httpx.TransportError:  # no answer at all: a failure too (checked below)
                        outcomes[room] = 0
                        continue
                    outcomes[room] = answer.status_code
                    if answer.status_code not in {201, 503}:
                        odd.append(answer)
                    if answer.status_code == 503:
                        unavailable.append(answer)
                    await asyncio.sleep(0.01)

            async def reader(http: httpx.AsyncClient) -> None:
                while not phase["done"]:
                    answer = await http.get(f"/api/v1/orgs/{slug}/rooms")
                    reads.append(answer.status_code)
                    if answer.status_code == 503:
                        unavailable.append(answer)
                    await asyncio.sleep(0.01)

            async def control() -> None:
                await wait_until_async(
                    lambda: sum(s == 201 for s in outcomes.values()) >= 10, "writes before the stop", every=0.05
                )
                await asyncio.to_thread(pg.ctl, "-m", "fast", "-w", "stop")  # what a restart begins with
                await wait_until_async(
                    lambda: len(unavailable) >= 6 and 503 in reads, "503s while the database is down", every=0.05
                )
                await asyncio.to_thread(pg.ctl, "-w", "start")
                phase["up_again"] = time.monotonic()
                recovered = len(outcomes)
                await wait_until_async(
                    lambda: (
                        sum(s == 201 for r, s in outcomes.items() if int(r.removeprefix("room-")) > recovered) >= 10
                    ),
                    "writes to succeed again without restarting the region",
                    within=30,
                    every=0.05,
                )
                phase["done"] = True

            base = settings.region("eu").public_url
            headers = {"x-csrf-token": csrf}
            async with (
                httpx.AsyncClient(base_url=base, cookies=cookies, headers=headers, timeout=15) as w,
                httpx.AsyncClient(base_url=base, cookies=cookies, headers=headers, timeout=15) as r,
                ws(base, f"/{slug}/portal/ws", konsil_session=cookies["konsil_session"]) as dashboard,
            ):
                assert (await receive(dashboard))["type"] == "ready"
                await asyncio.gather(writer(w), reader(r), control())
                recovery = time.monotonic() - phase["up_again"]
                # Live events (LISTEN/NOTIFY between replicas) work again too: a dashboard
                # open since before the restart hears of a new visitor, and a call's
                # signaling relays.
                await call_relays_signaling(w, slug, cookies["konsil_session"])
                assert (await receive(dashboard, skip=()))["type"] == "waiting-changed"
            assert all(proc.poll() is None for proc in procs.values()), "nothing of Konsil was restarted"

        assert set(outcomes.values()) <= {201, 503}, [(a.status_code, a.text) for a in odd]
        assert set(reads) <= {200, 503}, sorted(set(reads))
        for answer in unavailable:
            assert_clear_unavailable(answer)
        stored = await fetch(
            region_dsn,
            "SELECT r.slug, count(*) AS n FROM room r JOIN organisation o ON o.id = r.org_id "
            "WHERE o.slug = $1 GROUP BY r.slug",
            slug,
        )
        counts = {row["slug"]: row["n"] for row in stored}
        created = {room for room, status in outcomes.items() if status == 201}
        assert {room: counts.get(room) for room in created} == dict.fromkeys(created, 1), "lost or doubled"
        # A 503 can come after the row was committed (the connection dropped before the
        # answer went out): such a room may be stored, but only once, and nothing else is.
        assert set(counts) <= set(outcomes) and set(counts.values()) == {1}
        assert recovery < 30


# --- 2. RabbitMQ restarted during a purge -----------------------------------------------------


def _rabbit_bin(name: str) -> str:
    beside = Path("/usr/lib/rabbitmq/bin") / name  # not the wrapper in sbin, which switches user
    return str(beside) if beside.exists() else shutil.which(name) or name


@dataclass
class PrivateRabbit:
    """A RabbitMQ node of its own: its own name, ports, Erlang port mapper, files."""

    base: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self) -> None:
        with (self.base / "server.log").open("ab") as out:
            self.process = subprocess.Popen(
                [_rabbit_bin("rabbitmq-server")], stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        wait_until(self.accepting, "the private RabbitMQ to accept connections", within=60, every=0.2)

    def accepting(self) -> bool:
        assert self.process is not None and self.process.poll() is None, "the private RabbitMQ stopped"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            [_rabbit_bin("rabbitmqctl"), "-q", *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self) -> None:
        self.ctl("stop")
        assert self.process is not None
        self.process.wait(timeout=30)


@contextlib.contextmanager
def private_rabbitmq() -> Iterator[PrivateRabbit]:
    base = Path(tempfile.mkdtemp(prefix="konsil-mq-"))
    port, dist, epmd = free_port(), free_port(), free_port()
    (base / "enabled_plugins").write_text("[].\n")  # no management plugin
    (base / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{port}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))} | {
        "HOME": str(base),  # its own Erlang cookie
        "RABBITMQ_NODENAME": f"konsil-fault-{secrets.token_hex(4)}@localhost",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist),
        "ERL_EPMD_PORT": str(epmd),  # its own port mapper, not the shared broker's
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(base / "pid"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
    }
    rabbit = PrivateRabbit(base, port, env)
    try:
        rabbit.start()
        yield rabbit
    finally:
        if rabbit.process is not None and rabbit.process.poll() is None:
            with contextlib.suppress(AssertionError, subprocess.SubprocessError):
                rabbit.ctl("stop")
            with contextlib.suppress(subprocess.TimeoutExpired):
                rabbit.process.wait(timeout=30)
            if rabbit.process.poll() is None:
                rabbit.process.kill()
        epmd_bin = shutil.which("epmd") or next(iter(glob.glob("/usr/lib/erlang/erts-*/bin/epmd")), "epmd")
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([epmd_bin, "-kill"], env=env, capture_output=True, timeout=10)
        shutil.rmtree(base, ignore_errors=True)


PURGE_VISITS = 3000  # each with a call and two telemetry samples
PURGE_BATCH = 2  # small batches: the purge runs long enough for the broker to go in the middle


async def test_rabbitmq_restarted_during_a_purge(pg_database: Callable[[str, str], str], tmp_path: Path) -> None:
    """The region's broker stops while its worker purges and starts again: the worker
    reconnects by itself, the purge's task is finished and acknowledged, every expired
    row is removed once, the run's evidence is written once, and the organisation's
    access-log chain still verifies."""
    with private_rabbitmq() as rabbit:
        dsn = await asyncio.to_thread(pg_database, "fault_mq_eu", "region")
        lines = [
            'mode = "services"',
            f'data_dir = "{tmp_path}"',
            f'discovery_key = "{secrets.token_urlsafe(24)}"',
            "[[regions]]",
            'id = "eu"',
            'jurisdiction = "EU"',
            'public_url = "http://127.0.0.1:9"',
            'listen = "127.0.0.1:9"',
            f'database = "{dsn}"',
            f'internal_secret = "eu-{secrets.token_urlsafe(24)}"',
            f'broker_url = "{rabbit.url}"',
            "[regions.lifecycle]",
            f"purge_batch_size = {PURGE_BATCH}",
            "[regions.vault]",
            'backend = "local"',
            f'keyring_path = "{tmp_path / "keyring-eu"}"',
        ]
        (tmp_path / "konsil.toml").write_text("\n".join(lines) + "\n")
        settings = load_settings(tmp_path / "konsil.toml")
        expired = await purge_workers.seed(dsn, PURGE_VISITS, days_old=3)
        fresh = await purge_workers.seed(dsn, 5, days_old=0.5)
        [org] = await fetch(dsn, "SELECT slug FROM organisation WHERE id = $1", expired)
        run_id = uuid.uuid4()

        async def purge_state() -> str | None:
            rows = await fetch(
                dsn, "SELECT outcome, rows_removed FROM purge_run WHERE run_id = $1 AND org_id = $2", run_id, expired
            )
            if not rows:
                return None
            return "running" if rows[0]["outcome"] == "running" and rows[0]["rows_removed"] > 0 else rows[0]["outcome"]

        async def purging() -> bool:
            return await purge_state() == "running"

        queue = queue_name("eu")

        def queue_empty() -> bool:
            for line in rabbit.ctl("list_queues", "name", "messages", "messages_unacknowledged").splitlines():
                if line.split()[:1] == [queue]:
                    return line.split()[1:] == ["0", "0"]
            return False

        with purge_workers.konsil(settings, "worker", "--region", "eu") as worker:
            CeleryRunner(settings, "eu").submit(PURGE, run_id)
            await wait_until_async(purging, "the purge to be running", within=30, every=0.01)
            await asyncio.to_thread(rabbit.stop)
            assert await purge_state() == "running", "the broker went while the purge ran"
            log_of = worker.log.read_text  # type: ignore[attr-defined]
            # The solo pool notices between a task's steps: slow on a busy machine, so a wide bound.
            await wait_until_async(
                lambda: "Connection to broker lost" in log_of(errors="replace"),
                "the worker to notice the broker gone",
                within=90,
            )
            await asyncio.to_thread(rabbit.start)
            evidence = await wait_until_async(
                lambda: purge_workers.finished_run(dsn, run_id), "the run to finish", within=40, every=0.1
            )
            await asyncio.to_thread(wait_until, queue_empty, "the task to be acknowledged", 30, 0.5)
            assert worker.poll() is None, "the worker kept running through the broker's restart"
            log = worker.log.read_text(errors="replace")  # type: ignore[attr-defined]

        # Evidence once per class, with the exact counts of an uninterrupted run.
        pairs = [(r["data_class"], r["org_id"]) for r in evidence]
        assert len(pairs) == len(set(pairs)), "evidence written twice"
        await purge_workers.assert_as_one_uninterrupted_run(dsn, run_id, evidence, expired, fresh, PURGE_VISITS)
        all_runs = await fetch(dsn, "SELECT run_id, data_class, org_id FROM purge_run WHERE org_id = $1", expired)
        assert [(r["run_id"], r["data_class"]) for r in all_runs] == [(run_id, "visits")], "one run, one row"
        verified = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "konsil.platform.cli.main",
                "audit",
                "verify",
                "--org",
                org["slug"],
                "--config",
                str(tmp_path / "konsil.toml"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")},
        )
        assert verified.returncode == 0 and ": OK" in verified.stdout, verified.stdout + verified.stderr
        # What the worker says: the broker went, it reconnected by itself, and the task it
        # could not acknowledge came back and ended the same run again (doing nothing twice).
        assert "Connection to broker lost" in log and "Connected to amqp://" in log, log[-3000:]
        assert log.count(f"Task {PURGE}[{run_id}] received") == 2, log[-3000:]
        assert log.count(f"Task {PURGE}[{run_id}] succeeded") >= 1, log[-3000:]


# --- 3. the region's OpenBao sealed during a call ----------------------------------------------


@dataclass
class Bao:
    url: str
    token: str
    unseal_key: str

    def client(self) -> hvac.Client:
        return hvac.Client(url=self.url, token=self.token, timeout=5)


@contextlib.contextmanager
def openbao_with_unseal_key(tmp: Path) -> Iterator[Bao]:
    """An OpenBao dev server whose unseal key (printed at start) is kept, so the test
    can seal it and unseal it again; Transit enabled."""
    home = tmp / "bao-home"
    home.mkdir()
    output = tmp / "bao.log"
    with output.open("wb") as out, bao_dev_process(home, out) as (url, token, _):
        key = wait_until(
            lambda: re.search(r"Unseal Key: (\S+)", output.read_text(errors="replace")), "OpenBao to start"
        ).group(1)
        bao = Bao(url, token, key)
        wait_until(lambda: bao.client().sys.is_initialized() and not bao.client().sys.is_sealed(), "it to unseal")
        bao.client().sys.enable_secrets_engine("transit", path="transit")
        yield bao


@contextlib.asynccontextmanager
async def ws(base: str, path: str, **cookies: str) -> AsyncIterator[ClientConnection]:
    headers = {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    async with connect(base.replace("http://", "ws://", 1) + path, additional_headers=headers, open_timeout=10) as conn:
        yield conn


async def receive(conn: ClientConnection, skip: tuple[str, ...] = ("hello", "present")) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            message: dict[str, Any] = json.loads(await conn.recv())
            if message["type"] not in skip:
                return message


async def relayed(sender: ClientConnection, receiver: ClientConnection, port: int) -> None:
    candidate = f"candidate:1 1 udp 16777215 127.0.0.1 {port} typ relay raddr 0.0.0.0 rport 9"
    await sender.send(json.dumps({"type": "ice", "candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0}))
    got = await receive(receiver)
    assert got["type"] == "ice" and got["candidate"] == candidate, got


async def arrive(http: httpx.AsyncClient, slug: str, room: str, name: str, phone: str) -> httpx.Response:
    return await http.post(f"/{slug}/{room}/visits", data={"name": name, "phone": phone, "consent": "yes"})


async def test_the_regions_openbao_sealed_during_a_call(pg_database: Callable[[str, str], str], tmp_path: Path) -> None:
    """Sealed mid-call: what needs personal data is a clear 503 and nothing is written
    (the refused visitor's name and phone are nowhere in the region's database), the
    running call's signaling goes on, and once unsealed the region serves again by
    itself. The data-key cache is kept to one second so the sealed Vault is reached."""
    with openbao_with_unseal_key(tmp_path) as bao:
        region_dsn = await asyncio.to_thread(pg_database, "fault_bao_eu", "region")
        control_dsn = await asyncio.to_thread(pg_database, "fault_bao_control", "control")
        vault = [
            "[regions.vault]",
            'backend = "vault"',
            f'url = "{bao.url}"',
            f'token = "{bao.token}"',
            "timeout_seconds = 2",
            "cache_max_age_seconds = 1",
        ]
        settings = services_config(tmp_path, control_dsn, region_dsn, vault)
        slug, room = f"sealed-{secrets.token_hex(3)}", "consultation"
        marker_name, marker_phone = f"Sealtest {secrets.token_hex(4)}", f"+4799{secrets.randbelow(10**6):06d}"
        with running(settings, tmp_path) as procs:
            owner = await asyncio.to_thread(signup_and_login, settings, slug)
            base = settings.region("eu").public_url
            async with (
                httpx.AsyncClient(
                    base_url=base, cookies=dict(owner.cookies), headers={"x-csrf-token": owner.headers["x-csrf-token"]}
                ) as expert,
                httpx.AsyncClient(base_url=base, timeout=15) as visitor_http,
            ):
                session = owner.cookies["konsil_session"]
                owner.close()
                made = await expert.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": room, "title": "Sprechstunde"})
                assert made.status_code == 201, made.text
                joined = await arrive(visitor_http, slug, room, "Vera Visitor", "+4712345678")
                assert joined.status_code == 303, joined.text
                visit_path = joined.headers["location"]
                visit_id = visit_path.rsplit("/", 1)[1]
                async with ws(base, f"{visit_path}/ws", konsil_visit=joined.cookies["konsil_visit"]) as visitor_ws:
                    assert await receive(visitor_ws) == {"type": "waiting"}
                    admitted = await expert.post(f"/api/v1/orgs/{slug}/visits/{visit_id}/admit")
                    assert admitted.status_code == 200, admitted.text
                    call_id = admitted.json()["id"]
                    assert (await receive(visitor_ws))["type"] == "joined"
                    async with ws(base, f"/{slug}/calls/{call_id}/ws", konsil_session=session) as expert_ws:
                        assert (await receive(expert_ws))["type"] == "joined"
                        await relayed(visitor_ws, expert_ws, 40001)
                        visits_before = await fetch(region_dsn, "SELECT count(*) AS n FROM visit")

                        bao.client().sys.seal()
                        assert bao.client().sys.is_sealed()

                        # The region serves from its data-key cache (at most 1 s old) until
                        # the entry expires; from then on what needs personal data is refused.
                        async def read_refused() -> httpx.Response | None:
                            read = await expert.get(f"/api/v1/orgs/{slug}/visits/{visit_id}")
                            assert read.status_code in (200, 503), read.text
                            return read if read.status_code == 503 else None

                        assert_key_service_down(
                            await wait_until_async(read_refused, "reads to need the sealed key service", every=0.1)
                        )

                        # What needs personal data: a clear 503, nothing written.
                        refused = await arrive(visitor_http, slug, room, marker_name, marker_phone)
                        assert_key_service_down(refused)
                        assert_key_service_down(await expert.get(f"/api/v1/orgs/{slug}/visits/{visit_id}"))
                        assert_key_service_down(await expert.get(f"/api/v1/orgs/{slug}/visits/waiting"))
                        assert_key_service_down(
                            await expert.post(
                                f"/api/v1/orgs/{slug}/members",
                                json={
                                    "name": marker_name,
                                    "email": f"{slug}@members.example",
                                    "phone": marker_phone,
                                    "role": "expert",
                                    "password": PASSWORD,
                                },
                            )
                        )
                        assert await fetch(region_dsn, "SELECT count(*) AS n FROM visit") == visits_before
                        # What needs the region's signing key (in the same Vault) too.
                        keys_refused = await visitor_http.get("/.well-known/konsil/keys")
                        assert_clear_unavailable(keys_refused)
                        assert "cannot sign" in keys_refused.json()["message"]
                        # The running call's signaling needs no key: it goes on.
                        await relayed(expert_ws, visitor_ws, 40002)
                        await relayed(visitor_ws, expert_ws, 40003)

                        dump = await asyncio.to_thread(
                            subprocess.run, ["pg_dump", "--data-only", region_dsn], capture_output=True, check=True
                        )
                        text = dump.stdout.decode()
                        assert marker_name not in text and marker_phone not in text
                        assert marker_phone.removeprefix("+") not in text
                        for row in await fetch(region_dsn, "SELECT name, phone FROM visit"):
                            assert row["name"].startswith("kf1:") and (row["phone"] or "kf1:").startswith("kf1:")

                        bao.client().sys.submit_unseal_key(bao.unseal_key)
                        assert not bao.client().sys.is_sealed()

                        # Recovered by itself: nothing of Konsil was restarted.
                        async def served() -> bool:
                            answer = await expert.get(f"/api/v1/orgs/{slug}/visits/{visit_id}")
                            return answer.status_code == 200

                        await wait_until_async(served, "the region to read personal data again", within=60, every=0.2)
                        read = await expert.get(f"/api/v1/orgs/{slug}/visits/{visit_id}")
                        assert read.json()["name"] == "Vera Visitor"
                        assert (await visitor_http.get("/.well-known/konsil/keys")).status_code == 200
                        again = await arrive(visitor_http, slug, room, marker_name, marker_phone)
                        assert again.status_code == 303, again.text
                        await relayed(visitor_ws, expert_ws, 40004)
            assert all(proc.poll() is None for proc in procs.values()), "nothing of Konsil was restarted"
        stored = await fetch(region_dsn, "SELECT count(*) AS n FROM visit")
        assert stored[0]["n"] == visits_before[0]["n"] + 1, "the refused visit was not stored; the later one once"


async def call_relays_signaling(expert: httpx.AsyncClient, slug: str, session: str) -> None:
    """A visitor arrives in the expert's first room, is admitted, and both sides of the
    call exchange a candidate over the signaling sockets."""
    base = str(expert.base_url)
    room = (await expert.get(f"/api/v1/orgs/{slug}/rooms")).json()[0]["slug"]
    async with httpx.AsyncClient(base_url=base, timeout=15) as http:
        joined = await arrive(http, slug, room, "Vera Visitor", "+4712345678")
    assert joined.status_code == 303, joined.text
    visit_path = joined.headers["location"]
    async with ws(base, f"{visit_path}/ws", konsil_visit=joined.cookies["konsil_visit"]) as visitor_ws:
        assert await receive(visitor_ws) == {"type": "waiting"}
        admitted = await expert.post(f"/api/v1/orgs/{slug}/visits/{visit_path.rsplit('/', 1)[1]}/admit")
        assert admitted.status_code == 200, admitted.text
        assert (await receive(visitor_ws))["type"] == "joined"
        async with ws(base, f"/{slug}/calls/{admitted.json()['id']}/ws", konsil_session=session) as expert_ws:
            assert (await receive(expert_ws))["type"] == "joined"
            await relayed(visitor_ws, expert_ws, 40010)
            await relayed(expert_ws, visitor_ws, 40011)


def assert_key_service_down(response: httpx.Response) -> None:
    assert_clear_unavailable(response)
    assert "key service" in response.json()["message"]
