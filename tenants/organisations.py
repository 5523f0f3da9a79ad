"""Organisation services in a region: creation (asked by the control plane) and
settings. Removal is ``tenants/removal.py``."""

from __future__ import annotations

from typing import Any

import msgspec

from konsil.platform.core import database, errors
from konsil.platform.core.region import RegionContext
from konsil.platform.pages import legal
from konsil.tenants import members, records, welcome
from konsil.tenants.actors import Actor, record
from konsil.tenants.schemas import CreatedOrganisation, MemberIn, NewOrganisation, OrganisationOut, OrganisationPatch
from konsil.tenants.tables import Organisation


def to_out(ctx: RegionContext, org: records.Organisation) -> OrganisationOut:
    return OrganisationOut(
        id=org.id,
        slug=org.slug,
        name=org.name,
        region=ctx.region.id,
        retention_days=org.retention_days,
        contract_end=org.contract_end,
        relay_only=org.relay_only,
        locale=org.locale,
        country=org.country,
    )


def legal_jurisdiction(ctx: RegionContext) -> str:
    """The jurisdiction of this region's legal texts (platform/pages/legal.toml): its own
    id when the texts know it (eu, us), else the EU's, as ``legal.legal_text`` does."""
    return ctx.region.id if legal.countries(ctx.region.id) else "eu"


def countries(ctx: RegionContext) -> list[str]:
    """The countries an organisation of this region may name: those whose supervisory
    authority the legal texts name (the legal notices cite it)."""
    return legal.countries(legal_jurisdiction(ctx))


async def get(slug: str) -> records.Organisation | None:
    return records.Organisation.maybe(await Organisation.select().where(Organisation.slug == slug).first().run())


async def create(ctx: RegionContext, actor: Actor, new: NewOrganisation) -> CreatedOrganisation:
    """Create an organisation with its first owner. Idempotent for a repeated id."""
    existing = await Organisation.select(Organisation.slug).where(Organisation.id == new.id).first().run()
    if existing is not None:
        if existing["slug"] != new.slug:
            raise errors.conflict("organisation id already used")
        owner = await members.first_owner(new.id)
        return CreatedOrganisation(new.id, new.slug, owner.id, owner.email_lookup)
    if await Organisation.exists().where(Organisation.slug == new.slug).run():
        raise errors.conflict("this organisation address is taken")
    first = MemberIn(
        name=new.owner.name, email=new.owner.email, role="owner", password=new.owner.password, phone=new.owner.phone
    )
    async with database.transaction(ctx.engine):
        await Organisation.insert(
            Organisation(
                id=new.id,
                slug=new.slug,
                name=new.name,
                retention_days=new.retention_days,
                locale=new.locale,
                country=new.country,
            )
        ).run()
        await ctx.keys.provision(new.id)
        # The control plane records the owner's login-index entry from the answer.
        owner = await members.insert(ctx, actor, new.id, first)
        welcome_token = await welcome.issue(new.id, owner.id)
    return CreatedOrganisation(new.id, new.slug, owner.id, owner.email_lookup, welcome_token)


async def update(
    ctx: RegionContext, actor: Actor, org: records.Organisation, patch: OrganisationPatch
) -> OrganisationOut:
    values: dict[Any, Any] = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not msgspec.UNSET}
    if not values:
        raise errors.bad_request("nothing to change")
    country = values.get("country")
    if country and country not in countries(ctx):
        raise errors.bad_request(f"country must be one of {', '.join(countries(ctx))} in this region (or empty)")
    async with database.transaction(ctx.engine):
        await Organisation.update(values).where(Organisation.id == org.id).run()
        await record(ctx, actor, org.id, "update", "organisation", org.id, f"org:{org.id}")
    return to_out(ctx, msgspec.structs.replace(org, **values))
