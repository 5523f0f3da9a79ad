"""The messaging API of a region service: a member's own SMS alert setting, and client
invitations (a room's link sent by SMS or e-mail; the address is not stored)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Router, get, post, put
from litestar.status_codes import HTTP_201_CREATED

from konsil.platform.core.authz import rule
from konsil.platform.core.region import region_of
from konsil.tenants.actors import actor_of
from konsil.tenants.auth import org_of, principal_of
from konsil.tenants.messaging import client_invitations, member_settings
from konsil.tenants.messaging.client_invitations import ClientInvitationIn, ClientInvitationOut
from konsil.tenants.messaging.member_settings import SmsAlertsIn, SmsAlertsOut

Req = Request[Any, Any, Any]
EXPERTS = ("owner", "admin", "expert")


@get("/me/sms-alerts", opt=rule(*EXPERTS, personal_data="member"))
async def read_sms_alerts(request: Req) -> SmsAlertsOut:
    """Your own text alerts: whether you get a text when someone is waiting in one of your
    rooms, the number (masked), and whether this region can send texts at all."""
    return await member_settings.read(region_of(request), actor_of(request), org_of(request), principal_of(request).id)


@put("/me/sms-alerts", opt=rule(*EXPERTS, personal_data="member"))
async def change_sms_alerts(request: Req, data: SmsAlertsIn) -> SmsAlertsOut:
    """Turn your text alerts on or off and set the number to text. 400 for a number that
    cannot receive texts (``invalid_phone``), 409 when the region has no SMS provider."""
    return await member_settings.change(
        region_of(request), actor_of(request), org_of(request), principal_of(request).id, data
    )


INVITE_ERRORS = {
    "errors": {
        400: "Not a mobile number (`invalid_phone`) or e-mail address (`invalid_email`), or the client's mail "
        "server refused the address (`email_refused`); nothing was sent.",
        409: "This region sends no text messages (`sms_unavailable`); send an e-mail instead.",
        429: "Too many invitations from you in the last hour (`too_many_invitations`).",
        503: "The SMS provider or mail server did not take the message (`sms_unavailable`, `mail_unavailable`): "
        "nothing was sent and nothing was kept; try again later. Also when the region's key service does not "
        "answer (`unavailable`): nothing was sent or stored.",
    }
}


@post(
    "/rooms/{room_id:uuid}/client-invitations",
    opt={**rule(*EXPERTS, scope="rooms:write", personal_data="client_invitation"), **INVITE_ERRORS},
    status_code=HTTP_201_CREATED,
)
async def invite_client(request: Req, room_id: uuid.UUID, data: ClientInvitationIn) -> ClientInvitationOut:
    """Send the room's join link to a client by SMS or e-mail. The number or address is
    used for this send only: the record keeps a keyed hash of it, never the address."""
    return await client_invitations.send(
        region_of(request), actor_of(request), principal_of(request), org_of(request), room_id, data
    )


@get("/rooms/{room_id:uuid}/client-invitations", opt=rule(*EXPERTS, scope="rooms:read"))
async def room_client_invitations(request: Req, room_id: uuid.UUID) -> list[ClientInvitationOut]:
    """The invitations sent for this room (channel, status, times; no addresses). Experts
    see those of their own rooms (403 for another's room), owners and admins all."""
    return await client_invitations.sent_for_room(principal_of(request), org_of(request), room_id)


messaging_router = Router(
    path="/api/v1/orgs/{slug:str}",
    route_handlers=[read_sms_alerts, change_sms_alerts, invite_client, room_client_invitations],
    tags=["tenant"],
)
