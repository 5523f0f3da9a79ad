"""The alarm entry: the region's own record, inside an organisation's chain, that it
found the chain's head tampered with when it was about to extend it (``seal.py``).

An append that finds the head it extends not sealed by the region still appends (reads
of personal data must go on, and be logged), but first this entry, so the finding
outlives the append's new, valid seal: ``verify`` reports the entry as a failure for
as long as it is in the chain, and taking it out means rewriting the chain, which
breaks the seal again. Retention removes it with the entries around it, after 6 years.

The entry is an ordinary, hash-chained entry (NEN 7513 fields all set, no personal
data): actor ``system:integrity``, action ``update`` (the head was changed beside the
log service), outcome ``failure``, object ``access_log_integrity`` with the id
``head:<seq>:<reason code>``: the head's last entry as found, and why it failed.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from konsil.compliance.access_log.chain import EntryRecord, format_time
from konsil.compliance.access_log.seal import Finding
from konsil.platform.core.access import AccessEvent

ACTOR: Final = "system:integrity"
OBJECT_TYPE: Final = "access_log_integrity"
PURPOSE: Final = "tamper evidence"
SUBJECT: Final = "access_log"

# The reason codes of ``seal.Finding``, as a person reads them in the report.
REASONS: Final = {
    "unsealed": "it carried no seal (it was set outside the log service, or last written before the region "
    "sealed heads)",
    "unreadable": "its sealing key could not be read",
    "other-region": "it was sealed for another region",
    "uncertified": "it was sealed with a key the region never certified (set outside the log service, or by a "
    "process whose signing key did not answer)",
    "not-certified": "its sealing key was not certified by the region's signing keys",
    "mismatch": "its seal did not match it: its last entry or its retention point was set outside the log service",
}

_OBJECT_ID = re.compile(r"^head:(\d+):([a-z-]+)$")


def event(org_id: uuid.UUID, head_seq: int, finding: Finding, source: str) -> AccessEvent:
    """The entry that records ``finding`` about the head at ``head_seq``."""
    return AccessEvent(
        org_id=org_id,
        actor=ACTOR,
        actor_role="system",
        on_behalf_of="system",
        subject_ref=SUBJECT,
        action="update",
        object_type=OBJECT_TYPE,
        object_id=f"head:{head_seq}:{finding.code}",
        source_address="local",
        outcome="failure",
        purpose=PURPOSE,
        source=source,
    )


def is_alarm(record: EntryRecord) -> bool:
    return record.actor == ACTOR and record.object_type == OBJECT_TYPE and record.action == "update"


def head_seq(record: EntryRecord) -> int | None:
    """The head's last entry the alarm names (None when its id cannot be read)."""
    found = _OBJECT_ID.match(record.object_id)
    return int(found.group(1)) if found else None


def describe(record: EntryRecord) -> str:
    """The alarm in words: where, when, why, and where the chain records it."""
    found = _OBJECT_ID.match(record.object_id)
    when = format_time(record.at)
    if found is None:
        what = f"the region found the chain head tampered on {when} (its record reads {record.object_id!r})"
    else:
        reason = REASONS.get(found.group(2), found.group(2))
        what = f"the region found the chain head tampered at entry #{found.group(1)} on {when}: {reason}"
    return f"{what}; it recorded this in the log as entry #{record.seq}"
