"""Ops' cordons of a region's media nodes, one action each for the ops API and the ops
CLI: cordon (no new calls; its calls go on), drain (a cordon that ops watch until the
node's calls have ended) and uncordon.

A cordon is a row of ``media_node_cordon`` in the region database, which every
replica's registry follows within seconds (``registry_store.follow_cordons``); the
replica that made the change applies it to its own registry at once. Cordons are
operator actions on infrastructure, not access to personal data: they go to the
service log, not the access log."""

from __future__ import annotations

import datetime as dt
import logging

import msgspec

from konsil.media_nodes.registry import NodeRegistry
from konsil.media_nodes.tables import MediaNodeCordon

log = logging.getLogger("konsil.media_nodes")
REASON_LENGTH = 200  # media_node_cordon.reason


class Cordon(msgspec.Struct, frozen=True):
    node_id: str
    reason: str
    drain: bool
    cordoned_at: dt.datetime


async def cordon(
    region_id: str, node_id: str, reason: str = "", *, drain: bool = False, registry: NodeRegistry | None = None
) -> None:
    """Give the node no new calls (``drain``: and let ops watch its calls end). A node
    cordoned already keeps its cordon's time and takes the new reason and drain."""
    reason = reason[:REASON_LENGTH]
    await MediaNodeCordon.insert(
        MediaNodeCordon(node_id=node_id, reason=reason, drain=drain, cordoned_at=dt.datetime.now(dt.UTC))
    ).on_conflict(
        target=MediaNodeCordon.node_id,
        action="DO UPDATE",
        values=[MediaNodeCordon.reason, MediaNodeCordon.drain],
    )
    if registry is not None:
        (registry.drain if drain else registry.cordon)(node_id)
    log.info("ops %s media node %s in region %s", "drained" if drain else "cordoned", node_id, region_id)


async def uncordon(region_id: str, node_id: str, *, registry: NodeRegistry | None = None) -> bool:
    """Let the node take new calls again. Whether it had a cordon."""
    lifted = await MediaNodeCordon.delete().where(MediaNodeCordon.node_id == node_id).returning(MediaNodeCordon.node_id)
    if registry is not None:
        registry.uncordon(node_id)
    log.info("ops uncordoned media node %s in region %s", node_id, region_id)
    return bool(lifted)


async def cordons() -> list[Cordon]:
    """The region's cordons, by node id."""
    rows = await MediaNodeCordon.select().order_by(MediaNodeCordon.node_id)
    return [msgspec.convert(row, Cordon) for row in rows]
