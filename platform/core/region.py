"""The region container: what a region's processes are built from, its own region's
settings and services only. ``regions.container.build_region`` builds it, once per
process (region service, worker, CLI, benchmarks); the areas receive it and use its
named services, typed by the interfaces below, never the other areas' internals."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import msgspec
from litestar.connection import ASGIConnection
from piccolo.engine.base import Engine
from piccolo.table import Table

from konsil.platform.core.access import AccessLog
from konsil.platform.core.channels import RegionChannels
from konsil.platform.core.identity import IdentityBroker
from konsil.platform.core.keys.region_signing import RegionSigner
from konsil.platform.core.keys.service import TenantKeys
from konsil.platform.core.limits import TenantLimits
from konsil.platform.core.mail import Mailer, NoMailer
from konsil.platform.core.payments import PaymentProvider
from konsil.platform.core.settings import RegionSettings, Settings
from konsil.platform.core.signing import Verifier, sign
from konsil.platform.core.sms import SmsSender
from konsil.platform.core.telemetry import inject


class IceServer(msgspec.Struct, omit_defaults=True):
    """One entry of a browser's ``iceServers`` list."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class RelayOffer(msgspec.Struct, frozen=True):
    """The ICE servers one call is offered, the media node allocated to it (regions
    with a registry) and, when there is no relay, why in words a person can read."""

    servers: list[IceServer]
    node_id: str | None = None
    unavailable: str | None = None


class RelayUnavailable(Exception):
    """No relay of this region can be handed out right now (never another region's)."""


class Relays(Protocol):
    """The region's TURN relays (``media_nodes.relays.RegionRelays``)."""

    @property
    def registered(self) -> bool:
        """Relays come from the media-node registry (services mode with a broker)."""
        ...

    def for_call(self, call_ref: str) -> RelayOffer:
        """The same relay for every participant of a call on this replica."""
        ...

    def unavailable(self) -> str | None:
        """Why a relay-only call could not connect right now, else None."""
        ...

    def for_test(self, ref: str, node_id: str | None) -> RelayOffer:
        """Relays for one network test (``node_id``: the node the browser's end got).
        Raises RelayUnavailable."""
        ...


@dataclass
class NetworkTests:
    """This region service's network-test probe peers: at most ``limit`` at once, each
    closed by its own deadline, none left behind."""

    limit: int = 4  # probe peers at once per region service process (429 beyond)
    # Why this process cannot run tests at all (an optional dependency is missing), else "".
    unavailable: str = ""
    active: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Tasks(Protocol):
    """Hands a task to whoever runs this region's background tasks (the in-process
    runner of the embedded default, or Celery on the region's own queue); ``run_id``
    becomes the task's id, so a redelivered task continues the same run. The task
    starts no sooner than ``delay_seconds`` from now."""

    def submit(self, task: str, run_id: uuid.UUID | None = None, delay_seconds: float = 0) -> str: ...


class RetryLater(Exception):
    """Raised by a background task that could not finish now (a provider that timed out):
    its runner runs it again, same ``run_id``, after ``seconds``. The task counts its own
    attempts in its own row and stops raising this when it gives up."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {seconds:g} s")
        self.seconds = seconds
        self.reason = reason


@dataclass
class ControlLink:
    """Signed calls from a region to the control plane (login-discovery index)."""

    base_url: str
    region_id: str
    secret: str
    client: httpx.AsyncClient | None = None

    async def post(self, path: str, body: bytes, within: float = 10.0) -> httpx.Response:
        if not self.base_url:
            raise httpx.ConnectError("no control plane configured")
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=10.0)
        headers = inject(sign(self.secret, "POST", path, body, signer=f"region:{self.region_id}"))
        headers["content-type"] = "application/json"
        return await self.client.post(self.base_url + path, content=body, headers=headers, timeout=within)

    async def get(self, path: str, within: float = 10.0) -> httpx.Response:
        if not self.base_url:
            raise httpx.ConnectError("no control plane configured")
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=10.0)
        headers = inject(sign(self.secret, "GET", path, b"", signer=f"region:{self.region_id}"))
        return await self.client.get(self.base_url + path, headers=headers, timeout=within)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


@dataclass
class RegionContext:
    settings: Settings
    region: RegionSettings
    engine: Engine[Any]
    keys: TenantKeys
    # The region's own Ed25519 key: receipts, checkpoints, manifests, certificates.
    signer: RegionSigner
    verifier: Verifier
    control: ControlLink
    discovery_key: str
    access_log: AccessLog
    relays: Relays
    # The tables whose rows go with their organisation when it is removed, from every
    # area (regions/tables.py ORGANISATION_OWNED); payment records stay for their hold.
    organisation_tables: tuple[type[Table], ...]
    # Live events between the sockets of this region's replicas; None outside the web
    # service (CLI, worker), where nobody listens.
    live: RegionChannels | None = None
    network_tests: NetworkTests = field(default_factory=NetworkTests)
    # The region's background tasks (reports); set by the region service, None elsewhere.
    tasks: Tasks | None = None
    service_name: str = "region-service"
    # The region's e-mail (invitations, password resets): platform/core/mail.py.
    mail: Mailer = field(default_factory=lambda: NoMailer(""))
    # The region's national eID broker (rooms with an identity check): platform/core/identity.py;
    # None when the region has none configured.
    identity: IdentityBroker | None = None
    # The region's SMS provider (arrival alerts, client invitations): Sinch in the EU,
    # Twilio in the US (tenants/messaging/providers.py); None when the region has none.
    sms: SmsSender | None = None
    # The region's card payments (room fees at check-in; tenants/payments), None without.
    payments: PaymentProvider | None = None
    limits: TenantLimits = field(init=False)

    def __post_init__(self) -> None:
        self.limits = TenantLimits(self.region.limits)

    @property
    def source(self) -> str:
        return f"region:{self.region.id}/{self.service_name}"


def region_of(connection: ASGIConnection[Any, Any, Any, Any]) -> RegionContext:
    """The container of the region service handling this request or socket."""
    region: RegionContext = connection.app.state.region
    return region
