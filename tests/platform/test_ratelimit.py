"""The sliding-window rate limit: 429 with Retry-After past the limit, per key, and it recovers."""

from __future__ import annotations

import pytest

from konsil.platform.core.errors import AppError
from konsil.platform.core.ratelimit import RateLimit, wait_in_words


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limit_per_key_and_retry_after() -> None:
    clock = Clock()
    limit = RateLimit("login", 3, 60, clock=clock)
    for _ in range(3):
        limit.hit("a@example.org")
    with pytest.raises(AppError) as refused:
        limit.hit("a@example.org")
    assert refused.value.status == 429
    wait = int(refused.value.headers["retry-after"])
    assert 1 <= wait <= 60
    limit.hit("b@example.org")  # another key is not affected


def test_window_slides_and_recovers() -> None:
    clock = Clock()
    limit = RateLimit("signup", 2, 10, clock=clock)
    limit.hit("k")
    limit.hit("k")
    assert limit.retry_after("k") is not None
    clock.now += 25  # two windows later nothing is remembered
    assert limit.retry_after("k") is None
    limit.hit("k")


def test_keys_are_not_kept_in_clear() -> None:
    limit = RateLimit("login", 5, 60)
    limit.hit("someone@example.org")
    assert all(b"someone" not in key for key in limit._current)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimit("x", 0, 10)


def test_the_wait_is_said_as_a_person_reads_it() -> None:
    assert wait_in_words("19") == "19 seconds"
    assert wait_in_words("199") == "about 4 minutes"
    assert wait_in_words("junk") == "60 seconds"
