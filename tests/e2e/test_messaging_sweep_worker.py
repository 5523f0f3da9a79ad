"""The SMS alerts' sweep on a real ``konsil worker`` on the real RabbitMQ (the region's own
vhost): an alert queued while the broker was down (its task never handed out) is sent
by the sweep that beat submits, with no other visitor arriving. The worker's sweep hands
the alert to the region's queue and the same worker texts the expert through a local
stand-in of Sinch. (Beat's schedule entry itself is checked in
tests/tenants/messaging/test_alerts.py; its interval is a minute, too long to wait here.)"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer

import pytest

from konsil.platform.core.settings import Settings, load_settings
from konsil.regions.container import open_region
from konsil.regions.tasks import CeleryRunner
from konsil.tenants.messaging import alerts
from konsil.tenants.messaging.tables import SmsAlert
from tests.conftest import SESSION_TAG, rabbitmqctl, wait_until_async
from tests.e2e.test_purge_workers import konsil
from tests.tenants.messaging.stand_ins import NUMBER, PLAN, SINCH_TOKEN, StandIn, make_handler
from tests.tenants.messaging.test_alerts import VISITOR, arrive, new_org

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sinch() -> Iterator[StandIn]:
    stand_in = StandIn("sinch")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(stand_in))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def region_settings(
    pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory, sinch: StandIn
) -> Iterator[Settings]:
    """An EU region with its PostgreSQL database, its RabbitMQ vhost and Sinch (the stand-in)."""
    run_dir = tmp_path_factory.mktemp("sweep")
    vhost = f"{SESSION_TAG}_sweep"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    lines = [
        'mode = "services"',
        f'data_dir = "{run_dir}"',
        f'discovery_key = "{secrets.token_urlsafe(24)}"',
        "[[regions]]",
        'id = "eu"',
        'jurisdiction = "EU/EEA"',
        'public_url = "http://127.0.0.1:9"',
        'listen = "127.0.0.1:9"',
        f'database = "{pg_database("sweep_eu", "region")}"',
        f'internal_secret = "eu-{secrets.token_urlsafe(24)}"',
        f'broker_url = "amqp://guest:guest@127.0.0.1:5672/{vhost}"',
        "[regions.sms]",
        'provider = "sinch"',
        f'service_plan_id = "{PLAN}"',
        'sender = "Konsil"',
        f'api_token = "{SINCH_TOKEN}"',
        f'base_url = "{sinch.url}"',
        "[regions.vault]",
        'backend = "local"',
        f'keyring_path = "{run_dir / "keyring-eu"}"',
    ]
    config = run_dir / "konsil.toml"
    config.write_text("\n".join(lines) + "\n")
    try:
        yield load_settings(config)
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            rabbitmqctl("delete_vhost", vhost)


async def test_the_sweep_on_a_worker_sends_an_alert_whose_task_was_lost(
    region_settings: Settings, sinch: StandIn
) -> None:
    async with open_region(region_settings, region_settings.region("eu")) as ctx:
        # The broker down as the visitor arrived: no task runner took the alert.
        ctx.tasks = None
        org = await new_org(ctx)
        visit_id = await arrive(ctx, org)
        row = await SmsAlert.select().where(SmsAlert.visit_id == visit_id).first()
        assert row is not None and row["status"] == "queued"
        past = row["created_at"] - alerts.LOST_AFTER * 2
        await SmsAlert.update({SmsAlert.next_attempt_at: past}).where(SmsAlert.id == row["id"])

        with konsil(region_settings, "worker", "--region", "eu"):
            # What beat sends every minute.
            CeleryRunner(region_settings, "eu").submit(alerts.SWEEP_TASK)

            async def sent() -> bool:
                found = await SmsAlert.select(SmsAlert.status).where(SmsAlert.id == row["id"]).first()
                return found is not None and found["status"] == "sent"

            await wait_until_async(sent, "the lost alert sent by the sweep", within=60)
        [text] = sinch.seen
        body = json.loads(text["body"])
        assert body["to"] == [NUMBER] and VISITOR.split()[0] not in body["body"]
