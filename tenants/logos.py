"""The organisation's logo on its visitors' pages: PNG, JPEG or WebP of at most 1 MB.

What a file is, is decided from its bytes alone (the file's name and the browser's
content type say nothing trustworthy): its first bytes must be those of one of the three
formats, and Pillow, limited to those three decoders, must decode the whole image within
``MAX_SIDE`` pixels a side. SVG is refused: it is a document that can carry scripts.
Nothing is stored unless all of that holds. The logo is not personal data; it is served
publicly at ``/{org}/logo`` with its SHA-256 as the ETag.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid

import msgspec
from PIL import Image

from konsil.platform.core import clock, database, errors
from konsil.platform.core.region import RegionContext
from konsil.tenants import records
from konsil.tenants.actors import Actor, record
from konsil.tenants.schemas import LogoOut
from konsil.tenants.tables import OrganisationLogo

MAX_BYTES = 1024 * 1024  # "1 MB" in the pages' words
MAX_SIDE = 4096  # a logo larger than this a side is a photo (and costs memory to decode)

# Format → (content type, how its first bytes start).
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class Logo(msgspec.Struct, frozen=True, kw_only=True):
    content_type: str
    image: bytes
    sha256: str
    width: int
    height: int


def _format_of(data: bytes) -> str | None:
    """The format the first bytes announce, or None."""
    if data.startswith(_PNG):
        return "PNG"
    if data.startswith(_JPEG):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _looks_like_svg(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) and b"<svg" in data[:4096].lower()


def not_an_image() -> errors.AppError:
    return errors.AppError(400, "not_an_image", "this file is not a PNG, JPEG or WebP image")


def check(data: bytes) -> Logo:
    """The logo ``data`` is, or an error saying why it is not one (nothing is stored)."""
    if len(data) > MAX_BYTES:
        raise errors.AppError(413, "too_large", "the image is larger than 1 MB")
    if not data:
        raise errors.AppError(400, "empty", "send the image's bytes as the request body")
    found = _format_of(data)
    if found is None:
        if _looks_like_svg(data):
            raise errors.AppError(
                400, "svg_refused", "SVG images are not accepted (they can carry scripts); use PNG, JPEG or WebP"
            )
        raise not_an_image()
    try:
        # Opening reads the header only; the size is checked before anything is decoded
        # (Pillow also warns of, or refuses, a huge picture: the size check refuses both).
        with Image.open(io.BytesIO(data), formats=[found]) as image:
            width, height = image.size
            if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
                raise errors.AppError(
                    400,
                    "image_dimensions",
                    f"the image is {width} x {height} pixels; a logo may be at most {MAX_SIDE} pixels a side",
                )
            image.load()  # the whole image decodes: not just a plausible header
    except errors.AppError:
        raise
    except Image.DecompressionBombError:
        # A small file that would decode into a huge picture: refused before decoding.
        raise errors.AppError(
            400, "image_dimensions", f"the image has too many pixels; a logo may be at most {MAX_SIDE} pixels a side"
        ) from None
    except (OSError, ValueError, SyntaxError):
        # Pillow's ways of saying "not a valid image of this format" (truncated, corrupt).
        raise not_an_image() from None
    return Logo(
        content_type=CONTENT_TYPES[found],
        image=data,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
    )


def url(org: records.Organisation) -> str:
    return f"/{org.slug}/logo"


def _out(org: records.Organisation, logo: Logo) -> LogoOut:
    return LogoOut(
        url=url(org),
        content_type=logo.content_type,
        sha256=logo.sha256,
        size_bytes=len(logo.image),
        width=logo.width,
        height=logo.height,
    )


async def store(ctx: RegionContext, actor: Actor, org: records.Organisation, data: bytes) -> LogoOut:
    """Check ``data`` and make it the organisation's logo (replacing any before it)."""
    logo = await asyncio.to_thread(check, data)  # decoding takes a moment: off the event loop
    async with database.transaction(ctx.engine):
        await OrganisationLogo.delete().where(OrganisationLogo.org_id == org.id).run()
        await OrganisationLogo.insert(
            OrganisationLogo(
                org_id=org.id,
                content_type=logo.content_type,
                image=logo.image,
                sha256=logo.sha256,
                updated_at=clock.now(),
            )
        ).run()
        await record(ctx, actor, org.id, "update", "organisation", org.id, f"org:{org.id}")
    return _out(org, logo)


async def remove(ctx: RegionContext, actor: Actor, org: records.Organisation) -> None:
    async with database.transaction(ctx.engine):
        found = await OrganisationLogo.exists().where(OrganisationLogo.org_id == org.id).run()
        if not found:
            return
        await OrganisationLogo.delete().where(OrganisationLogo.org_id == org.id).run()
        await record(ctx, actor, org.id, "update", "organisation", org.id, f"org:{org.id}")


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    content_type: str
    image: bytes
    sha256: str


async def find(org_id: uuid.UUID) -> Stored | None:
    row = await OrganisationLogo.select().where(OrganisationLogo.org_id == org_id).first().run()
    if row is None:
        return None
    return Stored(content_type=row["content_type"], image=bytes(row["image"]), sha256=row["sha256"])


async def describe(org: records.Organisation) -> LogoOut | None:
    """The stored logo's facts (for the settings page), or None."""
    stored = await find(org.id)
    if stored is None:
        return None
    try:  # checked when stored: its header's size is enough here
        with Image.open(io.BytesIO(stored.image), formats=list(CONTENT_TYPES)) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError):
        width = height = 0
    return LogoOut(
        url=url(org),
        content_type=stored.content_type,
        sha256=stored.sha256,
        size_bytes=len(stored.image),
        width=width,
        height=height,
    )
