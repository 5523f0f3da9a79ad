"""HTTP API of the pre-call network test (the probe peers and relays it measures live in
media_nodes/network_test; these are the routes of the visitor's and members' pages).

Who may run it:
- the visitor of a visit, from the visit page: routes under the visit's own path, so
  the browser sends the visit cookie (HttpOnly, SameSite=Strict, scoped to that path);
  the cookie must open that visit of that room. Members are refused there (403): they
  have their own routes.
- a logged-in member (any role), under ``/api/v1/orgs/{slug}/network-tests``.
Members of the organisation read its results (support metadata, P12). Results hold
no visit identity, so no access-log entry is written for them (an entry naming the
visitor would be the very link P10 rules out).

Deletion on request (P10): the visitor deletes the result of a test their browser ran
(its id came back when it started; ids are random and shown to nobody else but the
organisation's members), and owners and admins delete any of the organisation's results.

Signaling is plain HTTP and non-trickle: the browser asks for the relays of one
transport, gathers its relay candidates, POSTs its offer, and gets the service
peer's answer. The figures and the verdict come back on the data channel, and are
stored for support.

The test takes the path the organisation's calls take: in a region without relays,
where calls go direct, the relays answer names the path "direct" (no relay, any STUN
servers, every candidate) and the test measures that path once; the operator's log
said so at start. No relay where calls need one is "unavailable" (503), in words
that blame neither the visitor nor their network.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from litestar import Request, Response, Router, delete, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED

from konsil.media_nodes.network_test import service
from konsil.media_nodes.network_test.measures import OfferRefused
from konsil.media_nodes.network_test.service import (
    NetworkTestIn,
    NetworkTestOut,
    NetworkTestStarted,
    Path,
    RelaysOut,
    Runner,
    Transport,
)
from konsil.platform.core import errors
from konsil.platform.core.authz import Rule, rule
from konsil.platform.core.region import region_of
from konsil.tenants import organisations, records, rooms, visits
from konsil.tenants.auth import authorize
from konsil.tenants.signaling import VISIT_COOKIE

ALL_MEMBERS = ("owner", "admin", "expert", "auditor")
VISIT_PATH = "/{slug:str}/{room_slug:str}/visits/{visit_id:uuid}/network-test"
MEMBER_PATH = "/api/v1/orgs/{slug:str}/network-tests"

# The visitor of the visit in the path only; no member role passes (they get 403).
VISITOR_ONLY: dict[str, Any] = {"auth": Rule(frozenset()), "visitor": True}

Req = Request[Any, Any, Any]


async def visitor_of_this_visit(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """A visit cookie that opens this visit of this room passes; anyone else goes through
    the ordinary rule (401 anonymous, 404 another organisation, 403 members)."""
    params = connection.path_params
    org = await organisations.get(params.get("slug", ""))
    if org is None:
        raise errors.not_found("no such visit")
    token = connection.cookies.get(VISIT_COOKIE)
    if token:
        visit: records.Visit | None
        room: records.Room | None
        try:
            visit = await visits.visit_for_token(org, params["visit_id"], token)
            room = await rooms.by_slug(org, params["room_slug"])
        except errors.AppError:
            visit = room = None
        if visit is not None and room is not None and visit.room_id == room.id:
            connection.state.org = org
            connection.state.runner = "visitor"
            return
    await authorize(connection, handler)


def _org(request: Req) -> records.Organisation:
    org: records.Organisation = request.state.org  # set by the guard
    return org


def _no_relay(request: Req, exc: service.NoRelay) -> Response[Any]:
    # The service's relay is down (never another region's relay instead): the call may not
    # connect, and that is not the visitor's network. The message is for support.
    errors.log_server_error(request, 503, exc, str(exc), level=logging.WARNING)
    return Response(
        {
            "error": "unavailable",
            "message": str(exc),
            "verdict": "unavailable",
            "advice": service.NO_RELAY_ADVICE,
            "advice_keys": service.NO_RELAY_ADVICE_KEYS,
        },
        status_code=503,
        headers={"retry-after": "30", "cache-control": "no-store"},
    )


def _path(request: Req) -> Path:
    """The path this organisation's calls take in this region (``service.goes_direct``)."""
    return "direct" if service.goes_direct(region_of(request), _org(request).relay_only) else "relay"


