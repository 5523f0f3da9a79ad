"""The region's relays as its calls and network tests see them: the media-node
registry (services mode with a broker) or the region's configured ICE servers, with
the relays' TURN secret. Implements ``platform.core.region.Relays``; only relays of
the region itself are ever handed out."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from konsil.media_nodes.allocation import NoHealthyNode, allocate_node, credentials_on, pick_node
from konsil.media_nodes.ice import IceConfigError, ice_servers
from konsil.media_nodes.registry import NodeRegistry
from konsil.platform.core.region import IceServer, RelayOffer, RelayUnavailable
from konsil.platform.core.settings import RegionSettings

MAX_REMEMBERED_CALLS = 10_000  # call → relay allocations kept per replica (oldest forgotten)


@dataclass
class RegionRelays:
    region: RegionSettings
    registry: NodeRegistry | None = None
    # From the settings or the region's Vault; "" until read (no relay is handed out).
    turn_secret: str = ""
    # Told when a call or test finds the secret missing (turn_secret.SecretKeeper.wanted).
    secret_wanted: Callable[[], None] | None = None
    _calls: OrderedDict[str, RelayOffer] = field(default_factory=OrderedDict)

    @property
    def registered(self) -> bool:
        return self.registry is not None

    def _no_secret(self) -> str | None:
        if not self.turn_secret:
            if self.secret_wanted is not None:
                self.secret_wanted()
            return f"relay credentials are unavailable in region {self.region.id} right now"
        return None

    def for_call(self, call_ref: str) -> RelayOffer:
        if self.registry is None:
            return RelayOffer(ice_servers(self.region, call_ref))
        known = self._calls.get(call_ref)
        if known is not None:
            return known
        stun = [s for s in ice_servers(self.region, call_ref) if all(u.startswith("stun:") for u in s.urls)]
        missing = self._no_secret()
        if missing:
            return RelayOffer(stun, None, missing)
        try:
            node_id, relays = allocate_node(self.registry, self.region, call_ref, self.turn_secret)
        except NoHealthyNode as exc:
            return RelayOffer(stun, None, str(exc))  # never another region's relay
        offer = RelayOffer(stun + relays, node_id)
        self._calls[call_ref] = offer
        while len(self._calls) > MAX_REMEMBERED_CALLS:
            self._calls.popitem(last=False)
        return offer

    def unavailable(self) -> str | None:
        if self.registry is None:
            return None
        missing = self._no_secret()
        if missing:
            return missing
        if pick_node(self.registry) is None:
            return str(NoHealthyNode(self.region.id))
        return None

    def for_test(self, ref: str, node_id: str | None) -> RelayOffer:
        if self.registry is None:
            try:
                return RelayOffer(ice_servers(self.region, ref))
            except IceConfigError:
                raise RelayUnavailable(f"the relays of region {self.region.id} are misconfigured") from None
        missing = self._no_secret()
        if missing:
            raise RelayUnavailable(missing)
        found: list[IceServer] | None = None
        if node_id:
            found = credentials_on(self.registry, self.region, node_id, ref, self.turn_secret)
        if found is not None:
            return RelayOffer(found, node_id)
        try:
            chosen, servers = allocate_node(self.registry, self.region, ref, self.turn_secret)
        except NoHealthyNode as exc:
            raise RelayUnavailable(str(exc)) from None  # never another region's relay
        return RelayOffer(servers, chosen)
