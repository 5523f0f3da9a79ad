"""The region service's hold on its relays' TURN secret (``turn_secret``): read at
start and, while it is missing (not written yet, Vault sealed or away), again in the
background with backoff, so relay calls start working without a restart. Kept apart
from ``turn_secret``, which the media-node agent imports: the agent never sees a
region's settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from konsil.media_nodes.relays import RegionRelays
from konsil.media_nodes.turn_secret import read_with_key_service
from konsil.platform.core.keys.provider import KeyProvider, KeyUnavailable
from konsil.platform.core.settings import RegionSettings

log = logging.getLogger("konsil.turn_secret")
log.setLevel(logging.INFO)  # its recovery is worth a line


FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
MIN_TRY_INTERVAL_SECONDS = 1.0  # asked for by admits: never more often than this


class SecretKeeper:
    """Reads the region relays' TURN secret until it has it: at start, then in the
    background with backoff (``FIRST_RETRY_SECONDS`` doubling to ``MAX_RETRY_SECONDS``,
    with jitter), and at once when a call finds it missing (``wanted``, at most every
    ``MIN_TRY_INTERVAL_SECONDS``). A region started before the secret was written, or
    while its Vault was sealed, so begins handing out relays as soon as it can read it,
    without a restart. Logs once per change (failing, failing for another reason, read),
    never per try, and never the secret."""

    def __init__(
        self,
        region_id: str,
        read: Callable[[], Awaitable[str]],
        on_read: Callable[[str], None],
        *,
        first_retry: float = FIRST_RETRY_SECONDS,
        max_retry: float = MAX_RETRY_SECONDS,
        min_interval: float = MIN_TRY_INTERVAL_SECONDS,
    ) -> None:
        self.region_id = region_id
        self._read = read
        self._on_read = on_read
        self.first_retry = first_retry
        self.max_retry = max_retry
        self.min_interval = min_interval
        self.have_it = False
        self.failure = "not read yet"  # why it is missing (plain words, no secret)
        self.tries = 0
        self._last_try = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> SecretKeeper:
        """The first read now (the process starts with the secret when it can), then the
        retries in the background while it is missing."""
        if not await self._try():
            self._task = asyncio.create_task(self._keep_trying())
        return self

    def wanted(self) -> None:
        """A call needed the secret and found it missing: try again now rather than at the
        next backoff step (returns at once; the caller is not kept waiting)."""
        if not self.have_it:
            self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _try(self) -> bool:
        self.tries += 1
        self._last_try = time.monotonic()
        try:
            secret = await self._read()
            if not secret:
                raise KeyUnavailable("the TURN secret in the region's Vault is empty")
        except KeyUnavailable as exc:
            self._failed(str(exc))
            return False
        except Exception as exc:  # unforeseen: kept trying, said once
            self._failed(f"reading it failed ({type(exc).__name__})")
            return False
        self.have_it = True
        self.failure = ""
        self._on_read(secret)
        if self.tries > 1:
            log.info(
                "region %s: the relays' TURN secret is read (try %d); calls get relays again",
                self.region_id,
                self.tries,
            )
        return True

    def _failed(self, why: str) -> None:
        if why != self.failure or self.tries == 1:
            log.error(
                "region %s: the relays' TURN secret could not be read: %s; calls get no relay until it is "
                "(retrying every %g s up to %g s)",
                self.region_id,
                why,
                self.first_retry,
                self.max_retry,
            )
        self.failure = why

    async def _keep_trying(self) -> None:
        delay = self.first_retry
        while True:
            self._wake.clear()
            wait = min(self.max_retry, delay) * random.uniform(0.75, 1.25)  # jitter: replicas spread out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            since = time.monotonic() - self._last_try
            if since < self.min_interval:
                await asyncio.sleep(self.min_interval - since)
            if await self._try():
                return
            delay = min(self.max_retry, delay * 2)


async def keep_for(region: RegionSettings, provider: KeyProvider, relays: RegionRelays) -> SecretKeeper | None:
    """For the region service's lifespan: the relays' secret from the settings at once,
    else a started ``SecretKeeper`` reading it from the region's Vault (KV v2) with the
    key service's login. None when the region hands out no media-node relays, or has
    no secret configured at all (said once: calls then get no relay)."""
    if relays.registry is None:
        return None
    if region.turn_secret:
        relays.turn_secret = region.turn_secret
        return None
    vault = region.vault
    if vault.backend != "vault" or not vault.turn_secret_path:
        log.error(
            "region %s: its media-node relays have no TURN secret configured (regions.%s.turn_secret or "
            "[regions.vault] turn_secret_path); calls get no relay",
            region.id,
            region.id,
        )
        return None

    def took(secret: str) -> None:
        relays.turn_secret = secret

    async def read() -> str:
        return await read_with_key_service(region.id, provider, vault.turn_secret_path, vault.kv_mount)

    keeper = SecretKeeper(region.id, read, took)
    relays.secret_wanted = keeper.wanted
    return await keeper.start()
