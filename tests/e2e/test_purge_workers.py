"""Retention purges on real Celery workers (``konsil worker``/``konsil beat``
processes) on the real RabbitMQ, each region on its own vhost and PostgreSQL
database: a worker killed mid-purge and restarted ends with the same rows and
evidence as an uninterrupted run; an EU task is never run by a US worker; beat
schedules the purge; ``konsil purge`` by hand, with a dry run and a progress bar."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from konsil.compliance.retention.policy import DATA_CLASSES
from konsil.platform.core.settings import Settings, load_settings
from konsil.regions.tasks import PURGE, CeleryRunner, queue_name
from tests.conftest import SESSION_TAG, fetch, rabbitmqctl, wait_until_async

pytestmark = pytest.mark.e2e

VISITS = 3000  # each with a call and two telemetry samples: 4 rows per visit
BATCH = 10  # small batches: the purge runs long enough to be killed in the middle


@pytest.fixture(scope="module")
def lifecycle(pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """EU and US regions with their own PostgreSQL database and RabbitMQ vhost."""
    run_dir = tmp_path_factory.mktemp("lifecycle")
    vhosts = {region: f"{SESSION_TAG}_{region}" for region in ("eu", "us")}
    for vhost in vhosts.values():
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    lines = ['mode = "services"', f'data_dir = "{run_dir}"', f'discovery_key = "{secrets.token_urlsafe(24)}"']
    for region in ("eu", "us"):
        lines += [
            "[[regions]]",
            f'id = "{region}"',
            f'jurisdiction = "{region.upper()}"',
            'public_url = "http://127.0.0.1:9"',
            'listen = "127.0.0.1:9"',
            f'database = "{pg_database(f"lifecycle_{region}", "region")}"',
            f'internal_secret = "{region}-{secrets.token_urlsafe(24)}"',
            f'broker_url = "amqp://guest:guest@127.0.0.1:5672/{vhosts[region]}"',
            "[regions.lifecycle]",
            f"purge_batch_size = {BATCH}",
            "purge_every_seconds = 1",
            "[regions.vault]",
            'backend = "local"',
            f'keyring_path = "{run_dir / f"keyring-{region}"}"',
        ]
    config = run_dir / "konsil.toml"
    config.write_text("\n".join(lines) + "\n")
    try:
        yield load_settings(config)
    finally:
        for vhost in vhosts.values():
            with contextlib.suppress(subprocess.SubprocessError):
                rabbitmqctl("delete_vhost", vhost)


def config_path(settings: Settings) -> str:
    return str(Path(settings.data_dir) / "konsil.toml")


@contextlib.contextmanager
def konsil(settings: Settings, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A ``konsil worker|beat`` process; its output goes to a log file beside the config."""
    log = Path(settings.data_dir) / f"{args[0]}-{args[2]}-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "konsil.platform.cli.main", *args, "--config", config_path(settings)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")},
            start_new_session=True,
        )
    proc.log = log  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def seed(dsn: str, visits: int, days_old: float, retention_days: int = 1) -> uuid.UUID:
    """An organisation with ``visits`` visits, each with a call and two telemetry samples."""
    org_id = uuid.uuid4()
    await fetch(
        dsn,
        "INSERT INTO organisation (id, slug, name, retention_days, relay_only, created_at) "
        "VALUES ($1, $2, 'Praxis', $3, true, now())",
        org_id,
        f"org-{org_id.hex[:12]}",
        retention_days,
    )
    await fetch(
        dsn,
        "INSERT INTO visit (id, org_id, room_id, name, status, token_hash, consented_at, arrived_at, expires_at) "
        "SELECT gen_random_uuid(), $1, $1, 'kf1:sealed', 'ended', md5(random()::text || g), "
        "now() - make_interval(secs => $3), now() - make_interval(secs => $3), now() "
        "FROM generate_series(1, $2) g",
        org_id,
        visits,
        days_old * 86400,
    )
    await fetch(
        dsn,
        "INSERT INTO call (id, org_id, room_id, visit_id, expert_id, started_at, expires_at) "
        "SELECT gen_random_uuid(), org_id, room_id, id, org_id, arrived_at, expires_at FROM visit WHERE org_id = $1",
        org_id,
    )
    await fetch(
        dsn,
        "INSERT INTO call_telemetry (id, org_id, call_id, visit_id, participant, kind, data, at, expires_at) "
        "SELECT gen_random_uuid(), c.org_id, c.id, c.visit_id, 'visitor', 'quality', '{}', now(), now() "
        "FROM call c CROSS JOIN generate_series(1, 2) WHERE c.org_id = $1",
        org_id,
    )
    return org_id


