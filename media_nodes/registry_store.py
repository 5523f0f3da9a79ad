"""The registry's side of the region database: every replica follows ops' cordons and
drains from ``media_node_cordon`` and writes what it has heard from the nodes to
``media_node``. Replicas hear the same heartbeats, so they write the same rows; a row
only moves forward (a higher sequence number wins), so they never undo each other."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

import msgspec

from konsil.media_nodes import cordons
from konsil.media_nodes.registry import NodeRegistry, RegisteredNode
from konsil.media_nodes.tables import MediaNode

log = logging.getLogger("konsil.media_nodes")


async def load_replay_marks(registry: NodeRegistry) -> None:
    rows = await MediaNode.select(MediaNode.node_id, MediaNode.last_seq).run()
    registry.remember_sequences({row["node_id"]: int(row["last_seq"]) for row in rows})


async def follow_cordons(registry: NodeRegistry) -> None:
    found = await cordons.cordons()
    registry.follow_cordons({c.node_id for c in found}, {c.node_id for c in found if c.drain})


def _row(node: RegisteredNode, now_wall: float, now_registry: float) -> dict[str, Any]:
    seen = dt.datetime.fromtimestamp(now_wall - (now_registry - node.last_seen), dt.UTC)
    return {
        "node_id": node.node_id,
        "state": node.state,
        "healthy": node.healthy,
        "allocations": node.allocations,
        "relayed_kbps": float(node.relayed_kbps),
        "restarts": node.restarts,
        "turn_urls": msgspec.json.encode(list(node.turn_urls)).decode(),
        "last_seq": node.seq,
        "last_seen_at": seen,
    }


async def _upsert(values: dict[str, Any]) -> None:
    """Insert the node, or move its row forward if this heartbeat is newer."""
    updated = (
        await MediaNode.update({getattr(MediaNode, k): v for k, v in values.items() if k != "node_id"})
        .where((MediaNode.node_id == values["node_id"]) & (MediaNode.last_seq < values["last_seq"]))
        .returning(MediaNode.node_id)
        .run()
    )
    if updated or await MediaNode.exists().where(MediaNode.node_id == values["node_id"]).run():
        return
    try:
        await MediaNode.insert(MediaNode(**values)).run()
    except Exception:  # another replica inserted it first: its row is as new as ours
        log.debug("media node %s: row written by another replica", values["node_id"])


async def write_nodes(registry: NodeRegistry, written: dict[str, int]) -> None:
    """Write nodes whose heartbeat is newer than what this replica wrote last."""
    nodes, left = registry.snapshot()
    now_wall, now_registry = time.time(), registry.now()
    for node in nodes:
        if written.get(node.node_id) != node.seq:
            await _upsert(_row(node, now_wall, now_registry))
            written[node.node_id] = node.seq
    for node_id, seq in left.items():
        if written.get(node_id) != seq:
            await (
                MediaNode.update({MediaNode.state: "left", MediaNode.allocations: 0, MediaNode.last_seq: seq})
                .where((MediaNode.node_id == node_id) & (MediaNode.last_seq < seq))
                .run()
            )
            written[node_id] = seq


async def sync_registry(registry: NodeRegistry, every_seconds: float = 2.0) -> None:
    """Keep this replica's registry and the region DB in step (a lifespan task)."""
    written: dict[str, int] = {}
    loaded = False
    while True:
        try:
            if not loaded:
                await load_replay_marks(registry)
                loaded = True
            await follow_cordons(registry)
            await write_nodes(registry, written)
        except Exception as exc:  # a database hiccup: keep the last known state, retry
            log.warning("media-node registry could not sync with the region DB: %s", type(exc).__name__)
        await asyncio.sleep(every_seconds)
