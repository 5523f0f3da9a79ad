"""HTTP API and portal page of data-subject requests (P17), for an organisation's
owners and admins (the controller answers its data subjects).

The subject's e-mail or phone travels only in POST bodies, never in a URL; a
malformed one is a 400 naming the field. Filing answers the same for a subject the
organisation knows and one it does not.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import MediaType, Request, Response, Router, get, post
from litestar.response import Template
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from konsil.compliance.dsr import service
from konsil.compliance.dsr.overview import legal_for
from konsil.compliance.dsr.schemas import (
    Erasure,
    FulfilmentOut,
    Rectification,
    Rejection,
    RequestDetail,
    RequestIn,
    RequestOut,
    Status,
    SubjectExport,
)
from konsil.platform.core.authz import MANAGERS, rule
from konsil.platform.core.region import region_of
from konsil.platform.pages.i18n import N_
from konsil.platform.pages.rendering import locale_of
from konsil.tenants.actors import actor_of

BASE = "/api/v1/orgs/{slug:str}/dsr"
# What the page offers to file and why it may reject, in words.
KIND_CHOICES = (
    ("access", N_("Access: an overview of their data")),
    ("portability", N_("Portability: their data, machine-readable")),
    ("rectification", N_("Rectification: a correction")),
    ("erasure", N_("Erasure: deletion")),
)
REASON_CHOICES = (
    ("identity_not_verified", N_("Their identity could not be verified")),
    ("manifestly_unfounded", N_("The request is manifestly unfounded")),
    ("duplicate", N_("The same request was filed before")),
    ("withdrawn", N_("The person withdrew it")),
)

Req = Request[Any, Any, Any]


def _org(request: Req) -> dict[str, Any]:
    # The guard's organisation is a typed record (tenants/records.py); this area still
    # reads it as a row.
    return msgspec.structs.asdict(request.state.org)


@get(BASE, opt=rule(*MANAGERS, "auditor", personal_data="dsr"), tags=["data-subject requests"])
async def list_requests(request: Req, status: Status | None = None) -> list[RequestOut]:
    """The organisation's requests with their due dates (4 weeks from receipt); open
    ones first, earliest due first; ``overdue`` marks open ones past their due date.
    No personal data (the subject's identifier is not listed): auditors read it too."""
    return await service.list_requests(_org(request)["id"], status)


@post(BASE, opt=rule(*MANAGERS, personal_data="dsr"), status_code=HTTP_201_CREATED, tags=["data-subject requests"])
async def file_request(request: Req, data: RequestIn) -> RequestOut:
    """File a request received from a data subject, by their e-mail or phone."""
    return await service.file(region_of(request), actor_of(request), _org(request), data)


@get(BASE + "/{dsr_id:uuid}", opt=rule(*MANAGERS, personal_data="dsr"), tags=["data-subject requests"])
async def read_request(request: Req, dsr_id: uuid.UUID) -> RequestDetail:
    """A request, its identifier, and how many records of the subject were found."""
    return await service.detail(region_of(request), actor_of(request), _org(request), dsr_id)


@post(
    BASE + "/{dsr_id:uuid}/export",
    opt=rule(*MANAGERS, personal_data="dsr"),
    status_code=HTTP_200_OK,
    tags=["data-subject requests"],
)
async def export_request(request: Req, dsr_id: uuid.UUID) -> Response[SubjectExport]:
    """Everything held about the subject, machine-readable (format
    ``konsil.data-subject-export``, version 1), with who accessed it. Fulfils an
    access or portability request."""
    data = await service.export(region_of(request), actor_of(request), _org(request), dsr_id)
    return Response(
        data,
        headers={
            "content-disposition": f'attachment; filename="data-subject-export-{dsr_id}.json"',
            "cache-control": "no-store",
        },
    )


@post(
    BASE + "/{dsr_id:uuid}/overview",
    opt=rule(*MANAGERS, personal_data="dsr"),
    status_code=HTTP_200_OK,
    media_type=MediaType.TEXT,  # documented as text; Litestar adds the charset once
    tags=["data-subject requests"],
)
async def overview_request(request: Req, dsr_id: uuid.UUID) -> Response[str]:
    """The same as the export, as a plain-text overview a person can read, in the
    caller's language (``Accept-Language``; English by default)."""
    data = await service.export(region_of(request), actor_of(request), _org(request), dsr_id)
    text = service.overview_text(data, locale_of(request))
    return Response(text, media_type="text/plain", headers={"cache-control": "no-store"})


@post(
    BASE + "/{dsr_id:uuid}/access-extract",
    opt=rule(*MANAGERS, personal_data="dsr"),
    status_code=HTTP_200_OK,
    media_type="application/pdf",
    tags=["data-subject requests"],
)
async def access_extract_request(request: Req, dsr_id: uuid.UUID) -> Response[bytes]:
    """Who accessed the subject's data, as a PDF for them to read (NEN 7513 ch. 5,
    Normen innsyn i logg): every access-log entry about their records, with who (the
    organisation's members by name), on whose behalf, what, why, when and the outcome.
    Part of the answer to an access request; it does not complete the request (the
    export or the overview does). The file name carries the request id only."""
    content = await service.access_extract(region_of(request), actor_of(request), _org(request), dsr_id)
    return Response(
        content,
        media_type="application/pdf",
        headers={
            "content-disposition": f'attachment; filename="{service.extract_filename(dsr_id)}"',
            "cache-control": "no-store",
        },
    )


@post(
    BASE + "/{dsr_id:uuid}/rectify",
    opt=rule(*MANAGERS, personal_data="dsr"),
    status_code=HTTP_200_OK,
    tags=["data-subject requests"],
)
async def rectify_request(request: Req, dsr_id: uuid.UUID, data: Rectification) -> FulfilmentOut:
    """Correct the subject's name and/or phone on all their member and visit records."""
    return await service.rectify(region_of(request), actor_of(request), _org(request), dsr_id, data)


@post(
    BASE + "/{dsr_id:uuid}/erase",
    opt=rule(*MANAGERS, personal_data="dsr"),
    status_code=HTTP_200_OK,
    tags=["data-subject requests"],
)
async def erase_request(request: Req, dsr_id: uuid.UUID, data: Erasure) -> FulfilmentOut:
    """Erase the subject's visits (with calls, telemetry, relay receipts) and member
    accounts in this organisation; payment records stay (kept 5 years by law)."""
    return await service.erase(region_of(request), actor_of(request), _org(request), dsr_id)


@post(
    BASE + "/{dsr_id:uuid}/reject",
    opt=rule(*MANAGERS, personal_data="dsr"),
    status_code=HTTP_200_OK,
    tags=["data-subject requests"],
)
async def reject_request(request: Req, dsr_id: uuid.UUID, data: Rejection) -> RequestOut:
    """Close a request without answering it (e.g. the requester's identity was not verified)."""
    return await service.reject(region_of(request), actor_of(request), _org(request), dsr_id, data.reason)


@get("/{slug:str}/portal/dsr", opt={**rule(*MANAGERS), "page": True}, include_in_schema=False)
async def dsr_page(request: Req) -> Template:
    """The portal page: requests with due dates, file, view, export, the "who accessed
    their data" extract, rectify, erase, reject; and what to tell the person of their
    rights and where to complain, in the organisation's jurisdiction."""
    org = _org(request)
    principal = request.state.principal
    legal = legal_for(
        region_of(request).region.id, org.get("country") or "", locale_of(request), org["name"], org["retention_days"]
    )
    return Template(
        "dsr.html",
        context={
            "org_name": org["name"],
            "slug": org["slug"],
            "role": principal.role,
            "csrf": principal.csrf_token,
            "legal": legal,
            "country": org.get("country") or "",
            "kinds": KIND_CHOICES,
            "reasons": REASON_CHOICES,
        },
        headers={"cache-control": "no-store"},
    )


dsr_router = Router(
    path="/",
    route_handlers=[
        list_requests,
        file_request,
        read_request,
        export_request,
        overview_request,
        access_extract_request,
        rectify_request,
        erase_request,
        reject_request,
        dsr_page,
    ],
)
