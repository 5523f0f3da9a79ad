"""Refused access is logged only up to a bound per actor and minute (issue 11, item 6);
the logging of refusals itself is tested against the running stack (tests/e2e/test_access_log_view.py)."""

from __future__ import annotations

from konsil.tenants.actors import DenialBound


def test_the_denial_bound_counts_per_key_and_minute() -> None:
    now = [0.0]
    bound = DenialBound(3, clock=lambda: now[0], max_keys=2)
    assert [bound.admit("a") for _ in range(5)] == ["log", "log", "log", "summary", None]
    assert bound.admit("b") == "log", "another actor has a bound of its own"
    assert bound.admit("c") is None, "past max_keys a new key is not tracked"
    now[0] = 60.0
    assert bound.admit("a") == "log", "a new minute starts afresh"
