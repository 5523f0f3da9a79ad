"""Readiness probes (platform/core/readiness.py): checks run together, each bounded by
its timeout, answered from a short cache so probes cannot overload a dependency, and
only the required checks decide readiness. The checks against real services are in
tests/e2e/test_operability.py."""

from __future__ import annotations

import asyncio
import time

from konsil.platform.core.readiness import Check, Probe, failing, ok


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
