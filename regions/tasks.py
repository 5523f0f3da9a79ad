"""A region's background tasks (the data lifecycle: retention purges, and signed
checkpoints of the access logs) and who runs them.

Two runners behind one interface (``TaskRunner``), chosen by configuration
(``regions.<id>.lifecycle.runner``):

- **Celery on the region's RabbitMQ** (services mode): ``konsil worker --region eu``
  and ``konsil beat --region eu``. Region-pinned: the broker URL names the region's
  own vhost (``konsil-eu``), the queue is ``konsil.eu.lifecycle``, and a worker
  refuses a task addressed to another region, so an EU task is never run by a US
  worker. Tasks are acknowledged late and rejected when their worker dies, so a
  killed worker's task is redelivered; the task id is the purge run's id, so the
  redelivered run continues where the dead one stopped and ends in the same state.
- **In-process** (the embedded default): the region service runs the same task
  functions on the same schedule in a background asyncio task.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from konsil.compliance.access_log.checkpoints import checkpoint_moved
from konsil.compliance.reports.jobs import REPORT_TASK, generate
from konsil.compliance.retention.purge import PurgeRequest, purge, run_as_of, summary
from konsil.compliance.retention.tables import PurgeRun
from konsil.platform.core import broker, database, liveness, startup
from konsil.platform.core.region import RegionContext, RetryLater
from konsil.platform.core.settings import ConfigError, RegionSettings, Settings
from konsil.regions.container import open_region
from konsil.tenants.messaging.alerts import (
    ALERT_TASK,
    SWEEP_EVERY_SECONDS,
    SWEEP_TASK,
    arrival_alert_task,
    sweep_task,
)
from konsil.tenants.payments.service import EVENT_TASK, event_task, resubmit_stale

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("konsil.tasks")

PURGE = "konsil.lifecycle.purge"
CHECKPOINT = "konsil.lifecycle.checkpoint"
# Access-log checkpoints are signed at least hourly (more often when purges run more often):
# the window in which a forged entry could still be signed as genuine is that long.
CHECKPOINT_EVERY_SECONDS = 3600


def checkpoint_every(region: RegionSettings) -> int:
    return min(CHECKPOINT_EVERY_SECONDS, region.lifecycle.purge_every_seconds)


def queue_name(region_id: str) -> str:
    return f"konsil.{region_id}.lifecycle"


def uses_celery(settings: Settings, region: RegionSettings) -> bool:
    runner = region.lifecycle.runner
    if runner == "auto":
        return settings.mode == "services" and bool(region.broker_url)
    return runner == "celery"


# --- the tasks (the same functions for both runners) ----------------------------------------


class WrongRegion(Exception):
    """A task addressed to another region reached this region's worker."""


# PostgreSQL advisory-lock key of a region's scheduled purge (any fixed 64-bit number).
_PURGE_LOCK = 0x4B6F6E73696C5055  # "KonsilPU"
REDELIVERED_WAIT_SECONDS = 60.0


def _only_one(ctx: RegionContext, wait_seconds: float = 0) -> contextlib.AbstractAsyncContextManager[bool]:
    """Whether this process may run the region's scheduled purge now: one lock per
    region database (``database.advisory_lock``), waited for up to ``wait_seconds``."""
    return database.advisory_lock(ctx.engine, _PURGE_LOCK, wait_seconds)


async def _ran_recently(ctx: RegionContext, run_id: uuid.UUID) -> bool:
    """Another scheduled run began within half an interval (another replica's schedule);
    ``as_of`` is a run's clock, taken when it began (a class's own start can be later)."""

    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ctx.region.lifecycle.purge_every_seconds / 2)
    return bool(
        await PurgeRun.exists().where(
            (PurgeRun.trigger == "schedule") & (PurgeRun.as_of > since) & (PurgeRun.run_id != run_id)
        )
    )


