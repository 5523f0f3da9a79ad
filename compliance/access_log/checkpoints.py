"""Signed checkpoints of an organisation's access log, and proving that today's log
extends one an auditor kept.

A checkpoint ({org, seq, head hash, time}, ``documents.Checkpoint``) is signed with the
region's own key (``RegionContext.signer``) and stored in ``access_log_checkpoint``;
the signed document is what an auditor keeps outside the region. The region makes one
for every organisation whose log moved, on a schedule (``regions/tasks.py``), on
request (``konsil audit checkpoint``), and in every deletion certificate.

The region signs only a log it can vouch for: the head must carry the region's seal,
and the entries since the previous checkpoint must follow it intact, else
``CheckpointRefused`` and nothing is signed. Entries in which the region recorded a
tampered head (``alarm.py``) are signed with the rest: the checkpoint then holds them
in place, and ``verify`` goes on reporting them.

``verify_log`` is ``konsil audit verify``: the chain, the head's seal, the latest
checkpoint stored in the region, and (``--since-checkpoint``) a checkpoint an auditor
kept. A kept checkpoint is the one thing someone with write access to the database
cannot change, so it also catches a head put back from an earlier copy.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from pathlib import Path

import msgspec

from konsil.compliance.access_log import seal, service
from konsil.compliance.access_log.chain import format_time
from konsil.compliance.access_log.documents import Checkpoint, SignedCheckpoint, canonical, decode_error
from konsil.compliance.access_log.service import Problem, VerifyReport, Walked
from konsil.compliance.access_log.tables import AccessLogCheckpoint, AccessLogHead
from konsil.platform.core.keys.region_signing import KeySet, RegionSigner, Signature, SigningUnavailable, verify
from konsil.platform.core.region import RegionContext

log = logging.getLogger("konsil.access_log")


class CheckpointRefused(Exception):
    """The region will not sign the log as it stands: ``problem`` says why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


class CheckpointFileError(Exception):
    """A kept checkpoint file that cannot be read or is not the region's."""


# --- making them ---------------------------------------------------------------------------


async def make_checkpoint(region_ctx: RegionContext, org_id: uuid.UUID) -> SignedCheckpoint:
    """Sign the organisation's access log as it stands now, store the checkpoint and
    return the document an auditor keeps. Raises ``CheckpointRefused`` (the log does
    not verify since the last checkpoint, or the organisation has no log here) and
    ``SigningUnavailable``. Joins the caller's transaction when there is one."""
    return (await make_report_checkpoint(region_ctx, org_id)).signed


class MadeCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    signed: SignedCheckpoint
    # The entries the checkpoint's own walk showed intact: since the previous checkpoint,
    # or from the retention point when there was none. A report hands it to its
    # access-log evidence (``service.verify(walked=…)``), which then need not walk them again.
    walked: Walked


async def make_report_checkpoint(region_ctx: RegionContext, org_id: uuid.UUID) -> MadeCheckpoint:
    """``make_checkpoint``, also returning what its walk of the log showed."""
    return await _checkpoint(region_ctx.signer, region_ctx.region.id, org_id)


async def checkpoint(signer: RegionSigner, region_id: str, org_id: uuid.UUID) -> SignedCheckpoint:
    """``make_checkpoint`` for callers that hold the signer but no container."""
    return (await _checkpoint(signer, region_id, org_id)).signed


async def _checkpoint(signer: RegionSigner, region_id: str, org_id: uuid.UUID) -> MadeCheckpoint:
    """The head and the checkpoint's time are read under the append lock; the checks and
    the signature (a Vault call in services mode) come after it is released, so appends
    never wait for the key service. That is safe: the entries up to the head cannot
    change legitimately, and later appends are dated no earlier than the time taken."""
    found = await service.locked_head(org_id)
    if found is None:
        raise CheckpointRefused(
            Problem(seq=0, entry_id=None, kind="deleted", detail="the organisation has no access log in this region")
        )
    head, at = found
    key_set = await signer.key_set()
    unsealed = seal.check(head, key_set)
    if unsealed is not None:
        raise CheckpointRefused(Problem(seq=head.seq, entry_id=None, kind="rewritten", detail=unsealed))
    walked = await _since_previous(org_id, head, key_set)
    if isinstance(walked, Problem):
        raise CheckpointRefused(walked)
    made = Checkpoint(region=region_id, org=str(org_id), seq=head.seq, head_hash=head.entry_hash, at=format_time(at))
    signature = await signer.sign(canonical(made))
    await AccessLogCheckpoint.insert(
        AccessLogCheckpoint(
            id=uuid.uuid4(),
            org_id=org_id,
            seq=made.seq,
            head_hash=made.head_hash,
            at=at,
            region=region_id,
            kid=signature.kid,
            signature=signature.value,
        )
    )
    return MadeCheckpoint(signed=SignedCheckpoint(checkpoint=made, signature=signature), walked=walked)


async def _since_previous(org_id: uuid.UUID, head: seal.HeadRow, key_set: KeySet) -> Walked | Problem:
    """The entries the new checkpoint adds to the latest stored one (from the retention
    point when there is none, or it lies in what retention removed since)."""
    previous = await latest_stored(org_id)
    start = (head.pruned_seq, head.pruned_hash)
    if previous is not None:
        problem = _stored_signature(previous, key_set)
        if problem is not None:
            return problem
        stored = previous.checkpoint
        if stored.seq > head.seq:
            return Problem(
                seq=head.seq + 1,
                entry_id=None,
                kind="deleted",
                detail=f"the log now ends at #{head.seq}, but the region's checkpoint of {stored.at} "
                f"covers it up to #{stored.seq}",
            )
        if stored.seq == head.pruned_seq and stored.head_hash != head.pruned_hash:
            return Problem(
                seq=stored.seq,
                entry_id=None,
                kind="rewritten",
                detail=f"the last entry retention removed does not have the hash the region signed in its "
                f"checkpoint of {stored.at}",
            )
        if stored.seq >= head.pruned_seq:
            start = (stored.seq, stored.head_hash)
    return await service.walk(
        org_id, from_seq=start[0], from_hash=start[1], upto_seq=head.seq, upto_hash=head.entry_hash
    )


