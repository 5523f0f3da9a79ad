"""The payment event task on a real Celery worker (``konsil worker --region eu``) on the
real RabbitMQ: a signed webhook arrives while Stripe (localstripe, paused with SIGSTOP so
it keeps its payments) does not answer; the task retries with its backoff, Stripe is
back, and the visit ends up paid and on the waiting list, its event processed once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from konsil.platform.cli.launcher import start_processes, stop_processes, wait_healthy
from tests.conftest import SESSION_TAG, fetch, free_port, rabbitmqctl, services_config, wait_until
from tests.e2e.test_payments import PK, SK, WHSEC, signed

pytestmark = pytest.mark.e2e


class Stripe:
    def __init__(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.proc = proc

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stripe does not answer (the process is stopped, its payments kept) until resumed."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)


@pytest.fixture(scope="module")
def stripe() -> Iterator[Stripe]:
    port = free_port()
    binary = shutil.which("localstripe") or str(Path(sys.executable).parent / "localstripe")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--from-scratch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool | None:
        try:
            return httpx.get(f"{url}/js.stripe.com/v3/", timeout=1).status_code == 200 or None
        except httpx.HTTPError:
            return None

    try:
        wait_until(up, "localstripe to answer", within=20)
        yield Stripe(url, proc)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def region(
    stripe: Stripe, pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A region service whose tasks go to its own RabbitMQ vhost, and a ``konsil worker``."""
    run_dir = tmp_path_factory.mktemp("payments-worker")
    vhost = f"{SESSION_TAG}_payments_eu"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    dsn = pg_database("payments_worker_eu", "region")
    settings = services_config(
        run_dir,
        pg_database("payments_worker_control", "control"),
        dsn,
        region_lines=[
            f'broker_url = "amqp://guest:guest@127.0.0.1:5672/{vhost}"',
            "[regions.vault]",
            'backend = "local"',
            f'keyring_path = "{run_dir / "keyring-eu"}"',
            "[regions.payments]",
            'provider = "stripe"',
            f'api_base = "{stripe.url}"',
            f'publishable_key = "{PK}"',
            f'secret_key = "{SK}"',
            f'webhook_secret = "{WHSEC}"',
            "timeout_seconds = 2",  # a stopped Stripe is noticed quickly
        ],
    )
    procs = start_processes(settings, run_dir)
    log = (run_dir / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "konsil.platform.cli.main",
            "worker",
            "--region",
            "eu",
            "--config",
            str(run_dir / "konsil.toml"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("KONSIL_")},
        start_new_session=True,
    )
    try:
        url = settings.region("eu").public_url
        control = settings.require_control().public_url
        wait_healthy({"control": control, "region eu": url}, procs)
        yield {"url": url, "control": control, "dsn": dsn, "worker_log": run_dir / "worker.log"}
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
        stop_processes(procs)
        with contextlib.suppress(subprocess.SubprocessError):
            rabbitmqctl("delete_vhost", vhost)


def db(dsn: str, sql: str, *args: Any) -> list[Any]:
    return asyncio.run(fetch(dsn, sql, *args))


