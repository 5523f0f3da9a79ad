"""Readiness (``GET /readyz``): whether a web process can serve, dependency by
dependency, for load balancers and Kubernetes readiness probes. ``/healthz`` stays
liveness (the process answers) and never touches a dependency.

Every check runs with a short timeout, all at once, and the answer is kept for a
moment (``CACHE_SECONDS``): however many probes and replicas ask, a dependency gets
at most one check per process in that time. Details are plain words naming the
failure, never a secret, a URL's password or personal data."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import asyncpg
import msgspec
from litestar import Request, Response, get
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine

CHECK_TIMEOUT_SECONDS = 2.0
CACHE_SECONDS = 1.5

Status = Literal["ok", "failing", "not_configured"]


class Check(msgspec.Struct):
    status: Status
    detail: str
    # The Vault check only (``null`` when Vault did not say); absent from the others.
    sealed: bool | msgspec.UnsetType | None = msgspec.UNSET


class Readiness(msgspec.Struct):
    ready: bool
    checks: dict[str, Check]


def ok(detail: str) -> Check:
    return Check("ok", detail)


def failing(detail: str) -> Check:
    return Check("failing", detail)


def not_configured(detail: str) -> Check:
    return Check("not_configured", detail)


CheckFn = Callable[[], Awaitable[Check]]


async def _bounded(name: str, check: CheckFn, seconds: float) -> Check:
    try:
        return await asyncio.wait_for(check(), seconds)
    except TimeoutError:
        return failing(f"{name} did not answer within {seconds:g} s")
    except Exception as exc:  # a check that fails in an unforeseen way is a failing check
        return failing(f"{name} check failed ({type(exc).__name__})")


class Probe:
    """The process's checks, run together and remembered for ``cache_seconds``.
    ``required``: the checks whose failure makes the process not ready (503); the
    others are reported only."""

    def __init__(
        self,
        checks: Mapping[str, CheckFn],
        required: frozenset[str],
        *,
        timeout: float = CHECK_TIMEOUT_SECONDS,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.checks = dict(checks)
        self.required = required
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._last: tuple[float, Readiness] | None = None
        self._lock = asyncio.Lock()

    async def run(self) -> Readiness:
        """The current readiness: the remembered answer while fresh, else one new round
        of checks (concurrent callers wait for the same round)."""
        async with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self.cache_seconds:
                return self._last[1]
            names = list(self.checks)
            results = await asyncio.gather(*(_bounded(name, self.checks[name], self.timeout) for name in names))
            checks = dict(zip(names, results, strict=True))
            ready = all(checks[name].status != "failing" for name in self.required if name in checks)
            answer = Readiness(ready, checks)
            self._last = (time.monotonic(), answer)
            return answer


async def check_database(engine: Engine[Any], seconds: float = CHECK_TIMEOUT_SECONDS) -> Check:
    """One ``SELECT 1``: PostgreSQL on a connection of its own (a busy pool is not a
    database that is down; a check never waits in line with requests), SQLite in place."""
    if isinstance(engine, PostgresEngine):
        try:
            conn = await asyncpg.connect(engine.config["dsn"], timeout=seconds)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            return failing(f"the database does not accept connections ({type(exc).__name__})")
        try:
            await conn.fetchval("SELECT 1", timeout=seconds)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            return failing(f"the database does not answer queries ({type(exc).__name__})")
        finally:
            conn.terminate()
        return ok("PostgreSQL answers")
    await engine.run_ddl("SELECT 1")
    return ok("SQLite answers")


def readyz_route(probe_of: Callable[[Request[Any, Any, Any]], Probe]) -> Any:
    """The ``GET /readyz`` route of a web process whose probe ``probe_of`` finds (in the
    app's state). Public, like ``/healthz``: it says which dependency fails, never how
    to reach it."""

    @get("/readyz", opt={"public": True}, include_in_schema=False, cache=False)
    async def readyz(request: Request[Any, Any, Any]) -> Response[Readiness]:
        answer = await probe_of(request).run()
        return Response(answer, status_code=200 if answer.ready else 503, headers={"cache-control": "no-store"})

    return readyz
