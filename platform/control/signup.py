"""Signup: an organisation is created in the region its owner chooses.

The control plane writes a pending directory row, asks the region (signed) to
create the organisation and its first owner, then records the owner's keyed
e-mail hash for login discovery and activates the row. If the region call
fails, the pending row is removed and the region is asked to drop anything it
may have created, so no half-created organisation remains.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Literal

import httpx
import msgspec

from konsil.platform.control.context import ControlContext
from konsil.platform.control.tables import DirectoryOrganisation, LoginIndexEntry
from konsil.platform.core import database, errors
from konsil.platform.core.text import LINE_PATTERN, Email
from konsil.platform.pages import jurisdictions, legal

log = logging.getLogger("konsil.signup")

# Slugs that would collide with the control plane's own paths.
RESERVED_SLUGS = frozenset(
    {
        "api",
        "internal",
        "schema",
        "healthz",
        "login",
        "logout",
        "signup",
        "static",
        "admin",
        "portal",
        "assets",
        "docs",
        "help",
        "status",
        "konsil",
        # Paths of the region's own pages (a slug would be shadowed by them).
        "password-reset",
        "invitations",
        "identity",  # the national eID broker's callback (tenants/identity/pages.py)
    }
)


# What signup accepts, validated here at the edge with the shared text validator (the
# region validates the same values again when it creates the organisation).
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{1,38}[a-z0-9])\Z"
Slug = Annotated[
    str,
    msgspec.Meta(
        pattern=SLUG_PATTERN,
        max_length=40,
        description="the organisation's address: lower-case letters, digits and hyphens",
    ),
]
RetentionDays = Annotated[int, msgspec.Meta(ge=1, le=90, description="visitor data retention, 1..90 days")]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+[1-9][0-9]{6,14}\Z", description="E.164, e.g. +4712345678")]
Password = Annotated[str, msgspec.Meta(min_length=12, max_length=200)]
OrgName = Annotated[str, msgspec.Meta(min_length=2, max_length=200, pattern=LINE_PATTERN)]
PersonName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=LINE_PATTERN)]


PageLocale = Annotated[
    Literal["en", "nb", "de", "nl"], msgspec.Meta(description="the pages' default language of the organisation")
]
Country = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(?:[A-Z]{2})?\Z",
        description="ISO 3166 country of the organisation (its supervisory authority), one of the region's",
    ),
]


class OrganisationIn(msgspec.Struct, forbid_unknown_fields=True):
    name: OrgName
    slug: Slug
    retention_days: RetentionDays = 30
    locale: PageLocale = "en"
    country: Country = ""


class OwnerIn(msgspec.Struct, forbid_unknown_fields=True):
    name: PersonName
    email: Email
    password: Password
    phone: Phone | None = None


class SignupIn(msgspec.Struct, forbid_unknown_fields=True):
    region: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2}\Z", description="region id, e.g. eu or us")]
    organisation: OrganisationIn
    owner: OwnerIn


class SignupOut(msgspec.Struct):
    organisation_id: uuid.UUID
    slug: str
    region: str
    owner_id: uuid.UUID
    login_url: str
    status: Literal["active"] = "active"


class RegionCreated(msgspec.Struct):
    id: uuid.UUID
    slug: str
    owner_id: uuid.UUID
    email_lookup: str
    welcome_token: str = ""


class Created(msgspec.Struct, frozen=True):
    """A signup as the signup page sees it: the API's answer, and where the browser that
    signed up goes next (the owner's one-time sign-in link, else the region's login)."""

    out: SignupOut
    next_url: str


def countries_of(ctx: ControlContext, region_id: str) -> list[str]:
    """The countries an organisation of this region can name (their authorities are known)."""
    region = ctx.regions.get(region_id)
    if region is None:
        return []
    kind = jurisdictions.kind_of(region.id, region.jurisdiction)
    return legal.countries(kind) if kind else []


async def _undo(ctx: ControlContext, region_id: str, org_id: uuid.UUID) -> None:
    path = f"/internal/v1/orgs/{org_id}"
    try:
        await ctx.client.delete(
            ctx.regions[region_id].base_url + path, headers=ctx.signed_headers(region_id, "DELETE", path, b"")
        )
    except httpx.HTTPError:
        log.error(
            "could not undo organisation %s in region %s; the region will refuse it "
            "(no directory entry) until it is removed",
            org_id,
            region_id,
        )
    await DirectoryOrganisation.delete().where(DirectoryOrganisation.id == org_id).run()


def _region_error(response: httpx.Response) -> str:
    """A region's error answer in a few words: its status, code and message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"{response.status_code} {body.get('error', 'error')}: {body['message'][:300]}"
    return f"{response.status_code} without an error message"


