"""``konsil audit``: verify an organisation's access log (against a checkpoint an
auditor kept, too), sign a checkpoint of it, and show a removed organisation's
deletion certificate. An organisation is named by slug (``--org``) or id
(``--org-id``); a removed one is still found by both, through its deletion
certificate, since its access log outlives it (6 years).

The text is for a person: one line an auditor can paste into a report, naming the
first problem; exit code 0 when all is well, 1 when something does not verify, 2 when
the organisation or a file cannot be found or read.

Each command's read of the log (or certificate) is itself logged (NEN 7510 A.12.4.2):
an entry in the organisation's own access log, by ``operator:cli`` (role operator),
whose purpose names the command, written after the command has read what it shows.

Also for a removed organisation. Its log is kept as evidence, but it was never frozen
at the certificate: retention appends its notes to it, a report made on it logs its
request, and the scheduled checkpoints sign it again as it moves. An entry appended
after the certificate's checkpoint *extends* the chain that checkpoint signed, so the
certificate still verifies and ``verify --since-checkpoint`` with its checkpoint still
passes; leaving these reads out would make exactly the reads of a removed
organisation's log (by whom, when) the ones nobody can see.

Also over a head that does not carry the region's seal (a forged entry with the head
moved to it, entries deleted under a forged retention point): an append checks the
head it extends and, finding it tampered with, first records that in the chain (the
region's alarm entry, ``compliance/access_log/alarm.py``), so the read's entry cannot
seal over the change. ``verify`` names the change itself the first time, and the alarm
entry from then on ("the region found the chain head tampered at entry #N on …")."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from konsil.compliance.access_log import certificates
from konsil.compliance.access_log.checkpoints import (
    CheckpointFileError,
    CheckpointRefused,
    load_checkpoint,
    make_checkpoint,
    verify_log,
)
from konsil.compliance.access_log.documents import canonical
from konsil.compliance.access_log.tables import AccessLogHead

# format_report: also the CLI's public name of the verify line (tests and tools import it from here).
from konsil.compliance.access_log.verify_text import format_report as format_report
from konsil.compliance.access_log.verify_text import problem_text
from konsil.platform.core.access import AccessEvent, Outcome
from konsil.platform.core.keys.region_signing import SigningUnavailable
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import RegionSettings, Settings, load_settings
from konsil.regions.container import open_region
from konsil.tenants.tables import Organisation

SIGNING_DOWN = "the region's signing key does not answer; try again later"
OPERATOR = "operator:cli"


# --- finding the organisation, live or removed ---------------------------------------------------


@dataclass(frozen=True)
class Found:
    org_id: uuid.UUID
    slug: str  # its slug, or its id when nothing that survived names it
    removed: str = ""  # when it was removed ("" while it exists)


async def _by_id(org_id: uuid.UUID) -> Found | None:
    row = await Organisation.select(Organisation.slug).where(Organisation.id == org_id).first().run()
    if row is not None:
        return Found(org_id, str(row["slug"]))
    certificate = await certificates.stored_certificate(org_id)
    if certificate is not None:
        return Found(org_id, certificate.certificate.slug, certificate.certificate.removed_at)
    if await AccessLogHead.exists().where(AccessLogHead.org_id == org_id):  # removed before certificates
        # Removed before certificates were written, or its certificate's 6 years are over
        # (retention removes it once the log entries it vouched for are gone).
        return Found(org_id, str(org_id), "earlier; no deletion certificate is kept")
    return None


async def _locate(slug: str | None, org_id: uuid.UUID | None) -> Found | str | None:
    """The organisation in the region whose tables are bound now; a message when the
    slug is ambiguous; None when it is not here."""
    if org_id is not None:
        return await _by_id(org_id)
    assert slug is not None
    row = await Organisation.select(Organisation.id).where(Organisation.slug == slug).first().run()
    if row is not None:
        return Found(uuid.UUID(str(row["id"])), slug)
    removed = await certificates.removed_with_slug(slug)
    if len(removed) > 1:
        ids = ", ".join(str(i) for i in removed)
        return f"several removed organisations had the slug {slug!r} ({ids}); name one with --org-id"
    return await _by_id(removed[0]) if removed else None


def _regions(args: argparse.Namespace) -> tuple[Settings, list[RegionSettings]]:
    settings = load_settings(args.config)
    regions = [settings.region(args.region)] if args.region else list(settings.regions)
    return settings, regions


def _not_found(args: argparse.Namespace) -> int:
    what = f"organisation {args.org!r}" if args.org else f"organisation with id {args.org_id}"
    print(f"no {what} in the configured region(s)", file=sys.stderr)
    return 2


async def in_region(args: argparse.Namespace, action: Any) -> int:
    """Run ``action(ctx, found)`` in the region that holds the organisation."""
    settings, regions = _regions(args)
    for region in regions:
        async with open_region(settings, region) as ctx:
            found = await _locate(args.org, args.org_id)
            if found is None:
                continue
            if isinstance(found, str):
                print(found, file=sys.stderr)
                return 2
            try:
                result: int = await action(ctx, found)
            except SigningUnavailable:
                print(SIGNING_DOWN, file=sys.stderr)
                return 1
            return result
    return _not_found(args)


# --- logging the read --------------------------------------------------------------------------


async def log_read(
    ctx: RegionContext, found: Found, command: str, object_type: str, object_id: str, outcome: Outcome = "success"
) -> None:
    """Append the command's read to the organisation's access log (after the region's
    alarm entry when its head was tampered with: see the module's doc)."""
    event = AccessEvent(
        org_id=found.org_id,
        actor=OPERATOR,
        actor_role="operator",
        on_behalf_of=OPERATOR,
        subject_ref=f"org:{found.org_id}",
        action="read",
        object_type=object_type,
        object_id=object_id,
        source_address="local",
        outcome=outcome,
        purpose=f"konsil audit {command}",
        source=ctx.source,
    )
    await ctx.access_log.append_many([event])


# --- the commands ------------------------------------------------------------------------------


async def verify(args: argparse.Namespace) -> int:
    """``konsil audit verify --org SLUG [--since-checkpoint FILE]``."""
    kept = None
    if args.since_checkpoint:
        try:
            kept = load_checkpoint(Path(args.since_checkpoint))
        except CheckpointFileError as exc:
            print(exc, file=sys.stderr)
            return 2

    async def run(ctx: RegionContext, found: Found) -> int:
        key_set = await ctx.signer.key_set()
        try:
            report = await verify_log(found.org_id, key_set, kept)
        except CheckpointFileError as exc:
            print(f"audit log of org {found.slug!r}: the kept checkpoint is not accepted: {exc}")
            return 1
        print(format_report(report, found.slug, removed=found.removed))
        seen = "verified" if report.ok else f"problem at #{report.problem.seq}" if report.problem else "problem"
        await log_read(ctx, found, "verify", "access_log", seen)
        return 0 if report.ok else 1

    return await in_region(args, run)


async def checkpoint(args: argparse.Namespace) -> int:
    """``konsil audit checkpoint --org SLUG [--out FILE]``."""
    out = Path(args.out) if args.out else None
    if out is not None and out.exists():
        print(f"{args.out} exists already; a kept checkpoint is not overwritten, choose another file", file=sys.stderr)
        return 2

    async def run(ctx: RegionContext, found: Found) -> int:
        try:
            made = await make_checkpoint(ctx, found.org_id)
        except CheckpointRefused as exc:
            print(f"the region does not sign the access log of org {found.slug!r}: {problem_text(exc.problem)}")
            await log_read(ctx, found, "checkpoint", "access_log", f"refused at #{exc.problem.seq}", "failure")
            return 1
        # Logged after signing: the checks before a signature rest on the head's seal as it was.
        await log_read(ctx, found, "checkpoint", "access_log", f"checkpoint #{made.checkpoint.seq}")
        document = msgspec.json.format(canonical(made), indent=2) + b"\n"
        if out is None:
            sys.stdout.write(document.decode())
            return 0
        await asyncio.to_thread(out.write_bytes, document)
        point = made.checkpoint
        print(
            f"checkpoint of the access log of org {found.slug!r}: entry #{point.seq}, hash {point.head_hash[:16]}…, "
            f"at {point.at}, signed with the region's key {made.signature.kid}; saved to {out}"
        )
        return 0

    return await in_region(args, run)


async def certificate(args: argparse.Namespace) -> int:
    """``konsil audit certificate --org-id UUID``: the deletion certificate, checked."""

    async def run(ctx: RegionContext, found: Found) -> int:
        try:
            signed = await certificates.stored_certificate(found.org_id)
        except certificates.CertificateDamaged as exc:
            print(exc, file=sys.stderr)
            await log_read(ctx, found, "certificate", "deletion_certificate", str(found.org_id), "failure")
            return 1
        if signed is None:
            print(
                f"organisation {found.slug!r} has no deletion certificate: it was not removed, it was removed "
                "before certificates were written, or retention removed the certificate after its 6 years",
                file=sys.stderr,
            )
            return 2
        await log_read(ctx, found, "certificate", "deletion_certificate", str(found.org_id))
        document = msgspec.json.format(canonical(signed), indent=2) + b"\n"
        if args.out:
            await asyncio.to_thread(Path(args.out).write_bytes, document)
        else:
            sys.stdout.write(document.decode())
        problem = certificates.signature_problem(signed, await ctx.signer.key_set())
        if problem is not None:
            print(f"the deletion certificate does NOT verify: {problem}", file=sys.stderr)
            return 1
        print(f"the deletion certificate verifies with the region's key {signed.signature.kid}", file=sys.stderr)
        return 0

    return await in_region(args, run)
