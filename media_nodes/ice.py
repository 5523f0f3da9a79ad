"""ICE servers a call is offered. Until media nodes are allocated per call (the
media-node issue), they come from the region's configuration; only servers of
the organisation's own region are ever offered."""

from __future__ import annotations

import re

import msgspec

from konsil.platform.settings import RegionSettings

_ICE_URL = re.compile(r"^(stun|turn|turns):(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(\?transport=(udp|tcp))?$")


class IceServer(msgspec.Struct):
    urls: list[str]


class IceConfigError(ValueError):
    pass


def ice_servers(region: RegionSettings) -> list[IceServer]:
    """The region's configured STUN/TURN URLs, validated, as a browser's iceServers list."""
    for url in region.ice_servers:
        if not _ICE_URL.match(url):
            raise IceConfigError(f"regions.{region.id}.ice_servers: {url!r} is not a stun:, turn: or turns: URL")
    return [IceServer(urls=list(region.ice_servers))] if region.ice_servers else []