async def signup(ctx: ControlContext, data: SignupIn) -> SignupOut:
    return (await create(ctx, data)).out


async def create(ctx: ControlContext, data: SignupIn) -> Created:
    region = ctx.regions.get(data.region)
    if region is None:
        raise errors.bad_request(f"unknown region {data.region!r}; choose one of: {', '.join(sorted(ctx.regions))}")
    if data.organisation.slug in RESERVED_SLUGS:
        raise errors.conflict("this organisation address is reserved")
    country = data.organisation.country
    if country and country not in countries_of(ctx, region.id):
        allowed = ", ".join(countries_of(ctx, region.id)) or "none"
        raise errors.bad_request(f"country {country!r} is not one of region {region.id}'s ({allowed})")
    org_id = uuid.uuid4()
    try:
        await DirectoryOrganisation.insert(
            DirectoryOrganisation(id=org_id, slug=data.organisation.slug, region=region.id, status="pending")
        ).run()
    except Exception as exc:  # unique violation on slug (driver-specific type)
        if await DirectoryOrganisation.exists().where(DirectoryOrganisation.slug == data.organisation.slug).run():
            raise errors.conflict("this organisation address is taken") from None
        raise exc
    body = msgspec.json.encode(
        {
            "id": str(org_id),
            "slug": data.organisation.slug,
            "name": data.organisation.name,
            "retention_days": data.organisation.retention_days,
            "locale": data.organisation.locale,
            "country": data.organisation.country,
            "owner": data.owner,
        }
    )
    path = "/internal/v1/orgs"
    try:
        response = await ctx.client.post(
            region.base_url + path,
            content=body,
            headers={**ctx.signed_headers(region.id, "POST", path, body), "content-type": "application/json"},
        )
    except httpx.HTTPError as exc:
        await _undo(ctx, region.id, org_id)
        # Chained: the 503's log line names the cause (ConnectError, ReadTimeout, ...).
        raise errors.unavailable(f"region {region.id} is not reachable; nothing was created, try again") from exc
    if response.status_code != 200:
        await _undo(ctx, region.id, org_id)
        if response.status_code in (400, 409):
            detail = response.json().get("message", "the region refused the request")
            raise errors.AppError(response.status_code, "refused", detail)
        # The region's own error (its code and message hold no personal data) goes to the
        # operators' log, not to the anonymous caller; the region's log names the cause.
        log.warning("region %s could not create an organisation: %s", region.id, _region_error(response))
        raise errors.unavailable(
            f"region {region.id} could not create the organisation; nothing was created, try again later"
        )
    created = msgspec.json.decode(response.content, type=RegionCreated)
    try:
        async with database.transaction(ctx.engine):
            await LoginIndexEntry.insert(
                LoginIndexEntry(email_hmac=created.email_lookup, org_id=org_id, region=region.id)
            ).run()
            await (
                DirectoryOrganisation.update({DirectoryOrganisation.status: "active"})
                .where(DirectoryOrganisation.id == org_id)
                .run()
            )
    except Exception:
        await _undo(ctx, region.id, org_id)
        raise
    public = region.public_url.rstrip("/")
    out = SignupOut(org_id, data.organisation.slug, region.id, created.owner_id, f"{region.public_url}/login")
    welcome = f"{public}/welcome/{created.welcome_token}" if created.welcome_token else f"{public}/login"
    return Created(out, welcome)
