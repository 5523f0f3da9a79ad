"""Ops API of a region's media nodes: see each node's state, cordon it (no new calls),
drain it (cordon, then watch its calls end) and uncordon it. Callers are the region's
ops team (bearer tokens whose hash is configured; see platform/core/authz.py ``OPS``).

Cordons and drains are ``media_nodes/cordons.py``, the same actions as the ops CLI's."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get, post
from litestar.params import Parameter

from konsil.media_nodes import cordons
from konsil.media_nodes.heartbeat import NodeId
from konsil.media_nodes.registry import NodeRegistry, RegisteredNode
from konsil.media_nodes.relays import RegionRelays
from konsil.media_nodes.tables import MediaNode
from konsil.platform.core import errors
from konsil.platform.core.authz import OPS
from konsil.platform.core.region import region_of
from konsil.platform.core.text import LINE_CHAR

Req = Request[Any, Any, Any]
NodePath = Annotated[str, Parameter(pattern=r"^[a-z0-9][a-z0-9-]{0,62}\Z", description="media node id")]

Status = Literal["active", "unhealthy", "cordoned", "draining", "drained", "dead", "left"]


class CordonIn(msgspec.Struct, forbid_unknown_fields=True):
    # Single-line text (konsil.platform.core.text); empty means no reason given.
    reason: Annotated[str, msgspec.Meta(max_length=200, pattern=rf"^(?!\s+\Z){LINE_CHAR}*\Z")] = ""
    # A node the region has never heard from is refused (404) unless this says it has not
    # joined yet (cordoned before it is racked); see media_nodes/cordons.py.
    new_node: bool = False


class NodeOut(msgspec.Struct):
    node_id: NodeId
    status: Status
    alive: bool
    cordoned: bool
    drain_requested: bool
    allocations: int
    relayed_kbps: float
    restarts: int
    last_seen_seconds_ago: float | None
    turn_urls: list[str]
    reason: str = ""


class NodesOut(msgspec.Struct):
    region: str
    registry: bool  # False: this region has no broker, no node can register
    nodes: list[NodeOut]
    heartbeats_accepted: int
    heartbeats_rejected: dict[str, int]


def _registry(request: Req) -> NodeRegistry | None:
    relays: RegionRelays = request.app.state.relays  # set by the region service (regions/app.py)
    return relays.registry


def status_of(alive: bool, healthy: bool, state: str, cordoned: bool, drain: bool, allocations: int) -> Status:
    if state == "left":
        return "left"
    if not alive:
        return "dead"
    if drain or state == "draining":
        return "drained" if allocations == 0 else "draining"
    if cordoned:
        return "cordoned"
    return "active" if healthy else "unhealthy"


def _live(node: RegisteredNode, registry: NodeRegistry, reason: str) -> NodeOut:
    alive = registry.is_alive(node) or (not node.healthy and registry.now() - node.last_seen <= registry.dead_after)
    return NodeOut(
        node_id=node.node_id,
        status=status_of(alive, node.healthy, node.state, node.cordoned, node.draining_by_ops, node.allocations),
        alive=alive,
        cordoned=node.cordoned,
        drain_requested=node.draining_by_ops,
        allocations=node.allocations,
        relayed_kbps=node.relayed_kbps,
        restarts=node.restarts,
        last_seen_seconds_ago=round(registry.now() - node.last_seen, 1),
        turn_urls=list(node.turn_urls),
        reason=reason,
    )


def _stored(row: dict[str, Any], cordon: cordons.Cordon | None, dead_after: float) -> NodeOut:
    ago = time.time() - row["last_seen_at"].timestamp()
    alive = row["state"] != "left" and ago <= dead_after
    cordoned, drain = cordon is not None, bool(cordon and cordon.drain)
    return NodeOut(
        node_id=row["node_id"],
        status=status_of(alive, row["healthy"], row["state"], cordoned, drain, row["allocations"]),
        alive=alive,
        cordoned=cordoned,
        drain_requested=drain,
        allocations=row["allocations"],
        relayed_kbps=row["relayed_kbps"],
        restarts=row["restarts"],
        last_seen_seconds_ago=round(ago, 1),
        turn_urls=msgspec.json.decode(row["turn_urls"], type=list[str]),
        reason=cordon.reason if cordon else "",
    )


async def node_views(registry: NodeRegistry | None, dead_after: float = 6.0) -> list[NodeOut]:
    """Live nodes from this replica's registry, plus nodes only the region DB remembers
    (dead, left, or cordoned before they ever joined)."""
    cordoned = {cordon.node_id: cordon for cordon in await cordons.cordons()}
    views: dict[str, NodeOut] = {}
    if registry is not None:
        dead_after = registry.dead_after
        for node in registry.nodes():
            found = cordoned.get(node.node_id)
            views[node.node_id] = _live(node, registry, found.reason if found else "")
    for row in await MediaNode.select().run():
        if row["node_id"] not in views:
            views[row["node_id"]] = _stored(row, cordoned.get(row["node_id"]), dead_after)
    for node_id, cordon in cordoned.items():
        if node_id not in views:
            views[node_id] = NodeOut(
                node_id=node_id,
                status="cordoned",
                alive=False,
                cordoned=True,
                drain_requested=cordon.drain,
                allocations=0,
                relayed_kbps=0.0,
                restarts=0,
                last_seen_seconds_ago=None,
                turn_urls=[],
                reason=cordon.reason,
            )
    return sorted(views.values(), key=lambda view: view.node_id)


async def _view(request: Req, node_id: str) -> NodeOut:
    for view in await node_views(_registry(request)):
        if view.node_id == node_id:
            return view
    raise errors.not_found(f"no media node {node_id!r} in this region")


@get("/", opt=OPS, summary="The region's media nodes and their state")
async def list_nodes(request: Req) -> NodesOut:
    registry = _registry(request)
    stats: dict[str, Any] = registry.stats() if registry else {"accepted": 0, "rejected": {}}
    return NodesOut(
        region=region_of(request).region.id,
        registry=registry is not None,
        nodes=await node_views(registry),
        heartbeats_accepted=stats["accepted"],
        heartbeats_rejected=stats["rejected"],
    )


@get("/{node_id:str}", opt=OPS, summary="One media node")
async def show_node(request: Req, node_id: NodePath) -> NodeOut:
    return await _view(request, node_id)


async def _cordon(request: Req, node_id: str, data: CordonIn, drain: bool) -> NodeOut:
    region_id, registry = region_of(request).region.id, _registry(request)
    try:
        await cordons.cordon(region_id, node_id, data.reason, drain=drain, registry=registry, new_node=data.new_node)
    except cordons.UnknownNode as exc:
        raise errors.not_found(f"{exc} (to cordon a node before it joins, send new_node: true)") from None
    return await _view(request, node_id)


@post("/{node_id:str}/cordon", opt=OPS, status_code=200, summary="Give a node no new calls")
async def cordon_node(request: Req, node_id: NodePath, data: CordonIn | None = None) -> NodeOut:
    return await _cordon(request, node_id, data or CordonIn(), drain=False)


@post("/{node_id:str}/drain", opt=OPS, status_code=200, summary="Cordon a node and watch its calls end")
async def drain_node(request: Req, node_id: NodePath, data: CordonIn | None = None) -> NodeOut:
    return await _cordon(request, node_id, data or CordonIn(), drain=True)


@post("/{node_id:str}/uncordon", opt=OPS, status_code=200, summary="Let a node take new calls again")
async def uncordon_node(request: Req, node_id: NodePath) -> NodeOut:
    try:
        await cordons.uncordon(region_of(request).region.id, node_id, registry=_registry(request))
    except cordons.UnknownNode as exc:
        raise errors.not_found(str(exc)) from None
    return await _view(request, node_id)


ops_router = Router(
    path="/ops/v1/media-nodes",
    route_handlers=[list_nodes, show_node, cordon_node, drain_node, uncordon_node],
    tags=["ops"],
)
