"""Rate limits where abuse is cheap (logins, login discovery, signup, the visitor form,
invitations): a sliding window per key, answered with 429 and Retry-After.

Counters live in the process (each replica counts its own callers): enough to stop a
flood from one client without a shared store on the request path. Keys are hashed
before they are kept, so an e-mail address used as a key is never held in memory.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

from konsil.platform.core.errors import AppError


class RateLimit:
    """At most ``limit`` hits per key in any ``per_seconds`` window (two-bucket estimate)."""

    def __init__(self, name: str, limit: int, per_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or per_seconds <= 0:
            raise ValueError("a rate limit needs limit >= 1 and per_seconds > 0")
        self.name = name
        self.limit = limit
        self.per_seconds = per_seconds
        self._clock = clock
        self._window = -1
        self._current: dict[bytes, int] = {}
        self._previous: dict[bytes, int] = {}

    @staticmethod
    def _key(key: str) -> bytes:
        return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def _roll(self, now: float) -> int:
        window = int(now // self.per_seconds)
        if window != self._window:
            self._previous = self._current if window == self._window + 1 else {}
            self._current = {}
            self._window = window
        return window

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or None when it may now (does not count a hit)."""
        now = self._clock()
        window = self._roll(now)
        hashed = self._key(key)
        elapsed = now - window * self.per_seconds
        weight = 1.0 - elapsed / self.per_seconds
        used = self._current.get(hashed, 0) + self._previous.get(hashed, 0) * weight
        if used < self.limit:
            return None
        return max(1, math.ceil(self.per_seconds - elapsed))

    def hit(self, key: str) -> None:
        """Count one attempt for ``key``; raise 429 (with Retry-After) when over the limit."""
        wait = self.retry_after(key)
        if wait is not None:
            raise too_many_requests(wait)
        hashed = self._key(key)
        self._current[hashed] = self._current.get(hashed, 0) + 1


def too_many_requests(retry_after: int) -> AppError:
    return AppError(
        429,
        "too_many_requests",
        f"too many attempts; try again in {retry_after} seconds",
        headers={"retry-after": str(retry_after)},
    )


def wait_in_words(retry_after: str) -> str:
    """A Retry-After value as a person reads it: "20 seconds", "about 4 minutes"."""
    seconds = int(retry_after) if retry_after.isdigit() else 60
    if seconds < 90:
        return f"{seconds} seconds"
    return f"about {math.ceil(seconds / 60)} minutes"