async def purge_task(ctx: RegionContext, region: str, run_id: uuid.UUID) -> dict[str, Any]:
    """One scheduled purge run. Re-running the same ``run_id`` (a redelivered task)
    keeps its first clock, so its cutoffs and final state do not move.

    One run at a time per region: a run that finds another running (a second
    replica's in-process schedule, a duplicated beat) does nothing, and so does a new
    run within half an interval of another one's start."""

    if region != ctx.region.id:
        raise WrongRegion(f"a task of region {region!r} reached a worker of region {ctx.region.id!r}")
    begun = await run_as_of(run_id)
    # A redelivered run waits a while: its killed worker's lock goes when the database
    # notices the closed connection.
    async with _only_one(ctx, wait_seconds=0 if begun is None else REDELIVERED_WAIT_SECONDS) as mine:
        if not mine:
            return {"run_id": str(run_id), "skipped": "another purge of this region is running"}
        if begun is None and await _ran_recently(ctx, run_id):
            return {"run_id": str(run_id), "skipped": "another replica's scheduled purge ran within half an interval"}
        request = PurgeRequest(
            run_id=run_id,
            as_of=begun or dt.datetime.now(dt.UTC),
            trigger="schedule",
            batch_size=ctx.region.lifecycle.purge_batch_size,
        )
        results = await purge(ctx, request)
    failed = [r.data_class for r in results if r.outcome == "failure"]
    return {"run_id": str(run_id), "removed": summary(results), "failed": failed}


async def checkpoint_task(ctx: RegionContext, region: str, run_id: uuid.UUID) -> dict[str, Any]:
    """Sign a checkpoint of every access log of the region that moved since its last one
    (``compliance/access_log/checkpoints.py``). Running twice at once only makes a
    checkpoint twice, so there is no lock."""
    if region != ctx.region.id:
        raise WrongRegion(f"a task of region {region!r} reached a worker of region {ctx.region.id!r}")
    result = await checkpoint_moved(ctx)
    return {"run_id": str(run_id), "checkpoints": result.made, "refused": result.refused}


async def report_task(ctx: RegionContext, region: str, run_id: uuid.UUID) -> dict[str, Any]:
    """Generate one compliance report (``compliance/reports/jobs.py``); the task id is
    the report job's id, so a redelivered task runs the same job again from its start."""
    if region != ctx.region.id:
        raise WrongRegion(f"a task of region {region!r} reached a worker of region {ctx.region.id!r}")
    return {"report": str(run_id), "status": await generate(ctx, run_id)}


async def messaging_sweep_task(ctx: RegionContext, region: str, run_id: uuid.UUID) -> dict[str, Any]:
    """The region's sweep every minute: hands out again the SMS alerts whose task was lost
    (tenants/messaging/alerts.py) and the payment webhook events whose task was lost
    (tenants/payments/service.py), to this region's queue when it runs on a Celery worker
    (whose context has no runner)."""
    if ctx.tasks is None:
        ctx.tasks = CeleryRunner(ctx.settings, region)
    result = await sweep_task(ctx, region, run_id)
    result["payment_events_handed_out"] = await resubmit_stale(ctx)
    return result


TASKS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    PURGE: purge_task,
    CHECKPOINT: checkpoint_task,
    REPORT_TASK: report_task,
    ALERT_TASK: arrival_alert_task,
    EVENT_TASK: event_task,
    SWEEP_TASK: messaging_sweep_task,
}
# The data lifecycle's tasks run one at a time in process (a purge and a report share the
# database's heaviest work); the others (a webhook, an alert) are short and run alongside.
LIFECYCLE = frozenset({PURGE, CHECKPOINT, REPORT_TASK})
# A task that keeps raising RetryLater is run again no later than this.
MAX_RETRY_SECONDS = 3600.0


class TaskRunner(Protocol):
    """Hands a region task to whoever runs this region's tasks; returns the task id."""

    def submit(self, task: str, run_id: uuid.UUID | None = None, delay_seconds: float = 0) -> str: ...


# --- in-process (embedded default) --------------------------------------------------------------


