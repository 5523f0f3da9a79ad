"""Residency receipts: the exact bytes signed, and how a stored receipt stands against
the region's key set (signed with the embedded default's key here; with the region's
OpenBao key, through a running region: tests/e2e/test_verifying_doc.py)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from konsil.media_nodes.receipts import NOTES, ResidencyReceipt, check, signed_bytes
from konsil.platform.core.keys.region_signing import LocalSigner, Signature

RECEIPT = ResidencyReceipt(
    call_id="5b0e6f7a-0000-4000-8000-000000000001",
    region="eu",
    jurisdiction="EU/EEA (GDPR)",
    relays=["eu-relay-1"],
    issued_at="2026-11-28T23:10:01.123456+00:00",
)


def test_the_signed_bytes_are_the_receipt_as_shown_in_canonical_json() -> None:
    shown = msgspec.to_builtins(RECEIPT)  # what the API answers as "receipt"
    assert shown["kind"] == "konsil.residency-receipt"
    assert signed_bytes(RECEIPT) == json.dumps(shown, sort_keys=True, separators=(",", ":")).encode()
    assert signed_bytes(RECEIPT).startswith(b'{"call_id":"5b0e6f7a')


async def test_a_stored_receipt_is_valid_only_unchanged_and_under_a_published_key(tmp_path: Path) -> None:
    signer = LocalSigner(tmp_path / "signing", "eu")
    signature = await signer.sign(signed_bytes(RECEIPT))
    key_set = await signer.key_set()
    assert check(key_set, RECEIPT, signature) == "valid"
    moved = msgspec.structs.replace(RECEIPT, relays=["eu-relay-1", "us-relay-1"])
    assert check(key_set, moved, signature) == "invalid"
    other = LocalSigner(tmp_path / "other", "eu")
    foreign = await other.sign(signed_bytes(RECEIPT))
    assert check(key_set, RECEIPT, foreign) == "unknown_key"
    assert check(key_set, RECEIPT, None) == "retired_derivation"
    assert check(key_set, None, signature) == "invalid", "a stored body that is no receipt"
    assert check(key_set, RECEIPT, Signature(kid="", value=signature.value)) == "retired_derivation"
    # A rotation later, it still stands.
    await signer.rotate_key()
    assert check(await signer.key_set(), RECEIPT, signature) == "valid"


def test_receipts_stored_before_they_named_their_kind_still_read() -> None:
    old = b'{"call_id":"c","region":"eu","jurisdiction":"EU/EEA","relays":["r"],"issued_at":"2026-11-01T10:00:00"}'
    assert msgspec.json.decode(old, type=ResidencyReceipt).relays == ["r"]
    assert "control plane could have forged it" in NOTES["retired_derivation"]
