"""ICE servers from the region's configuration, and the TURN REST credentials a relay
offer carries. A region with a media-node registry allocates a node to each call
(``allocation.py``, through ``relays.py``) and takes only its STUN servers from here; a
region without one (the embedded default, or no broker) offers the configured servers.
Only servers of the organisation's own region are ever offered. With the relays' shared
secret configured, each call gets short-lived credentials bound to it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

from konsil.platform.core.region import IceServer
from konsil.platform.core.settings import RegionSettings

_ICE_URL = re.compile(r"^(stun|turn|turns):(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(\?transport=(udp|tcp))?$")


class IceConfigError(ValueError):
    pass


def turn_credentials(secret: str, call_ref: str, ttl_seconds: int, now: float | None = None) -> tuple[str, str]:
    """TURN REST API credentials (coturn ``use-auth-secret``): ``expiry:ref`` and its HMAC."""
    expiry = int((now if now is not None else time.time()) + ttl_seconds)
    username = f"{expiry}:{call_ref}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(region: RegionSettings, call_ref: str = "config-check") -> list[IceServer]:
    """The region's configured STUN/TURN URLs, validated, as a browser's iceServers list."""
    for url in region.ice_servers:
        if not _ICE_URL.match(url):
            raise IceConfigError(f"regions.{region.id}.ice_servers: {url!r} is not a stun:, turn: or turns: URL")
    if not region.ice_servers:
        return []
    stun = [u for u in region.ice_servers if u.startswith("stun:")]
    turn = [u for u in region.ice_servers if not u.startswith("stun:")]
    servers = [IceServer(urls=stun)] if stun else []
    if turn:
        if region.turn_secret:
            username, credential = turn_credentials(region.turn_secret, call_ref, region.turn_credential_seconds)
            servers.append(IceServer(urls=turn, username=username, credential=credential))
        else:
            servers.append(IceServer(urls=turn))
    return servers
