"""What a region service is built from: its own region's settings and resources only."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from piccolo.engine.base import Engine

from konsil.platform.settings import RegionSettings, Settings
from konsil.platform.signing import Verifier, sign
from konsil.tenants.keys.service import TenantKeys
from konsil.tenants.limits import TenantLimits


@dataclass
class ControlLink:
    """Signed calls from a region to the control plane (login-discovery index)."""

    base_url: str
    region_id: str
    secret: str
    client: httpx.AsyncClient | None = None

    async def post(self, path: str, body: bytes) -> httpx.Response:
        if not self.base_url:
            raise httpx.ConnectError("no control plane configured")
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=10.0)
        headers = sign(self.secret, "POST", path, body, signer=f"region:{self.region_id}")
        headers["content-type"] = "application/json"
        return await self.client.post(self.base_url + path, content=body, headers=headers)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


@dataclass
class RegionContext:
    settings: Settings
    region: RegionSettings
    engine: Engine
    keys: TenantKeys
    verifier: Verifier
    control: ControlLink
    discovery_key: str
    service_name: str = "region-service"
    extra: dict[str, object] = field(default_factory=dict)
    limits: TenantLimits = field(init=False)

    def __post_init__(self) -> None:
        self.limits = TenantLimits(self.region.limits)

    @property
    def source(self) -> str:
        return f"region:{self.region.id}/{self.service_name}"
