"""Which media node relays a call: the least-loaded healthy node of the
organisation's own region, never another region's. The browser gets that node's
TURN URLs (UDP, TCP, TLS as the node advertises them) with short-lived TURN REST
credentials bound to the call."""

from __future__ import annotations

from konsil.media_nodes.ice import IceConfigError, turn_credentials
from konsil.media_nodes.registry import NodeRegistry, RegisteredNode
from konsil.platform.core.region import IceServer
from konsil.platform.core.settings import RegionSettings
from konsil.platform.core.telemetry import metrics


class NoHealthyNode(Exception):
    """No alive, active, uncordoned node in the region (the service answers 503)."""

    def __init__(self, region_id: str) -> None:
        super().__init__(f"no media relay is available in region {region_id} right now")
        self.region_id = region_id


def pick_node(registry: NodeRegistry) -> RegisteredNode | None:
    """The least-loaded eligible node (allocations incl. pending, then relayed kbps): O(nodes)."""
    now = registry.now()
    dead_after = registry.dead_after
    best: RegisteredNode | None = None
    best_key: tuple[int, float, str] | None = None
    for node in registry.nodes():
        if node.cordoned or node.state != "active" or not node.healthy or now - node.last_seen > dead_after:
            continue
        key = (node.allocations + node.pending, node.relayed_kbps, node.node_id)
        if best_key is None or key < best_key:
            best, best_key = node, key
    return best


def eligible(registry: NodeRegistry, node: RegisteredNode) -> bool:
    """Alive, healthy, active and not cordoned: a node that may take new work."""
    return (
        not node.cordoned
        and node.state == "active"
        and node.healthy
        and registry.now() - node.last_seen <= registry.dead_after
    )


def credentials_on(
    registry: NodeRegistry, region: RegionSettings, node_id: str, ref: str, secret: str
) -> list[IceServer] | None:
    """ICE servers on one named node of this region (the other end of a connection whose
    first end was allocated there), or None when that node may no longer take work.
    Counts no new allocation: the first end already did."""
    node = registry.node(node_id)
    if registry.region_id != region.id or node is None or not eligible(registry, node):
        return None
    username, credential = turn_credentials(secret, ref, region.turn_credential_seconds)
    return [IceServer(urls=list(node.turn_urls), username=username, credential=credential)]


def allocate(registry: NodeRegistry, region: RegionSettings, call_ref: str) -> list[IceServer]:
    """ICE servers for one call on a node of ``region``; ``NoHealthyNode`` if there is none."""
    return allocate_node(registry, region, call_ref)[1]


def allocate_node(
    registry: NodeRegistry, region: RegionSettings, call_ref: str, secret: str | None = None
) -> tuple[str, list[IceServer]]:
    """Like ``allocate``, also naming the node (for the call's residency receipt).
    ``secret`` is the relays' TURN secret when it comes from Vault, not the settings."""
    secret = secret or region.turn_secret
    if registry.region_id != region.id:
        # A registry only ever holds its own region's nodes; never cross regions.
        raise ValueError(f"registry of region {registry.region_id!r} asked for region {region.id!r}")
    if not secret:
        raise IceConfigError(f"regions.{region.id}.turn_secret: required to hand out media-node credentials")
    node = pick_node(registry)
    if node is None:
        metrics.relay_allocations.add(1, {"result": "no_healthy_node"})
        raise NoHealthyNode(region.id)
    metrics.relay_load.record(node.allocations, {"node": node.node_id})
    metrics.relay_allocations.add(1, {"result": "allocated", "node": node.node_id})
    registry.note_allocation(node.node_id)
    username, credential = turn_credentials(secret, call_ref, region.turn_credential_seconds)
    return node.node_id, [IceServer(urls=list(node.turn_urls), username=username, credential=credential)]
