"""Composition root of the control plane: signup, directory, login discovery,
gateway. It holds no region database credentials and stores no personal data.

Every route says who may call it: ``public`` (signup, discovery, the region list,
the gateway, whose regions authorize each call themselves) or ``internal`` with a
guard that checks a region's signature. One ``before_request`` refuses any other
route (fail closed), as the region service does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Router, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from konsil.platform.control import discovery, pages, signup
from konsil.platform.control.context import ControlContext, new_client, new_gateway_pool
from konsil.platform.control.gateway import Directory, browser_redirect, forward
from konsil.platform.control.tables import CONTROL_TABLES, RegionRecord
from konsil.platform.core import database, errors, startup
from konsil.platform.core.authz import INTERNAL, PUBLIC
from konsil.platform.core.db_errors import DATABASE_UNAVAILABLE_HANDLERS
from konsil.platform.core.errors import EXCEPTION_HANDLERS
from konsil.platform.core.lookup import normalise_email
from konsil.platform.core.openapi import document_errors
from konsil.platform.core.ratelimit import RateLimit
from konsil.platform.core.readiness import Probe, check_database, readyz_route
from konsil.platform.core.settings import ControlPlaneSettings
from konsil.platform.core.signing import Verifier
from konsil.platform.core.web import LOGGING, SignedCalls, healthz, security_headers, strict_input
from konsil.platform.pages import api_docs, i18n, rendering

Req = Request[Any, Any, Any]
CONTROL = Path(__file__).resolve().parent
TEMPLATES = CONTROL / "templates"
STATIC = CONTROL / "static"
i18n.register_catalogs(CONTROL / "locale", STATIC)


def source_address(request: Req) -> str:
    """The caller's address as this process sees it (the control plane is the edge)."""
    return request.client.host if request.client else "unknown"


@post("/api/v1/signup", status_code=HTTP_201_CREATED, tags=["signup"], opt=PUBLIC)
async def signup_route(request: Req, data: signup.SignupIn) -> signup.SignupOut:
    """Create an organisation and its first owner in the chosen region."""
    ctx: ControlContext = request.app.state.control
    ctx.signups_per_address.hit(source_address(request))
    return await signup.signup(ctx, data)


@post("/api/v1/login-discovery", status_code=HTTP_200_OK, tags=["login"], opt=PUBLIC)
async def discovery_route(request: Req, data: discovery.DiscoveryIn) -> discovery.DiscoveryOut:
    """Where to log in for an e-mail address (does not reveal whether it exists)."""
    ctx: ControlContext = request.app.state.control
    ctx.discoveries_per_address.hit(source_address(request))
    ctx.discoveries_per_email.hit(normalise_email(data.email))
    return await discovery.discover(ctx, data)


@get("/api/v1/regions", tags=["signup"], opt=PUBLIC)
async def regions_route(request: Req) -> list[dict[str, str]]:
    """The regions an organisation can choose at signup."""
    rows = await RegionRecord.select().order_by(RegionRecord.id).run()
    return [{"id": r["id"], "jurisdiction": r["jurisdiction"], "public_url": r["public_url"]} for r in rows]


