"""A region's key service from its settings: OpenBao/Vault Transit in services mode,
the local keyring in the embedded default."""

from __future__ import annotations

from pathlib import Path

from konsil.platform.core.keys.local import KeyringError, LocalKeyring
from konsil.platform.core.keys.login import check_login
from konsil.platform.core.keys.provider import KeyProvider
from konsil.platform.core.keys.vault import client_for
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
    check_login(vault, where)
    return client_for(vault, vault.mount)
