"""Signed internal calls between the control plane and region services.

The signature is an HMAC-SHA256 over method, path with query, body hash,
timestamp and a nonce. A region accepts a call only inside the replay window
and only once per nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict

SIGNATURE_HEADER = "x-konsil-signature"
TIMESTAMP_HEADER = "x-konsil-timestamp"
NONCE_HEADER = "x-konsil-nonce"
SIGNER_HEADER = "x-konsil-signer"
# The original client address, trusted by a region only on a call signed by the control plane.
FORWARDED_FOR = "x-konsil-forwarded-for"
SIGNED_HEADERS = (SIGNATURE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNER_HEADER)


class SignatureError(Exception):
    """Why an internal call was refused (safe to show: names no secret)."""


def _message(method: str, path: str, body_sha256: str, timestamp: str, nonce: str, signer: str) -> bytes:
    return "\n".join((method.upper(), path, body_sha256, timestamp, nonce, signer)).encode()


def sign(secret: str, method: str, path: str, body: bytes, signer: str, now: float | None = None) -> dict[str, str]:
    """Headers that sign one request. ``path`` includes the query string."""
    timestamp = str(int(now if now is not None else time.time()))
    nonce = secrets.token_hex(16)
    digest = hashlib.sha256(body).hexdigest()
    mac = hmac.new(secret.encode(), _message(method, path, digest, timestamp, nonce, signer), hashlib.sha256)
    return {
        SIGNATURE_HEADER: mac.hexdigest(),
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNER_HEADER: signer,
    }


class RequestSigner:
    """``sign`` for one secret and signer, as header lines ready for a request head
    (the gateway signs every forwarded call): no dict, no re-encoding, the key encoded
    once. A one-shot HMAC: copying a prepared HMAC object costs more than making one."""

    def __init__(self, secret: str, signer: str) -> None:
        self._key = secret.encode()
        self._signer = signer
        self._signer_line = f"{SIGNER_HEADER}: {signer}\r\n".encode()

    def header_lines(self, method: str, path: str, body: bytes, now: float | None = None) -> bytes:
        timestamp = str(int(now if now is not None else time.time()))
        nonce = os.urandom(16).hex()  # what secrets.token_hex(16) does, minus two calls
        message = _message(method, path, hashlib.sha256(body).hexdigest(), timestamp, nonce, self._signer)
        mac = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return (
            f"{SIGNATURE_HEADER}: {mac}\r\n{TIMESTAMP_HEADER}: {timestamp}\r\n{NONCE_HEADER}: {nonce}\r\n"
        ).encode() + self._signer_line


class NonceCache:
    """Nonces seen inside the replay window, bounded so a flood cannot grow it."""

    def __init__(self, window_seconds: int, max_entries: int = 1_000_000) -> None:
        self.window = window_seconds
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, nonce: str, now: float) -> bool:
        """False when the nonce was already used inside the window, or when the
        cache is full of live nonces (fail closed: evicting one would allow a replay)."""
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if at >= now - 2 * self.window:
                    break
                self._seen.pop(oldest)
            if nonce in self._seen or len(self._seen) >= self.max_entries:
                return False
            self._seen[nonce] = now
            return True


class Verifier:
    def __init__(self, secrets_by_signer: dict[str, str], window_seconds: int) -> None:
        self.secrets = secrets_by_signer
        self.window = window_seconds
        self.nonces = NonceCache(window_seconds)

    def verify(self, method: str, path: str, body: bytes, headers: dict[str, str], now: float | None = None) -> str:
        """Return the signer's name or raise SignatureError."""
        now = time.time() if now is None else now
        signature = headers.get(SIGNATURE_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        nonce = headers.get(NONCE_HEADER, "")
        signer = headers.get(SIGNER_HEADER, "")
        if not signature:
            raise SignatureError("internal call is not signed")
        secret = self.secrets.get(signer)
        if secret is None:
            raise SignatureError("internal call from an unknown signer")
        if not timestamp.isdigit() or abs(now - int(timestamp)) > self.window:
            raise SignatureError("internal call is outside the replay window")
        if not (16 <= len(nonce) <= 64):
            raise SignatureError("internal call has no valid nonce")
        digest = hashlib.sha256(body).hexdigest()
        expected = hmac.new(secret.encode(), _message(method, path, digest, timestamp, nonce, signer), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature):
            raise SignatureError("internal call has a bad signature")
        if not self.nonces.add(nonce, now):
            raise SignatureError("internal call was replayed (or too many calls inside the window)")
        return signer