class InProcessRunner:
    """Runs tasks as asyncio tasks of the region service, one at a time."""

    def __init__(self, ctx: RegionContext) -> None:
        self.ctx = ctx
        self._lock = asyncio.Lock()
        self._running: set[asyncio.Task[None]] = set()
        self._active: asyncio.Task[Any] | None = None  # the run holding the lock

    def submit(self, task: str, run_id: uuid.UUID | None = None, delay_seconds: float = 0) -> str:
        if task not in TASKS:
            raise KeyError(f"no region task named {task!r}")
        run_id = run_id or uuid.uuid4()
        job = asyncio.create_task(self._later(task, run_id, delay_seconds))
        self._running.add(job)
        job.add_done_callback(self._running.discard)
        return str(run_id)

    async def _later(self, task: str, run_id: uuid.UUID, delay_seconds: float) -> None:
        if delay_seconds > 0:
            await asyncio.sleep(delay_seconds)
        if task in LIFECYCLE:
            async with self._lock:
                self._active = asyncio.current_task()
                try:
                    await self._run(task, run_id)
                finally:
                    self._active = None
        else:
            await self._run(task, run_id)

    async def _run(self, task: str, run_id: uuid.UUID) -> None:
        try:
            result = await TASKS[task](self.ctx, self.ctx.region.id, run_id)
            log.info("task %s %s done: %s", task, run_id, result)
        except RetryLater as again:
            seconds = min(again.seconds, MAX_RETRY_SECONDS)
            log.info("task %s %s runs again in %.0f s: %s", task, run_id, seconds, again)
            self.submit(task, run_id, seconds)
        except Exception:  # logged; the next scheduled run tries again
            log.exception("task %s %s failed", task, run_id)

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Drop the runs still waiting their turn, and let the one running finish (up to
        ``grace_seconds``, then it is cancelled): a purge cut mid-batch would leave its
        record 'running' and, cancelled inside a database call, could keep a pooled
        connection that the pool's close then waits for."""
        active = self._active
        waiting = [job for job in self._running if job is not active]
        for job in waiting:
            job.cancel()
        for job in waiting:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        if active is not None and not active.done():
            try:
                await asyncio.wait_for(asyncio.shield(active), grace_seconds)
            except TimeoutError:
                active.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await active


class InProcessScheduler:
    """The embedded default's beat: submits the purge every ``purge_every_seconds``, the
    checkpoints every ``checkpoint_every_seconds`` and the region's sweep (lost alerts and
    payment events) every ``sweep_every_seconds`` (each first one interval after start, as
    Celery beat does)."""

    def __init__(
        self,
        runner: InProcessRunner,
        every_seconds: float,
        checkpoint_every_seconds: float | None = None,
        sweep_every_seconds: float | None = None,
    ) -> None:
        self.runner = runner
        self.every_seconds = every_seconds
        self.checkpoint_every_seconds = checkpoint_every_seconds
        self.sweep_every_seconds = sweep_every_seconds
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> InProcessScheduler:
        self._loops = [asyncio.create_task(self._tick(PURGE, self.every_seconds))]
        if self.checkpoint_every_seconds is not None:
            self._loops.append(asyncio.create_task(self._tick(CHECKPOINT, self.checkpoint_every_seconds)))
        if self.sweep_every_seconds is not None:
            self._loops.append(asyncio.create_task(self._tick(SWEEP_TASK, self.sweep_every_seconds)))
        return self

    async def _tick(self, task: str, every_seconds: float) -> None:
        while True:
            await asyncio.sleep(every_seconds)
            self.runner.submit(task)

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await self.runner.stop()


def start_in_process(ctx: RegionContext) -> InProcessScheduler | None:
    """For the region service's lifespan: the in-process scheduler, unless this
    region's tasks run on Celery workers."""
    if uses_celery(ctx.settings, ctx.region):
        return None
    every = ctx.region.lifecycle.purge_every_seconds
    return InProcessScheduler(InProcessRunner(ctx), every, checkpoint_every(ctx.region), SWEEP_EVERY_SECONDS).start()


# --- Celery (services mode) ---------------------------------------------------------------------


