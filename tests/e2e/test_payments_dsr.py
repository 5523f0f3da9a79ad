"""A real card payment (localstripe, a running EU region) and the data-subject requests
about its payer (P9, P17): the search finds the payment record by the receipt e-mail and
by the visitor's phone; erasure removes the visit with its attempts to pay and keeps the
payment record (legal hold)."""

from __future__ import annotations

import pytest

from tests.e2e.test_payments import (  # noqa: F401 (fixtures)
    Payments,
    arrive,
    localstripe,
    payments,
    rows,
    signup,
    token,
)

pytestmark = pytest.mark.e2e


def test_the_payment_record_is_found_by_e_mail_and_phone_and_outlives_erasure(payments: Payments) -> None:  # noqa: F811
    p = payments
    slug, owner = signup(p)
    # A fee without a description has an empty one (API conformance), in a region with payments.
    rooms = owner.get(f"/api/v1/orgs/{slug}/rooms").json()
    plain = owner.patch(
        f"/api/v1/orgs/{slug}/rooms/{rooms[0]['id']}", json={"fee": {"amount_minor": 50000, "currency": "nok"}}
    )
    assert plain.status_code == 200 and plain.json()["fee"] == {
        "amount_minor": 50000,
        "currency": "nok",
        "description": "",
    }
    visitor, path, visit_id = arrive(p, slug, phone="+47 412 34 567")
    assert visitor.get(f"{path}/payment").status_code == 200
    declined = visitor.post(f"{path}/payment", json={"token": token(p, "4000000000000341")})
    assert declined.json()["outcome"] == "declined", declined.text
    paid = visitor.post(f"{path}/payment", json={"token": token(p, "4242424242424242"), "email": "Kari@Example.no"})
    assert paid.json()["outcome"] == "paid", paid.text
    [record] = rows(p, "SELECT id FROM payment_record WHERE visit_id = $1", visit_id)
    assert len(rows(p, "SELECT id FROM payment_attempt WHERE visit_id = $1", visit_id)) == 2
    dsr = f"/api/v1/orgs/{slug}/dsr"

    def found_by(**identifier: str) -> tuple[str, dict[str, int]]:
        filed = owner.post(dsr, json={"kind": "access", **identifier})
        assert filed.status_code == 201, filed.text
        shown = owner.get(f"{dsr}/{filed.json()['id']}")
        assert shown.status_code == 200, shown.text
        return str(filed.json()["id"]), dict(shown.json()["found"])

    # By the receipt address (another spelling of it), and by the phone (another spelling).
    by_email, found = found_by(email="kari@example.no")
    assert found["payments"] == 1 and found["visits"] == 0, found
    exported = owner.post(f"{dsr}/{by_email}/export")
    assert exported.status_code == 200, exported.text
    [payment] = exported.json()["payments"]
    assert payment["id"] == str(record["id"]) and payment["card_last4"] == "4242" and payment["legal_hold"] is True
    assert "4242424242424242" not in exported.text
    _, found = found_by(phone="0047 41234567")
    assert found["payments"] == 1 and found["visits"] == 1, found
    assert not found_by(email="someone.else@example.no")[1]["payments"]

    # Erasure by phone: the visit and its attempts to pay go, the payment record stays.
    filed = owner.post(dsr, json={"kind": "erasure", "phone": "+4741234567"})
    assert filed.status_code == 201, filed.text
    erased = owner.post(f"{dsr}/{filed.json()['id']}/erase", json={"confirm": "erase"})
    assert erased.status_code == 200, erased.text
    assert erased.json()["changed"]["visits"] == 1 and erased.json()["changed"]["payments_kept"] == 1
    assert rows(p, "SELECT id FROM visit WHERE id = $1", visit_id) == []
    assert rows(p, "SELECT id FROM payment_attempt WHERE visit_id = $1", visit_id) == []
    kept = rows(p, "SELECT * FROM payment_record WHERE id = $1", record["id"])
    assert len(kept) == 1 and kept[0]["card_last4"] == "4242" and kept[0]["payer_email"]
    # Still found afterwards, by either identifier: it is under its legal hold.
    _, found = found_by(email="kari@example.no")
    assert found["payments"] == 1
    _, found = found_by(phone="+4741234567")
    assert found["payments"] == 1 and found["visits"] == 0
    # The members' view of the visit's payment still answers (the visit is gone, the record is not).
    shown = owner.get(f"/api/v1/orgs/{slug}/visits/{visit_id}/payment")
    assert shown.status_code == 200 and shown.json()["paid"] is True and shown.json()["card_last4"] == "4242"
