"""The lean baseline of ``region_vs_lean``: the region's room list, written plainly.

A minimal Litestar + asyncpg app that answers ``GET /api/v1/orgs/{slug}/rooms`` as
the region service does, on the same database: the same token check (SHA-256 of
the bearer token in ``api_token``, not revoked, scope ``rooms:read``, of the
organisation named by the slug) and the same JSON body, byte for byte (the
benchmark checks). One pooled connection per request, asyncpg's defaults (its
reset on release included), two fixed statements. No Konsil code.

    .venv/bin/python -m bench.lean_rooms --database postgresql://… --listen 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
import uvicorn
from litestar import Litestar, Request, get
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException

# The organisation and the caller's token in one statement: a token of another
# organisation comes back too and is refused as the region refuses it (404).
GUARD_SQL = """
SELECT o.id, o.slug, t.org_id AS token_org_id, t.scopes AS token_scopes
FROM organisation o
LEFT JOIN api_token t ON t.token_hash = $2 AND t.revoked_at IS NULL
WHERE o.slug = $1
"""
ROOMS_SQL = "SELECT id, slug, title, expert_id FROM room WHERE org_id = $1 ORDER BY slug"


class RoomOut(msgspec.Struct):
    id: uuid.UUID
    slug: str
    title: str
    expert_id: uuid.UUID
    join_path: str


def create_app(dsn: str) -> Litestar:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
        try:
            yield
        finally:
            await state["pool"].close()

    @get("/api/v1/orgs/{slug:str}/rooms")
    async def list_rooms(request: Request[Any, Any, Any], slug: str) -> list[RoomOut]:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise NotAuthorizedException()
        hashed = hashlib.sha256(value.strip().encode()).hexdigest()
        async with state["pool"].acquire() as conn:
            guard = await conn.fetchrow(GUARD_SQL, slug, hashed)
            if guard is None:
                raise NotFoundException()
            if guard["token_org_id"] is None:
                raise NotAuthorizedException()
            if guard["token_org_id"] != guard["id"]:
                raise NotFoundException()
            if "rooms:read" not in guard["token_scopes"].split():
                raise PermissionDeniedException()
            rows = await conn.fetch(ROOMS_SQL, guard["id"])
        return [RoomOut(r["id"], r["slug"], r["title"], r["expert_id"], f"/{slug}/{r['slug']}") for r in rows]

    return Litestar(route_handlers=[list_rooms], lifespan=[lifespan], debug=False)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lean_rooms", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--database", required=True, help="the region's PostgreSQL DSN")
    p.add_argument("--listen", required=True, help="host:port")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    # The settings ``konsil serve`` runs the region with (platform/cli/main.py).
    uvicorn.run(
        create_app(args.database),
        host=host,
        port=int(port),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
