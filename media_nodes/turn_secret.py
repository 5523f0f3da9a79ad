"""The region relays' TURN shared secret: written in the configuration, or kept in the
region's own Vault (KV v2) so that neither the region service's nor the media nodes'
configuration files hold it.

The region service reads it with its key service's Vault client; a media node with a
Vault login of its own (``VaultKv``), which reaches the KV engine only: the node never
builds a tenant-key provider."""

from __future__ import annotations

from konsil.platform.core.config import ConfigError
from konsil.platform.core.keys.login import VaultLogin
from konsil.platform.core.keys.provider import KeyProvider
from konsil.platform.core.keys.vault import VaultTransitProvider, client_for

# The field of the KV v2 entry that holds the secret.
FIELD = "secret"


class VaultKv(VaultLogin, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Where the TURN secret is in a region's Vault (KV v2) and how to log in to read it.
    No Transit mount: what logs in with this reads the secret and nothing else of ours."""

    path: str
    mount: str = "secret"


async def read_from_vault(source: VaultKv) -> str:
    """A media node's read of the secret. Raises KeyUnavailable when Vault does not
    answer or has no such secret."""
    client = client_for(source)
    try:
        return await client.read_secret(source.path, FIELD, source.mount)
    finally:
        await client.close()


async def read_with_key_service(region_id: str, provider: KeyProvider, path: str, mount: str) -> str:
    """The region service's read, through its own key service's Vault. Raises
    KeyUnavailable as ``read_from_vault`` does."""
    if not isinstance(provider, VaultTransitProvider):
        raise ConfigError(f"regions.{region_id}.vault.turn_secret_path: needs the vault backend")
    return await provider.read_secret(path, FIELD, mount)
