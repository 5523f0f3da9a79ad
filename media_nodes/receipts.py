"""Residency receipts: which region and which of its relays carried a call, signed by
the region service with Ed25519 so an auditor can check them with the region's
public key (``GET /.well-known/konsil/receipt-key``) and nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from konsil.platform.core.settings import RegionSettings


class ResidencyReceipt(msgspec.Struct, frozen=True):
    call_id: str
    region: str
    jurisdiction: str
    relays: list[str]  # node ids, in the order the call was given them
    issued_at: str  # ISO 8601, UTC


def signing_key(region: RegionSettings) -> Ed25519PrivateKey:
    """The region's receipt key, derived from its internal secret (held by the region
    service and, for signing only, nowhere else that needs it)."""
    seed = hmac.new(region.internal_secret.encode(), b"konsil residency receipt key v1", hashlib.sha256).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_b64(region: RegionSettings) -> str:
    raw = signing_key(region).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(region: RegionSettings, receipt: ResidencyReceipt) -> str:
    return base64.b64encode(signing_key(region).sign(msgspec.json.encode(receipt))).decode()


def verify(public_key: str, receipt: ResidencyReceipt, signature: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(base64.b64decode(signature), msgspec.json.encode(receipt))
    except (InvalidSignature, ValueError):
        return False
    return True
