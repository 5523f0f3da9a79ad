"""The region container's access log (``platform.core.access.AccessLog``): entries
hash-chained per organisation in the region's own database, heads sealed by this
process (``seal.py``), and removed organisations certified with the region's key."""

from __future__ import annotations

import uuid

from konsil.compliance.access_log import service
from konsil.compliance.access_log.certificates import certify_removal
from konsil.platform.core.access import AccessEvent, OrganisationRemoved
from konsil.platform.core.keys.region_signing import RegionSigner


class ChainedAccessLog:
    def __init__(self, signer: RegionSigner, region_id: str) -> None:
        self.signer = signer
        self.region_id = region_id

    async def append_many(self, events: list[AccessEvent]) -> list[uuid.UUID]:
        return await service.append_many(events)

    async def certify_removal(self, removed: OrganisationRemoved) -> None:
        await certify_removal(self.signer, self.region_id, removed)
