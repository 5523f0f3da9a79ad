"""A region's key service from its settings: OpenBao/Vault Transit in services mode,
the local keyring in the embedded default."""

from __future__ import annotations

from pathlib import Path

from konsil.platform.core.keys.local import KeyringError, LocalKeyring
from konsil.platform.core.keys.provider import KeyProvider
from konsil.platform.core.keys.vault import VaultTransitProvider
from konsil.platform.core.settings import ConfigError, RegionSettings, Settings


def build_key_provider(settings: Settings, region: RegionSettings) -> KeyProvider:
    vault = region.vault
    where = f"regions.{region.id}.vault"
    if vault.backend == "local":
        path = vault.keyring_path or str(Path(settings.data_dir) / f"keyring-{region.id}")
        try:
            return LocalKeyring(path)
        except KeyringError as exc:
            raise ConfigError(f"{where}.keyring_path: {exc}") from None
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
