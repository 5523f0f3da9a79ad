"""HTTP API of control attestations: owners see which controls of a framework are met
by their signature and sign or withdraw one; admins and auditors read along. Member
sessions only (no integration-token scope): a signature is a person's act."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from konsil.compliance.attestations import service
from konsil.compliance.attestations.service import AttestationOut, ControlState
from konsil.platform.core.authz import rule
from konsil.platform.core.region import region_of
from konsil.platform.core.text import LINE_PATTERN
from konsil.tenants.actors import actor_of
from konsil.tenants.auth import Principal

BASE = "/api/v1/orgs/{slug:str}/attestations"
READERS = ("owner", "admin", "auditor")
TAGS = ["attestations"]

Req = Request[Any, Any, Any]
FrameworkQuery = Annotated[
    str | None,
    Parameter(max_length=16, description="gdpr, hipaa, nen7510 or normen; all frameworks when left out"),
]


class AttestationIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The control to attest; the statement signed is the catalog's own."""

    framework: Annotated[str, msgspec.Meta(min_length=1, max_length=16, pattern=LINE_PATTERN, description="e.g. gdpr")]
    control_id: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=80, pattern=LINE_PATTERN, description="the control's id as its catalog cites it"
        ),
    ]


def _org_id(request: Req) -> uuid.UUID:
    org_id: uuid.UUID = request.state.org.id  # set by the guard
    return org_id


def _member(request: Req) -> uuid.UUID:
    principal: Principal = request.state.principal  # set by the guard
    return principal.id


@get(BASE, opt=rule(*READERS), tags=TAGS)
async def list_attestations(request: Req, framework: FrameworkQuery = None) -> list[ControlState]:
    """The controls met by an owner's attestation and where each stands now: attested
    (until when), expired, withdrawn or never signed, with its latest signature."""
    return await service.states(_org_id(request), framework)


@get(BASE + "/signatures", opt=rule(*READERS), tags=TAGS)
async def list_signatures(request: Req, framework: FrameworkQuery = None) -> list[AttestationOut]:
    """Every signature, newest first (at most 500), withdrawn and expired ones too."""
    return await service.history(_org_id(request), framework)


@post(BASE, opt=rule("owner"), status_code=HTTP_201_CREATED, tags=TAGS)
async def sign_attestation(request: Req, data: AttestationIn) -> AttestationOut:
    """Sign a control's statement as the organisation's owner. It holds for the
    catalog's period; signing again renews it."""
    return await service.sign(
        region_of(request), actor_of(request), _org_id(request), _member(request), data.framework, data.control_id
    )


@post(BASE + "/{attestation_id:uuid}/withdraw", opt=rule("owner"), status_code=HTTP_200_OK, tags=TAGS)
async def withdraw_attestation(request: Req, attestation_id: uuid.UUID) -> AttestationOut:
    """Withdraw a signature that still holds: the control is no longer attested by it."""
    return await service.withdraw(
        region_of(request), actor_of(request), _org_id(request), _member(request), attestation_id
    )


attestations_router = Router(
    path="/", route_handlers=[list_attestations, list_signatures, sign_attestation, withdraw_attestation]
)

__all__ = ["attestations_router"]
