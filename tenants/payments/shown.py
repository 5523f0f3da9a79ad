"""A visit's payment as the expert's dashboard shows it: paid or not, refunded or not,
and the card's brand and last four digits only, never more (P4).

A leaf of the payments area (it reads payment records and nothing of check-in), so the
waiting list and the calls list (tenants/visits.py) can show payments without importing
the payment service."""

from __future__ import annotations

import uuid

import msgspec

from konsil.tenants.tables import PaymentRecord


class VisitPayment(msgspec.Struct, kw_only=True):
    """A visit's fee: ``paid`` once a payment record exists; the card's brand ("visa")
    and last four digits, nothing more of the card (P4)."""

    paid: bool
    refunded: bool = False
    card_brand: str = ""
    card_last4: str = ""


UNPAID = VisitPayment(paid=False)


def payment_subject(record_id: uuid.UUID) -> str:
    """The access log's subject of a payment record."""
    return f"payment:{record_id}"


async def payments_of(org_id: uuid.UUID, visit_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[uuid.UUID, VisitPayment]]:
    """The payment (record id, as shown) of each of these visits that has one; the latest
    record where a visit has more than one."""
    if not visit_ids:
        return {}
    rows = (
        await PaymentRecord.select(
            PaymentRecord.id,
            PaymentRecord.visit_id,
            PaymentRecord.card_brand,
            PaymentRecord.card_last4,
            PaymentRecord.refunded_at,
        )
        .where((PaymentRecord.org_id == org_id) & PaymentRecord.visit_id.is_in(visit_ids))
        .order_by(PaymentRecord.created_at)
        .run()
    )
    return {
        row["visit_id"]: (
            row["id"],
            VisitPayment(
                paid=True,
                refunded=row["refunded_at"] is not None,
                card_brand=row["card_brand"],
                card_last4=row["card_last4"],
            ),
        )
        for row in rows
    }
