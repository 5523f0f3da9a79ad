"""The documents the region signs about its access logs, and their exact signed bytes.

Every signed document here is a JSON object whose signed bytes are its **canonical
form**: UTF-8 JSON with every object's keys sorted (by code point), no whitespace,
integers as plain digits and strings with JSON's minimal escaping. For the values these
documents hold (ASCII strings, integers, booleans, null) that is exactly RFC 8785 (JCS),
and Python's ``json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()`` gives
the same bytes, so an auditor can check a signature with a few lines of their own
(docs/verifying.md, "Access-log checkpoints" and "Deletion certificates").

Each document names its ``type`` and version ``v`` first thing an auditor reads, so a
signature over one kind can never be passed off as another (a checkpoint as a
certificate, a head seal as a checkpoint). Changing a field or how a value is written
changes the signed bytes: add a new ``v`` and keep reading the old one.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

import msgspec

from konsil.compliance.access_log.chain import format_time
from konsil.platform.core.keys.region_signing import Signature

CHECKPOINT_TYPE: Final = "konsil.access-log.checkpoint"
HEAD_TYPE: Final = "konsil.access-log.head"
SEAL_KEY_TYPE: Final = "konsil.access-log.seal-key"
CERTIFICATE_TYPE: Final = "konsil.organisation.deletion-certificate"

Hash = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
OrgId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
Seq = Annotated[int, msgspec.Meta(ge=0)]
# chain.format_time: UTC, microseconds always, "+00:00".
Time = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")]

_canonical = msgspec.json.Encoder(order="sorted")


def canonical(document: msgspec.Struct) -> bytes:
    """The exact bytes the region signs for ``document`` (see the module docstring)."""
    return _canonical.encode(document)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Entry #``seq`` of organisation ``org``'s access log hashes to ``head_hash``
    (``chain.py``), as of ``at``: taken under the log's append lock, so every entry up
    to ``seq`` is dated no later than ``at`` and every entry after it no earlier.
    ``seq`` 0 with the genesis hash: the log was empty."""

    type: Literal["konsil.access-log.checkpoint"] = CHECKPOINT_TYPE
    v: Literal[1] = 1
    region: str
    org: OrgId
    seq: Seq
    head_hash: Hash
    at: Time

    @property
    def org_id(self) -> uuid.UUID:
        return uuid.UUID(self.org)

    @property
    def moment(self) -> datetime:
        return parse_time(self.at)


class SignedCheckpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an auditor keeps: the checkpoint and the region's signature over its
    canonical bytes (``signature.kid`` names the key in the region's key set)."""

    checkpoint: Checkpoint
    signature: Signature


class HeadState(msgspec.Struct, frozen=True, kw_only=True):
    """What a head seal covers: the chain's end and its retention point."""

    type: Literal["konsil.access-log.head"] = HEAD_TYPE
    v: Literal[1] = 1
    org: OrgId
    seq: Seq
    head_hash: Hash
    pruned_seq: Seq
    pruned_hash: Hash


class SealKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A region process's sealing key (Ed25519 public key ``x``, base64url as JWK
    writes it), certified by the region's own key."""

    type: Literal["konsil.access-log.seal-key"] = SEAL_KEY_TYPE
    v: Literal[1] = 1
    region: str
    kid: str
    x: str
    created_at: Time


class CertifiedSealKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A sealing key with the region's signature over its canonical bytes; None when the
    region's signing key could not be reached when the process started sealing."""

    key: SealKey
    signature: Signature | None


class DeletionCertificate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an organisation's removal destroyed, and when.

    ``key_destroyed``: its key (every version) was deleted from the region's key
    service (crypto-shredding); ``key_versions``: the versions it had (empty when the
    key was already gone, e.g. a removal run again). ``rows_removed``: rows deleted per
    table. ``checkpoint``: the access log as it stood at the end of the removal, the
    removal's own entries included (None, with ``log_problem``, when the log did not
    verify and the region would not sign it)."""

    type: Literal["konsil.organisation.deletion-certificate"] = CERTIFICATE_TYPE
    v: Literal[1] = 1
    region: str
    org: OrgId
    slug: str
    removed_at: Time
    removed_by: str
    key_destroyed: bool
    key_versions: list[int]
    rows_removed: dict[str, int]
    checkpoint: SignedCheckpoint | None
    log_problem: str = ""

    @property
    def org_id(self) -> uuid.UUID:
        return uuid.UUID(self.org)


class SignedCertificate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    certificate: DeletionCertificate
    signature: Signature


def now_text(at: datetime | None = None) -> str:
    return format_time(at or datetime.now(UTC))


_FIELD = re.compile(r"at `\$(\.[^`]*)`")


def decode_error(exc: msgspec.ValidationError | msgspec.DecodeError, what: str) -> str:
    """A decoding error in words, naming the field (``$.checkpoint.seq`` → ``checkpoint.seq``)."""
    text = str(exc)
    found = _FIELD.search(text)
    if found is None:
        return f"{what} is not valid: {text}"
    return f"{what} is not valid: field {found.group(1)[1:]!r}: {text[: found.start()].strip(' -')}"
