"""The one function that builds a region's container (``platform.core.region``):
used by the region service, the Celery worker, the ``konsil`` commands and the
benchmarks, so each process of a region is built from its own region's settings and
services only, the same way."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from konsil.compliance.access_log.chained import ChainedAccessLog
from konsil.compliance.access_log.seal import HeadSealer, current_sealer, use_sealer
from konsil.compliance.subprocessors.register import Register, RegisterError, integration_entry, load_register
from konsil.media_nodes.registry import NodeRegistry
from konsil.media_nodes.relays import RegionRelays
from konsil.platform.core import database
from konsil.platform.core.channels import RegionChannels
from konsil.platform.core.identity import IdentityBroker
from konsil.platform.core.keys.build import build_region_signer
from konsil.platform.core.keys.provider import KeyProvider
from konsil.platform.core.keys.region_signing import RegionKey
from konsil.platform.core.keys.service import build_tenant_keys
from konsil.platform.core.keys.vault import VaultTransitProvider
from konsil.platform.core.mail import Mailer, build_mailer
from konsil.platform.core.payments import PaymentProvider
from konsil.platform.core.region import ControlLink, NetworkTests, RegionContext
from konsil.platform.core.settings import ConfigError, RegionSettings, Settings
from konsil.platform.core.signing import Verifier
from konsil.platform.core.sms import SmsSender
from konsil.regions.tables import ORGANISATION_OWNED, REGION_TABLES
from konsil.tenants.identity.criipto import build_identity_broker
from konsil.tenants.messaging.providers import build_sms_sender
from konsil.tenants.payments.stripe_provider import build_payments

log = logging.getLogger("konsil.region")

# Optional dependencies: (module, what needs it, the extra that installs it).
OPTIONAL = {"network_tests": ("aiortc", "the pre-call connection test", "network-test")}


def missing(service: str) -> str:
    """Why a region service cannot offer ``service`` (its library is not installed), else ""."""
    module, what, extra = OPTIONAL[service]
    try:
        if importlib.util.find_spec(module) is not None:
            return ""
    except (ImportError, ValueError):  # a broken or blocked install counts as missing
        pass
    return f"{what} is off: {module} is not installed (pip install 'konsil[{extra}]')"


def integrations(region: RegionSettings) -> list[tuple[str, str]]:
    """The third parties a region's settings send personal data to: (setting, provider)."""
    used = [
        ("payments.provider", region.payments.provider),
        ("sms.provider", region.sms.provider),
        ("identity.provider", region.identity.provider),
    ]
    return [(key, provider) for key, provider in used if provider != "none"]


def check_subprocessors(region: RegionSettings, register: Register | None = None) -> None:
    """Every integration a region uses is listed for that region in the subprocessor
    register the compliance reports print (P16): Twilio set up for the EU region, say,
    would send EU data to a processor the register does not list there, so the region
    refuses to start, naming the setting."""
    register = register or load_register()
    for key, provider in integrations(region):
        try:
            integration_entry(register, provider, region.id)
        except RegisterError as exc:
            raise ConfigError(
                f"regions.{region.id}.{key} = {provider!r}: not a subprocessor of region {region.id!r} in the "
                f"register ({exc}); use the region's own provider or add the processor to the register first"
            ) from exc


def build_region(
    settings: Settings,
    region: RegionSettings,
    *,
    service_name: str = "region-service",
    live: RegionChannels | None = None,
    relays: RegionRelays | None = None,
) -> RegionContext:
    """The region's container, not started yet (``start``, ``stop``). The region service
    passes its ``live`` events and ``relays`` (see ``region_relays``)."""
    check_subprocessors(region)
    control_url = settings.control_url or (settings.control.base_url if settings.control else "")
    # Only the region service takes signed calls from the control plane.
    callers = {"control": region.internal_secret} if service_name == "region-service" else {}
    keys = build_tenant_keys(settings, region)
    signer = region_signer(settings, region, keys.provider)
    return RegionContext(
        settings=settings,
        region=region,
        engine=database.engine_for(region.database),
        keys=keys,
        signer=signer,
        verifier=Verifier(callers, settings.signature_window_seconds),
        control=ControlLink(control_url, region.id, region.internal_secret),
        discovery_key=settings.require_discovery_key(),
        access_log=ChainedAccessLog(signer, region.id),
        relays=relays or RegionRelays(region),
        network_tests=NetworkTests(unavailable=missing("network_tests")),
        organisation_tables=tuple(ORGANISATION_OWNED),
        live=live,
        service_name=service_name,
        mail=region_mailer(settings, region, keys.provider),
        identity=region_identity(region, keys.provider),
        sms=region_sms(region, keys.provider),
        payments=region_payments(region, keys.provider),
    )


