"""Integration API tokens (e.g. an electronic patient record system): stored as a
hash, scoped, revocable. The token itself is shown once."""

from __future__ import annotations

import uuid
from typing import Any

from konsil.platform import errors
from konsil.regions.context import RegionContext
from konsil.tenants.auth import Principal, new_secret_token, token_hash, utcnow
from konsil.tenants.schemas import TokenCreated, TokenIn, TokenOut
from konsil.tenants.tables import ApiToken


async def issue(ctx: RegionContext, principal: Principal, org: dict[str, Any], new: TokenIn) -> TokenCreated:
    token = new_secret_token(f"ksl_{ctx.region.id}")
    token_id = uuid.uuid4()
    await ApiToken.insert(
        ApiToken(
            id=token_id,
            org_id=org["id"],
            label=new.label,
            token_hash=token_hash(token),
            scopes=" ".join(sorted(set(new.scopes))),
            created_by=principal.id,
        )
    ).run()
    return TokenCreated(token_id, token)


async def list_tokens(org: dict[str, Any]) -> list[TokenOut]:
    rows = await ApiToken.select().where(ApiToken.org_id == org["id"]).order_by(ApiToken.created_at).run()
    return [
        TokenOut(r["id"], r["label"], r["scopes"].split(), r["created_at"], r["revoked_at"] is not None) for r in rows
    ]


async def revoke(org: dict[str, Any], token_id: uuid.UUID) -> None:
    found = await ApiToken.exists().where((ApiToken.id == token_id) & (ApiToken.org_id == org["id"])).run()
    if not found:
        raise errors.not_found("no such token")
    await ApiToken.update({ApiToken.revoked_at: utcnow()}).where(ApiToken.id == token_id).run()
