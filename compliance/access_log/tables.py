"""Access-log tables in the region database. Entries hold pseudonymous references
only, never personal data: they outlive the data they describe (6 years), and so do
the checkpoints and deletion certificates that vouch for them."""

from __future__ import annotations

from piccolo.columns import UUID, BigInt, Text, Timestamptz, Varchar
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
    its hash; verification starts after it. 0 and the genesis hash: nothing removed.

    ``at``: the time of the last entry (appends never date an entry before it, so
    time follows seq even if the clock steps back). ``seal_key``/``seal``: the head
    seal (``seal.py``), which only a process of the region can make."""

    org_id = UUID(primary_key=True)
    seq = BigInt()
    entry_hash = Varchar(length=64)
    pruned_seq = BigInt(default=0)
    pruned_hash = Varchar(length=64, default=GENESIS_HASH)
    at = Timestamptz(null=True, default=None)
    seal_key = Text(default="")
    seal = Varchar(length=88, default="")


class AccessLogCheckpoint(Table, tablename="access_log_checkpoint"):
    """A checkpoint the region signed (``checkpoints.py``): entry #seq of the
    organisation's chain hashes to ``head_hash``, as of ``at``. The signed bytes are
    rebuilt from these columns; an auditor keeps a copy outside the region."""

    id = UUID(primary_key=True)
    org_id = UUID(index=True)
    seq = BigInt()
    head_hash = Varchar(length=64)
    at = Timestamptz()
    region = Varchar(length=16)
    kid = Varchar(length=64)
    signature = Varchar(length=128)


class DeletionCertificate(Table, tablename="organisation_deletion_certificate"):
    """The signed record of an organisation's removal (``certificates.py``). Not
    organisation-owned: it outlives the organisation, as its access log does.
    ``document`` holds the exact signed bytes (UTF-8 JSON)."""

    org_id = UUID(primary_key=True)
    slug = Varchar(length=40, index=True)
    removed_at = Timestamptz()
    document = Text()
    kid = Varchar(length=64)
    signature = Varchar(length=128)


ACCESS_LOG_TABLES = [AccessLogEntry, AccessLogHead, AccessLogCheckpoint, DeletionCertificate]
