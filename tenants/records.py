"""Typed records of the tenant area: what its data access code returns instead of rows.

One frozen Struct per kind of row the area hands around (organisations, members, rooms,
visits, calls), converted once where the row is read (``Record.of``). Personal fields
stay sealed in the record (``OrgCipher``, platform/core/keys/cipher.py): the functions
that show them (``members.decode``, ``visits``) open them for whoever may see them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, Literal, Self

import msgspec

CheckinStep = Literal["identity", "payment"]


class Record(msgspec.Struct, frozen=True, kw_only=True):
    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Self:
        """The record of one row (piccolo's ``select`` or fixed SQL): its columns by name;
        a missing column or a value of the wrong type raises ``msgspec.ValidationError``."""
        return msgspec.convert(row, cls)

    @classmethod
    def maybe(cls, row: Mapping[str, Any] | None) -> Self | None:
        return None if row is None else cls.of(row)


class Organisation(Record, frozen=True, kw_only=True):
    id: uuid.UUID
    slug: str
    name: str
    retention_days: int
    contract_end: dt.date | None
    relay_only: bool
    created_at: dt.datetime
    locale: str = "en"
    country: str = ""


class Member(Record, frozen=True, kw_only=True):
    id: uuid.UUID
    org_id: uuid.UUID
    name: str  # sealed
    email: str  # sealed
    email_lookup: str
    email_index: str
    phone: str | None  # sealed
    phone_index: str | None
    role: str
    password_hash: str
    sms_alerts: bool = False
    created_at: dt.datetime
    access_expires_at: dt.datetime | None  # auditors only: when their access ends
    access_granted_at: dt.datetime | None
    access_granted_by: uuid.UUID | None


class Room(Record, frozen=True, kw_only=True):
    id: uuid.UUID
    org_id: uuid.UUID
    slug: str
    title: str
    expert_id: uuid.UUID
    created_at: dt.datetime
    welcome_text: str = ""
    fee_amount: int | None = None
    fee_currency: str | None = None
    fee_description: str = ""
    identity_check: str = ""

    def checkin_steps(self) -> list[CheckinStep]:
        """What a visitor of this room does before the waiting list, in order: prove who
        they are with a national eID, then pay the fee (tenants/checkin.py)."""
        steps: list[CheckinStep] = []
        if self.identity_check:
            steps.append("identity")
        if self.fee_amount is not None and self.fee_currency:
            steps.append("payment")
        return steps


class Visit(Record, frozen=True, kw_only=True):
    id: uuid.UUID
    org_id: uuid.UUID
    room_id: uuid.UUID
    name: str  # sealed
    phone: str | None  # sealed
    phone_index: str | None
    status: str  # checking_in | waiting | admitted | ended | left
    away_since: dt.datetime | None
    token_hash: str
    consented_at: dt.datetime
    arrived_at: dt.datetime
    admitted_at: dt.datetime | None
    ended_at: dt.datetime | None
    expires_at: dt.datetime
    identity_checked_at: dt.datetime | None = None
    paid_at: dt.datetime | None = None


class Call(Record, frozen=True, kw_only=True):
    id: uuid.UUID
    org_id: uuid.UUID
    room_id: uuid.UUID
    visit_id: uuid.UUID
    expert_id: uuid.UUID
    started_at: dt.datetime
    ended_at: dt.datetime | None
    duration_seconds: int | None
    expires_at: dt.datetime


class Invitation(Record, frozen=True, kw_only=True):
    id: uuid.UUID
    org_id: uuid.UUID
    email: str | None  # sealed; None once accepted or revoked
    email_index: str | None
    role: str
    access_expires_at: dt.datetime | None
    language: str
    token_hash: str
    created_by: uuid.UUID | None
    created_at: dt.datetime
    expires_at: dt.datetime
    mailed_at: dt.datetime | None
    accepted_at: dt.datetime | None
    member_id: uuid.UUID | None
    revoked_at: dt.datetime | None


class PasswordReset(Record, frozen=True, kw_only=True):
    id: uuid.UUID
    org_id: uuid.UUID
    member_id: uuid.UUID
    token_hash: str
    language: str
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None
