"""Ops' cordons of a region's media nodes, one action each for the ops API and the ops
CLI: cordon (no new calls; its calls go on), drain (a cordon that ops watch until the
node's calls have ended) and uncordon.

A cordon is a row of ``media_node_cordon`` in the region database, which every
replica's registry follows within seconds (``registry_store.follow_cordons``); the
replica that made the change applies it to its own registry at once. Cordons are
operator actions on infrastructure, not access to personal data: they go to the
service log, not the access log.

Only a node the region knows can be cordoned or uncordoned: one this replica's registry
has heard, one any replica has written to ``media_node`` (it has sent a heartbeat at
least once, and may be offline or gone now), or one with a cordon already. A typo such
as ``cordon eu-relay-l`` is refused with the known ids (node ids are not personal data)
rather than stored as a cordon of nothing. Cordoning a node before it ever joins (a
machine not racked yet) stays possible, but only when asked for (``new_node``)."""

from __future__ import annotations

import datetime as dt
import logging

import msgspec

from konsil.media_nodes.registry import NodeRegistry
from konsil.media_nodes.tables import MediaNode, MediaNodeCordon

log = logging.getLogger("konsil.media_nodes")
REASON_LENGTH = 200  # media_node_cordon.reason


class Cordon(msgspec.Struct, frozen=True):
    node_id: str
    reason: str
    drain: bool
    cordoned_at: dt.datetime


class UnknownNode(Exception):
    """No node of that id is known in the region (the message names the known ones)."""

    def __init__(self, region_id: str, node_id: str, known: list[str]) -> None:
        listed = ", ".join(known) if known else "none (no node has sent a heartbeat yet)"
        super().__init__(f"no media node {node_id!r} is known in region {region_id}; known nodes: {listed}")
        self.node_id = node_id
        self.known = known


async def known_nodes(registry: NodeRegistry | None = None) -> list[str]:
    """Ids of the nodes the region knows: heard by this replica's registry or by any
    replica (``media_node``, which keeps nodes that are offline or left), or cordoned."""
    known = {node.node_id for node in registry.nodes()} if registry is not None else set()
    known.update(row["node_id"] for row in await MediaNode.select(MediaNode.node_id).run())
    known.update(row["node_id"] for row in await MediaNodeCordon.select(MediaNodeCordon.node_id).run())
    return sorted(known)


async def _require_known(region_id: str, node_id: str, registry: NodeRegistry | None) -> None:
    known = await known_nodes(registry)
    if node_id not in known:
        raise UnknownNode(region_id, node_id, known)


async def cordon(
    region_id: str,
    node_id: str,
    reason: str = "",
    *,
    drain: bool = False,
    registry: NodeRegistry | None = None,
    new_node: bool = False,
) -> None:
    """Give the node no new calls (``drain``: and let ops watch its calls end). A node
    cordoned already keeps its cordon's time and takes the new reason and drain.
    UnknownNode unless the region knows the node or ``new_node`` says it has not joined yet."""
    if not new_node:
        await _require_known(region_id, node_id, registry)
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
    """Let the node take new calls again. Whether it had a cordon (UnknownNode if the
    region does not know the node at all)."""
    await _require_known(region_id, node_id, registry)
    lifted = await MediaNodeCordon.delete().where(MediaNodeCordon.node_id == node_id).returning(MediaNodeCordon.node_id)
    if registry is not None:
        registry.uncordon(node_id)
    log.info("ops uncordoned media node %s in region %s", node_id, region_id)
    return bool(lifted)


async def cordons() -> list[Cordon]:
    """The region's cordons, by node id."""
    rows = await MediaNodeCordon.select().order_by(MediaNodeCordon.node_id)
    return [msgspec.convert(row, Cordon) for row in rows]
