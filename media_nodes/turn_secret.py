"""The region relays' TURN shared secret: from the region's settings, or from its own
Vault (KV v2) so that neither the region service's nor the media nodes'
configuration files hold it."""

from __future__ import annotations

from konsil.platform.core.keys.build import build_key_provider
from konsil.platform.core.keys.provider import KeyProvider
from konsil.platform.core.keys.vault import VaultTransitProvider
from konsil.platform.core.settings import ConfigError, RegionSettings, Settings


async def read_turn_secret(settings: Settings, region: RegionSettings, provider: KeyProvider | None = None) -> str:
    """The secret, or "" when the region configures none (then no relays are handed out).

    Raises KeyUnavailable when Vault does not answer or has no such secret."""
    if region.turn_secret:
        return region.turn_secret
    vault = region.vault
    if vault.backend != "vault" or not vault.turn_secret_path:
        return ""

    own = provider is None
    provider = provider or build_key_provider(settings, region)
    if not isinstance(provider, VaultTransitProvider):
        raise ConfigError(f"regions.{region.id}.vault.turn_secret_path: needs the vault backend")
    try:
        return await provider.read_secret(vault.turn_secret_path, "secret", vault.kv_mount)
    finally:
        if own:
            await provider.close()