def test_the_event_task_retries_on_a_celery_worker_until_stripe_answers(stripe: Stripe, region: dict[str, Any]) -> None:
    url, dsn = region["url"], region["dsn"]
    slug = f"pay-{secrets.token_hex(3)}"
    owner = {"name": "Owner", "email": f"owner@{slug}.example", "password": "correct horse battery"}
    made = httpx.post(
        f"{region['control']}/api/v1/signup",
        json={"region": "eu", "organisation": {"name": f"Praxis {slug}", "slug": slug}, "owner": owner},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    api = httpx.Client(base_url=url, timeout=30)
    login = api.post(f"/api/v1/orgs/{slug}/auth/login", json={"email": owner["email"], "password": owner["password"]})
    api.headers["x-csrf-token"] = login.json()["csrf_token"]
    room = api.post(
        f"/api/v1/orgs/{slug}/rooms",
        json={"slug": "paid", "title": "Paid", "fee": {"amount_minor": 2500, "currency": "eur"}},
    )
    assert room.status_code == 201, room.text
    visitor = httpx.Client(base_url=url, timeout=30)
    arrived = visitor.post(f"/{slug}/paid/visits", data={"name": "Kari Nordmann", "consent": "yes"})
    path = arrived.headers["location"]
    visit_id = uuid.UUID(path.rsplit("/", 1)[1])
    assert visitor.get(f"{path}/payment").status_code == 200
    [attempt] = db(dsn, "SELECT intent_id FROM payment_attempt WHERE visit_id = $1", visit_id)
    intent = attempt["intent_id"]

    # The payment succeeds at Stripe (as when the visitor's page was closed mid-way); only
    # the webhook can tell the region, and it comes while Stripe does not answer.
    auth = {"authorization": f"Bearer {SK}"}
    tok = httpx.post(
        f"{stripe.url}/v1/tokens",
        data={
            "card[number]": "4242424242424242",
            "card[exp_month]": "12",
            "card[exp_year]": "2030",
            "card[cvc]": "123",
        },
        headers=auth,
    ).json()
    assert (
        httpx.post(
            f"{stripe.url}/v1/payment_intents/{intent}", data={"payment_method": tok["card"]["id"]}, headers=auth
        ).status_code
        == 200
    )
    confirmed = httpx.post(f"{stripe.url}/v1/payment_intents/{intent}/confirm", headers=auth)
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", confirmed.text
    event_id = f"evt_{secrets.token_hex(8)}"
    body = json.dumps(
        {
            "id": event_id,
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "data": {"object": {"object": "payment_intent", "id": intent}},
        }
    ).encode()

    started = time.monotonic()
    with stripe.paused():
        hook = httpx.post(f"{url}/webhooks/stripe", content=body, headers=signed(body), timeout=10)
        assert hook.status_code == 200 and hook.json()["received"] == "accepted", hook.text
        # The worker tried, Stripe did not answer: the event waits for its retry.
        wait_until(
            lambda: (
                db(dsn, "SELECT attempts FROM payment_event WHERE event_id = $1 AND attempts >= 1", event_id) or None
            ),
            "the worker's first try",
            within=30,
        )
        # Its request to Stripe times out (2 s, one retry of the client), and Celery schedules the task again.
        wait_until(
            lambda: "Retry in" in region["worker_log"].read_text(errors="replace") or None,
            "the worker to schedule the retry",
            within=30,
        )
        [event] = db(dsn, "SELECT status, attempts FROM payment_event WHERE event_id = $1", event_id)
        assert event["status"] == "received" and event["attempts"] == 1
        assert db(dsn, "SELECT status FROM visit WHERE id = $1", visit_id)[0]["status"] == "checking_in"
    # Stripe is back: the retry (30 s after the first try) finds the payment succeeded.
    wait_until(
        lambda: (
            db(dsn, "SELECT status, attempts FROM payment_event WHERE event_id = $1 AND status = 'done'", event_id)
            or None
        ),
        "the retried event task",
        within=60,
    )
    assert time.monotonic() - started < 75
    [event] = db(dsn, "SELECT status, attempts FROM payment_event WHERE event_id = $1", event_id)
    assert event["attempts"] == 2
    assert db(dsn, "SELECT status FROM visit WHERE id = $1", visit_id)[0]["status"] == "waiting"
    assert len(db(dsn, "SELECT id FROM payment_record WHERE visit_id = $1", visit_id)) == 1
    assert "konsil.payments.event" in region["worker_log"].read_text(errors="replace")
    # A replay of the same event changes nothing.
    again = httpx.post(f"{url}/webhooks/stripe", content=body, headers=signed(body), timeout=10)
    assert again.json()["received"] == "duplicate"


def test_a_stripe_outage_on_check_is_a_clear_503(stripe: Stripe, region: dict[str, Any]) -> None:
    url, dsn = region["url"], region["dsn"]
    slug = f"pay-{secrets.token_hex(3)}"
    owner = {"name": "Owner", "email": f"owner@{slug}.example", "password": "correct horse battery"}
    made = httpx.post(
        f"{region['control']}/api/v1/signup",
        json={"region": "eu", "organisation": {"name": f"Praxis {slug}", "slug": slug}, "owner": owner},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    api = httpx.Client(base_url=url, timeout=30)
    login = api.post(f"/api/v1/orgs/{slug}/auth/login", json={"email": owner["email"], "password": owner["password"]})
    api.headers["x-csrf-token"] = login.json()["csrf_token"]
    fee = {"amount_minor": 2500, "currency": "eur"}
    assert api.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "paid", "title": "Paid", "fee": fee}).is_success
    visitor = httpx.Client(base_url=url, timeout=30)
    path = visitor.post(f"/{slug}/paid/visits", data={"name": "Kari Nordmann", "consent": "yes"}).headers["location"]
    visit_id = uuid.UUID(path.rsplit("/", 1)[1])
    # The visitor's page asks where the payment stands while Stripe does not answer (no payment made yet).
    with stripe.paused():
        checked = visitor.post(f"{path}/payment/check", json={})
    assert checked.status_code == 503, checked.text
    assert checked.json()["message"] == "the payment service did not answer; nothing was charged"
    assert db(dsn, "SELECT status FROM visit WHERE id = $1", visit_id)[0]["status"] == "checking_in"
    # Stripe is back: the same check makes the visit's payment.
    again = visitor.post(f"{path}/payment/check", json={})
    assert again.status_code == 200 and again.json()["outcome"] == "open", again.text
