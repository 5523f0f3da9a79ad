"""The in-process task runner of the embedded default: a task that raises RetryLater runs
again later with the same run id; short tasks (a webhook, an alert) run while a purge
holds the lifecycle's turn; a task delayed by ``delay_seconds`` waits that long."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace
from typing import Any, cast

import pytest

from konsil.platform.core.region import RegionContext, RetryLater
from konsil.regions import tasks
from konsil.regions.tasks import InProcessRunner
from tests.conftest import wait_until_async


def runner() -> InProcessRunner:
    # The runner reads only the region's id from its container.
    return InProcessRunner(cast(RegionContext, SimpleNamespace(region=SimpleNamespace(id="eu"))))


async def test_a_task_that_asks_to_retry_runs_again_with_the_same_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[uuid.UUID, float]] = []

    async def flaky(ctx: RegionContext, region: str, run_id: uuid.UUID) -> dict[str, Any]:
        runs.append((run_id, time.monotonic()))
        if len(runs) < 3:
            raise RetryLater(0.2, "the provider did not answer")
        return {"sent": True}

    monkeypatch.setitem(tasks.TASKS, "test.flaky", flaky)
    run = runner()
    run_id = uuid.uuid4()
    assert run.submit("test.flaky", run_id) == str(run_id)
    await wait_until_async(lambda: len(runs) >= 3 or None, "the third run", within=30, every=0.05)
    assert [r for r, _ in runs] == [run_id] * 3
    assert runs[1][1] - runs[0][1] >= 0.2 and runs[2][1] - runs[1][1] >= 0.2
    await run.stop()


async def test_short_tasks_do_not_wait_for_the_lifecycle(monkeypatch: pytest.MonkeyPatch) -> None:
    purge_running = asyncio.Event()
    release = asyncio.Event()
    alerted = asyncio.Event()

    async def long_purge(ctx: RegionContext, region: str, run_id: uuid.UUID) -> dict[str, Any]:
        purge_running.set()
        await release.wait()
        return {}

    async def alert(ctx: RegionContext, region: str, run_id: uuid.UUID) -> dict[str, Any]:
        alerted.set()
        return {}

    monkeypatch.setitem(tasks.TASKS, tasks.PURGE, long_purge)
    monkeypatch.setitem(tasks.TASKS, "test.alert", alert)
    run = runner()
    run.submit(tasks.PURGE)
    await asyncio.wait_for(purge_running.wait(), 30)
    run.submit("test.alert")
    await asyncio.wait_for(alerted.wait(), 30)  # while the purge still holds its turn
    release.set()
    await run.stop()


async def test_a_delayed_task_waits_and_an_unknown_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[float] = []

    async def later(ctx: RegionContext, region: str, run_id: uuid.UUID) -> dict[str, Any]:
        ran.append(time.monotonic())
        return {}

    monkeypatch.setitem(tasks.TASKS, "test.later", later)
    run = runner()
    start = time.monotonic()
    run.submit("test.later", delay_seconds=0.3)
    await wait_until_async(lambda: bool(ran) or None, "the delayed run", within=30, every=0.05)
    assert ran and ran[0] - start >= 0.3
    with pytest.raises(KeyError):
        run.submit("test.no-such-task")
    await run.stop()
