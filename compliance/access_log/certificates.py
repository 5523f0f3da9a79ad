"""Deletion certificates: the region's signed record of an organisation's removal.

Written by ``tenants.removal.remove_organisation`` (through the container's access
log) in the transaction that removes the organisation's row, after the removal's last
access-log entry: the certificate and the removal commit together, or neither does.
It is kept in ``organisation_deletion_certificate``, a table no organisation owns, so
it outlives the organisation as its access log does (6 years), and it is how a removed
organisation's slug still finds its log (``konsil audit verify --org SLUG``).

What it says (``documents.DeletionCertificate``): which key versions were destroyed,
how many rows went per table, when and by whom, and a checkpoint of the access log as
it stood after the removal. Its signed bytes are the document's canonical JSON, stored
as they were signed (docs/verifying.md, "Deletion certificates").
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from konsil.compliance.access_log.chain import format_time
from konsil.compliance.access_log.checkpoints import CheckpointRefused, checkpoint
from konsil.compliance.access_log.documents import (
    DeletionCertificate,
    SignedCertificate,
    SignedCheckpoint,
    canonical,
    decode_error,
)
from konsil.compliance.access_log.tables import DeletionCertificate as CertificateRow
from konsil.platform.core import errors
from konsil.platform.core.access import OrganisationRemoved
from konsil.platform.core.keys.region_signing import KeySet, RegionSigner, Signature, SigningUnavailable, verify

SIGNING_DOWN = (
    "the region's signing key does not answer, so the deletion certificate cannot be signed: the organisation's "
    "key is destroyed, but its rows stay until the removal is run again"
)


class CertificateDamaged(Exception):
    """A stored certificate that cannot be read back (changed in the database)."""


async def certify_removal(signer: RegionSigner, region_id: str, removed: OrganisationRemoved) -> SignedCertificate:
    """Sign and store the certificate, in the caller's transaction. A signing key that
    does not answer fails the removal's last step with 503 (``errors.unavailable``)."""
    at = datetime.now(UTC)
    try:
        log_checkpoint: SignedCheckpoint | None = await checkpoint(signer, region_id, removed.org_id)
        log_problem = ""
    except CheckpointRefused as exc:  # still certified: the key and rows are gone either way
        log_checkpoint, log_problem = None, exc.problem.detail
    except SigningUnavailable as exc:
        raise errors.unavailable(SIGNING_DOWN) from exc
    certificate = DeletionCertificate(
        region=region_id,
        org=str(removed.org_id),
        slug=removed.slug,
        removed_at=format_time(at),
        removed_by=removed.removed_by,
        key_destroyed=removed.key_destroyed,
        key_versions=sorted(removed.key_versions),
        rows_removed=dict(sorted(removed.rows_removed.items())),
        checkpoint=log_checkpoint,
        log_problem=log_problem,
    )
    document = canonical(certificate)
    try:
        signature = await signer.sign(document)
    except SigningUnavailable as exc:
        raise errors.unavailable(SIGNING_DOWN) from exc
    await CertificateRow.insert(
        CertificateRow(
            org_id=removed.org_id,
            slug=removed.slug,
            removed_at=at,
            document=document.decode(),
            kid=signature.kid,
            signature=signature.value,
        )
    )
    return SignedCertificate(certificate=certificate, signature=signature)


async def stored_certificate(org_id: uuid.UUID) -> SignedCertificate | None:
    """The organisation's certificate, or None (not removed, or removed before
    certificates existed). ``CertificateDamaged`` when it no longer reads."""
    rows = await CertificateRow.select().where(CertificateRow.org_id == org_id)
    if not rows:
        return None
    row = rows[0]
    try:
        certificate = msgspec.json.decode(str(row["document"]), type=DeletionCertificate)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CertificateDamaged(decode_error(exc, "the stored deletion certificate")) from exc
    if canonical(certificate) != str(row["document"]).encode():
        raise CertificateDamaged("the stored deletion certificate is not in its signed form: it was changed")
    return SignedCertificate(
        certificate=certificate, signature=Signature(kid=str(row["kid"]), value=str(row["signature"]))
    )


async def removed_with_slug(slug: str) -> list[uuid.UUID]:
    """Removed organisations that had this slug, newest removal first (a slug is free
    again once its organisation is gone, so there can be several)."""
    rows = (
        await CertificateRow.select(CertificateRow.org_id)
        .where(CertificateRow.slug == slug)
        .order_by(CertificateRow.removed_at, ascending=False)
    )
    return [uuid.UUID(str(row["org_id"])) for row in rows]


def signature_problem(signed: SignedCertificate, key_set: KeySet) -> str | None:
    """Why the certificate (or the checkpoint inside it) is not signed by this region, or None."""
    certificate = signed.certificate
    if certificate.region != key_set.region:
        return f"the certificate was made by region {certificate.region!r}, not {key_set.region!r}"
    if not verify(key_set, canonical(certificate), signed.signature):
        return f"the certificate's signature does not verify with the region's key {signed.signature.kid!r}"
    inner = certificate.checkpoint
    if inner is not None and not verify(key_set, canonical(inner.checkpoint), inner.signature):
        return "the checkpoint inside the certificate does not carry a valid signature of the region"
    return None
