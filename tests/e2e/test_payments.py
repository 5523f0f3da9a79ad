"""Card payments at check-in against localstripe (a stateful fake Stripe server, run as a
real subprocess) and a real region service on PostgreSQL: a visitor pays the room's fee
and enters the waiting list; declined cards, 3-D Secure, forged and replayed webhooks,
refunds, and the payment record under its legal hold."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from konsil.platform.cli.launcher import start_processes, stop_processes, wait_healthy
from tests.conftest import fetch, free_port, services_config, wait_until

PK = "pk_test_konsil"
SK = "sk_test_konsil"
WHSEC = "whsec_konsil_test_secret"


class Payments:
    def __init__(self, region: str, stripe: str, dsn: str, control: str) -> None:
        self.region = region
        self.stripe = stripe
        self.dsn = dsn
        self.control = control


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    port = free_port()
    binary = shutil.which("localstripe") or str(Path(__import__("sys").executable).parent / "localstripe")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--from-scratch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool | None:
            try:
                return httpx.get(f"{url}/js.stripe.com/v3/", timeout=1).status_code == 200 or None
            except httpx.HTTPError:
                return None

        wait_until(up, "localstripe to answer", within=20)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def payments(
    localstripe: str, pg_database: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Payments]:
    run_dir = tmp_path_factory.mktemp("payments")
    region_dsn = pg_database("payments_eu", "region")
    settings = services_config(
        run_dir,
        pg_database("payments_control", "control"),
        region_dsn,
        region_lines=[
            "[regions.limits]",
            "joins_per_address_minute = 100000",
            "[regions.vault]",
            'backend = "local"',
            f'keyring_path = "{run_dir / "keyring-eu"}"',
            "[regions.payments]",
            'provider = "stripe"',
            f'api_base = "{localstripe}"',
            f'publishable_key = "{PK}"',
            f'secret_key = "{SK}"',
            f'webhook_secret = "{WHSEC}"',
        ],
    )
    procs = start_processes(settings, run_dir)
    try:
        region = settings.region("eu").public_url
        control = settings.require_control().public_url
        wait_healthy({"control": control, "region eu": region}, procs)
        hook = httpx.post(
            f"{localstripe}/_config/webhooks/konsil", data={"url": f"{region}/webhooks/stripe", "secret": WHSEC}
        )
        assert hook.status_code == 200, hook.text
        yield Payments(region, localstripe, region_dsn, control)
    finally:
        stop_processes(procs)


def signup(p: Payments) -> tuple[str, httpx.Client]:
    slug = f"pay-{secrets.token_hex(3)}"
    body: dict[str, Any] = {
        "region": "eu",
        "organisation": {"name": f"Praxis {slug}", "slug": slug},
        "owner": {"name": "Owner", "email": f"owner@{slug}.example", "password": "correct horse battery"},
    }
    made = httpx.post(f"{p.control}/api/v1/signup", json=body, timeout=30)
    assert made.status_code == 201, made.text
    owner = httpx.Client(base_url=p.region, timeout=30)
    login = owner.post(
        f"/api/v1/orgs/{slug}/auth/login", json={"email": body["owner"]["email"], "password": "correct horse battery"}
    )
    assert login.status_code == 200, login.text
    owner.headers["x-csrf-token"] = login.json()["csrf_token"]
    room = owner.post(
        f"/api/v1/orgs/{slug}/rooms",
        json={
            "slug": "paid",
            "title": "Paid",
            "fee": {"amount_minor": 50000, "currency": "nok", "description": "Consultation"},
        },
    )
    assert room.status_code == 201, room.text
    return slug, owner


def arrive(p: Payments, slug: str, phone: str = "") -> tuple[httpx.Client, str, uuid.UUID]:
    visitor = httpx.Client(base_url=p.region, timeout=30)
    arrived = visitor.post(f"/{slug}/paid/visits", data={"name": "Kari Nordmann", "consent": "yes", "phone": phone})
    assert arrived.status_code == 303, arrived.text
    path = arrived.headers["location"]
    page = visitor.get(path)
    assert page.status_code == 303 and page.headers["location"] == f"{path}/payment"
    return visitor, path, uuid.UUID(path.rsplit("/", 1)[1])


def token(p: Payments, number: str) -> str:
    """What stripe.js does with the card field: a single-use token, made with the public key."""
    made = httpx.post(
        f"{p.stripe}/v1/tokens",
        data={"card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2030", "card[cvc]": "123", "key": PK},
    )
    assert made.status_code == 200, made.text
    return str(made.json()["id"])


def visit_status(p: Payments, visit_id: uuid.UUID) -> str:
    rows = asyncio.run(fetch(p.dsn, "SELECT status FROM visit WHERE id = $1", visit_id))
    return str(rows[0]["status"])


def rows(p: Payments, sql: str, *args: Any) -> list[Any]:
    return asyncio.run(fetch(p.dsn, sql, *args))


def test_a_visitor_pays_and_enters_the_waiting_list(payments: Payments) -> None:
    p = payments
    slug, owner = signup(p)
    visitor, path, visit_id = arrive(p, slug, phone="+4741234567")
    page = visitor.get(f"{path}/payment")
    assert page.status_code == 200, page.text
    assert p.stripe in page.headers["content-security-policy"] and "NOK500.00" in page.text
    assert visitor.get(f"{path}/payment").status_code == 200  # a reload makes no second payment
    attempts = rows(p, "SELECT intent_id FROM payment_attempt WHERE visit_id = $1", visit_id)
    assert len(attempts) == 1
    assert visit_status(p, visit_id) == "checking_in"
    assert owner.get(f"/api/v1/orgs/{slug}/visits/waiting").json() == []

    paid = visitor.post(f"{path}/payment", json={"token": token(p, "4242424242424242"), "email": "kari@example.no"})
    assert paid.status_code == 200, paid.text
    assert paid.json()["outcome"] == "paid"
    assert visit_status(p, visit_id) == "waiting"
    assert visitor.get(path).status_code == 200
    shown = owner.get(f"/api/v1/orgs/{slug}/visits/{visit_id}/payment").json()
    assert shown["paid"] is True and shown["card_brand"] == "visa" and shown["card_last4"] == "4242"
    assert "4242424242424242" not in json.dumps(shown)
    # localstripe's own webhook (payment_intent.succeeded) arrives a second later: processed, no second record.
    wait_until(
        lambda: (
            rows(
                p, "SELECT status FROM payment_event WHERE intent_id = $1 AND status = 'done'", attempts[0]["intent_id"]
            )
            or None
        ),
        "the webhook to be processed",
    )
    records = rows(p, "SELECT * FROM payment_record WHERE visit_id = $1", visit_id)
    assert len(records) == 1
    record = records[0]
    assert record["provider_reference"] == attempts[0]["intent_id"] and record["amount_minor"] == 50000
    assert record["payer_email"].startswith("kf1:") and record["payer_email_index"] and record["payer_phone_index"]
    assert record["keep_until"].year >= time.gmtime().tm_year + 4

    # Refund by the owner: once, and again answered as it is.
    refunded = owner.post(f"/api/v1/orgs/{slug}/visits/{visit_id}/payment/refund")
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["refunded"] is True
    again = owner.post(f"/api/v1/orgs/{slug}/visits/{visit_id}/payment/refund")
    assert again.status_code == 200 and again.json()["refunded_at"] == refunded.json()["refunded_at"]
    assert (
        rows(p, "SELECT refunded_minor FROM payment_record WHERE visit_id = $1", visit_id)[0]["refunded_minor"] == 50000
    )


def test_a_declined_card_keeps_the_visitor_out_and_they_can_try_again(payments: Payments) -> None:
    p = payments
    slug, _owner = signup(p)
    visitor, path, visit_id = arrive(p, slug)
    assert visitor.get(f"{path}/payment").status_code == 200
    declined = visitor.post(f"{path}/payment", json={"token": token(p, "4000000000000341")})
    assert declined.status_code == 200, declined.text
    assert declined.json()["outcome"] == "declined"
    assert visit_status(p, visit_id) == "checking_in"
    assert visitor.get(f"{path}/payment").status_code == 200
    bad = visitor.post(f"{path}/payment", json={"token": "tok_doesnotexist"})
    assert bad.status_code == 400 and "nothing was charged" in bad.json()["message"]
    paid = visitor.post(f"{path}/payment", json={"token": token(p, "4242424242424242")})
    assert paid.json()["outcome"] == "paid", paid.text
    assert visit_status(p, visit_id) == "waiting"
    states = rows(p, "SELECT number, status FROM payment_attempt WHERE visit_id = $1 ORDER BY number", visit_id)
    assert [(s["number"], s["status"]) for s in states] == [(1, "failed"), (2, "succeeded")]
    assert len(rows(p, "SELECT id FROM payment_record WHERE visit_id = $1", visit_id)) == 1
    # Paying again changes nothing: the visit is past its payment step.
    assert visitor.post(f"{path}/payment", json={"token": token(p, "4242424242424242")}).status_code == 409


def test_3d_secure(payments: Payments) -> None:
    p = payments
    slug, _ = signup(p)
    visitor, path, visit_id = arrive(p, slug)
    assert visitor.get(f"{path}/payment").status_code == 200
    asked = visitor.post(f"{path}/payment", json={"token": token(p, "4000002760003184")})
    view = asked.json()
    assert view["outcome"] == "action" and view["client_secret"], asked.text
    assert visit_status(p, visit_id) == "checking_in"
    # What localstripe's stripe.js does when the visitor completes the check.
    intent = view["client_secret"].split("_secret_")[0]
    done = httpx.post(
        f"{p.stripe}/v1/payment_intents/{intent}/_authenticate?success=true",
        json={"key": PK, "client_secret": view["client_secret"]},
    )
    assert done.status_code == 200, done.text
    checked = visitor.post(f"{path}/payment/check", json={})
    assert checked.json()["outcome"] == "paid", checked.text
    assert visit_status(p, visit_id) == "waiting"


def signed(payload: bytes, secret: str = WHSEC, at: int | None = None) -> dict[str, str]:
    at = at or int(time.time())
    mac = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"stripe-signature": f"t={at},v1={mac}", "content-type": "application/json"}


def test_forged_replayed_and_out_of_order_webhooks(payments: Payments) -> None:
    p = payments
    slug, _ = signup(p)
    visitor, path, visit_id = arrive(p, slug)
    assert visitor.get(f"{path}/payment").status_code == 200
    intent = rows(p, "SELECT intent_id FROM payment_attempt WHERE visit_id = $1", visit_id)[0]["intent_id"]
    event_id = f"evt_{secrets.token_hex(8)}"
    body = json.dumps(
        {
            "id": event_id,
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "data": {"object": {"object": "payment_intent", "id": intent}},
        }
    ).encode()
    hook = f"{p.region}/webhooks/stripe"
    forged = httpx.post(hook, content=body, headers=signed(body, secret="whsec_not_the_region_s"))
    assert forged.status_code == 400
    unsigned = httpx.post(hook, content=body, headers={"content-type": "application/json"})
    assert unsigned.status_code == 400
    old = httpx.post(hook, content=body, headers=signed(body, at=int(time.time()) - 3600))
    assert old.status_code == 400
    assert rows(p, "SELECT id FROM payment_event WHERE event_id = $1", event_id) == []
    # A "succeeded" event for a payment that has not succeeded (out of order, or a lie): the
    # task reads the payment's real state, and nothing is paid.
    first = httpx.post(hook, content=body, headers=signed(body))
    assert first.status_code == 200 and first.json()["received"] == "accepted"
    wait_until(
        lambda: rows(p, "SELECT 1 FROM payment_event WHERE event_id = $1 AND status = 'done'", event_id) or None,
        "the event task",
    )
    assert visit_status(p, visit_id) == "checking_in"
    assert rows(p, "SELECT id FROM payment_record WHERE visit_id = $1", visit_id) == []
    replay = httpx.post(hook, content=body, headers=signed(body))
    assert replay.status_code == 200 and replay.json()["received"] == "duplicate"
    assert len(rows(p, "SELECT id FROM payment_event WHERE event_id = $1", event_id)) == 1


def test_checking_a_visit_with_nothing_to_pay_makes_no_payment(payments: Payments) -> None:
    p = payments
    slug, owner = signup(p)
    free = owner.post(f"/api/v1/orgs/{slug}/rooms", json={"slug": "free", "title": "Free"})
    assert free.status_code == 201, free.text
    visitor = httpx.Client(base_url=p.region, timeout=30)
    arrived = visitor.post(f"/{slug}/free/visits", data={"name": "Kari Nordmann", "consent": "yes"})
    path = arrived.headers["location"]
    visit_id = uuid.UUID(path.rsplit("/", 1)[1])
    assert visit_status(p, visit_id) == "waiting"
    # The room asks a fee from now on; the visitor already waiting is asked nothing.
    fee = {"fee": {"amount_minor": 50000, "currency": "nok"}}
    assert owner.patch(f"/api/v1/orgs/{slug}/rooms/{free.json()['id']}", json=fee).status_code == 200
    checked = visitor.post(f"{path}/payment/check", json={})
    assert checked.status_code == 409 and "nothing to pay" in checked.json()["message"], checked.text
    assert rows(p, "SELECT id FROM payment_attempt WHERE visit_id = $1", visit_id) == []
    assert visit_status(p, visit_id) == "waiting"


def test_a_check_after_the_webhook_paid_the_visit_answers_paid(payments: Payments) -> None:
    p = payments
    slug, _owner = signup(p)
    visitor, path, visit_id = arrive(p, slug)
    assert visitor.get(f"{path}/payment").status_code == 200
    paid = visitor.post(f"{path}/payment", json={"token": token(p, "4242424242424242")})
    assert paid.json()["outcome"] == "paid" and visit_status(p, visit_id) == "waiting"
    checked = visitor.post(f"{path}/payment/check", json={})
    assert checked.status_code == 200 and checked.json()["outcome"] == "paid", checked.text


def test_no_payment_while_the_identity_step_is_pending(payments: Payments) -> None:
    p = payments
    slug, _owner = signup(p)
    # The room asks for an eID check before the fee (set in its row: this region has no eID service).
    rows(
        p,
        "UPDATE room SET identity_check = 'no_bankid'"
        " WHERE slug = 'paid' AND org_id = (SELECT id FROM organisation WHERE slug = $1)",
        slug,
    )
    visitor = httpx.Client(base_url=p.region, timeout=30)
    arrived = visitor.post(f"/{slug}/paid/visits", data={"name": "Kari Nordmann", "consent": "yes"})
    assert arrived.status_code == 303, arrived.text
    path = arrived.headers["location"]
    visit_id = uuid.UUID(path.rsplit("/", 1)[1])
    page = visitor.get(f"{path}/payment")
    assert page.status_code == 303 and page.headers["location"] == path
    paid = visitor.post(f"{path}/payment", json={"token": token(p, "4242424242424242")})
    assert paid.status_code == 409 and "nothing was charged" in paid.json()["message"], paid.text
    assert visitor.post(f"{path}/payment/check", json={}).status_code == 409
    assert rows(p, "SELECT id FROM payment_attempt WHERE visit_id = $1", visit_id) == []
    assert visit_status(p, visit_id) == "checking_in"


def member_client(p: Payments, owner: httpx.Client, slug: str, role: str) -> tuple[str, httpx.Client]:
    email = f"{role}-{secrets.token_hex(3)}@{slug}.example"
    body = {"name": "Dr. Berg", "email": email, "role": role, "password": "correct horse battery"}
    made = owner.post(f"/api/v1/orgs/{slug}/members", json=body)
    assert made.status_code == 201, made.text
    client = httpx.Client(base_url=p.region, timeout=30)
    login = client.post(f"/api/v1/orgs/{slug}/auth/login", json={"email": email, "password": body["password"]})
    assert login.status_code == 200, login.text
    client.headers["x-csrf-token"] = login.json()["csrf_token"]
    return str(made.json()["id"]), client


def test_an_expert_sees_the_payments_of_their_own_rooms_only(payments: Payments) -> None:
    p = payments
    slug, owner = signup(p)
    visitor, path, visit_id = arrive(p, slug)
    assert visitor.get(f"{path}/payment").status_code == 200
    paid = visitor.post(f"{path}/payment", json={"token": token(p, "4242424242424242")})
    assert paid.json()["outcome"] == "paid", paid.text
    expert_id, expert = member_client(p, owner, slug, "expert")
    payment = f"/api/v1/orgs/{slug}/visits/{visit_id}/payment"
    # Another expert's room: as if the visit did not exist, nothing of the card shown.
    other = expert.get(payment)
    assert other.status_code == 404 and "4242" not in other.text, other.text
    reads = "SELECT count(*) AS n FROM access_log_entry WHERE object_type = 'payment_record' AND action = 'read'"
    before = rows(p, reads)[0]["n"]
    # The room given to this expert: its payments are theirs to see (an access-logged read).
    [room] = owner.get(f"/api/v1/orgs/{slug}/rooms").json()
    assert owner.patch(f"/api/v1/orgs/{slug}/rooms/{room['id']}", json={"expert_id": expert_id}).status_code == 200
    own = expert.get(payment)
    assert own.status_code == 200 and own.json()["card_last4"] == "4242", own.text
    assert rows(p, reads)[0]["n"] == before + 1
    # Owners see every room's payments.
    assert owner.get(payment).json()["paid"] is True