def signed_by_region(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if not str(connection.scope.get("state", {}).get("signed_by", "")).startswith("region:"):
        raise errors.unauthorized("internal calls must be signed by a region")


@post("/login-index", status_code=HTTP_200_OK, opt=INTERNAL)
async def login_index_route(request: Req, data: discovery.LoginIndexChange) -> dict[str, Any]:
    return await discovery.change_index(request.app.state.control, request.scope["state"]["signed_by"], data)


@post("/org-removed", status_code=HTTP_200_OK, opt=INTERNAL)
async def org_removed_route(request: Req, data: discovery.OrgRemoved) -> dict[str, Any]:
    answer = await discovery.org_removed(request.scope["state"]["signed_by"], data)
    request.app.state.directory.forget()
    return answer


@post("/login-discovery", status_code=HTTP_200_OK, opt=INTERNAL)
async def region_discovery_route(request: Req, data: discovery.DiscoveryIn) -> discovery.PlacesOut:
    """A region's login page asks where else an address logs in (after a failed login
    there): the public discovery's answer, limited per e-mail address as it is."""
    ctx: ControlContext = request.app.state.control
    ctx.discoveries_per_email.hit(normalise_email(data.email))
    return await discovery.places_for(ctx, data)


@get("/regions", opt=INTERNAL)
async def region_places_route(request: Req) -> discovery.PlacesOut:
    """Every region's address: where a region's login page may send a person."""
    return discovery.every_place(request.app.state.control)


internal_router = Router(
    path="/internal/v1",
    guards=[signed_by_region],
    route_handlers=[login_index_route, org_removed_route, region_discovery_route, region_places_route],
    include_in_schema=False,
)


async def _authorized_and_strict(request: Req) -> None:
    """Before every HTTP handler: the route is public, or internal and its guard has
    checked the region's signature; any other route is refused. Then the strict edge
    checks of its input (401/403 before 400/415)."""
    handler = request.route_handler
    if not (handler.opt.get("public") or (handler.opt.get("internal") and handler.resolve_guards())):
        raise errors.forbidden("this route has no authorization rule")
    await strict_input(request)


async def register_regions(settings: ControlPlaneSettings) -> None:
    """The region registry mirrors configuration (id, jurisdiction, public URL)."""
    for region in settings.regions:
        values: dict[Any, Any] = {
            RegionRecord.jurisdiction: region.jurisdiction,
            RegionRecord.public_url: region.public_url,
        }
        if await RegionRecord.exists().where(RegionRecord.id == region.id).run():
            await RegionRecord.update(values).where(RegionRecord.id == region.id).run()
        else:
            await RegionRecord.insert(
                RegionRecord(id=region.id, jurisdiction=region.jurisdiction, public_url=region.public_url)
            ).run()


def create_control_app(settings: ControlPlaneSettings) -> Litestar:
    control = settings.control
    engine = database.engine_for(control.database)
    regions = {r.id: r for r in settings.regions}
    ctx = ControlContext(
        settings=settings,
        engine=engine,
        regions=regions,
        verifier=Verifier(
            {f"region:{r.id}": r.internal_secret for r in settings.regions}, settings.signature_window_seconds
        ),
        discovery_key=settings.require_discovery_key(),
        client=new_client(),
        pool=new_gateway_pool(),
        signups_per_address=RateLimit("signup per address", control.signups_per_address_hour, 3600),
        discoveries_per_address=RateLimit("discovery per address", control.discoveries_per_address_minute, 60),
        discoveries_per_email=RateLimit("discovery per e-mail", control.discoveries_per_email_minute, 60),
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        database.bind(CONTROL_TABLES, engine)
        await database.start(engine)
        await register_regions(settings)
        startup.started("control plane", listen=control.listen)
        try:
            yield
        finally:
            await ctx.client.aclose()
            await ctx.pool.aclose()
            await database.stop(engine)

    app = Litestar(
        route_handlers=[
            healthz,
            readyz_route(lambda request: request.app.state.readiness),
            signup_route,
            discovery_route,
            regions_route,
            internal_router,
            pages.pages_router,
            forward,
            browser_redirect,
            create_static_files_router(
                path="/static",
                directories=[rendering.STATIC, STATIC],
                include_in_schema=False,
                opt=PUBLIC,
            ),
        ],
        middleware=[DefineMiddleware(SignedCalls, verifier=ctx.verifier, max_body=settings.max_body_bytes)],
        exception_handlers=rendering.for_people({**EXCEPTION_HANDLERS, **DATABASE_UNAVAILABLE_HANDLERS}),
        template_config=rendering.template_config(TEMPLATES),
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=api_docs.openapi_config("Konsil control plane"),
        logging_config=LOGGING,
        before_request=_authorized_and_strict,
        before_send=[security_headers, rendering.remember_language],
        debug=False,
    )
    app.state.control = ctx
    app.state.directory = Directory()
    # Ready while its own database answers (it holds no region's credentials to check).
    app.state.readiness = Probe({"database": lambda: check_database(engine)}, frozenset({"database"}))
    document_errors(app)
    return app
