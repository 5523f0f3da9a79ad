"""The login-discovery index follows a region's members even when the control plane is
down: an invitation never waits for it (nothing crosses the network inside the
member's transaction), and the change lands once the control plane is back.

A control plane and the EU region service as processes (the embedded configuration),
the region's database on SQLite or PostgreSQL; the control plane is stopped and started
again on its own port.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from konsil.platform.cli.launcher import embedded_config_text, start_processes, stop_processes, wait_healthy
from konsil.platform.cli.migrations import migrate_all
from konsil.platform.core.lookup import email_lookup
from konsil.platform.core.settings import Settings, load_settings
from tests.conftest import fetch, free_port_run

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


class Running:
    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.procs: dict[str, Any] = {}
        self.control = settings.require_control().public_url
        self.region = settings.region("eu").public_url

    def start_control(self) -> None:
        self.procs |= start_processes(self.settings, self.run_dir, regions=[])
        wait_healthy({"control": self.control}, self.procs)

    def stop_control(self) -> None:
        stop_processes({"control": self.procs.pop("control")})

    def login_index(self, org_id: str) -> set[str]:
        """The control plane's login-index entries of the organisation (keyed hashes)."""
        path = self.settings.require_control().database.removeprefix("sqlite://")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:  # piccolo keeps UUIDs as text there
            rows = db.execute("SELECT email_hmac FROM login_index WHERE org_id = ?", (str(uuid.UUID(org_id)),))
            return {row[0] for row in rows}

    def queued(self) -> int:
        dsn = self.settings.region("eu").database
        if dsn.startswith("sqlite://"):
            with sqlite3.connect(f"file:{dsn.removeprefix('sqlite://')}?mode=ro", uri=True) as db:
                return int(db.execute("SELECT count(*) FROM login_index_change").fetchone()[0])
        return int(asyncio.run(fetch(dsn, "SELECT count(*) AS n FROM login_index_change"))[0]["n"])


@pytest.fixture(params=["sqlite", "postgres"])
def running(
    request: pytest.FixtureRequest, tmp_path: Path, pg_database: Callable[[str, str], str]
) -> Iterator[Running]:
    port = free_port_run(3)
    text = embedded_config_text(tmp_path, port)
    if request.param == "postgres":
        dsn = pg_database(f"login_index_{port}", "region")
        text = text.replace(f'"sqlite://{tmp_path}/region-eu.db"', f'"{dsn}"')
    (tmp_path / "konsil.toml").write_text(text)
    settings = load_settings(tmp_path / "konsil.toml")
    migrate_all(settings, echo=lambda line: None)
    run = Running(settings, tmp_path / "run")
    run.procs = start_processes(settings, run.run_dir, regions=["eu"])
    try:
        wait_healthy({"control": run.control, "region eu": run.region}, run.procs)
        yield run
    finally:
        stop_processes(run.procs)


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within:.0f} s: {what}"
        time.sleep(0.2)


def test_an_invitation_made_while_the_control_plane_is_down_reaches_its_index_later(running: Running) -> None:
    signup = {
        "region": "eu",
        "organisation": {"name": "Praxis Sync", "slug": "praxis-sync"},
        "owner": {"name": "Olga Owner", "email": "owner@sync.example", "password": PASSWORD},
    }
    made = httpx.post(f"{running.control}/api/v1/signup", json=signup, timeout=30)
    assert made.status_code == 201, made.text
    org_id = made.json()["organisation_id"]
    owner = httpx.Client(base_url=running.region, timeout=30)
    credentials = {"email": "owner@sync.example", "password": PASSWORD}
    login = owner.post("/api/v1/orgs/praxis-sync/auth/login", json=credentials)
    assert login.status_code == 200, login.text
    owner.headers["x-csrf-token"] = login.json()["csrf_token"]
    key = running.settings.require_discovery_key()
    assert running.login_index(org_id) == {email_lookup(key, "owner@sync.example")}

    running.stop_control()
    began = time.monotonic()
    invited = owner.post(
        "/api/v1/orgs/praxis-sync/members",
        json={"name": "Erik Expert", "email": "erik@sync.example", "role": "expert", "password": PASSWORD},
    )
    assert invited.status_code == 201, invited.text
    assert time.monotonic() - began < 5, "the invitation did not wait for the control plane"
    # The member is there and can log in at the region; the index change waits its turn.
    expert = httpx.post(
        f"{running.region}/api/v1/orgs/praxis-sync/auth/login",
        json={"email": "erik@sync.example", "password": PASSWORD},
    )
    assert expert.status_code == 200, expert.text
    assert running.queued() == 1
    assert running.login_index(org_id) == {email_lookup(key, "owner@sync.example")}

    running.start_control()
    both = {email_lookup(key, "owner@sync.example"), email_lookup(key, "erik@sync.example")}
    wait_for(lambda: running.login_index(org_id) == both, 60, "the index holds the new member")
    wait_for(lambda: running.queued() == 0, 60, "nothing left queued")
    found = httpx.post(f"{running.control}/api/v1/login-discovery", json={"email": "erik@sync.example"}).json()
    assert found["regions"] == [{"region": "eu", "login_url": f"{running.region}/login"}]

    # A removal while it is down again lands the same way.
    running.stop_control()
    removed = owner.delete(f"/api/v1/orgs/praxis-sync/members/{invited.json()['id']}")
    assert removed.status_code == 204, removed.text
    running.start_control()
    wait_for(
        lambda: running.login_index(org_id) == {email_lookup(key, "owner@sync.example")},
        60,
        "the removed member's entry is gone",
    )
