"""The invitations API of a region service: owners and admins (or an integration token
with ``members:write``) invite a member by e-mail with a one-time link, list the pending
invitations, send one again or revoke it (tenants/invitations.py)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Router, delete, get, post
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from konsil.platform.core.authz import MANAGERS, rule
from konsil.platform.core.region import region_of
from konsil.tenants import invitations, records
from konsil.tenants.actors import actor_of
from konsil.tenants.invitations import InvitationIn, InvitationOut

Req = Request[Any, Any, Any]
WRITE = rule(*MANAGERS, scope="members:write", personal_data="invitation")
READ = rule(*MANAGERS, scope="members:read", personal_data="invitation")


def _org(request: Req) -> records.Organisation:
    org: records.Organisation = request.scope["state"]["org"]  # set by the guard
    return org


@post("/invitations", opt=WRITE, status_code=HTTP_201_CREATED)
async def invite(request: Req, data: InvitationIn) -> InvitationOut:
    """Invite a new member by e-mail (admin, expert, or auditor with ``access_expires_at``).
    The link is mailed in ``language`` (default: the organisation's language); when the mail
    cannot be sent the invitation stays and ``mail_sent`` is false. 409 when the address is
    already a member (``already_member``) or already invited (``already_invited``)."""
    ctx = region_of(request)
    ctx.limits.invitation(_org(request).id)
    return await invitations.create(ctx, actor_of(request), _org(request), data)


@get("/invitations", opt=READ)
async def pending_invitations(request: Req) -> list[InvitationOut]:
    """The pending invitations (each e-mail address shown is an access-logged read)."""
    return await invitations.list_pending(region_of(request), actor_of(request), _org(request))


@post("/invitations/{invitation_id:uuid}/resend", opt=WRITE, status_code=HTTP_200_OK)
async def resend_invitation(request: Req, invitation_id: uuid.UUID) -> InvitationOut:
    """Mail a new link (the previous one stops working), valid 7 days from now."""
    ctx = region_of(request)
    ctx.limits.invitation(_org(request).id)
    return await invitations.resend(ctx, actor_of(request), _org(request), invitation_id)


@delete("/invitations/{invitation_id:uuid}", opt=WRITE, status_code=HTTP_204_NO_CONTENT)
async def revoke_invitation(request: Req, invitation_id: uuid.UUID) -> None:
    """Revoke a pending invitation: its link stops working and its e-mail address is cleared."""
    await invitations.revoke(region_of(request), actor_of(request), _org(request), invitation_id)


invitations_router = Router(
    path="/api/v1/orgs/{slug:str}",
    route_handlers=[invite, pending_invitations, resend_invitation, revoke_invitation],
    tags=["tenant"],
)