def vault_secret(
    region: RegionSettings, provider: KeyProvider, key: str, path: str, field: str
) -> Callable[[], Awaitable[str]] | None:
    """A provider's secret kept in the region's Vault (KV v2 at ``vault.kv_mount``, ``path``,
    ``field``), read with the key service's login when first needed; None without a path.
    ``key`` names the setting for the error when the region has no Vault."""
    if not path:
        return None
    if not isinstance(provider, VaultTransitProvider):
        raise ConfigError(f"regions.{region.id}.{key}: needs the vault backend")
    vault, mount = provider, region.vault.kv_mount

    async def read() -> str:
        return await vault.read_secret(path, field, mount)

    return read


def region_mailer(settings: Settings, region: RegionSettings, provider: KeyProvider) -> Mailer:
    """The region's e-mail by its ``smtp`` settings; an SMTP password kept in the region's
    Vault (``smtp.password_path``, field ``password``) is read when first needed."""
    password = vault_secret(region, provider, "smtp.password_path", region.smtp.password_path, "password")
    return build_mailer(settings, region, password)


def region_sms(region: RegionSettings, provider: KeyProvider) -> SmsSender | None:
    """The region's SMS provider by its ``sms`` settings (None without one); a token kept in
    the region's Vault (``sms.token_path``, field ``token``) is read when first needed."""
    token = vault_secret(region, provider, "sms.token_path", region.sms.token_path, "token")
    return build_sms_sender(region.sms, token)


def region_identity(region: RegionSettings, provider: KeyProvider) -> IdentityBroker | None:
    """The region's eID broker by its ``identity`` settings (None without one); a client
    secret kept in the region's Vault (``identity.client_secret_path``, field
    ``client_secret``) is read when first needed."""
    secret = vault_secret(
        region, provider, "identity.client_secret_path", region.identity.client_secret_path, "client_secret"
    )
    return build_identity_broker(region.identity, secret)


def region_payments(region: RegionSettings, provider: KeyProvider) -> PaymentProvider | None:
    """The region's own Stripe account by its ``payments`` settings (None without one); a
    secret key or webhook secret kept in the region's Vault (``payments.secret_key_path``,
    field ``secret_key``; ``payments.webhook_secret_path``, field ``webhook_secret``) is
    read when first needed."""
    payments = region.payments
    secret_key = vault_secret(region, provider, "payments.secret_key_path", payments.secret_key_path, "secret_key")
    webhook_secret = vault_secret(
        region, provider, "payments.webhook_secret_path", payments.webhook_secret_path, "webhook_secret"
    )
    return build_payments(payments, secret_key, webhook_secret)


def region_signer(settings: Settings, region: RegionSettings, provider: KeyProvider | None = None) -> RegionKey:
    """The region's own signing key: an Ed25519 key in the region's Vault (Transit, on
    the tenant keys' login when ``provider`` is that Vault's client) with the vault
    backend of services mode, else the local keyring next to the data-key keyring."""
    return build_region_signer(settings, region, provider)


def region_relays(region: RegionSettings) -> RegionRelays:
    """The region service's relays: its media nodes' registry when the region has a
    broker and a media-node key (heartbeats from this region's relays only)."""
    registry = NodeRegistry(region.id, region.media_node_key) if region.media_node_key and region.broker_url else None
    return RegionRelays(region, registry)


async def start(ctx: RegionContext) -> None:
    database.bind(REGION_TABLES, ctx.engine)
    await database.start(ctx.engine)
    # This process seals the access-log heads it writes (compliance/access_log/seal.py).
    sealer = HeadSealer(ctx.signer, ctx.region.id)
    use_sealer(sealer)
    await sealer.certify()


async def stop(ctx: RegionContext) -> None:
    sealer = current_sealer()
    if sealer is not None and sealer.key.region == ctx.region.id:
        use_sealer(None)
    await ctx.control.close()
    await ctx.keys.provider.close()
    await database.stop(ctx.engine)


@asynccontextmanager
async def open_region(
    settings: Settings, region: RegionSettings, *, service_name: str = "cli"
) -> AsyncIterator[RegionContext]:
    """A started region container outside the web service (commands, worker, benchmarks)."""
    ctx = build_region(settings, region, service_name=service_name)
    await start(ctx)
    try:
        yield ctx
    finally:
        await stop(ctx)
