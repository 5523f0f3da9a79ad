"""Keyed hashes (blind indexes) of normalised e-mail addresses, shared by the
control plane's login discovery and the region services."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata


def normalise_email(email: str) -> str:
    return unicodedata.normalize("NFKC", email).strip().lower()


def email_lookup(key: str, email: str) -> str:
    return hmac.new(key.encode(), b"email:" + normalise_email(email).encode(), hashlib.sha256).hexdigest()
