"""Composition root of a region service: one process per region, holding only
that region's settings, database and secrets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response, Router
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.middleware import DefineMiddleware
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from konsil.compliance.access_log.api import access_log_router
from konsil.compliance.attestations.api import attestations_router
from konsil.compliance.dsr.api import dsr_router
from konsil.compliance.reports.api import reports_router
from konsil.compliance.retention.api import retention_router
from konsil.media_nodes import secret_keeper
from konsil.media_nodes.network_test.service import no_relay_notice
from konsil.media_nodes.ops_api import ops_router
from konsil.media_nodes.registry import HeartbeatConsumer
from konsil.media_nodes.registry_store import sync_registry
from konsil.platform.core import startup
from konsil.platform.core.channels import PgNotifyChannels, RegionChannels
from konsil.platform.core.db_errors import DATABASE_UNAVAILABLE_HANDLERS
from konsil.platform.core.errors import EXCEPTION_HANDLERS, log_server_error
from konsil.platform.core.keys.provider import KeyDestroyed, KeyServiceMisconfigured, KeyUnavailable, UnwrapRefused
from konsil.platform.core.keys.region_signing import SigningUnavailable
from konsil.platform.core.mail import NoMailer
from konsil.platform.core.openapi import document_errors
from konsil.platform.core.readiness import readyz_route
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import ConfigError, RegionSettings, Settings
from konsil.platform.core.web import LOGGING, SignedCalls, healthz, security_headers, strict_input
from konsil.platform.pages import api_docs, i18n, rendering
from konsil.regions import container
from konsil.regions.container import build_region, region_relays
from konsil.regions.internal import internal_router
from konsil.regions.readiness import region_probe
from konsil.regions.tasks import CeleryRunner, start_in_process
from konsil.tenants import invitations, live_counts, login_index, password_reset
from konsil.tenants.account_pages import account_router
from konsil.tenants.admin_members import members_pages_router
from konsil.tenants.admin_pages import admin_pages_router
from konsil.tenants.api import org_router, region_login_router
from konsil.tenants.auth import LoginRequired, authorize, authorize_request
from konsil.tenants.consent_pages import consent_router
from konsil.tenants.identity.api import identity_api_router
from konsil.tenants.identity.pages import identity_router
from konsil.tenants.invitations_api import invitations_router
from konsil.tenants.login_pages import login_router
from konsil.tenants.messaging.api import messaging_router
from konsil.tenants.network_test_api import network_test_router
from konsil.tenants.pages import pages_router
from konsil.tenants.payments.routes import payment_pages_router, payments_api_router
from konsil.tenants.signaling import SOCKETS
from konsil.tenants.visitor_pages import visitor_router

log = logging.getLogger("konsil.region")
TENANTS = Path(__file__).resolve().parent.parent / "tenants"
TEMPLATES = TENANTS / "templates"
STATIC = TENANTS / "static"
i18n.register_catalogs(TENANTS / "locale", STATIC)


def channels_backend(region: RegionSettings) -> ChannelsBackend:
    """Live events between replicas: PostgreSQL LISTEN/NOTIFY in services mode, in
    memory for the embedded default (one process per region)."""
    if region.database.startswith(("postgresql://", "postgres://")):
        return PgNotifyChannels(dsn=region.database)
    return MemoryChannelsBackend()


TIDY_EVERY_SECONDS = 300.0


async def keep_links_tidy(ctx: RegionContext, every: float = TIDY_EVERY_SECONDS) -> None:
    """Ended invitation and password-reset links: an expired invitation's e-mail address
    is cleared and old links are deleted, every few minutes (each replica; idempotent)."""
    while True:
        try:
            await invitations.tidy(ctx)
            await password_reset.tidy()
        except Exception as exc:  # the next round tries again
            log.warning("ended invitation and reset links could not be tidied (%s)", type(exc).__name__)
        await asyncio.sleep(every)


def _to_login(_: Request[Any, Any, Any], __: LoginRequired) -> Response[Any]:
    return Redirect("/login", status_code=303)


def _key_unavailable(request: Request[Any, Any, Any], exc: KeyUnavailable) -> Response[Any]:
    # Fail closed: nothing that needs the organisation's key is read or written. The
    # provider's message names the failure (Vault's own words), never a key or a value.
    misconfigured = isinstance(exc, KeyServiceMisconfigured)
    log_server_error(
        request, 503, exc, f"the region's key service: {exc}", level=logging.ERROR if misconfigured else logging.WARNING
    )
    why = "is not set up for this; its operators must fix it" if misconfigured else "does not answer"
    return Response(
        {
            "error": "unavailable",
            "message": f"personal data is unavailable right now (the region's key service {why}); "
            "nothing was written, try again shortly",
        },
        status_code=503,
        headers={"retry-after": "10"},
    )


def _signing_unavailable(request: Request[Any, Any, Any], exc: SigningUnavailable) -> Response[Any]:
    # What needs the region's signature is not made without it (receipts, key set, ...).
    log_server_error(request, 503, exc, f"the region's signing key is unavailable: {exc}")
    return Response(
        {
            "error": "unavailable",
            "message": "the region cannot sign right now (its signing key does not answer); "
            "nothing was signed, try again shortly",
        },
        status_code=503,
        headers={"retry-after": "10"},
    )


def _key_destroyed(_: Request[Any, Any, Any], __: KeyDestroyed) -> Response[Any]:
    return Response(
        {"error": "gone", "message": "this organisation's data was deleted (its key no longer exists)"},
        status_code=410,
    )


def _unwrap_refused(request: Request[Any, Any, Any], exc: UnwrapRefused) -> Response[Any]:
    log_server_error(request, 500, exc, f"the key service refused a stored data key: {exc}")
    return Response(
        {"error": "integrity_error", "message": "a stored data key was refused by the key service; nothing was shown"},
        status_code=500,
    )


async def _authorized_and_strict(request: Request[Any, Any, Any]) -> None:
    """Before every HTTP handler: who may call it (tenants.auth), then the strict edge
    checks of its input (platform.web), in that order (401/403 before 400/415)."""
    await authorize_request(request)
    await strict_input(request)


def create_region_app(settings: Settings, region_id: str | None = None) -> Litestar:
    if region_id is None:
        if len(settings.regions) != 1:
            raise ConfigError("regions: a region service needs exactly one region (or --region)")
        region_id = settings.regions[0].id
    region = settings.region(region_id)
    channels = RegionChannels(channels_backend(region))
    relays = region_relays(region)
    ctx = build_region(settings, region, live=channels, relays=relays)
    registry = relays.registry  # heartbeats from this region's relays only, when it has a broker

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await container.start(ctx)
        if ctx.network_tests.unavailable:
            log.warning("region %s: %s", region.id, ctx.network_tests.unavailable)
        if no_relay := no_relay_notice(ctx):  # konsil up says it in its own words
            log.log(logging.INFO if settings.mode == "embedded" else logging.WARNING, no_relay)
        if isinstance(ctx.mail, NoMailer):
            log.warning("region %s: invitations and password resets go %s", region.id, ctx.mail.description)
        consumer = HeartbeatConsumer(registry, region.broker_url).start() if registry else None
        # Fail closed: calls are told no relay is available until the secret is read.
        keeper = await secret_keeper.keep_for(region, ctx.keys.provider, relays)
        app.state.readiness = region_probe(ctx, relays, keeper)
        follower = asyncio.create_task(sync_registry(registry)) if registry else None
        lifecycle = start_in_process(ctx)  # the embedded default's purge schedule (else Celery beat)
        # Reports run where the region's other tasks run: in process, or on its Celery workers.
        ctx.tasks = lifecycle.runner if lifecycle is not None else CeleryRunner(settings, region.id)
        # Login-index changes the control plane has not taken yet (it was down), retried.
        login_index_retries = asyncio.create_task(login_index.keep_delivering(ctx))
        tidying = asyncio.create_task(keep_links_tidy(ctx))
        counting = live_counts.start(settings.telemetry)  # konsil_waiting_visitors, konsil_active_calls
        startup.started("region service", region=region.id, mode=settings.mode, listen=region.listen)
        try:
            yield
        finally:
            for task in (login_index_retries, tidying, *([counting] if counting else [])):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if lifecycle is not None:
                await lifecycle.stop()
            if follower is not None:
                follower.cancel()
            if consumer is not None:
                await asyncio.to_thread(consumer.stop)
            if keeper is not None:
                await keeper.stop()
            await container.stop(ctx)

    app = Litestar(
        route_handlers=[
            healthz,
            readyz_route(lambda request: request.app.state.readiness),
            org_router,
            region_login_router,
            login_router,
            pages_router,
            admin_pages_router,
            account_router,
            consent_router,
            members_pages_router,
            invitations_router,
            messaging_router,
            internal_router,
            visitor_router,
            identity_router,
            identity_api_router,
            payment_pages_router,
            payments_api_router,
            network_test_router,
            dsr_router,
            access_log_router,
            attestations_router,
            retention_router,
            reports_router,
            ops_router,
            Router(path="/", guards=[authorize], route_handlers=SOCKETS),
            create_static_files_router(
                path="/static",
                directories=[rendering.STATIC, STATIC],
                include_in_schema=False,
                opt={"public": True},
            ),
        ],
        plugins=[channels],
        middleware=[DefineMiddleware(SignedCalls, verifier=ctx.verifier, max_body=settings.max_body_bytes)],
        exception_handlers=rendering.for_people(
            {
                **EXCEPTION_HANDLERS,
                **DATABASE_UNAVAILABLE_HANDLERS,
                LoginRequired: _to_login,
                KeyUnavailable: _key_unavailable,
                SigningUnavailable: _signing_unavailable,
                KeyDestroyed: _key_destroyed,
                UnwrapRefused: _unwrap_refused,
            }
        ),
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=api_docs.openapi_config(f"Konsil region {region.id}"),
        template_config=rendering.template_config(TEMPLATES),
        logging_config=LOGGING,
        before_request=_authorized_and_strict,
        before_send=[security_headers, rendering.remember_language],
        debug=False,
    )
    app.state.region = ctx
    app.state.relays = relays
    document_errors(app, {410: "The organisation's data was deleted (its key no longer exists)."})
    return app
