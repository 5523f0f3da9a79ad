"""Typed configuration: a TOML file plus ``KONSIL_*`` environment overrides
(``platform.core.config``).

Regions are configuration. A bad or missing setting stops start-up with one
line that names the key (``ConfigError``). Each process holds only its slice:
a region process ``Settings.for_region`` (its own region, no control database),
the control plane ``ControlPlaneSettings`` (each region's ``RegionEndpoint``: no
region database, no Vault), a media node its own ``AgentSettings``
(``media_nodes/agent_settings.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from konsil.platform.core.config import ConfigError as ConfigError
from konsil.platform.core.config import convert, read_config
from konsil.platform.core.keys.login import VaultLogin
from konsil.platform.core.sms import is_e164
from konsil.platform.core.telemetry.config import TelemetrySettings

RegionId = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}\Z", description="two-letter region id")]
Jurisdiction = Annotated[str, msgspec.Meta(min_length=2, max_length=120)]
Url = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+(/[^\s]*)?\Z")]
Dsn = Annotated[str, msgspec.Meta(pattern=r"^(sqlite|postgresql|postgres)://")]
Secret = Annotated[str, msgspec.Meta(min_length=16)]
Listen = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-zA-Z.\-\[\]:]+:[0-9]{1,5}\Z")]


class VaultSettings(VaultLogin, forbid_unknown_fields=True, frozen=True):
    """Where a region's per-tenant keys live: its own Vault/OpenBao (Transit engine; the
    login keys are ``VaultLogin``'s), or for the embedded default a local keyring
    protected by a master key."""

    backend: Literal["local", "vault"] = "local"
    mount: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_/-]+\Z")] = "transit"
    keyring_path: str = ""
    # The region's own Ed25519 signing key in this Vault's Transit engine (vault backend);
    # "" is konsil-region-signing-<region id> (platform/core/keys/vault_signing.py).
    signing_key: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]*\Z", max_length=100)] = ""
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


class SmtpSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How a region sends its e-mail (member invitations, password resets): its own SMTP
    server, like its other providers. Without a ``host`` the embedded default writes
    each mail to a local outbox folder instead (``outbox``, default
    ``<data_dir>/outbox-<region>``), so a trial needs no mail server; in services mode
    nothing can be mailed and the pages say so (platform/core/mail.py).

    The password is a secret like the others: written here (or in
    ``KONSIL_REGIONS__<ID>__SMTP__PASSWORD``), or kept in the region's Vault (KV v2 at
    ``vault.kv_mount``, field ``password``) at ``password_path``."""

    host: str = ""
    port: Annotated[int, msgspec.Meta(ge=1, le=65_535)] = 587
    # starttls: plain connection upgraded with STARTTLS (port 587); tls: TLS from the
    # first byte (port 465); none: no encryption, only for a relay on the same host or
    # network, and never with a login.
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: str = ""
    password_path: str = ""
    # The sender, e.g. "Konsil <no-reply@eu.konsil.example>"; required with a host.
    from_address: str = ""
    # A CA bundle to trust besides the system's (a private relay's certificate).
    ca_file: str = ""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    outbox: str = ""

    def __post_init__(self) -> None:
        # msgspec reports a ValueError here as a validation error of this table.
        if self.host and not self.from_address:
            raise ValueError("from_address is required when host is set")
        if self.security == "none" and (self.username or self.password or self.password_path):
            raise ValueError("a login (username, password) needs security = starttls or tls")
        if self.password and self.password_path:
            raise ValueError("give either password or password_path, not both")


_SMS_ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}\Z")
_SMS_SHORT_CODE = re.compile(r"^[0-9]{3,8}\Z")


class SmsSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How a region texts its members (arrival alerts): its own SMS provider, Sinch's REST
    API in the EU (``provider = "sinch"``), Twilio's in the US (``"twilio"``), or none
    (``"none"``, the default: no texts are sent). ``base_url`` is the provider's API
    (empty: Sinch's EU endpoint, Twilio's API host).

    The provider's credential is a secret like the others: written here (``api_token``
    for Sinch, ``auth_token`` for Twilio, or their ``KONSIL_REGIONS__<ID>__SMS__...``
    overrides), or kept in the region's Vault (KV v2 at ``vault.kv_mount``, field
    ``token``) at ``token_path``."""

    provider: Literal["none", "sinch", "twilio"] = "none"
    base_url: Annotated[str, msgspec.Meta(pattern=r"^(https?://[^\s/]+/?)?\Z")] = ""
    # The sender shown on the phone: an E.164 number, a short code, or an alphanumeric
    # sender id of up to 11 characters where the destination country allows one.
    sender: str = ""
    # Sinch: the service plan the messages are sent under.
    service_plan_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9]*\Z", max_length=64)] = ""
    # Twilio: the account, and optionally a messaging service that picks the sender.
    account_sid: Annotated[str, msgspec.Meta(pattern=r"^(AC[0-9a-fA-F]{32})?\Z")] = ""
    messaging_service_sid: Annotated[str, msgspec.Meta(pattern=r"^(MG[0-9a-fA-F]{32})?\Z")] = ""
    api_token: str = ""
    auth_token: str = ""
    token_path: str = ""

    def __post_init__(self) -> None:
        # msgspec reports a ValueError here as a validation error of this table.
        if self.sender and not (
            is_e164(self.sender) or _SMS_SHORT_CODE.match(self.sender) or _SMS_ALPHANUMERIC_SENDER.match(self.sender)
        ):
            raise ValueError(
                "sender must be an E.164 number (e.g. +4712345678), a short code or up to 11 letters and digits"
            )
        if self.provider == "none":
            if self.api_token or self.auth_token or self.token_path:
                raise ValueError('a credential is set but provider = "none"')
            return
        if self.provider == "sinch":
            if not self.service_plan_id:
                raise ValueError("provider sinch needs service_plan_id")
            if not self.sender:
                raise ValueError("provider sinch needs sender")
            if self.auth_token or self.account_sid or self.messaging_service_sid:
                raise ValueError("auth_token, account_sid and messaging_service_sid are twilio settings")
            inline = self.api_token
        else:
            if not self.account_sid:
                raise ValueError("provider twilio needs account_sid")
            if not self.sender and not self.messaging_service_sid:
                raise ValueError("provider twilio needs sender or messaging_service_sid")
            if self.api_token or self.service_plan_id:
                raise ValueError("api_token and service_plan_id are sinch settings")
            inline = self.auth_token
        if inline and self.token_path:
            raise ValueError("give either the token or token_path, not both")
        if not inline and not self.token_path:
            token = "api_token" if self.provider == "sinch" else "auth_token"
            raise ValueError(f"provider {self.provider} needs {token} or token_path")


_LOOPBACK_HTTP = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?(/|\Z)")


class IdentitySettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How a region checks visitors' national eIDs (Norwegian BankID, Danish MitID,
    Swedish BankID) for rooms that ask for it: through Criipto Verify over OpenID Connect
    (``provider = "criipto"``), or not at all (``"none"``, the default: rooms cannot ask).
    ``issuer`` is the Criipto domain (``https://<tenant>.criipto.id``); its discovery
    document names the endpoints and keys. The broker sends visitors back to
    ``<public_url>/identity/callback``, which is registered with the application.

    The client secret is a secret like the others: written here (``client_secret``, or
    ``KONSIL_REGIONS__<ID>__IDENTITY__CLIENT_SECRET``), or kept in the region's Vault
    (KV v2 at ``vault.kv_mount``, field ``client_secret``) at ``client_secret_path``."""

    provider: Literal["none", "criipto"] = "none"
    issuer: str = ""
    client_id: Annotated[str, msgspec.Meta(max_length=200)] = ""
    client_secret: str = ""
    client_secret_path: str = ""
    # How the client secret goes to the token endpoint (Criipto takes both).
    token_auth: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"  # noqa: S105 (a method's name)
    # The whole exchange with the broker (discovery, keys, token), per request.
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 10.0

    def __post_init__(self) -> None:
        # msgspec reports a ValueError here as a validation error of this table.
        if self.provider == "none":
            if self.client_secret or self.client_secret_path:
                raise ValueError('a client secret is set but provider = "none"')
            return
        if not re.match(r"^https://[^\s/]+/?\Z", self.issuer) and not _LOOPBACK_HTTP.match(self.issuer):
            raise ValueError("issuer must be the broker's https:// address, e.g. https://example.criipto.id")
        if not self.client_id:
            raise ValueError("provider criipto needs client_id")
        if self.client_secret and self.client_secret_path:
            raise ValueError("give either client_secret or client_secret_path, not both")
        if not self.client_secret and not self.client_secret_path:
            raise ValueError("provider criipto needs client_secret or client_secret_path")


class PaymentSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How a region takes the card fees rooms ask (tenants/payments): its own Stripe
    account (``provider = "stripe"``; the EU account for the EU region, the US account for
    the US), or none (``"none"``, the default: a room with a fee cannot be joined and its
    page says so).

    ``api_base`` is Stripe's API (empty: api.stripe.com; a localstripe server in tests),
    ``script_url`` where visitors' pages load stripe.js from (empty: js.stripe.com/v3/,
    the one outside host a Konsil page loads). The publishable key is public by design;
    the secret key and the webhook signing secret are secrets like the others: written
    here (or in ``KONSIL_REGIONS__<ID>__PAYMENTS__SECRET_KEY`` / ``__WEBHOOK_SECRET``), or
    kept in the region's Vault (KV v2 at ``vault.kv_mount``) at ``secret_key_path``
    (field ``secret_key``) and ``webhook_secret_path`` (field ``webhook_secret``).
    Test keys (``pk_test_``/``sk_test_``) and live keys (``pk_live_``/``sk_live_``) must
    not be mixed."""

    provider: Literal["none", "stripe"] = "none"
    api_base: Annotated[str, msgspec.Meta(pattern=r"^(https?://[^\s/]+/?)?\Z")] = ""
    script_url: Annotated[str, msgspec.Meta(pattern=r"^(https?://[^\s/]+/[^\s]*)?\Z")] = ""
    publishable_key: Annotated[str, msgspec.Meta(pattern=r"^(pk_(test|live)_[A-Za-z0-9_]+)?\Z")] = ""
    secret_key: str = ""
    secret_key_path: str = ""
    webhook_secret: str = ""
    webhook_secret_path: str = ""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 20.0

    def __post_init__(self) -> None:
        # msgspec reports a ValueError here as a validation error of this table.
        if self.provider == "none":
            if self.secret_key or self.secret_key_path or self.webhook_secret or self.webhook_secret_path:
                raise ValueError('a Stripe secret is set but provider = "none"')
            return
        if not self.publishable_key:
            raise ValueError("provider stripe needs publishable_key (pk_test_... or pk_live_...)")
        for name, inline, path in (
            ("secret_key", self.secret_key, self.secret_key_path),
            ("webhook_secret", self.webhook_secret, self.webhook_secret_path),
        ):
            if inline and path:
                raise ValueError(f"give either {name} or {name}_path, not both")
            if not inline and not path:
                raise ValueError(f"provider stripe needs {name} or {name}_path")
        if self.secret_key and not self.secret_key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
            raise ValueError("secret_key must be a Stripe secret key (sk_test_... or sk_live_...)")
        if self.webhook_secret and not self.webhook_secret.startswith("whsec_"):
            raise ValueError("webhook_secret must be a Stripe webhook signing secret (whsec_...)")
        live = self.publishable_key.startswith("pk_live_")
        if self.secret_key and self.secret_key.startswith(("sk_live_", "rk_live_")) != live:
            raise ValueError("publishable_key and secret_key must both be test keys or both live keys")


class RegionLimits(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Rate limits of a region's cheap routes (429 with Retry-After; each replica counts
    its own callers). Only failed logins count, so staff behind one address log in freely."""

    login_failures_per_account_15_minutes: Annotated[int, msgspec.Meta(ge=1)] = 10
    login_failures_per_address_minute: Annotated[int, msgspec.Meta(ge=1)] = 30
    joins_per_address_minute: Annotated[int, msgspec.Meta(ge=1)] = 20
    joins_per_room_minute: Annotated[int, msgspec.Meta(ge=1)] = 60
    invitations_per_organisation_minute: Annotated[int, msgspec.Meta(ge=1)] = 60
    # Password-reset mails asked for one e-mail address (silently not sent beyond, so the
    # answer never tells whether the address exists), and asks from one source address.
    password_resets_per_email_hour: Annotated[int, msgspec.Meta(ge=1)] = 5
    password_resets_per_address_minute: Annotated[int, msgspec.Meta(ge=1)] = 10


class RegionSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Everything of one region, as its own processes (region service, worker, beat,
    commands) hold it. The control plane holds only its ``endpoint()``."""

    id: RegionId
    jurisdiction: Jurisdiction
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
    # E-mail: invitations and password resets.
    smtp: SmtpSettings = SmtpSettings()
    # Text messages: arrival alerts to members.
    sms: SmsSettings = SmsSettings()
    # National eID checks of visitors (rooms with an identity check).
    identity: IdentitySettings = IdentitySettings()
    # Card fees at check-in: the region's own Stripe account.
    payments: PaymentSettings = PaymentSettings()

    def endpoint(self) -> RegionEndpoint:
        return RegionEndpoint(
            id=self.id,
            jurisdiction=self.jurisdiction,
            public_url=self.public_url,
            internal_secret=self.internal_secret,
            internal_url=self.internal_url,
        )


class RegionEndpoint(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What the control plane knows of a region: what signup shows, where people and
    forwarded calls go, and the secret that signs the calls both ways. In the file it
    is the same ``[[regions]]`` table; the control plane reads these keys of it only."""

    id: RegionId
    jurisdiction: Jurisdiction
    public_url: Url
    internal_secret: Secret
    internal_url: str = ""

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


class ServiceSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The top-level keys both kinds of web service (control plane, region service) read."""

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
    # Traces, metrics and log format for the ops team's tools ([telemetry]); off by default.
    telemetry: TelemetrySettings = TelemetrySettings()

    def require_discovery_key(self) -> str:
        if not self.discovery_key:
            raise ConfigError("discovery_key: missing (at least 16 characters)")
        return self.discovery_key


R = TypeVar("R", RegionSettings, RegionEndpoint)


def _unique_ids(regions: Sequence[RegionSettings | RegionEndpoint]) -> None:
    seen: set[str] = set()
    for index, region in enumerate(regions):
        if region.id in seen:
            raise msgspec.ValidationError(f"duplicate region id {region.id!r} - at `$.regions[{index}].id`")
        seen.add(region.id)


def _find(regions: Sequence[R], region_id: str) -> R:
    for region in regions:
        if region.id == region_id:
            return region
    raise ConfigError(f"regions: no region with id {region_id!r} is configured")


class Settings(ServiceSettings, forbid_unknown_fields=True, frozen=True):
    """The whole configuration, as an operator writes it; a region process holds
    ``for_region`` of it, the control plane ``for_control``."""

    mode: Literal["embedded", "services"] = "embedded"
    data_dir: str = ".konsil"
    session_idle_minutes: Annotated[int, msgspec.Meta(ge=1, le=24 * 60)] = 30
    # Where a region service reaches the control plane (set for region processes).
    control_url: str = ""
    control: ControlSettings | None = None
    regions: list[RegionSettings] = []

    def __post_init__(self) -> None:
        _unique_ids(self.regions)

    def region(self, region_id: str) -> RegionSettings:
        return _find(self.regions, region_id)

    def require_control(self) -> ControlSettings:
        if self.control is None:
            raise ConfigError("control: missing section [control]")
        return self.control

    def for_region(self, region_id: str) -> Settings:
        """What one region process is given: its own region only, no control DB."""
        control_url = self.control_url or (self.control.base_url if self.control else "")
        return msgspec.structs.replace(self, control=None, control_url=control_url, regions=[self.region(region_id)])

    def for_control(self) -> ControlPlaneSettings:
        """What the control process is given: its own section and each region's endpoint."""
        common = {name: getattr(self, name) for name in ServiceSettings.__struct_fields__}
        return ControlPlaneSettings(
            **common, control=self.require_control(), regions=[r.endpoint() for r in self.regions]
        )


class ControlPlaneSettings(ServiceSettings, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """What the control plane holds: its own section and, per region, the endpoint.
    It has no place for a region's database, Vault or TURN credentials."""

    control: ControlSettings
    regions: list[RegionEndpoint] = []

    def __post_init__(self) -> None:
        _unique_ids(self.regions)

    def region(self, region_id: str) -> RegionEndpoint:
        return _find(self.regions, region_id)


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load the whole configuration; raise ConfigError with one line naming the key on any problem."""
    return convert(read_config(path, environ), Settings)


# The keys of an operator's file that belong to region processes only: the control
# plane's reader passes over them (unknown keys still fail, naming the key).
_REGION_ONLY = frozenset(RegionSettings.__struct_fields__) - frozenset(RegionEndpoint.__struct_fields__)
_TOP_LEVEL_ONLY = frozenset(Settings.__struct_fields__) - frozenset(ControlPlaneSettings.__struct_fields__)


def load_control_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> ControlPlaneSettings:
    """The control plane's part of a configuration file: the same file an operator writes
    for every process (or one holding the control plane's part only). A region's
    database, Vault, relays and limits are not even read."""
    raw = read_config(path, environ)
    if not isinstance(raw.get("control"), Mapping):
        raise ConfigError("control: missing section [control]")
    part = {key: value for key, value in raw.items() if key not in _TOP_LEVEL_ONLY}
    regions = raw.get("regions")
    if isinstance(regions, list):
        part["regions"] = [
            {k: v for k, v in region.items() if k not in _REGION_ONLY} if isinstance(region, Mapping) else region
            for region in regions
        ]
    return convert(part, ControlPlaneSettings)


def dump_settings(settings: ServiceSettings) -> str:
    """TOML text for a settings object (what the launcher hands each process), in the
    format the process reads back."""
    import tomli_w

    def drop_none(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop_none(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [drop_none(v) for v in value]
        return value

    return tomli_w.dumps(drop_none(msgspec.to_builtins(settings)))
