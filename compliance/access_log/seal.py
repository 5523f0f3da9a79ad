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

A seal alone is checked only when ``verify`` runs, and every append seals the head it
finds: a forged head extended and sealed by the next legitimate append (seconds later
on a busy organisation) would look genuine from then on. So before it extends a head,
the append checks that head's seal under the append lock (``HeadSealer.vet``: at most
one Ed25519 verification, none for the head this process sealed last), and
when the head is not one the region sealed it records that in the chain itself
(``alarm.py``) before the caller's entries, never refusing them: reads of personal data
go on, logged. ``verify`` reports such an entry as a failure for good; taking it out
means rewriting the chain, which breaks the seal again, which the next append records
again. A head with no seal at all raises the alarm too, although it may be one written
before heads were sealed: an intruder can blank the two columns as easily, and a
missing seal that passed would leave the whole check one ``UPDATE`` away. So does a
head another process sealed while its key was still uncertified (the region's key
did not answer when it started): anyone can make an uncertified sealing key.

What it does not catch, by design: putting back an earlier head row that the region
did seal (a copy kept from before), after deleting the entries written since. Only a
signed checkpoint newer than that copy catches it: one still stored in the region
(``verify`` compares with the latest), or one an auditor kept (``--since-checkpoint``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Final, Literal

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from konsil.compliance.access_log.chain import GENESIS_HASH
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
# The same for fetching the region's key set to check a head sealed by another process,
# and how long one fetch may hold up an append (it runs under the head's lock).
KEY_SET_RETRY_SECONDS = 30.0
KEY_SET_TIMEOUT_SECONDS = 5.0
# Sealing keys already found certified, and key ids the key set was fetched for and did
# not hold: a few per process start and rotation, bounded against a flood of forged ones.
CACHE_LIMIT: Final = 1024
# The last head this process sealed, per organisation: finding it unchanged needs no
# verification (it is byte for byte what this process signed).
SEALED_LIMIT: Final = 10_000

FindingCode = Literal["unsealed", "unreadable", "other-region", "uncertified", "not-certified", "mismatch"]


@dataclass(frozen=True)
class Finding:
    """Why a head does not carry a valid seal of the region: ``code`` for the record
    (the alarm entry names it), ``detail`` in words."""

    code: FindingCode
    detail: str


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

    @property
    def is_new(self) -> bool:
        """A new organisation's head: nothing written yet, nothing to seal."""
        return (
            self.seq == 0
            and self.entry_hash == GENESIS_HASH
            and self.pruned_seq == 0
            and not self.seal_key
            and not self.seal
        )


def head_state(org_id: uuid.UUID, seq: int, entry_hash: str, pruned_seq: int, pruned_hash: str) -> HeadState:
    return HeadState(org=str(org_id), seq=seq, head_hash=entry_hash, pruned_seq=pruned_seq, pruned_hash=pruned_hash)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- what is wrong with a head -----------------------------------------------------------------

UNSEALED = Finding(
    "unsealed",
    "the chain head carries no seal: it was written outside the log service, or last written before "
    "the region sealed heads",
)
UNREADABLE = Finding(
    "unreadable", "the chain head's sealing key cannot be read: it was written outside the log service"
)
UNCERTIFIED = Finding(
    "uncertified",
    "the chain head was sealed with a key the region never certified (its signing key did not answer "
    "when the head was written, or the head was set outside the log service)",
)
NOT_CERTIFIED = Finding("not-certified", "the chain head's sealing key is not certified by the region's signing keys")
MISMATCH = Finding("mismatch", "the chain head's seal does not match it: the head was set outside the log service")


def _other_region(sealed_for: str, region: str) -> Finding:
    return Finding("other-region", f"the chain head was sealed for region {sealed_for!r}, not {region!r}")


@dataclass(frozen=True)
class _UnknownKid:
    """A certificate signed with a key id the key set at hand does not list."""

    kid: str


def _sealing_key(
    seal_key: str, region: str, key_set: KeySet | None, absent: set[str] | frozenset[str] = frozenset()
) -> Ed25519PublicKey | Finding | _UnknownKid:
    """The public key a head's ``seal_key`` column certifies, or why it does not."""
    try:
        certified = msgspec.json.decode(seal_key, type=CertifiedSealKey)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return UNREADABLE
    if certified.key.region != region:
        return _other_region(certified.key.region, region)
    if certified.signature is None:
        return UNCERTIFIED
    kid = certified.signature.kid
    if kid in absent:
        return NOT_CERTIFIED
    if key_set is None or not any(key.kid == kid for key in key_set.keys):
        return _UnknownKid(kid)
    if not verify_signature(key_set, canonical(certified.key), certified.signature):
        return NOT_CERTIFIED
    try:
        return Ed25519PublicKey.from_public_bytes(_b64url_decode(certified.key.x))
    except ValueError:
        return UNREADABLE


def _seal_holds(public: Ed25519PublicKey, head: HeadRow) -> bool:
    try:
        public.verify(base64.b64decode(head.seal, validate=True), canonical(head.state()))
    except (InvalidSignature, ValueError):
        return False
    return True


def inspect(head: HeadRow, key_set: KeySet) -> Finding | None:
    """What is wrong with ``head``'s seal as a seal of the region of ``key_set``, or None."""
    if not head.seal_key or not head.seal:
        return UNSEALED
    public = _sealing_key(head.seal_key, key_set.region, key_set)
    if isinstance(public, _UnknownKid):
        return NOT_CERTIFIED
    if isinstance(public, Finding):
        return public
    return None if _seal_holds(public, head) else MISMATCH


def check(head: HeadRow, key_set: KeySet) -> str | None:
    """Why ``head`` does not carry a valid seal of the region of ``key_set``, or None."""
    finding = inspect(head, key_set)
    return finding.detail if finding is not None else None


# --- this process's sealing key ----------------------------------------------------------------


class HeadSealer:
    """This process's sealing key. ``certify`` once before sealing (the region service,
    worker and commands do it at start); until it succeeds, heads are sealed with the
    key uncertified, which ``check`` reports, and each later try re-certifies.

    It also checks the heads this process is about to extend (``vet``), against the
    region's key set cached here: fetched when it certifies, and again when a head
    names a key id it does not list (another process certified after a rotation)."""

    def __init__(self, signer: RegionSigner, region_id: str) -> None:
        self._signer = signer
        self._private = Ed25519PrivateKey.generate()
        own = self._private.public_key()
        public = own.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key = SealKey(region=region_id, kid=key_id(public), x=_b64url(public), created_at=now_text())
        self._stored = msgspec.json.encode(CertifiedSealKey(key=self.key, signature=None)).decode()
        self.certified = False
        self._retry_at = 0.0
        self._key_set: KeySet | None = None
        self._key_set_retry_at = 0.0
        # ``seal_key`` column texts whose key this process trusts, its own among them
        # (a head it sealed itself is its own, certified or not).
        self._own = {self._stored: own}
        self._trusted: dict[str, Ed25519PublicKey] = {}
        self._absent: set[str] = set()
        self._sealed: dict[str, tuple[HeadState, str, str]] = {}

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
        self._own[self._stored] = self._private.public_key()
        self.certified = True
        await self._fetch_key_set()
        return True

    def seal(self, state: HeadState) -> tuple[str, str]:
        """The head row's (``seal_key``, ``seal``) for ``state``."""
        value = base64.b64encode(self._private.sign(canonical(state))).decode()
        if len(self._sealed) >= SEALED_LIMIT:
            self._sealed.clear()
        self._sealed[state.org] = (state, self._stored, value)
        return self._stored, value

    async def vet(self, head: HeadRow) -> Finding | None:
        """What is wrong with the head this process is about to extend, or None.

        Called under the head's lock, so it costs nothing when the head is the one this
        process sealed last for the organisation, and one Ed25519 verification when the
        head's sealing key is known (this process's own, or one found certified before),
        and reaches the key service only for a key id it has not seen: fetching the key
        set at most once per such id (a rotation's new key, or a forger's), and while
        the key set cannot be had, at most every ``KEY_SET_RETRY_SECONDS``. Then the
        head is not checked (None), and the service log says so: appends never wait for
        the key service, nor fail with it."""
        if head.is_new:
            return None
        if not head.seal_key or not head.seal:
            return UNSEALED
        if self._sealed.get(str(head.org_id)) == (head.state(), head.seal_key, head.seal):
            return None  # the head this process sealed last, as it sealed it
        public = self._own.get(head.seal_key) or self._trusted.get(head.seal_key)
        if public is None:
            found = _sealing_key(head.seal_key, self.key.region, self._key_set, self._absent)
            if isinstance(found, _UnknownKid):
                await self._fetch_key_set(found.kid)
                found = _sealing_key(head.seal_key, self.key.region, self._key_set, self._absent)
            if isinstance(found, _UnknownKid):
                log.warning(
                    "access log of org %s: the head at #%d was not checked before appending, "
                    "the region's key set cannot be had (its sealing key names key %s)",
                    head.org_id,
                    head.seq,
                    found.kid,
                )
                return None
            if isinstance(found, Finding):
                return found
            public = found
            if len(self._trusted) >= CACHE_LIMIT:
                self._trusted.clear()
            self._trusted[head.seal_key] = public
        return None if _seal_holds(public, head) else MISMATCH

    async def _fetch_key_set(self, wanted: str | None = None) -> None:
        """Fetch the region's key set; note ``wanted`` as absent when it does not list it."""
        if time.monotonic() < self._key_set_retry_at:
            return
        try:
            key_set = await asyncio.wait_for(self._signer.key_set(), KEY_SET_TIMEOUT_SECONDS)
        except (SigningUnavailable, TimeoutError):
            self._key_set_retry_at = time.monotonic() + KEY_SET_RETRY_SECONDS
            log.warning(
                "the region's key set cannot be had: access-log heads sealed by other processes are not "
                "checked before appending for now"
            )
            return
        self._key_set = key_set
        if wanted is not None and not any(key.kid == wanted for key in key_set.keys):
            if len(self._absent) >= CACHE_LIMIT:
                self._absent.clear()
            self._absent.add(wanted)


_current: HeadSealer | None = None


def use_sealer(sealer: HeadSealer | None) -> None:
    """Seal the heads this process writes with ``sealer`` (None: write them unsealed
    and check none before extending it: tests and tools that run no region process).
    Set by the region container's start, like the tables' database binding."""
    global _current
    _current = sealer


def current_sealer() -> HeadSealer | None:
    return _current
