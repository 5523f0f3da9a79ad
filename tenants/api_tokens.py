"""Integration API tokens (e.g. an electronic patient record system): stored as a
hash, scoped, revocable. The token itself is shown once. Issuing and revoking one
is access-logged (its id only, never its label or value)."""

from __future__ import annotations

import uuid

from konsil.platform.core import clock, database, errors
from konsil.platform.core.authz import token_hash
from konsil.platform.core.region import RegionContext
from konsil.tenants import records
from konsil.tenants.actors import Actor, record
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
    "auditor": frozenset({"org:read", "members:read", "rooms:read"}),
}


def allowed_scopes(principal: Principal) -> frozenset[str]:
    if principal.kind == "token":
        return principal.scopes
    return ROLE_SCOPES.get(principal.role, frozenset())


def _subject(org: records.Organisation) -> str:
    # A token acts for its organisation (tenants.actors.actor_for), not for a person.
    return f"org:{org.id}"


async def issue(
    ctx: RegionContext, actor: Actor, principal: Principal, org: records.Organisation, new: TokenIn
) -> TokenCreated:
    beyond = sorted(set(new.scopes) - allowed_scopes(principal))
    if beyond:
        raise errors.forbidden(f"you cannot give a token scopes you do not have: {' '.join(beyond)}")
    token = new_secret_token(f"ksl_{ctx.region.id}")
    token_id = uuid.uuid4()
    async with database.transaction(ctx.engine):
        await ApiToken.insert(
            ApiToken(
                id=token_id,
                org_id=org.id,
                label=new.label,
                token_hash=token_hash(token),
                scopes=" ".join(sorted(set(new.scopes))),
                created_by=principal.id,
            )
        ).run()
        await record(ctx, actor, org.id, "create", "api_token", token_id, _subject(org))
    return TokenCreated(token_id, token)


async def list_tokens(org: records.Organisation) -> list[TokenOut]:
    rows = await ApiToken.select().where(ApiToken.org_id == org.id).order_by(ApiToken.created_at).run()
    return [
        TokenOut(
            id=r["id"],
            label=r["label"],
            scopes=r["scopes"].split(),
            created_at=r["created_at"],
            revoked=r["revoked_at"] is not None,
            last_used_at=r["last_used_at"],
        )
        for r in rows
    ]


async def revoke(ctx: RegionContext, actor: Actor, org: records.Organisation, token_id: uuid.UUID) -> None:
    """Revoke a token for good (its row stays, naming when): a "delete" of the credential."""
    async with database.transaction(ctx.engine):
        found = await ApiToken.exists().where((ApiToken.id == token_id) & (ApiToken.org_id == org.id)).run()
        if not found:
            raise errors.not_found("no such token")
        await ApiToken.update({ApiToken.revoked_at: clock.now()}).where(ApiToken.id == token_id).run()
        await record(ctx, actor, org.id, "delete", "api_token", token_id, _subject(org))
