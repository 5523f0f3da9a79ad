"""Login discovery: which region URL(s) to log in at, for an e-mail address.

The control plane sees only a keyed hash of the normalised address. An unknown
address gets an answer of the same shape: one region, chosen by a keyed hash so
that asking twice gives the same answer; so the answer does not tell whether
the address exists.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import msgspec

from konsil.platform.control.context import ControlContext
from konsil.platform.control.tables import DELETED, DirectoryOrganisation, LoginIndexEntry
from konsil.platform.core import errors
from konsil.platform.core.lookup import email_lookup, normalise_email
from konsil.platform.core.text import Email


class DiscoveryIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email


class RegionLogin(msgspec.Struct):
    region: str
    login_url: str


class DiscoveryOut(msgspec.Struct):
    regions: list[RegionLogin]


async def discover(ctx: ControlContext, data: DiscoveryIn) -> DiscoveryOut:
    lookup = email_lookup(ctx.discovery_key, data.email)
    rows = await LoginIndexEntry.select(LoginIndexEntry.region).where(LoginIndexEntry.email_hmac == lookup).run()
    found = sorted({row["region"] for row in rows if row["region"] in ctx.regions})
    if not found:
        ordered = sorted(ctx.regions)
        pick = hmac.new(
            ctx.discovery_key.encode(), b"decoy:" + normalise_email(data.email).encode(), hashlib.sha256
        ).digest()
        found = [ordered[int.from_bytes(pick[:4], "big") % len(ordered)]]
    return DiscoveryOut([RegionLogin(r, f"{ctx.regions[r].public_url.rstrip('/')}/login") for r in found])


class RegionPlace(msgspec.Struct):
    """A region as a page names it (its jurisdiction, never only its id) and its login page."""

    region: str
    jurisdiction: str
    public_url: str
    login_url: str


class PlacesOut(msgspec.Struct):
    regions: list[RegionPlace]


def place(ctx: ControlContext, region_id: str) -> RegionPlace:
    region = ctx.regions[region_id]
    public = region.public_url.rstrip("/")
    return RegionPlace(region.id, region.jurisdiction, public, f"{public}/login")


def every_place(ctx: ControlContext) -> PlacesOut:
    """Every region: a region's login page may send people to any of them."""
    return PlacesOut([place(ctx, r) for r in sorted(ctx.regions)])


async def places_for(ctx: ControlContext, data: DiscoveryIn) -> PlacesOut:
    """``discover``'s answer (no more, no less), with each region's jurisdiction."""
    found = await discover(ctx, data)
    return PlacesOut([place(ctx, r.region) for r in found.regions])


class LoginIndexChange(msgspec.Struct, forbid_unknown_fields=True):
    org_id: uuid.UUID
    add: list[str] = []
    remove: list[str] = []


async def change_index(ctx: ControlContext, signer: str, change: LoginIndexChange) -> dict[str, Any]:
    """A region reports members added or removed (keyed hashes only)."""
    org = (
        await DirectoryOrganisation.select(DirectoryOrganisation.region)
        .where((DirectoryOrganisation.id == change.org_id) & (DirectoryOrganisation.status != DELETED))
        .first()
        .run()
    )
    if org is None or signer != f"region:{org['region']}":
        raise errors.not_found("no such organisation in the caller's region")
    for value in change.add + change.remove:
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise errors.bad_request("entries must be hex keyed hashes")
    if change.remove:
        await (
            LoginIndexEntry.delete()
            .where((LoginIndexEntry.org_id == change.org_id) & LoginIndexEntry.email_hmac.is_in(change.remove))
            .run()
        )
    for value in change.add:
        exists = (
            await LoginIndexEntry.exists()
            .where((LoginIndexEntry.org_id == change.org_id) & (LoginIndexEntry.email_hmac == value))
            .run()
        )
        if not exists:
            await LoginIndexEntry.insert(
                LoginIndexEntry(email_hmac=value, org_id=change.org_id, region=org["region"])
            ).run()
    return {"ok": True}


class OrgRemoved(msgspec.Struct, forbid_unknown_fields=True):
    org_id: uuid.UUID


async def org_removed(signer: str, removed: OrgRemoved) -> dict[str, Any]:
    """A region deleted an organisation: drop its discovery entries, and keep its
    directory entry as deleted (id, slug, region: no personal data), so the gateway
    answers 410 Gone for it rather than 404, and its address is not given to another
    organisation whose visitors would then follow the old links."""
    org = (
        await DirectoryOrganisation.select(DirectoryOrganisation.region)
        .where(DirectoryOrganisation.id == removed.org_id)
        .first()
        .run()
    )
    if org is None:
        return {"ok": True}
    if signer != f"region:{org['region']}":
        raise errors.not_found("no such organisation in the caller's region")
    await LoginIndexEntry.delete().where(LoginIndexEntry.org_id == removed.org_id).run()
    await (
        DirectoryOrganisation.update({DirectoryOrganisation.status: DELETED})
        .where(DirectoryOrganisation.id == removed.org_id)
        .run()
    )
    return {"ok": True}