def _relays(request: Req, transport: Transport) -> Response[Any]:
    ctx = region_of(request)
    if _path(request) == "direct":
        servers = service.direct_servers(ctx, service.test_ref())
        out = RelaysOut(transport=transport, ice_servers=servers, ice_transport_policy="all", path="direct")
        return Response(out, headers={"cache-control": "no-store"})
    try:
        found = service.relays(ctx, transport, service.test_ref())
    except service.NoRelay as exc:
        return _no_relay(request, exc)
    return Response(
        RelaysOut(transport=transport, ice_servers=found.servers, relay=found.node_id),
        headers={"cache-control": "no-store"},
    )


async def _start(request: Req, runner: Runner, data: NetworkTestIn) -> Response[Any]:
    org = _org(request)
    try:
        started = await service.start(region_of(request), org.id, runner, data, _path(request))
    except OfferRefused as exc:
        raise errors.bad_request(str(exc), code="invalid_offer") from None
    except service.TooManyTests:
        return Response(
            {"error": "too_many_requests", "message": "too many connection tests are running; try again in a minute"},
            status_code=429,
            headers={"retry-after": "10"},
        )
    except service.NoRelay as exc:
        return _no_relay(request, exc)
    except service.TestUnavailable as exc:
        # Not the visitor's network: this server cannot run the test (the operator's log says why).
        errors.log_server_error(request, 503, exc, "this server cannot run connection tests")
        return Response(
            {"error": "unavailable", "message": "The connection test is not available on this server right now."},
            status_code=503,
            headers={"retry-after": "3600", "cache-control": "no-store"},
        )
    return Response(started, status_code=HTTP_201_CREATED, headers={"cache-control": "no-store"})


TransportQuery = Annotated[Transport, Parameter(description="udp or tcp")]


@get(
    f"{VISIT_PATH}/relays",
    opt=VISITOR_ONLY,
    guards=[visitor_of_this_visit],
    summary="The relays the visitor's test connection uses",
)
async def visitor_relays(request: Req, transport: TransportQuery) -> Response[Any]:
    return _relays(request, transport)


@post(
    VISIT_PATH,
    opt=VISITOR_ONLY,
    guards=[visitor_of_this_visit],
    status_code=HTTP_201_CREATED,
    summary="Run the visitor's connection test: the offer in, the service peer's answer out",
)
async def visitor_network_test(request: Req, data: NetworkTestIn) -> Response[NetworkTestStarted]:
    return await _start(request, "visitor", data)


@get(
    f"{MEMBER_PATH}/relays",
    opt=rule(*ALL_MEMBERS),
    summary="The relays a member's test connection uses",
)
async def member_relays(request: Req, transport: TransportQuery) -> Response[Any]:
    return _relays(request, transport)


@post(
    MEMBER_PATH,
    opt=rule("owner", "admin", "expert"),  # it stores a result: auditors change nothing
    status_code=HTTP_201_CREATED,
    summary="Run a member's connection test",
)
async def member_network_test(request: Req, data: NetworkTestIn) -> Response[NetworkTestStarted]:
    return await _start(request, "member", data)


@get(MEMBER_PATH, opt=rule(*ALL_MEMBERS), summary="The organisation's recent test results")
async def list_network_tests(
    request: Req, limit: Annotated[int, Parameter(ge=1, le=500)] = 100
) -> list[NetworkTestOut]:
    return await service.results(_org(request).id, limit)


async def _delete(request: Req, test_id: uuid.UUID, runner: str | None = None) -> None:
    if not await service.delete_result(_org(request).id, test_id, runner):
        raise errors.not_found("no such test result")


@delete(
    f"{VISIT_PATH}/{{test_id:uuid}}",
    opt=VISITOR_ONLY,
    guards=[visitor_of_this_visit],
    summary="Delete the result of a test this visitor's browser ran (P10: on request)",
)
async def visitor_delete_network_test(request: Req, test_id: uuid.UUID) -> None:
    await _delete(request, test_id, runner="visitor")  # never a member's result


@delete(
    f"{MEMBER_PATH}/{{test_id:uuid}}",
    opt=rule("owner", "admin"),
    summary="Delete one of the organisation's test results (P10: on request)",
)
async def delete_network_test(request: Req, test_id: uuid.UUID) -> None:
    await _delete(request, test_id)


network_test_router = Router(
    path="/",
    route_handlers=[
        visitor_relays,
        visitor_network_test,
        member_relays,
        member_network_test,
        list_network_tests,
        visitor_delete_network_test,
        delete_network_test,
    ],
    tags=["network test"],
)

__all__ = ["network_test_router"]
