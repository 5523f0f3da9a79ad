"""Residency evidence (P2, P16; Normen's transfer rules): every call of the period was
relayed in the organisation's own region, shown by its signed residency receipt, and
what the region sends the control plane about the organisation holds no personal data.

Reads only this region's database: calls, their receipts (``call_relay_receipt``), the
region's media-node registry (``media_node``: only nodes whose heartbeats this region
accepted, so only its own relays) and the login-discovery outbox. It never asks the
control plane: the control plane's side is checked where the data leaves the region.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import msgspec
from piccolo.custom_types import Combinable
from piccolo.table import Table

from konsil.compliance.evidence.common import listed, named, observation, plural
from konsil.compliance.evidence.model import Check, Observation, Scope
from konsil.media_nodes import receipts
from konsil.media_nodes.receipts import ResidencyReceipt
from konsil.media_nodes.tables import MediaNode
from konsil.platform.core.keys.region_signing import Signature, Verifier
from konsil.platform.core.region import RegionContext
from konsil.tenants.login_index import LoginIndexSync
from konsil.tenants.tables import Call, CallRelayReceipt, LoginIndexChange, Member
from konsil.tenants.visits import stored_receipt

COLLECTOR = "residency"
BATCH = 2000  # calls looked at per query
# Threads a batch's receipt signatures are checked in: a report takes at most this many
# cores for it (libsodium runs outside the GIL), while the next batch is read.
VERIFY_THREADS = 2

# Why a call's receipt does not show it stayed in the region, in the order they are judged.
PROBLEMS: dict[str, str] = {
    "missing": "no receipt",
    "bad_signature": "a receipt that does not verify (bad signature or unreadable body)",
    "other_call": "a receipt issued for another call",
    "other_region": "a receipt naming another region",
    "unknown_relay": "a receipt naming a relay that is not one of this region's media nodes",
}


def judge(
    call_id: uuid.UUID, stored: list[ResidencyReceipt | None], region: RegionContext, nodes: set[str]
) -> tuple[str | None, list[str]]:
    """(the problem, or None when the call has a good receipt; the relays it names), from
    the call's stored receipts as ``_verified`` gives them (None: one that is not valid).
    A call with more than one receipt needs every one of them to be good."""
    if not stored:
        return "missing", []
    relays: list[str] = []
    for receipt in stored:
        if receipt is None:
            return "bad_signature", []
        if receipt.call_id != str(call_id):
            return "other_call", []
        if receipt.region != region.region.id or receipt.jurisdiction != region.region.jurisdiction:
            return "other_region", []
        if not receipt.relays or any(node not in nodes for node in receipt.relays):
            return "unknown_relay", []
        relays += receipt.relays
    return None, relays


Found = dict[uuid.UUID, list[dict[str, Any]]]  # a batch's stored receipts by call


async def _calls(scope: Scope, after: uuid.UUID | None) -> list[uuid.UUID]:
    where: Combinable = (
        (Call.org_id == scope.org_id) & (Call.started_at >= scope.period_start) & (Call.started_at < scope.period_end)
    )
    if after is not None:
        where &= Call.id > after
    rows = await Call.select(Call.id).where(where).order_by(Call.id).limit(BATCH).run()
    return [row["id"] for row in rows]


async def _receipts_of(scope: Scope, call_ids: list[uuid.UUID]) -> Found:
    rows = (
        await CallRelayReceipt.select(
            CallRelayReceipt.call_id, CallRelayReceipt.body, CallRelayReceipt.signature, CallRelayReceipt.key_id
        )
        .where((CallRelayReceipt.org_id == scope.org_id) & CallRelayReceipt.call_id.is_in(call_ids))
        .run()
    )
    found: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["call_id"], []).append(row)
    return found


async def _batch(scope: Scope, after: uuid.UUID | None) -> tuple[list[uuid.UUID], Found]:
    """The next calls of the period (by id, after ``after``) and their stored receipts."""
    calls = await _calls(scope, after)
    return calls, (await _receipts_of(scope, calls) if calls else {})


async def _verified(verifier: Verifier, found: Found) -> dict[uuid.UUID, list[ResidencyReceipt | None]]:
    """Each stored receipt of a batch as read, when it is valid against the region's own
    key set as the receipt API judges it (``visits.receipt_status``), else None. Receipts
    from before the region had its own key count as not valid: the control plane could
    have forged them. The signatures are checked in ``VERIFY_THREADS`` worker threads:
    that is nearly all of the time, and it runs outside the GIL."""
    read: list[tuple[uuid.UUID, ResidencyReceipt | None, int | None]] = []  # (call, receipt, its pending index)
    pending: list[tuple[bytes, Signature]] = []
    for call_id, rows in found.items():
        for row in rows:
            receipt, signature = stored_receipt(row)
            decided = receipts.precheck(verifier, receipt, signature)
            if isinstance(decided, str):  # unreadable, unknown key, or no key of its own: not valid
                read.append((call_id, None, None))
            else:
                read.append((call_id, receipt, len(pending)))
                pending.append(decided)
    size = max(1, -(-len(pending) // VERIFY_THREADS))
    parts = [pending[start : start + size] for start in range(0, len(pending), size)]
    done = await asyncio.gather(*(asyncio.to_thread(verifier.verify_all, part) for part in parts))
    valid = [ok for part in done for ok in part]
    out: dict[uuid.UUID, list[ResidencyReceipt | None]] = {}
    for call_id, receipt, index in read:
        out.setdefault(call_id, []).append(receipt if index is not None and valid[index] else None)
    return out


async def receipts_valid(region: RegionContext, scope: Scope) -> tuple[Check, dict[str, Any]]:
    verifier = Verifier(await region.signer.key_set())  # its keys decoded once for the period
    nodes = {row["node_id"] for row in await MediaNode.select(MediaNode.node_id).run()}
    problems: dict[str, list[str]] = {key: [] for key in PROBLEMS}
    relays_used: dict[str, int] = {}
    calls = good = 0
    # The next batch is read while this one's signatures are checked (a call's receipt
    # is one Ed25519 verification: most of this collector's time on a large period).
    reading = asyncio.ensure_future(_batch(scope, None))
    try:
        while True:
            batch, found = await reading
            if not batch:
                break
            reading = asyncio.ensure_future(_batch(scope, batch[-1]))
            verified = await _verified(verifier, found)
            for call_id in batch:
                problem, relays = judge(call_id, verified.get(call_id, []), region, nodes)
                calls += 1
                if problem is None:
                    good += 1
                    for node in set(relays):
                        relays_used[node] = relays_used.get(node, 0) + 1
                else:
                    problems[problem].append(str(call_id))
    finally:
        if not reading.done():
            reading.cancel()  # the loop ended early with an error: the read ahead is not needed
        elif not reading.cancelled():
            reading.exception()  # seen, so that an error in it is not reported a second time
    counts = {key: len(ids) for key, ids in problems.items()}
    evidence = {
        "region": region.region.id,
        "jurisdiction": region.region.jurisdiction,
        "relays_from_media_node_registry": region.relays.registered,
        "media_nodes_of_region": len(nodes),
        "calls": calls,
        "calls_with_valid_receipt": good,
        "problems": {key: {"count": counts[key], "call_ids": listed(ids)} for key, ids in problems.items()},
        "relays_named": dict(sorted(relays_used.items())),
        "signature": "Ed25519 over the receipt's stored JSON body (media_nodes/receipts.py)",
    }
    figures: dict[str, int | float | str | bool | None] = {"calls": calls, "valid": good, **counts}
    where = f"region {region.region.id} ({region.region.jurisdiction})"
    if calls == 0:
        reason = f"No call of the organisation started in the period, so there is no receipt to check in {where}."
        return Check(name="receipts_valid", result="not_applicable", reason=reason, figures=figures), evidence
    if good == calls:
        reason = (
            f"Every call of the period ({calls}) has a residency receipt whose signature verifies and that names "
            f"only relays of {where} ({plural(len(relays_used), 'relay')} in all)."
        )
        return Check(name="receipts_valid", result="pass", reason=reason, figures=figures), evidence
    parts = [f"{plural(len(ids), 'call')} with {PROBLEMS[key]} ({named(ids)})" for key, ids in problems.items() if ids]
    reason = (
        f"{calls - good} of {plural(calls, 'call')} of the period are not shown to have stayed in {where}: "
        + "; ".join(parts)
        + "."
    )
    if problems["missing"] and not region.relays.registered:
        reason += (
            " This region hands out configured relays rather than media nodes from its registry, and only a "
            "call given a registered media node gets a receipt."
        )
    return Check(name="receipts_valid", result="fail", reason=reason, figures=figures), evidence


# --- what the region sends the control plane -------------------------------------------------

# A keyed hash (HMAC-SHA256, hex) of a normalised e-mail address: what login discovery uses.
KEYED_HASH = re.compile(r"^[0-9a-f]{64}\Z")
# The fields of the one message that carries data of an organisation's members to the
# control plane, and of its outbox; reviewed as carrying ids and keyed hashes only. A new
# field fails the check until someone has looked at it.
REVIEWED_MESSAGE_FIELDS = frozenset({"org_id", "add", "remove"})
REVIEWED_OUTBOX_COLUMNS = frozenset({"id", "org_id", "email_lookup", "created_at", "attempts", "next_attempt_at"})


def unreviewed_fields(
    message: type[msgspec.Struct] = LoginIndexSync, outbox: type[Table] = LoginIndexChange
) -> list[str]:
    """Fields of the message and columns of its outbox nobody has reviewed for personal data."""
    fields = set(message.__struct_fields__) - REVIEWED_MESSAGE_FIELDS
    columns = {c._meta.db_column_name for c in outbox._meta.columns} - REVIEWED_OUTBOX_COLUMNS
    return [f"message field {name}" for name in sorted(fields)] + [f"outbox column {name}" for name in sorted(columns)]


async def control_plane_holds_none(region: RegionContext, scope: Scope) -> tuple[Check, dict[str, Any]]:
    queued = (
        await LoginIndexChange.select(LoginIndexChange.id, LoginIndexChange.email_lookup)
        .where(LoginIndexChange.org_id == scope.org_id)
        .run()
    )
    held = await Member.select(Member.id, Member.email_lookup).where(Member.org_id == scope.org_id).run()
    bad_queued = [str(r["id"]) for r in queued if not KEYED_HASH.match(r["email_lookup"] or "")]
    bad_members = [str(r["id"]) for r in held if not KEYED_HASH.match(r["email_lookup"] or "")]
    unreviewed = unreviewed_fields()
    evidence = {
        "login_index_changes_queued": len(queued),
        "member_lookups": len(held),
        "not_keyed_hashes": {"queued_change_ids": listed(bad_queued), "member_ids": listed(bad_members)},
        "message_fields": sorted(LoginIndexSync.__struct_fields__),
        "unreviewed_fields": unreviewed,
        "other_messages": {"org-removed": ["org_id"]},
    }
    figures: dict[str, int | float | str | bool | None] = {
        "queued_changes": len(queued),
        "member_lookups": len(held),
        "not_keyed_hashes": len(bad_queued) + len(bad_members),
        "unreviewed_fields": len(unreviewed),
    }
    checked = (
        f"Checked what this region sends the control plane about the organisation: the login-discovery changes "
        f"({plural(len(queued), 'queued change')}, and the e-mail lookups of its {plural(len(held), 'member')} "
        "that a delivery sends) and the fields of that message; removing the organisation sends its id only. "
        "The control plane's own database is not read: this check runs in the region."
    )
    problems = []
    if bad_queued:
        problems.append(f"{plural(len(bad_queued), 'queued change')} ({named(bad_queued)})")
    if bad_members:
        problems.append(f"the lookups of {plural(len(bad_members), 'member')} ({named(bad_members)})")
    if problems:
        reason = (
            f"{checked} Fails: {' and '.join(problems)} are not keyed hashes, so an e-mail address could reach "
            "the control plane in plain text."
        )
        return Check(name="control_plane_holds_none", result="fail", reason=reason, figures=figures), evidence
    if unreviewed:
        reason = (
            f"{checked} Fails: the login-discovery message has fields nobody has reviewed for personal data "
            f"({', '.join(unreviewed)})."
        )
        return Check(name="control_plane_holds_none", result="fail", reason=reason, figures=figures), evidence
    reason = (
        f"{checked} Every entry is a keyed hash (HMAC-SHA256) of an e-mail address, and the message carries only "
        "the organisation id and such hashes."
    )
    return Check(name="control_plane_holds_none", result="pass", reason=reason, figures=figures), evidence


async def collect(region: RegionContext, scope: Scope) -> Observation:
    receipts_check, receipts_evidence = await receipts_valid(region, scope)
    control_check, control_evidence = await control_plane_holds_none(region, scope)
    return observation(
        scope,
        COLLECTOR,
        "TEST",
        "Verified the signed residency receipt of every call of the period still held (retention and erasure "
        "delete a call with its receipt) against this region's key and media-node registry, and checked that "
        "what the region sends the control plane about the organisation is keyed hashes and ids only.",
        [receipts_check, control_check],
        {"receipts": receipts_evidence, "control_plane": control_evidence},
    )