async def counts(dsn: str, org_id: uuid.UUID) -> dict[str, int]:
    found = {}
    for table in ("visit", "call", "call_telemetry"):
        rows = await fetch(dsn, f"SELECT count(*) AS n FROM {table} WHERE org_id = $1", org_id)  # noqa: S608
        found[table] = int(rows[0]["n"])
    return found


async def run_evidence(dsn: str, run_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await fetch(
        dsn,
        "SELECT data_class, org_id, rows_removed, detail, outcome, finished_at FROM purge_run "
        "WHERE run_id = $1 ORDER BY data_class, org_id",
        run_id,
    )
    return [dict(row) for row in rows]


async def finished_run(dsn: str, run_id: uuid.UUID) -> list[dict[str, Any]] | None:
    """The run's evidence once every class has its row and none is still running; else None."""
    rows = await run_evidence(dsn, run_id)
    classes = {r["data_class"] for r in rows}
    done = all(r["outcome"] in {"success", "skipped"} for r in rows)
    # The run's last classes get their evidence rows only once the visits are done.
    return rows if done and set(DATA_CLASSES) - {"member_contact"} <= classes else None


async def assert_as_one_uninterrupted_run(
    dsn: str, run_id: uuid.UUID, evidence: list[dict[str, Any]], expired: uuid.UUID, fresh: uuid.UUID, visits: int
) -> None:
    """A purge run that was interrupted (its worker killed, its broker restarted) ends as
    one without the interruption: every expired row gone and the fresh ones kept, one
    evidence row per class with the exact counts, each batch access-logged once."""
    assert await counts(dsn, expired) == {"visit": 0, "call": 0, "call_telemetry": 0}
    assert await counts(dsn, fresh) == {"visit": 5, "call": 5, "call_telemetry": 10}
    assert {r["data_class"] for r in evidence} == set(DATA_CLASSES) - {"member_contact"}
    removed = [r for r in evidence if r["data_class"] == "visits" and r["org_id"] == expired]
    assert len(removed) == 1 and removed[0]["rows_removed"] == visits * 4
    assert json.loads(removed[0]["detail"]) == {
        "visit": visits,
        "call": visits,
        "call_telemetry": visits * 2,
        "call_relay_receipt": 0,
        "visit_identity": 0,
    }
    logged = await fetch(
        dsn, "SELECT subject_ref, object_id FROM access_log_entry WHERE org_id = $1 AND action = 'delete'", expired
    )
    assert {e["subject_ref"] for e in logged} == {f"purge-run:{run_id}"}
    assert sum(int(e["object_id"].removeprefix("count:")) for e in logged) == visits, "each batch logged once"


async def test_a_worker_killed_mid_purge_and_restarted_ends_as_an_uninterrupted_run(lifecycle: Settings) -> None:
    dsn = lifecycle.region("eu").database
    expired = await seed(dsn, VISITS, days_old=3)
    fresh = await seed(dsn, 5, days_old=0.5)
    run_id = uuid.uuid4()

    async def purging() -> bool:
        rows = await fetch(
            dsn,
            "SELECT rows_removed FROM purge_run WHERE run_id = $1 AND org_id = $2 AND outcome = 'running'",
            run_id,
            expired,
        )
        return bool(rows) and rows[0]["rows_removed"] > 0

    with konsil(lifecycle, "worker", "--region", "eu") as worker:
        CeleryRunner(lifecycle, "eu").submit(PURGE, run_id)
        await wait_until_async(purging, "the purge to be running", every=0.01)
        os.killpg(worker.pid, signal.SIGKILL)  # mid-purge: no chance to finish or acknowledge
        worker.wait()
    removed_before_restart = await counts(dsn, expired)
    assert 0 < removed_before_restart["visit"] < VISITS, "killed in the middle"

    with konsil(lifecycle, "worker", "--region", "eu"):  # the redelivered task continues the same run
        evidence = await wait_until_async(lambda: finished_run(dsn, run_id), "the run to finish", every=0.05)

    # The evidence is that of a run without the kill: one row per class, exact counts.
    await assert_as_one_uninterrupted_run(dsn, run_id, evidence, expired, fresh, VISITS)


async def test_an_eu_task_is_never_run_by_a_us_worker(lifecycle: Settings) -> None:
    eu, us = lifecycle.region("eu").database, lifecycle.region("us").database
    eu_org = await seed(eu, 10, days_old=3)
    us_org = await seed(us, 10, days_old=3)
    forged = uuid.uuid4()
    with konsil(lifecycle, "worker", "--region", "us") as us_worker:
        # The worst case: an EU task put straight into the US region's queue.
        CeleryRunner(lifecycle, "us").app.send_task(
            PURGE, kwargs={"region": "eu"}, task_id=str(forged), queue=queue_name("us")
        )

        async def refused() -> bool:
            return "refused a task of region 'eu'" in us_worker.log.read_text(errors="replace")  # type: ignore[attr-defined]

        await wait_until_async(refused, "the US worker to refuse the EU task", every=0.05)
        assert await run_evidence(us, forged) == [] and await run_evidence(eu, forged) == []
        assert (await counts(us, us_org))["visit"] == 10 and (await counts(eu, eu_org))["visit"] == 10

        with konsil(lifecycle, "worker", "--region", "eu"):
            run_id = uuid.UUID(CeleryRunner(lifecycle, "eu").submit(PURGE))

            async def eu_done() -> bool:
                rows = await run_evidence(eu, run_id)
                return bool(rows) and all(r["outcome"] != "running" for r in rows)

            await wait_until_async(eu_done, "the EU run to finish", every=0.05)
    assert (await counts(eu, eu_org))["visit"] == 0
    assert (await counts(us, us_org))["visit"] == 10, "the US region's data is only purged by US tasks"
    assert await run_evidence(us, run_id) == []


async def test_beat_schedules_the_purge_and_the_checkpoints_on_the_regions_workers(lifecycle: Settings) -> None:
    dsn = lifecycle.region("eu").database
    org_id = await seed(dsn, 3, days_old=2)
    with konsil(lifecycle, "worker", "--region", "eu"), konsil(lifecycle, "beat", "--region", "eu"):

        async def scheduled() -> bool:
            rows = await fetch(
                dsn,
                "SELECT 1 FROM purge_run WHERE org_id = $1 AND trigger = 'schedule' AND outcome = 'success'",
                org_id,
            )
            return bool(rows)

        await wait_until_async(scheduled, "a scheduled run to succeed", every=0.05)

        async def checkpointed() -> bool:  # the purge's own access-log entries moved the log
            return bool(await fetch(dsn, "SELECT 1 FROM access_log_checkpoint WHERE org_id = $1", org_id))

        await wait_until_async(checkpointed, "a scheduled checkpoint of the organisation's access log", every=0.05)
    assert (await counts(dsn, org_id))["visit"] == 0


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "konsil.platform.cli.main", "purge", *args, "--config", config_path(settings)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")} | {"COLUMNS": "160"},
    )


async def test_purge_by_hand_with_a_dry_run_first(lifecycle: Settings) -> None:
    dsn = lifecycle.region("us").database
    org_id = await seed(dsn, 25, days_old=2)
    slug = (await fetch(dsn, "SELECT slug FROM organisation WHERE id = $1", org_id))[0]["slug"]

    dry = cli(lifecycle, "--dry-run", "--region", "us", "--org", slug)
    assert dry.returncode == 0, dry.stderr
    assert "would remove (dry run)" in dry.stdout and "100" in dry.stdout
    assert (await counts(dsn, org_id))["visit"] == 25

    done = cli(lifecycle, "--region", "us", "--org", slug)
    assert done.returncode == 0, done.stderr
    assert "us visits" in done.stdout and "100/100" in done.stdout, done.stdout  # the progress bar
    assert "evidence: purge run" in done.stdout
    assert (await counts(dsn, org_id))["visit"] == 0

    unknown = cli(lifecycle, "--org", "no-such-practice")
    assert unknown.returncode == 2 and "no organisation 'no-such-practice'" in unknown.stderr
    bad = cli(lifecycle, "--batch-size", "0")
    assert bad.returncode == 2 and "batch-size" in bad.stderr
