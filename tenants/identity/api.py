"""The expert's one action on a visitor's verified identity: reveal the full national ID
number (the waiting list and the visit show it masked). A POST, so no link, prefetch or
history entry reveals it; the answer is not stored by the browser."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Response, Router, post
from litestar.status_codes import HTTP_200_OK

from konsil.platform.core.authz import rule
from konsil.platform.core.region import region_of
from konsil.tenants import records
from konsil.tenants.actors import actor_of
from konsil.tenants.auth import Principal
from konsil.tenants.identity import store

Req = Request[Any, Any, Any]
EXPERTS = ("owner", "admin", "expert")


@post(
    "/visits/{visit_id:uuid}/identity/reveal",
    opt=rule(*EXPERTS, personal_data="national_id"),
    status_code=HTTP_200_OK,
)
async def reveal_identity(request: Req, visit_id: uuid.UUID) -> Response[store.IdentityRevealed]:
    """The full national ID number of a visitor who confirmed their identity with a
    national eID; each reveal is access-logged as such."""
    org: records.Organisation = request.scope["state"]["org"]  # set by the guard
    principal: Principal = request.scope["state"]["principal"]
    revealed = await store.reveal(region_of(request), actor_of(request), org.id, visit_id, principal.id, principal.role)
    return Response(revealed, headers={"cache-control": "no-store"})


identity_api_router = Router(path="/api/v1/orgs/{slug:str}", route_handlers=[reveal_identity], tags=["tenant"])