class CheckpointRun(msgspec.Struct, frozen=True):
    made: int
    refused: list[str]  # organisation ids whose log the region would not sign (see the log)


# Organisations whose head moved since their latest checkpoint (or that have none yet).
_MOVED = """
SELECT h.org_id FROM access_log_head h
WHERE h.seq > 0 AND NOT EXISTS (
    SELECT 1 FROM access_log_checkpoint c WHERE c.org_id = h.org_id AND c.seq = h.seq AND c.head_hash = h.entry_hash
)
ORDER BY h.org_id
"""


async def checkpoint_moved(region_ctx: RegionContext) -> CheckpointRun:
    """The scheduled run: a checkpoint for every organisation (removed ones included:
    their log outlives them) whose log moved since its latest checkpoint. A log the
    region will not sign is named in the service log (by organisation id) and skipped;
    ``konsil audit verify`` says what is wrong with it."""
    sealer = seal.current_sealer()
    if sealer is not None:
        await sealer.certify()  # retried here after the signing key was away
    made, refused = 0, []
    for row in await AccessLogHead.raw(_MOVED):
        org_id = uuid.UUID(str(row["org_id"]))
        try:
            await make_checkpoint(region_ctx, org_id)
        except CheckpointRefused as exc:
            log.warning("access log of org %s not checkpointed: %s", org_id, exc.problem.detail)
            refused.append(str(org_id))
            continue
        except SigningUnavailable:
            log.warning("the region's signing key does not answer; checkpoints resume at the next run")
            break
        made += 1
    return CheckpointRun(made=made, refused=refused)


# --- reading and checking them ---------------------------------------------------------------


def _from_row(row: dict[str, object]) -> SignedCheckpoint:
    at = row["at"]
    assert isinstance(at, datetime)
    return SignedCheckpoint(
        checkpoint=Checkpoint(
            region=str(row["region"]),
            org=str(row["org_id"]),
            seq=int(str(row["seq"])),
            head_hash=str(row["head_hash"]),
            at=format_time(at),
        ),
        signature=Signature(kid=str(row["kid"]), value=str(row["signature"])),
    )


async def latest_stored(org_id: uuid.UUID) -> SignedCheckpoint | None:
    """The organisation's latest checkpoint stored in the region (signature unchecked)."""
    rows = (
        await AccessLogCheckpoint.select()
        .where(AccessLogCheckpoint.org_id == org_id)
        .order_by(AccessLogCheckpoint.seq, AccessLogCheckpoint.at, ascending=False)
        .limit(1)
    )
    return _from_row(rows[0]) if rows else None


def _stored_signature(stored: SignedCheckpoint, key_set: KeySet) -> Problem | None:
    if verify(key_set, canonical(stored.checkpoint), stored.signature):
        return None
    return Problem(
        seq=stored.checkpoint.seq,
        entry_id=None,
        kind="rewritten",
        detail=f"the checkpoint stored in the region for #{stored.checkpoint.seq} does not carry a valid "
        "signature of the region: it was written outside the log service",
    )


def signature_problem(kept: SignedCheckpoint, org_id: uuid.UUID, key_set: KeySet) -> str | None:
    """Why a kept checkpoint is not a checkpoint of this organisation signed by this
    region, or None."""
    made = kept.checkpoint
    if made.org != str(org_id):
        return f"the checkpoint is of organisation {made.org}, not {org_id}"
    if made.region != key_set.region:
        return f"the checkpoint was made by region {made.region!r}, not {key_set.region!r}"
    if not any(key.kid == kept.signature.kid for key in key_set.keys):
        return f"the checkpoint is signed with key {kept.signature.kid!r}, which is not in the region's key set"
    if not verify(key_set, canonical(made), kept.signature):
        kid = kept.signature.kid
        return f"the checkpoint's signature does not verify with the region's key {kid!r}: it was changed"
    return None


def load_checkpoint(path: Path) -> SignedCheckpoint:
    """A kept checkpoint file (as ``konsil audit checkpoint`` writes it)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointFileError(f"cannot read the checkpoint file {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        return msgspec.json.decode(data, type=SignedCheckpoint)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CheckpointFileError(decode_error(exc, "the checkpoint file")) from exc


async def verify_log(org_id: uuid.UUID, key_set: KeySet, kept: SignedCheckpoint | None = None) -> VerifyReport:
    """``konsil audit verify``: the chain, the head's seal, the latest checkpoint stored
    in the region, and ``kept`` (its signature checked first: a ``CheckpointFileError``
    when it is not this organisation's, signed by this region)."""
    checkpoints: list[Checkpoint] = []
    if kept is not None:
        problem = signature_problem(kept, org_id, key_set)
        if problem is not None:
            raise CheckpointFileError(problem)
        checkpoints.append(kept.checkpoint)
    stored = await latest_stored(org_id)
    if stored is not None:
        forged = _stored_signature(stored, key_set)
        if forged is not None:
            return VerifyReport(ok=False, checked=0, problem=forged)
        head = await service.head_row(org_id)
        pruned = head.pruned_seq if head is not None else 0
        if stored.checkpoint.seq >= pruned:  # older ones lie in what retention removed since
            checkpoints.append(stored.checkpoint)
    return await service.verify(org_id, key_set=key_set, checkpoints=checkpoints)
