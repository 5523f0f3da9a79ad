"""A region service's readiness (``GET /readyz``, ``platform.core.readiness``): its
database, its Vault (reachable, sealed or not), its RabbitMQ and its relays' TURN
secret, each reported separately.

Not ready (503) while the database or the region's Vault is unreachable or sealed:
without them no request that touches an organisation can be served, and another
replica (or the same one shortly) may do better. The broker and the TURN secret are
reported but do not make the region unready: every replica shares them, so taking
replicas out of service would stop logins, pages and the API too, while only relay
calls, media-node heartbeats and queued tasks wait for them (the region retries both
by itself)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pika
import pika.exceptions

from konsil.media_nodes.relays import RegionRelays
from konsil.media_nodes.secret_keeper import SecretKeeper
from konsil.platform.core import broker
from konsil.platform.core.readiness import (
    CHECK_TIMEOUT_SECONDS,
    Check,
    Probe,
    check_database,
    failing,
    not_configured,
    ok,
)
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import RegionSettings

REQUIRED = frozenset({"database", "vault"})


async def check_vault(region: RegionSettings, seconds: float = CHECK_TIMEOUT_SECONDS) -> Check:
    """Vault's own view of itself (``sys/health``, no login needed): reachable, initialised,
    sealed. A standby node answers for the active one, so it counts as ready."""
    vault = region.vault
    if vault.backend != "vault":
        return Check("not_configured", "keys are kept in a local keyring (no Vault)", sealed=None)
    try:
        async with httpx.AsyncClient(timeout=seconds) as client:
            answer = await client.get(
                f"{vault.url.rstrip('/')}/v1/sys/health",
                params={"standbyok": "true", "perfstandbyok": "true"},
            )
    except httpx.HTTPError as exc:
        return Check("failing", f"Vault does not answer ({type(exc).__name__})", sealed=None)
    try:
        health = answer.json()
    except ValueError:
        health = None
    if not isinstance(health, dict):
        return Check("failing", f"Vault's health answer ({answer.status_code}) is not Vault's", sealed=None)
    sealed = health.get("sealed")
    sealed = sealed if isinstance(sealed, bool) else None
    if health.get("initialized") is False:
        return Check("failing", "Vault is not initialised", sealed=sealed)
    if sealed:
        return Check("failing", "Vault is sealed", sealed=True)
    if answer.status_code >= 400:
        return Check("failing", f"Vault answers its health check with {answer.status_code}", sealed=sealed)
    return Check("ok", "Vault answers and is unsealed", sealed=False)


def _connect_once(url: str, timeout: float) -> None:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.retry_delay = 0
    params.socket_timeout = timeout
    params.stack_timeout = timeout
    params.blocked_connection_timeout = timeout
    pika.BlockingConnection(params).close()


async def check_broker(region: RegionSettings, seconds: float = CHECK_TIMEOUT_SECONDS) -> Check:
    """One AMQP connection opened and closed: the broker answers, the user may log in
    and the region's vhost exists."""
    if not region.broker_url:
        return not_configured("no RabbitMQ is configured for this region")
    broker.quiet_pika()
    try:
        await asyncio.to_thread(_connect_once, region.broker_url, seconds)
    except (pika.exceptions.AMQPError, OSError) as exc:
        # /readyz is public: what fails, never where the broker is (check-config and the logs say).
        return failing(broker.describe(exc, region.broker_url, public=True))
    return ok("RabbitMQ answers")


def check_turn_secret(relays: RegionRelays, keeper: SecretKeeper | None) -> Check:
    if relays.registry is None:
        region = relays.region
        if not any(url.startswith(("turn:", "turns:")) for url in region.ice_servers):
            return not_configured("this region hands out no relays")
        # Configured turn: servers take credentials made with the settings' secret only.
        if not region.turn_secret:
            return failing(f"the region's turn: servers have no TURN secret (regions.{region.id}.turn_secret)")
        return ok("the relays' TURN secret is configured")
    if relays.turn_secret:
        return ok("the relays' TURN secret is read")
    if keeper is None:
        return failing("the relays have no TURN secret configured (turn_secret or [regions.vault] turn_secret_path)")
    return failing(f"the relays' TURN secret is not read yet: {keeper.failure}")


def region_probe(ctx: RegionContext, relays: RegionRelays, keeper: SecretKeeper | None) -> Probe:
    region = ctx.region

    async def turn_secret() -> Check:
        return check_turn_secret(relays, keeper)

    checks: dict[str, Any] = {
        "database": lambda: check_database(ctx.engine),
        "vault": lambda: check_vault(region),
        "broker": lambda: check_broker(region),
        "turn_secret": turn_secret,
    }
    return Probe(checks, REQUIRED)
