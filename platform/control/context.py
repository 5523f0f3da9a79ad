"""What the control plane is built from: its own database and, per region, the
URL and internal secret to call it with; never a region's database or keys."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from piccolo.engine.base import Engine

from konsil.platform.settings import RegionSettings, Settings
from konsil.platform.signing import Verifier, sign


@dataclass
class ControlContext:
    settings: Settings
    engine: Engine
    regions: dict[str, RegionSettings]
    verifier: Verifier  # accepts calls signed by a region
    discovery_key: str
    client: httpx.AsyncClient

    def signed_headers(self, region_id: str, method: str, path: str, body: bytes) -> dict[str, str]:
        return sign(self.regions[region_id].internal_secret, method, path, body, signer="control")


def new_client() -> httpx.AsyncClient:
    # One pooled client for all regions: keep-alive connections, bounded pool.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(15.0, connect=3.0), follow_redirects=False)
