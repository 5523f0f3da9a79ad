"""Internal routes a region service offers the control plane; every call must be
signed with this region's internal secret (platform/web.SignedCalls)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Router, delete, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.status_codes import HTTP_200_OK

from konsil.platform.core import errors
from konsil.platform.core.region import region_of
from konsil.tenants import organisations, removal
from konsil.tenants.actors import Actor, source_address
from konsil.tenants.schemas import CreatedOrganisation, NewOrganisation


def signed_by_control(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if connection.scope.get("state", {}).get("signed_by") != "control":
        raise errors.unauthorized("internal calls must be signed by the control plane")


@post("/orgs", opt={"internal": True}, status_code=HTTP_200_OK)
async def create_organisation(request: Request[Any, Any, Any], data: NewOrganisation) -> CreatedOrganisation:
    actor = Actor("control-plane", "system", "signup", source_address(request), "create the customer account")
    return await organisations.create(region_of(request), actor, data)


@delete("/orgs/{org_id:uuid}", opt={"internal": True}, status_code=HTTP_200_OK)
async def remove_organisation(request: Request[Any, Any, Any], org_id: uuid.UUID) -> dict[str, bool]:
    """Undo a signup the control plane could not finish (key and rows). The control
    plane drops its own directory entry, so it is not told."""
    actor = Actor("control-plane", "system", "signup", source_address(request), "undo a failed signup")
    removed = await removal.remove_organisation(region_of(request), actor, org_id, require_shred=False, tell=False)
    return {"removed": removed.found}


internal_router = Router(
    path="/internal/v1",
    guards=[signed_by_control],
    route_handlers=[create_organisation, remove_organisation],
    include_in_schema=False,
)
