"""Access-log tables in the region database. Entries hold pseudonymous references
only, never personal data: they outlive the data they describe (6 years)."""

from __future__ import annotations

from piccolo.columns import UUID, BigInt, Timestamptz, Varchar
from piccolo.table import Table

from konsil.compliance.access_log.chain import GENESIS_HASH


class AccessLogEntry(Table, tablename="access_log_entry"):
    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    seq = BigInt(index=True)
    at = Timestamptz()
    actor = Varchar(length=80)
    actor_role = Varchar(length=16)
    on_behalf_of = Varchar(length=80)
    subject_ref = Varchar(length=80)
    action = Varchar(length=8)
    object_type = Varchar(length=40)
    object_id = Varchar(length=80)
    source_address = Varchar(length=64)
    outcome = Varchar(length=16)
    purpose = Varchar(length=60)
    source = Varchar(length=80)
    prev_hash = Varchar(length=64)
    entry_hash = Varchar(length=64)


class AccessLogHead(Table, tablename="access_log_head"):
    """The last sequence number and hash per organisation: appends lock this row,
    and verification compares against it so a deleted tail is noticed.

    ``pruned_seq``/``pruned_hash``: the last entry removed by retention (6 years) and
    its hash; verification starts after it. 0 and the genesis hash: nothing removed."""

    org_id = UUID(primary_key=True)
    seq = BigInt()
    entry_hash = Varchar(length=64)
    pruned_seq = BigInt(default=0)
    pruned_hash = Varchar(length=64, default=GENESIS_HASH)


ACCESS_LOG_TABLES = [AccessLogEntry, AccessLogHead]
