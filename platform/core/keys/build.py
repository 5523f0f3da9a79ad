"""A region's key service and signing key from its settings: OpenBao/Vault Transit
in services mode, the local keyring in the embedded default."""

from __future__ import annotations

from pathlib import Path

from konsil.platform.core.keys.local import KeyringError, LocalKeyring
from konsil.platform.core.keys.login import check_login
from konsil.platform.core.keys.provider import KeyProvider
from konsil.platform.core.keys.region_signing import LocalSigner, RegionKey
from konsil.platform.core.keys.vault import VaultTransitProvider, client_for
from konsil.platform.core.keys.vault_signing import VaultSigner
from konsil.platform.core.settings import ConfigError, RegionSettings, Settings


def _keyring_path(settings: Settings, region: RegionSettings) -> str:
    return region.vault.keyring_path or str(Path(settings.data_dir) / f"keyring-{region.id}")


def build_key_provider(settings: Settings, region: RegionSettings) -> KeyProvider:
    vault = region.vault
    where = f"regions.{region.id}.vault"
    if vault.backend == "local":
        try:
            return LocalKeyring(_keyring_path(settings, region))
        except KeyringError as exc:
            raise ConfigError(f"{where}.keyring_path: {exc}") from None
    check_login(vault, where)
    return client_for(vault, vault.mount)


def build_region_signer(settings: Settings, region: RegionSettings, provider: KeyProvider | None = None) -> RegionKey:
    """The region's own signing key, where its tenant keys are: with the vault backend
    (services mode) an Ed25519 Transit key in the region's Vault, sharing ``provider``'s
    login when it is that Vault's client; else the local keyring's ``signing/`` folder."""
    vault = region.vault
    if vault.backend == "vault":
        if isinstance(provider, VaultTransitProvider):
            return VaultSigner(provider, region.id, vault.signing_key)
        check_login(vault, f"regions.{region.id}.vault")
        return VaultSigner(client_for(vault, vault.mount), region.id, vault.signing_key, owns_client=True)
    return LocalSigner(Path(_keyring_path(settings, region)) / "signing", region.id)
