"""The head seal: every append seals the organisation's chain head with a key only a
process of the region holds, so a head written straight into the database is noticed.

Why a seal, and why this one. The hash chain alone shows an entry edited beside the
service, but not a chain rewritten consistently: cut the tail and set the head to the
new last hash, drop the entries about one visit and re-hash the rest, append a forged
entry and move the head, delete the oldest entries and claim retention removed them.
Each of those ends in a head state (seq, hash, retention point) the region never
wrote. So the region vouches for every head it writes:

- Checkpoints alone cannot do it: a forged entry appended after the latest signed
  checkpoint, dated after it, looks exactly like a real one until the next scheduled
  checkpoint would sign it as genuine. Timestamps only catch forgeries dated back.
- Signing each head with the region's own key would put a Vault round trip (services
  mode) under every append's lock, and make every read of personal data wait for, or
  fail with, the key service.
- An HMAC with a configured secret: the region's ``internal_secret`` is shared with the
  control plane, and rotating it would silently invalidate every head.
- For entries deleted under a forged retention note, an age rule ("the retention point
  claims entries past 6 years, but the organisation is younger") is not sound on its own:
  the removed entries' dates are gone with them, an organisation idle for years has young
  entries right after old removed ones, and its creation date lives in a row the same
  person can edit. The retention point is part of what the seal covers instead.

So each region process makes an Ed25519 *sealing key* in memory when it starts, has
the region's signing key certify it once (``SealKey``: a signed statement "this public
key seals heads for region R"), and seals each head it writes with it (about 50 µs,
no network). The head row carries the certified key and the seal, so anyone holding the
region's published key set can check it, and a person with only database access cannot
make a seal: the private half never leaves the process's memory.

What it does not catch, by design: putting back an earlier head row that the region
did seal (a copy kept from before), after deleting the entries written since. Only a
signed checkpoint newer than that copy catches it: one still stored in the region
(``verify`` compares with the latest), or one an auditor kept (``--since-checkpoint``).
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from dataclasses import dataclass

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from konsil.compliance.access_log.documents import CertifiedSealKey, HeadState, SealKey, canonical, now_text
from konsil.platform.core.keys.region_signing import (
    KeySet,
    RegionSigner,
    SigningUnavailable,
    key_id,
)
from konsil.platform.core.keys.region_signing import (
    verify as verify_signature,
)

log = logging.getLogger("konsil.access_log")

# While the region's signing key does not answer, try to certify again at most this often
# (each try may wait for the key service's timeout, and appends must not).
CERTIFY_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class HeadRow:
    """One ``access_log_head`` row as verification and checkpoints read it."""

    org_id: uuid.UUID
    seq: int
    entry_hash: str
    pruned_seq: int
    pruned_hash: str
    seal_key: str
    seal: str

    def state(self) -> HeadState:
        return head_state(self.org_id, self.seq, self.entry_hash, self.pruned_seq, self.pruned_hash)


def head_state(org_id: uuid.UUID, seq: int, entry_hash: str, pruned_seq: int, pruned_hash: str) -> HeadState:
    return HeadState(org=str(org_id), seq=seq, head_hash=entry_hash, pruned_seq=pruned_seq, pruned_hash=pruned_hash)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class HeadSealer:
    """This process's sealing key. ``certify`` once before sealing (the region service,
    worker and commands do it at start); until it succeeds, heads are sealed with the
    key uncertified, which ``check`` reports, and each later try re-certifies."""

    def __init__(self, signer: RegionSigner, region_id: str) -> None:
        self._signer = signer
        self._private = Ed25519PrivateKey.generate()
        public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key = SealKey(region=region_id, kid=key_id(public), x=_b64url(public), created_at=now_text())
        self._stored = msgspec.json.encode(CertifiedSealKey(key=self.key, signature=None)).decode()
        self.certified = False
        self._retry_at = 0.0

    async def certify(self) -> bool:
        """Have the region's signing key certify this sealing key; False while it does
        not answer (tried again at most every ``CERTIFY_RETRY_SECONDS``)."""
        if self.certified:
            return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            signature = await self._signer.sign(canonical(self.key))
        except SigningUnavailable:
            self._retry_at = time.monotonic() + CERTIFY_RETRY_SECONDS
            log.warning("the region's signing key does not answer: access-log heads are sealed uncertified for now")
            return False
        self._stored = msgspec.json.encode(CertifiedSealKey(key=self.key, signature=signature)).decode()
        self.certified = True
        return True

    def seal(self, state: HeadState) -> tuple[str, str]:
        """The head row's (``seal_key``, ``seal``) for ``state``."""
        return self._stored, base64.b64encode(self._private.sign(canonical(state))).decode()


_current: HeadSealer | None = None


def use_sealer(sealer: HeadSealer | None) -> None:
    """Seal the heads this process writes with ``sealer`` (None: write them unsealed).
    Set by the region container's start, like the tables' database binding."""
    global _current
    _current = sealer


def current_sealer() -> HeadSealer | None:
    return _current


def check(head: HeadRow, key_set: KeySet) -> str | None:
    """Why ``head`` does not carry a valid seal of the region of ``key_set``, or None."""
    if not head.seal_key or not head.seal:
        return "the chain head carries no seal: it was written outside the log service"
    try:
        certified = msgspec.json.decode(head.seal_key, type=CertifiedSealKey)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "the chain head's sealing key cannot be read: it was written outside the log service"
    if certified.key.region != key_set.region:
        return f"the chain head was sealed for region {certified.key.region!r}, not {key_set.region!r}"
    if certified.signature is None:
        return (
            "the chain head was sealed with a key the region never certified (its signing key did not answer "
            "when the head was written, or the head was set outside the log service)"
        )
    if not verify_signature(key_set, canonical(certified.key), certified.signature):
        return "the chain head's sealing key is not certified by the region's signing keys"
    try:
        public = Ed25519PublicKey.from_public_bytes(_b64url_decode(certified.key.x))
        public.verify(base64.b64decode(head.seal, validate=True), canonical(head.state()))
    except (InvalidSignature, ValueError):
        return "the chain head's seal does not match it: the head was set outside the log service"
    return None
