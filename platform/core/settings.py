"""Typed configuration: a TOML file plus ``KONSIL_*`` environment overrides.

Regions are configuration. A bad or missing setting stops start-up with one
line that names the key (``ConfigError``).

Environment overrides use ``__`` for nesting; a region is addressed by its id:
``KONSIL_CONTROL__DATABASE=…``, ``KONSIL_REGIONS__EU__DATABASE=…``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

RegionId = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}\Z", description="two-letter region id")]
Url = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+(/[^\s]*)?\Z")]
Dsn = Annotated[str, msgspec.Meta(pattern=r"^(sqlite|postgresql|postgres)://")]
Secret = Annotated[str, msgspec.Meta(min_length=16)]
Listen = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-zA-Z.\-\[\]:]+:[0-9]{1,5}\Z")]


class ConfigError(Exception):
    """One clear line naming the offending key."""


class VaultSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where a region's per-tenant keys live: its own Vault/OpenBao (Transit engine),
    or for the embedded default a local keyring protected by a master key."""

    backend: Literal["local", "vault"] = "local"
    url: str = ""
    mount: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_/-]+\Z")] = "transit"
    auth: Literal["token", "approle", "kubernetes"] = "token"
    token: str = ""
    role_id: str = ""
    secret_id: str = ""
    kubernetes_role: str = ""
    kubernetes_jwt_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    keyring_path: str = ""
    # The region relays' TURN shared secret in this Vault's KV v2 engine (used when
    # regions.<id>.turn_secret is empty): the region service and its media nodes read it.
    kv_mount: str = "secret"
    turn_secret_path: str = ""
    # The in-process data-key cache.
    cache_max_age_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 300.0
    cache_max_uses: Annotated[int, msgspec.Meta(ge=1, le=2**32)] = 1_000_000


class LifecycleSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A region's data-lifecycle tasks (retention purges): who runs them and how often.
    ``runner = "auto"`` means Celery on the region's broker in services mode when
    ``broker_url`` is set, else in-process inside the region service."""

    runner: Literal["auto", "in-process", "celery"] = "auto"
    purge_every_seconds: Annotated[int, msgspec.Meta(ge=1, le=7 * 86_400)] = 86_400
    purge_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 5000
    # Closed data-subject requests (with the identifier the person gave, sealed) are kept
    # this long after closing, as the controller's proof of answering, then deleted:
    # 3 years, the regular limitation period for claims (BGB §195). Open ones stay.
    dsr_keep_days: Annotated[int, msgspec.Meta(ge=28, le=3650)] = 1095


class RegionLimits(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Rate limits of a region's cheap routes (429 with Retry-After; each replica counts
    its own callers). Only failed logins count, so staff behind one address log in freely."""

    login_failures_per_account_15_minutes: Annotated[int, msgspec.Meta(ge=1)] = 10
    login_failures_per_address_minute: Annotated[int, msgspec.Meta(ge=1)] = 30
    joins_per_address_minute: Annotated[int, msgspec.Meta(ge=1)] = 20
    joins_per_room_minute: Annotated[int, msgspec.Meta(ge=1)] = 60
    invitations_per_organisation_minute: Annotated[int, msgspec.Meta(ge=1)] = 60


class RegionSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: RegionId
    jurisdiction: Annotated[str, msgspec.Meta(min_length=2, max_length=120)]
    public_url: Url
    listen: Listen
    database: Dsn
    internal_secret: Secret
    internal_url: str = ""
    broker_url: str = ""
    vault: VaultSettings = VaultSettings()
    ice_servers: list[str] = []
    # Shared secret of the region's TURN relays (coturn use-auth-secret): calls get
    # short-lived credentials bound to the call instead of a static password.
    turn_secret: str = ""
    turn_credential_seconds: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 3600
    # Key of the media nodes' heartbeat signatures (HMAC), shared by the region's nodes
    # and its registry only.
    media_node_key: str = ""
    # SHA-256 (hex) of the bearer tokens of the region's ops team (media-node ops API).
    # Only hashes are configured; the tokens themselves stay with the ops team.
    ops_token_hashes: list[Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}\Z")]] = []
    # Retention purges (compliance/retention): Celery workers and beat of this region, or in-process.
    lifecycle: LifecycleSettings = LifecycleSettings()
    limits: RegionLimits = RegionLimits()

    @property
    def base_url(self) -> str:
        """Where the control plane reaches this region (internal URL, else public)."""
        return (self.internal_url or self.public_url).rstrip("/")

    @property
    def host_header(self) -> bytes:
        return self.base_url.split("://", 1)[1].split("/", 1)[0].encode("idna")


class ControlSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    database: Dsn
    listen: Listen
    public_url: Url
    internal_url: str = ""
    # Rate limits of the cheap public routes (429 with Retry-After): signups per source
    # address and hour; login discoveries per source address and per e-mail address a minute.
    signups_per_address_hour: Annotated[int, msgspec.Meta(ge=1)] = 10
    discoveries_per_address_minute: Annotated[int, msgspec.Meta(ge=1)] = 30
    discoveries_per_email_minute: Annotated[int, msgspec.Meta(ge=1)] = 10

    @property
    def base_url(self) -> str:
        return (self.internal_url or self.public_url).rstrip("/")


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    mode: Literal["embedded", "services"] = "embedded"
    data_dir: str = ".konsil"
    session_idle_minutes: Annotated[int, msgspec.Meta(ge=1, le=24 * 60)] = 30
    signature_window_seconds: Annotated[int, msgspec.Meta(ge=5, le=600)] = 60
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024
    # Slow clients (platform/core/http_server.py): a request head must be complete this soon
    # after its first byte and this small; a request body this soon after the head.
    header_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1024 * 1024)] = 32 * 1024
    body_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    # Key of the keyed hash of normalised e-mail addresses (login discovery). The
    # control plane and the regions share it; regions send only the hash.
    discovery_key: Secret | None = None
    # Where a region service reaches the control plane (set for region processes).
    control_url: str = ""
    control: ControlSettings | None = None
    regions: list[RegionSettings] = []

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for index, region in enumerate(self.regions):
            if region.id in seen:
                raise msgspec.ValidationError(f"duplicate region id {region.id!r} - at `$.regions[{index}].id`")
            seen.add(region.id)

    def region(self, region_id: str) -> RegionSettings:
        for region in self.regions:
            if region.id == region_id:
                return region
        raise ConfigError(f"regions: no region with id {region_id!r} is configured")

    def require_control(self) -> ControlSettings:
        if self.control is None:
            raise ConfigError("control: missing section [control]")
        return self.control

    def require_discovery_key(self) -> str:
        if not self.discovery_key:
            raise ConfigError("discovery_key: missing (at least 16 characters)")
        return self.discovery_key

    def for_region(self, region_id: str) -> Settings:
        """What one region process is given: its own region only, no control DB."""
        control_url = self.control_url or (self.control.base_url if self.control else "")
        return msgspec.structs.replace(self, control=None, control_url=control_url, regions=[self.region(region_id)])

    def for_control(self) -> Settings:
        """What the control process is given: no region database credentials."""
        regions = [msgspec.structs.replace(r, database="sqlite:///unused", vault=VaultSettings()) for r in self.regions]
        return msgspec.structs.replace(self, regions=regions)


_PATH_RE = re.compile(r"at `\$((?:\.[A-Za-z_]+|\[\d+\])*)`")


def _describe(error: msgspec.ValidationError, raw: Mapping[str, Any]) -> str:
    text = str(error)
    match = _PATH_RE.search(text)
    message = _PATH_RE.sub("", text).rstrip(" -")
    if not match:
        return f"configuration: {message}"
    key = match.group(1).lstrip(".")
    # Missing and unknown fields name the key in the message; put it in the path.
    field = re.match(r"Object (?:missing required|contains unknown) field `([^`]+)`", message)
    if field:
        key = f"{key}.{field.group(1)}" if key else field.group(1)
    # Name regions by id rather than list index, as operators write them.
    regions = raw.get("regions") or []

    def region_name(m: re.Match[str]) -> str:
        index = int(m.group(1))
        if index < len(regions) and isinstance(regions[index], Mapping) and "id" in regions[index]:
            return f"regions.{regions[index]['id']}"
        return f"regions[{index}]"

    key = re.sub(r"^regions\[(\d+)\]", region_name, key)
    return f"{key}: {message}"


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith("KONSIL_") or name in {"KONSIL_CONFIG"}:
            continue
        parts = [p.lower() for p in name[len("KONSIL_") :].split("__")]
        if parts[0] == "regions":
            if len(parts) < 3:
                raise ConfigError(f"{name}: use KONSIL_REGIONS__<ID>__<KEY>")
            regions = raw.setdefault("regions", [])
            target = next((r for r in regions if r.get("id") == parts[1]), None)
            if target is None:
                target = {"id": parts[1]}
                regions.append(target)
            node: dict[str, Any] = target
            keys = parts[2:]
        else:
            node = raw
            keys = parts
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {key} is not a section")
        node[keys[-1]] = value


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings; raise ConfigError with one line naming the key on any problem."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("KONSIL_CONFIG")
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    _apply_env(raw, environ)
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc, raw)) from None


def dump_settings(settings: Settings) -> str:
    """TOML text for a settings object (what the launcher hands each process)."""
    import tomli_w

    def drop_none(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop_none(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [drop_none(v) for v in value]
        return value

    return tomli_w.dumps(drop_none(msgspec.to_builtins(settings)))
