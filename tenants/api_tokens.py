"""Integration API tokens (e.g. an electronic patient record system): stored as a
hash, scoped, revocable. The token itself is shown once."""

from __future__ import annotations

import uuid
from typing import Any

from konsil.platform.core import clock, errors
from konsil.platform.core.authz import token_hash
from konsil.platform.core.region import RegionContext
from konsil.tenants.auth import Principal, new_secret_token
from konsil.tenants.schemas import SCOPES, TokenCreated, TokenIn, TokenOut
from konsil.tenants.tables import ApiToken

# What each member role may do through the API, as scopes: a token is never minted
# with more than its maker has (tests/regions/test_escalation.py derives the same
# table from the routes' rules).
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "owner": frozenset(SCOPES),
    "admin": frozenset(SCOPES),
    "expert": frozenset({"org:read", "rooms:read", "rooms:write"}),
    "auditor": frozenset({"org:read", "rooms:read"}),
}


def allowed_scopes(principal: Principal) -> frozenset[str]:
    if principal.kind == "token":
        return principal.scopes
    return ROLE_SCOPES.get(principal.role, frozenset())


async def issue(ctx: RegionContext, principal: Principal, org: dict[str, Any], new: TokenIn) -> TokenCreated:
    beyond = sorted(set(new.scopes) - allowed_scopes(principal))
    if beyond:
        raise errors.forbidden(f"you cannot give a token scopes you do not have: {' '.join(beyond)}")
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
    await ApiToken.update({ApiToken.revoked_at: clock.now()}).where(ApiToken.id == token_id).run()
