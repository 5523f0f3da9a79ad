"""The operator's region tools: ``konsil org delete`` and ``konsil keys rotate``, each
on the region that holds the organisation, and ``konsil keys rotate-signing`` on a
region's own signing key (``konsil audit``: audit.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from rich.progress import Progress

from konsil.platform.core import errors
from konsil.platform.core.keys.build import build_region_signer
from konsil.platform.core.keys.provider import KeyUnavailable
from konsil.platform.core.keys.region_signing import SigningUnavailable
from konsil.platform.core.settings import Settings, load_settings
from konsil.regions.container import open_region
from konsil.tenants import removal
from konsil.tenants.actors import Actor
from konsil.tenants.tables import Organisation


def _regions(args: argparse.Namespace) -> tuple[Settings, list[Any]]:
    settings = load_settings(args.config)
    regions = [settings.region(args.region)] if args.region else list(settings.regions)
    return settings, regions


async def _find_org(settings: Settings, regions: list[Any], slug: str) -> Any:
    """The region holding the organisation, or None."""
    for region in regions:
        async with open_region(settings, region):
            if await Organisation.exists().where(Organisation.slug == slug).run():
                return region
    return None


async def org_delete(args: argparse.Namespace) -> int:
    settings, regions = _regions(args)
    region = await _find_org(settings, regions, args.slug)
    if region is None:
        print(f"no organisation {args.slug!r} in the configured region(s)", file=sys.stderr)
        return 2
    if not args.yes:
        question = f"Delete organisation {args.slug!r} in region {region.id} for good? Type its slug: "
        answer = await asyncio.to_thread(input, question)
        if answer.strip() != args.slug:
            print("not deleted")
            return 1
    async with open_region(settings, region) as ctx:
        org = await Organisation.select(Organisation.id).where(Organisation.slug == args.slug).first().run()
        assert org is not None
        actor = Actor("operator:cli", "operator", "operator:cli", "local", "delete the customer account")
        try:
            removed = await removal.remove_organisation(ctx, actor, org["id"])
        except KeyUnavailable:
            print("the region's key service does not answer; nothing was deleted", file=sys.stderr)
            return 1
        except errors.AppError as exc:
            print(exc.message, file=sys.stderr)
            return 1
    print(f"organisation {args.slug!r} deleted: key destroyed (crypto-shredded), rows removed")
    print(f"its signed deletion certificate: konsil audit certificate --org-id {org['id']}")
    if not removed.directory_updated:
        print(
            "warning: the control plane could not be told; its directory entry is removed on the next try",
            file=sys.stderr,
        )
    return 0


async def keys_rotate(args: argparse.Namespace) -> int:
    settings, regions = _regions(args)
    done = 0
    for region in regions:
        async with open_region(settings, region) as ctx:
            query = Organisation.select(Organisation.id, Organisation.slug).order_by(Organisation.slug)
            if not args.all:
                query = query.where(Organisation.slug == args.org)
            orgs = await query.run()
            if not orgs:
                continue
            with Progress(transient=False) as progress:
                task = progress.add_task(f"region {region.id}: rotating", total=len(orgs))
                for org in orgs:
                    result = await ctx.keys.rotate(org["id"])
                    line = f"{org['slug']}: key version {result.key_version}, {result.rewrapped} data keys rewrapped"
                    if args.retire:
                        info = await ctx.keys.retire_old_versions(org["id"])
                        line += f", versions below {info.min_decryption_version} retired"
                    progress.console.print(line)
                    progress.advance(task)
                    done += 1
    if done == 0:
        print(
            f"no organisation {args.org!r} in the configured region(s)" if args.org else "no organisations",
            file=sys.stderr,
        )
        return 2
    return 0


async def keys_rotate_signing(args: argparse.Namespace) -> int:
    """A new current signing key for the region (in its Vault, or its local keyring);
    the earlier ones stay in its key set as retired, so what they signed still verifies.
    Running region services sign with the new key from their next signature on."""
    settings = load_settings(args.config)
    region = settings.region(args.region)
    signer = build_region_signer(settings, region)
    try:
        try:
            kid = await signer.rotate_key()
        except SigningUnavailable as exc:
            print(f"konsil: {exc}; the signing key was not rotated", file=sys.stderr)
            return 1
        print(f"region {region.id}: signing key {kid} is now current")
        try:
            retired = [key.kid for key in (await signer.key_set()).keys if key.status == "retired"]
        except SigningUnavailable as exc:
            print(f"konsil: the key set could not be read back: {exc}", file=sys.stderr)
            return 1
        print(f"retired, still in the key set for verifying what they signed: {', '.join(retired) or 'none'}")
        return 0
    finally:
        await signer.close()
