"""A region's own resources, built from its settings only: the database engine and
the key provider with its data-key cache. Used by the region service and the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from konsil.platform.settings import ConfigError, RegionSettings, Settings
from konsil.regions.context import RegionContext
from konsil.tenants.keys.provider import KeyProvider
from konsil.tenants.keys.service import TenantKeys


def build_key_provider(settings: Settings, region: RegionSettings) -> KeyProvider:
    vault = region.vault
    where = f"regions.{region.id}.vault"
    if vault.backend == "local":
        from konsil.tenants.keys.local import KeyringError, LocalKeyring

        path = vault.keyring_path or str(Path(settings.data_dir) / f"keyring-{region.id}")
        try:
            return LocalKeyring(path)
        except KeyringError as exc:
            raise ConfigError(f"{where}.keyring_path: {exc}") from None
    from konsil.tenants.keys.vault import VaultTransitProvider

    if not vault.url:
        raise ConfigError(f"{where}.url: required for the vault backend")
    if vault.auth == "token" and not vault.token:
        raise ConfigError(f"{where}.token: required for token authentication")
    if vault.auth == "approle" and not (vault.role_id and vault.secret_id):
        raise ConfigError(f"{where}.role_id: AppRole authentication needs role_id and secret_id")
    if vault.auth == "kubernetes" and not vault.kubernetes_role:
        raise ConfigError(f"{where}.kubernetes_role: required for Kubernetes authentication")
    return VaultTransitProvider(
        vault.url,
        mount=vault.mount,
        auth=vault.auth,
        token=vault.token,
        role_id=vault.role_id,
        secret_id=vault.secret_id,
        kubernetes_role=vault.kubernetes_role,
        kubernetes_jwt_path=vault.kubernetes_jwt_path,
        timeout=vault.timeout_seconds,
    )


def build_tenant_keys(settings: Settings, region: RegionSettings) -> TenantKeys:
    return TenantKeys(
        build_key_provider(settings, region),
        max_age_seconds=region.vault.cache_max_age_seconds,
        max_uses=region.vault.cache_max_uses,
    )


@asynccontextmanager
async def open_region(settings: Settings, region: RegionSettings) -> AsyncIterator[RegionContext]:
    """A region's context outside the web service (the ``konsil`` commands)."""
    from konsil.platform import database
    from konsil.platform.signing import Verifier
    from konsil.regions.context import ControlLink
    from konsil.regions.tables import REGION_TABLES

    engine = database.engine_for(region.database)
    database.bind(REGION_TABLES, engine)
    await database.start(engine)
    ctx = RegionContext(
        settings=settings,
        region=region,
        engine=engine,
        keys=build_tenant_keys(settings, region),
        verifier=Verifier({}, settings.signature_window_seconds),
        control=ControlLink(
            settings.control_url or (settings.control.base_url if settings.control else ""),
            region.id,
            region.internal_secret,
        ),
        discovery_key=settings.require_discovery_key(),
        service_name="cli",
    )
    try:
        yield ctx
    finally:
        await ctx.control.close()
        await ctx.keys.provider.close()
        await database.stop(engine)
