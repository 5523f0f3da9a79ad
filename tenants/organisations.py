"""Organisation services in a region: creation (asked by the control plane),
settings, and removal of a half-created organisation."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgspec

from konsil.platform.core import database, errors
from konsil.platform.core.keys.provider import KeyUnavailable
from konsil.platform.core.region import RegionContext
from konsil.tenants import members, records
from konsil.tenants.actors import Actor, record
from konsil.tenants.schemas import CreatedOrganisation, MemberIn, NewOrganisation, OrganisationOut, OrganisationPatch
from konsil.tenants.tables import Organisation, PaymentRecord


def to_out(ctx: RegionContext, org: records.Organisation) -> OrganisationOut:
    return OrganisationOut(
        id=org.id,
        slug=org.slug,
        name=org.name,
        region=ctx.region.id,
        retention_days=org.retention_days,
        contract_end=org.contract_end,
        relay_only=org.relay_only,
    )


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
            Organisation(id=new.id, slug=new.slug, name=new.name, retention_days=new.retention_days)
        ).run()
        await ctx.keys.provision(new.id)
        # The control plane records the owner's login-index entry from the answer.
        owner = await members.insert(ctx, actor, new.id, first)
    return CreatedOrganisation(new.id, new.slug, owner.id, owner.email_lookup)


async def update(
    ctx: RegionContext, actor: Actor, org: records.Organisation, patch: OrganisationPatch
) -> OrganisationOut:
    values: dict[Any, Any] = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not msgspec.UNSET}
    if not values:
        raise errors.bad_request("nothing to change")
    async with database.transaction(ctx.engine):
        await Organisation.update(values).where(Organisation.id == org.id).run()
        await record(ctx, actor, org.id, "update", "organisation", org.id, f"org:{org.id}")
    return to_out(ctx, msgspec.structs.replace(org, **values))


async def delete(ctx: RegionContext, actor: Actor, org_id: uuid.UUID, *, require_shred: bool = True) -> bool:
    """Crypto-shredding: delete the organisation's key first, so every copy of its
    personal data (backups included) is unreadable, then its rows. The access log
    keeps the record of it (its entries hold no personal data), and payment records
    stay for their legal hold, without their payer fields.

    ``require_shred=False`` (undoing a failed signup) still removes the rows when
    the key service is down; the orphaned key holds nothing and is retried later."""
    found = await Organisation.exists().where(Organisation.id == org_id).run()
    subject = f"org:{org_id}"
    try:
        await ctx.keys.shred(org_id)
    except KeyUnavailable:
        await record(ctx, actor, org_id, "delete", "organisation", org_id, subject, "failure")
        if require_shred:
            raise
    async with database.transaction(ctx.engine):
        for table in ctx.organisation_tables:
            await table.delete().where(table.org_id == org_id).run()  # type: ignore[attr-defined]
        await clear_payers(org_id)
        await Organisation.delete().where(Organisation.id == org_id).run()
        await record(ctx, actor, org_id, "delete", "organisation", org_id, subject)
    return bool(found)


async def clear_payers(org_id: uuid.UUID) -> None:
    """Payment records stay for their 5-year legal hold (P9, P18); their payer fields
    were sealed with the shredded key and are cleared, the transaction facts remain."""
    await (
        PaymentRecord.update(
            {
                PaymentRecord.payer_name: None,
                PaymentRecord.payer_email: None,
                PaymentRecord.payer_email_index: None,
                PaymentRecord.payer_phone_index: None,
            }
        )
        .where(PaymentRecord.org_id == org_id)
        .run()
    )


async def tell_control_plane(ctx: RegionContext, org_id: uuid.UUID) -> bool:
    """Ask the control plane to drop the directory and login-discovery entries."""
    try:
        response = await ctx.control.post("/internal/v1/org-removed", msgspec.json.encode({"org_id": str(org_id)}))
    except httpx.HTTPError:
        return False
    return response.status_code == 200
