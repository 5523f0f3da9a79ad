"""The hash chain of the access log: canonical encoding and entry hashes.

``entry_hash = sha256(prev_hash + canonical(entry))``, hex-encoded; the first entry of
an organisation follows ``GENESIS_HASH``. The canonical encoding is msgspec JSON of
``CanonicalEntry``, whose field order is fixed: changing it, or how a value is written,
breaks every existing chain, so bump ``CANONICAL_VERSION`` and keep the old encoder.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

GENESIS_HASH = "0" * 64
CANONICAL_VERSION = 1


class EntryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An access-log entry as stored (one row of ``access_log_entry``)."""

    id: uuid.UUID
    org_id: uuid.UUID
    seq: int
    at: datetime
    actor: str
    actor_role: str
    on_behalf_of: str
    subject_ref: str
    action: str
    object_type: str
    object_id: str
    source_address: str
    outcome: str
    purpose: str
    source: str
    prev_hash: str
    entry_hash: str


class CanonicalEntry(msgspec.Struct, frozen=True):
    """What is hashed. ``v``, ``id`` and ``org_id`` come before ``seq`` on purpose:
    they are fixed-shape strings, so ``original_seq`` can splice other numbers in."""

    v: int
    id: str
    org_id: str
    seq: int
    at: str
    actor: str
    actor_role: str
    on_behalf_of: str
    subject_ref: str
    action: str
    object_type: str
    object_id: str
    source_address: str
    outcome: str
    purpose: str
    source: str


_encoder = msgspec.json.Encoder()


def format_time(at: datetime) -> str:
    """UTC ISO 8601 with microseconds always: both databases return the same instant
    in different shapes (zone, trailing zeros), the encoding must not differ."""
    if at.tzinfo is None:  # both engines store UTC; a naive value is UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(record: EntryRecord) -> bytes:
    return _encoder.encode(
        CanonicalEntry(
            v=CANONICAL_VERSION,
            id=str(record.id),
            org_id=str(record.org_id),
            seq=record.seq,
            at=format_time(record.at),
            actor=record.actor,
            actor_role=record.actor_role,
            on_behalf_of=record.on_behalf_of,
            subject_ref=record.subject_ref,
            action=record.action,
            object_type=record.object_type,
            object_id=record.object_id,
            source_address=record.source_address,
            outcome=record.outcome,
            purpose=record.purpose,
            source=record.source,
        )
    )


def entry_hash(record: EntryRecord) -> str:
    """The hash ``record`` should carry, given its stored ``prev_hash``."""
    return hashlib.sha256(record.prev_hash.encode("ascii", "replace") + canonical(record)).hexdigest()


# An entry as a row: its values in ``EntryRecord``'s field order (what a chain walk reads).
# The hashed fields after ``at`` are in the same order in both structs, so a row's slice
# fills ``CanonicalEntry`` positionally; checked here, as the encoding depends on it.
ENTRY_FIELDS: tuple[str, ...] = EntryRecord.__struct_fields__
_ROW_REST = slice(4, ENTRY_FIELDS.index("prev_hash"))
if ENTRY_FIELDS[_ROW_REST] != CanonicalEntry.__struct_fields__[5:] or ENTRY_FIELDS[:4] != ("id", "org_id", "seq", "at"):
    raise AssertionError("EntryRecord and CanonicalEntry no longer list the hashed fields in the same order")
_PREV_HASH = ENTRY_FIELDS.index("prev_hash")


def row_hash(row: Sequence[Any]) -> str:
    """``entry_hash`` of an entry given as a row of ``ENTRY_FIELDS``: the same bytes,
    without building an ``EntryRecord`` first (a chain walk hashes a million of them)."""
    encoded = _encoder.encode(
        CanonicalEntry(CANONICAL_VERSION, str(row[0]), str(row[1]), row[2], format_time(row[3]), *row[_ROW_REST])
    )
    return hashlib.sha256(row[_PREV_HASH].encode("ascii", "replace") + encoded).hexdigest()


def original_seq(record: EntryRecord, upto: int) -> int | None:
    """The sequence number in 1..upto at which ``record`` (content and prev_hash intact)
    hashes to its stored ``entry_hash``, or None. Tells an entry that was moved apart
    from one that was edited; used only once a problem is found, so a linear scan is fine."""
    marker = b',"seq":'
    encoded = canonical(msgspec.structs.replace(record, seq=0))
    at = encoded.index(marker) + len(marker)
    prefix, suffix = encoded[:at], encoded[at + 1 :]  # drop the "0"
    start = hashlib.sha256(record.prev_hash.encode("ascii", "replace") + prefix)
    for seq in range(1, upto + 1):
        digest = start.copy()
        digest.update(str(seq).encode("ascii") + suffix)
        if digest.hexdigest() == record.entry_hash:
            return seq
    return None
