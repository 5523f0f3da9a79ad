"""Readiness probes (platform/core/readiness.py): checks run together, each bounded by
its timeout, answered from a short cache so probes cannot overload a dependency, and
only the required checks decide readiness. The checks against real services are in
tests/e2e/test_operability.py."""

from __future__ import annotations

import asyncio
import time

from konsil.media_nodes.relays import RegionRelays
from konsil.platform.core.readiness import Check, Probe, failing, ok
from konsil.regions.readiness import check_turn_secret
from tests.conftest import bare_region


class Counted:
    """A check that answers ``answer`` after ``delay`` seconds and counts its runs."""

    def __init__(self, answer: Check, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.runs = 0

    async def __call__(self) -> Check:
        self.runs += 1
        await asyncio.sleep(self.delay)
        return self.answer


async def test_concurrent_probes_share_one_round_of_checks_within_the_cache_time() -> None:
    database = Counted(ok("answers"), delay=0.05)
    probe = Probe({"database": database}, frozenset({"database"}), cache_seconds=0.3)
    answers = await asyncio.gather(*(probe.run() for _ in range(50)))
    assert database.runs == 1
    assert all(a.ready for a in answers)
    await asyncio.sleep(0.35)
    await probe.run()
    assert database.runs == 2


async def test_a_hanging_check_fails_within_its_timeout_and_the_others_still_answer() -> None:
    probe = Probe(
        {"database": Counted(ok("answers")), "vault": Counted(ok("never"), delay=30)},
        frozenset({"database", "vault"}),
        timeout=0.2,
    )
    started = time.monotonic()
    answer = await probe.run()
    assert time.monotonic() - started < 1
    assert answer.ready is False
    assert answer.checks["vault"] == failing("vault did not answer within 0.2 s")
    assert answer.checks["database"].status == "ok"


async def test_only_required_checks_make_the_process_unready() -> None:
    probe = Probe(
        {"database": Counted(ok("answers")), "broker": Counted(failing("vhost missing"))}, frozenset({"database"})
    )
    answer = await probe.run()
    assert answer.ready is True and answer.checks["broker"].status == "failing"


async def test_a_check_that_raises_is_failing_and_names_only_the_type() -> None:
    async def broken() -> Check:
        raise ValueError("postgresql://user:hunter2@db/x")

    answer = await Probe({"database": broken}, frozenset({"database"})).run()
    assert answer.ready is False
    assert answer.checks["database"] == failing("database check failed (ValueError)")


def test_configured_turn_servers_without_a_secret_are_reported_failing() -> None:
    """A region whose relays are configured turn: servers (no media-node registry) makes
    their credentials with regions.<id>.turn_secret only: without it, calls get relays
    they cannot log in to, and readiness says so instead of "not configured"."""
    servers = ["stun:stun.eu.konsil.test:3478", "turn:turn.eu.konsil.test:3478?transport=udp"]
    without = check_turn_secret(RegionRelays(bare_region(ice_servers=servers)), None)
    assert without.status == "failing" and "regions.eu.turn_secret" in without.detail
    with_secret = RegionRelays(bare_region(ice_servers=servers, turn_secret="eu-turn-secret-0123456789"))
    assert check_turn_secret(with_secret, None).status == "ok"
    stun_only = RegionRelays(bare_region(ice_servers=servers[:1]))
    assert check_turn_secret(stun_only, None).status == "not_configured"