def celery_app(settings: Settings, region_id: str) -> Celery:
    """The Celery app of one region: its own broker (vhost), queue and schedule only."""
    from celery import Celery
    from celery.exceptions import Reject
    from kombu import Queue

    settings = settings.for_region(region_id)
    region = settings.region(region_id)
    if not region.broker_url:
        raise ConfigError(f"regions.{region_id}.broker_url: required to run Celery workers or beat")
    queue = queue_name(region_id)
    app = Celery(f"konsil-{region_id}", broker=region.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # a task is acknowledged when done, so a dead worker's task is redelivered
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(queue, routing_key=queue)],
        task_default_queue=queue,
        task_routes={"konsil.*": {"queue": queue}},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        timezone="UTC",
        enable_utc=True,
        # The solo pool runs a task in the worker process itself (killing it kills the task);
        # it cannot answer AMQP heartbeats while a task runs, so none are asked for.
        broker_heartbeat=0,
        broker_connection_retry_on_startup=True,
        # A broker that restarts or is away for a while: the worker reconnects by itself
        # (every 2, 4, ... up to 30 s) for as long as it takes, instead of exiting after 100
        # tries. A purge running when the connection goes finishes (the solo pool cannot
        # cancel it); its acknowledgement is lost, so the broker redelivers the task, and the
        # redelivered run (same run id) ends the same run without removing or counting twice.
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        beat_schedule={
            "purge": {
                "task": PURGE,
                "schedule": dt.timedelta(seconds=region.lifecycle.purge_every_seconds),
                "kwargs": {"region": region_id},
                "options": {"queue": queue},
            },
            "checkpoint": {
                "task": CHECKPOINT,
                "schedule": dt.timedelta(seconds=checkpoint_every(region)),
                "kwargs": {"region": region_id},
                "options": {"queue": queue},
            },
            "messaging-sweep": {
                "task": SWEEP_TASK,
                "schedule": dt.timedelta(seconds=SWEEP_EVERY_SECONDS),
                "kwargs": {"region": region_id},
                # Sweeps do not pile up while no worker runs: the next one does the same.
                "options": {"queue": queue, "expires": SWEEP_EVERY_SECONDS},
            },
        },
        beat_schedule_filename=str(Path(settings.data_dir) / f"celerybeat-{region_id}"),
    )

    def region_task(name: str) -> None:
        @app.task(name=name, bind=True)
        def run(self: Any, region: str) -> dict[str, Any]:
            if region != region_id:  # never run another region's task; drop it, do not requeue
                log.error("refused a task of region %r: this worker serves region %r", region, region_id)
                raise Reject(f"task of region {region!r} refused by a worker of region {region_id!r}", requeue=False)
            try:
                return asyncio.run(_in_region(settings, region_id, name, uuid.UUID(str(self.request.id))))
            except RetryLater as again:
                # Same task id: the retry continues the same row. The task counts its own
                # attempts, so Celery's count is not the limit.
                raise self.retry(countdown=min(again.seconds, MAX_RETRY_SECONDS), max_retries=None) from again

    for name in TASKS:
        region_task(name)
    return app


async def _in_region(settings: Settings, region_id: str, task: str, run_id: uuid.UUID) -> dict[str, Any]:

    async with open_region(settings, settings.region(region_id)) as ctx:
        ctx.service_name = "worker"
        return await TASKS[task](ctx, region_id, run_id)


class CeleryRunner:
    """Sends a region's tasks to its own queue on its own broker."""

    def __init__(self, settings: Settings, region_id: str) -> None:
        self.region_id = region_id
        self.app = celery_app(settings, region_id)

    def submit(self, task: str, run_id: uuid.UUID | None = None, delay_seconds: float = 0) -> str:
        if task not in TASKS:
            raise KeyError(f"no region task named {task!r}")
        task_id = str(run_id or uuid.uuid4())
        self.app.send_task(
            task,
            kwargs={"region": self.region_id},
            task_id=task_id,
            queue=queue_name(self.region_id),
            countdown=delay_seconds or None,
        )
        return task_id


BROKER_FIRST_RETRY_SECONDS = 1.0
BROKER_MAX_RETRY_SECONDS = 60.0


