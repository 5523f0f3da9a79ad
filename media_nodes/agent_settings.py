"""What a media node's agent holds of its region's configuration: the region id, the
broker its heartbeats go to, the key that signs them and the TURN secret (or where in
the region's Vault KV to read it). Nothing else: no database DSN, no Transit mount or
keyring, no internal secret, no other region.

It reads the same file as the region's other processes (``[[regions]]`` with the
node's ``--region`` id, and the ``KONSIL_REGIONS__<ID>__…`` overrides) but takes only
these keys of it and checks only these, each error naming its key. An operator who
keeps the TURN secret in Vault gives the node its own file whose ``[regions.vault]``
login may read that one KV path and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from konsil.media_nodes.turn_secret import VaultKv
from konsil.platform.core.config import ConfigError, convert, read_config
from konsil.platform.core.keys.login import VaultLogin, check_login
from konsil.platform.core.telemetry.config import TelemetrySettings

NEEDED = "needed to run a media node"


class AgentSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    region_id: str
    broker_url: str
    media_node_key: str
    # The TURN secret as written in the configuration, or else where to read it.
    turn_secret: str = ""
    turn_secret_in_vault: VaultKv | None = None
    # The same [telemetry] table as the other processes (service.name konsil-media-node).
    telemetry: TelemetrySettings = TelemetrySettings()


class _Vault(VaultLogin, frozen=True):
    """The keys of ``[regions.vault]`` a node reads: the login and where the TURN secret
    is (others, such as the Transit mount or the keyring, are passed over)."""

    backend: Literal["local", "vault"] = "local"
    kv_mount: str = "secret"
    turn_secret_path: str = ""


class _Region(msgspec.Struct, frozen=True):
    """The keys of a ``[[regions]]`` table a node reads."""

    broker_url: str = ""
    media_node_key: str = ""
    turn_secret: str = ""
    vault: _Vault = _Vault()


def _vault_kv(vault: _Vault, where: str) -> VaultKv:
    check_login(vault, where)
    login = msgspec.structs.asdict(vault)
    for own in ("backend", "kv_mount", "turn_secret_path"):
        del login[own]
    return VaultKv(**login, path=vault.turn_secret_path, mount=vault.kv_mount)


def agent_settings(raw: Mapping[str, Any], region_id: str) -> AgentSettings:
    """The agent's settings from a configuration read by ``read_config``."""
    regions = raw.get("regions") or []
    if not isinstance(regions, list):
        raise ConfigError("regions: expected [[regions]] tables")
    entry = next((r for r in regions if isinstance(r, Mapping) and r.get("id") == region_id), None)
    if entry is None:
        raise ConfigError(f"regions: no region with id {region_id!r} is configured")
    where = f"regions.{region_id}"
    region = convert(entry, _Region, where)
    for name in ("broker_url", "media_node_key"):
        if not getattr(region, name):
            raise ConfigError(f"{where}.{name}: missing ({NEEDED})")
    in_vault = None
    if not region.turn_secret:
        if region.vault.backend != "vault" or not region.vault.turn_secret_path:
            raise ConfigError(f"{where}.turn_secret: missing (or vault.turn_secret_path), {NEEDED}")
        in_vault = _vault_kv(region.vault, f"{where}.vault")
    telemetry = convert(raw.get("telemetry") or {}, TelemetrySettings, "telemetry")
    return AgentSettings(region_id, region.broker_url, region.media_node_key, region.turn_secret, in_vault, telemetry)


def load_agent_settings(
    path: str | Path | None, region_id: str, environ: Mapping[str, str] | None = None
) -> AgentSettings:
    """The agent's settings from a configuration file (default ``$KONSIL_CONFIG``) and the
    environment; ConfigError with one line naming the key on any problem."""
    return agent_settings(read_config(path, environ), region_id)
