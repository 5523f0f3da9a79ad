"""How a process of a region logs in to the region's Vault/OpenBao: the login keys of
``[regions.vault]``, shared by the key service's settings (``core.settings``), the media
node's (``media_nodes.agent_settings``) and the TURN secret's KV location."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from konsil.platform.core.config import ConfigError

AuthMethod = Literal["token", "approle", "kubernetes"]


class VaultLogin(msgspec.Struct, frozen=True):
    url: str = ""
    auth: AuthMethod = "token"
    token: str = ""
    role_id: str = ""
    secret_id: str = ""
    kubernetes_role: str = ""
    kubernetes_jwt_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0


def check_login(login: VaultLogin, where: str) -> None:
    """ConfigError naming the key when the login cannot work (``where``: its table)."""
    if not login.url:
        raise ConfigError(f"{where}.url: required for the vault backend")
    if login.auth == "token" and not login.token:
        raise ConfigError(f"{where}.token: required for token authentication")
    if login.auth == "approle" and not (login.role_id and login.secret_id):
        raise ConfigError(f"{where}.role_id: AppRole authentication needs role_id and secret_id")
    if login.auth == "kubernetes" and not login.kubernetes_role:
        raise ConfigError(f"{where}.kubernetes_role: required for Kubernetes authentication")