def wait_for_broker(
    url: str,
    *,
    first_retry: float = BROKER_FIRST_RETRY_SECONDS,
    max_retry: float = BROKER_MAX_RETRY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Block until the region's RabbitMQ accepts a connection to its vhost; the number
    of failed tries. Celery retries a refused connection (a missing vhost, a refused
    login) at once and logs each try with several lines, about five times a second;
    this waits with backoff (``first_retry`` doubling to ``max_retry``, with jitter)
    and says what is wrong in one line per try."""
    from kombu import Connection

    failures = 0
    delay = first_retry
    while True:
        try:
            with Connection(url, connect_timeout=5) as connection:
                connection.connect()
        except Exception as exc:  # py-amqp's errors and socket errors: said in one line
            failures += 1
            wait = min(max_retry, delay) * random.uniform(0.75, 1.25)  # jitter: workers spread out
            log.warning("%s; retrying in %.0f s", broker.describe(exc, url), wait)
            sleep(wait)
            delay = min(max_retry, delay * 2)
            continue
        if failures:
            log.info("RabbitMQ at %s accepts connections now", broker.where(url))
        return failures


def _start(
    settings: Settings,
    region_id: str,
    what: str,
    loglevel: str,
    app: Celery,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Logging set up as Celery would (so these lines look like its own), the start
    line, then the broker waited for."""
    app.log.setup_logging_subsystem(loglevel=loglevel)
    url = settings.region(region_id).broker_url
    where = f"queue {queue_name(region_id)} on RabbitMQ {broker.where(url)}"
    startup.started(what, region=region_id, mode=settings.mode, also=where)
    wait_for_broker(url, sleep=sleep)


def _touching(path: Path, sleep: Callable[[float], None] = time.sleep) -> Callable[[float], None]:
    """``sleep`` that first touches the liveness file: waiting for the broker at start is
    what the process should be doing, so it counts as alive."""

    def wait(seconds: float) -> None:
        liveness.touch(path)
        sleep(seconds)

    return wait


def watch_worker_loop(app: Celery, path: Path) -> None:
    """Make the worker prove it is alive (``konsil alive worker``, platform/core/liveness.py):
    its consumer's event loop touches ``path`` every few seconds, and marks it while a task
    runs (the solo pool runs a task in that loop, so the loop is busy by design then)."""
    from celery import bootsteps
    from celery.signals import task_postrun, task_prerun

    class Alive(bootsteps.StartStopStep):
        """A consumer step, like Celery's own heartbeat: its timer fires from the loop."""

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.timer_ref: Any = None

        def start(self, consumer: Any) -> None:
            liveness.touch(path)
            self.timer_ref = consumer.timer.call_repeatedly(liveness.TOUCH_EVERY_SECONDS, liveness.touch, (path,))

        def stop(self, consumer: Any) -> None:
            if self.timer_ref is not None:
                self.timer_ref.cancel()
                self.timer_ref = None

    app.steps["consumer"].add(Alive)
    task_prerun.connect(lambda **_: liveness.task_started(path), weak=False)
    task_postrun.connect(lambda **_: liveness.touch(path), weak=False)


def alive_scheduler(path: Path) -> type:
    """Celery beat's persistent scheduler, touching ``path`` at every tick (at least every
    ``liveness.TOUCH_EVERY_SECONDS``: ``beat_max_loop_interval``)."""
    from celery.beat import PersistentScheduler

    class AliveScheduler(PersistentScheduler):
        def tick(self, *args: Any, **kwargs: Any) -> float:
            liveness.touch(path)
            return float(super().tick(*args, **kwargs))

    return AliveScheduler


def run_worker(settings: Settings, region_id: str, loglevel: str = "INFO") -> None:
    app = celery_app(settings, region_id)
    alive = liveness.alive_file(settings.data_dir, "worker", region_id)
    liveness.touch(alive)
    watch_worker_loop(app, alive)
    _start(settings, region_id, "worker", loglevel, app, _touching(alive))
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            f"--queues={queue_name(region_id)}",
            f"--hostname=konsil-{region_id}@%h",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def run_beat(settings: Settings, region_id: str, loglevel: str = "INFO") -> None:
    app = celery_app(settings, region_id)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    alive = liveness.alive_file(settings.data_dir, "beat", region_id)
    liveness.touch(alive)
    app.conf.beat_scheduler = alive_scheduler(alive)
    app.conf.beat_max_loop_interval = liveness.TOUCH_EVERY_SECONDS
    _start(settings, region_id, "beat", loglevel, app, _touching(alive))
    app.start(["beat", f"--loglevel={loglevel}"])
