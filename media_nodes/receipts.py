"""Residency receipts: which region and which of its relays carried a call, signed with
the region's own key (``platform/core/keys/region_signing.py``: in its Vault in
services mode, never the control plane's), so an auditor can check them with the
region's published key set (``GET /.well-known/konsil/keys``) and nothing else.

The signed bytes are ``canonical_json(receipt)``: the receipt as the API shows it,
keys sorted, no spaces, UTF-8 (docs/verifying.md, "Residency receipts").
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from konsil.platform.core.keys.region_signing import KeySet, Signature, Verifier, canonical_json

KIND: Final = "konsil.residency-receipt"


class ResidencyReceipt(msgspec.Struct, frozen=True, kw_only=True):
    # What the document is, inside the signed bytes: a signature over a receipt cannot
    # be passed off as one over another document the region signs.
    kind: str = KIND
    call_id: str
    region: str
    jurisdiction: str
    relays: list[str]  # node ids, in the order the call was given them
    issued_at: str  # ISO 8601, UTC


def signed_bytes(receipt: ResidencyReceipt) -> bytes:
    """Exactly what the region signs for a receipt."""
    return canonical_json(receipt)


# valid: signed by a key of the region's key set and unchanged since;
# invalid: its key is in the key set but the receipt was changed after signing;
# unknown_key: it names a key the region never published;
# retired_derivation: made before the region had a key of its own (no key id).
ReceiptStatus = Literal["valid", "invalid", "unknown_key", "retired_derivation"]

NOTES: Final[dict[ReceiptStatus, str]] = {
    "valid": "Signed by the region's own key and unchanged since.",
    "invalid": "This receipt was changed after the region signed it: it proves nothing.",
    "unknown_key": "Signed with a key the region never published: it proves nothing.",
    "retired_derivation": (
        "Issued before the region had a signing key of its own, with a key derived from a secret the "
        "control plane also holds, so the control plane could have forged it: it is not counted as proof."
    ),
}


def check(key_set: KeySet, receipt: ResidencyReceipt | None, signature: Signature | None) -> ReceiptStatus:
    """How a stored receipt stands against the region's key set (``receipt`` None: its
    stored body is no receipt at all; ``signature`` None: a receipt stored before
    receipts named their key)."""
    return check_with(Verifier(key_set), receipt, signature)


def check_with(verifier: Verifier, receipt: ResidencyReceipt | None, signature: Signature | None) -> ReceiptStatus:
    """``check`` with the key set's keys decoded once (``Verifier``), for many receipts.
    The signature is checked over ``signed_bytes(receipt)``, the canonical bytes of the
    receipt's fields as read, so a receipt changed in any field does not verify."""
    decided = precheck(verifier, receipt, signature)
    if isinstance(decided, str):
        return decided
    return "valid" if verifier.verify(*decided) else "invalid"


def precheck(
    verifier: Verifier, receipt: ResidencyReceipt | None, signature: Signature | None
) -> ReceiptStatus | tuple[bytes, Signature]:
    """``check_with`` up to the signature math: the status when that decides it already
    (never "valid"), else the message and signature whose verification does (valid or
    invalid). A report verifies the signatures of many receipts at once
    (``Verifier.verify_all``)."""
    if signature is None or not signature.kid:
        return "retired_derivation"
    if receipt is None:
        return "invalid"
    if not verifier.knows(signature.kid):
        return "unknown_key"
    return signed_bytes(receipt), signature
