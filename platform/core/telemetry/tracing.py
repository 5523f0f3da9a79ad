"""Spans: server spans for every HTTP request and WebSocket, W3C trace context across
the signed internal calls, Celery tasks and heartbeats, and a bounded export queue that
never makes a request wait for the collector.

Helpers here work (and cost next to nothing) before or without telemetry setup: the
OpenTelemetry API's default tracer makes non-recording spans.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, TypeVar

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from konsil.platform.core.telemetry import metrics
from konsil.platform.core.telemetry.privacy import ORGANISATION_ID, ORGANISATION_SLUG

log = logging.getLogger("konsil.telemetry")
T = TypeVar("T")
M = TypeVar("M", bound=MutableMapping[str, str])

tracer = trace.get_tracer("konsil")
_propagator = TraceContextTextMapPropagator()
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Only a call signed by the control plane or a region may continue a trace: a browser's
# traceparent is ignored (it could carry anything, and trace ids are not the public's).
_SIGNED = b"x-konsil-signature"
# Where TraceRequests leaves a signed call for SignedCalls to serve once verified.
_VERIFIED_LATER = "konsil.trace_after_verification"


# --- context across processes --------------------------------------------------------------


def inject(carrier: M) -> M:
    """Adds ``traceparent`` (and ``tracestate``) of the current span to ``carrier``."""
    _propagator.inject(carrier)
    return carrier


def trace_header_line() -> bytes:
    """The current trace context as raw HTTP header lines (``b""`` when there is no span)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return "".join(f"{name}: {value}\r\n" for name, value in carrier.items()).encode("latin-1")


def extract(carrier: Mapping[str, str] | None) -> Context | None:
    """The remote parent named in ``carrier``, else None."""
    if not carrier or TRACEPARENT not in carrier:
        return None
    return _propagator.extract(carrier)


@contextlib.contextmanager
def span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    parent: Context | None = None,
) -> Iterator[trace.Span]:
    """A span around a block. An exception is recorded as its type only (its message can
    carry personal data) and raised on."""
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_attribute("error.type", type(exc).__name__)
            current.set_status(StatusCode.ERROR)
            raise


# --- HTTP and WebSocket server spans --------------------------------------------------------


def _route_of(scope: Scope) -> str | None:
    """The route template Litestar matched (never the path itself: it holds slugs and tokens)."""
    handler: Any = scope.get("route_handler")
    paths = getattr(handler, "paths", None)
    if getattr(handler, "is_mount", False) and paths:
        # A mounted ASGI app (the gateway): whatever follows the mount point is the app's own.
        return f"{next(iter(paths)).rstrip('/')}/{{path:path}}"
    template = scope.get("path_template")
    if isinstance(template, str) and template:
        return template
    return None


class TraceRequests:
    """ASGI middleware: a server span per request or socket, named by method and route
    template. A signed internal call's span is started by ``SignedCalls`` once its
    signature is verified (``serve_verified``): only then is the caller's trace context
    continued, so an unsigned caller can neither pick trace ids nor force sampling."""

    def __init__(self, app: ASGIApp, region: str | None = None) -> None:
        self.app = app
        self.region = region

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind: str = scope["type"]
        if kind not in ("http", "websocket") or not tracing_enabled():
            await self.app(scope, receive, send)
            return
        if kind == "http" and any(name == _SIGNED for name, _ in scope["headers"]):
            extensions: dict[str, Any] = scope.get("extensions") or {}
            extensions[_VERIFIED_LATER] = self
            scope["extensions"] = extensions
            await self.app(scope, receive, send)
            return
        await self.serve(self.app, scope, receive, send, None)

    async def serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, parent: Context | None) -> None:
        kind: str = scope["type"]
        method = str(scope.get("method", "GET")) if kind == "http" else "WEBSOCKET"
        current = tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        token = otel_context.attach(trace.set_span_in_context(current))
        if not current.is_recording():  # sampled out: the context (not sampled) still goes on
            try:
                await app(scope, receive, send)
            finally:
                otel_context.detach(token)
            return
        current.set_attribute("http.request.method", method)
        if self.region:
            current.set_attribute("konsil.region", self.region)
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, sending)
        except BaseException as exc:
            current.set_attribute("error.type", type(exc).__name__)
            current.set_status(StatusCode.ERROR)
            raise
        finally:
            route = _route_of(scope)
            if route:
                current.update_name(f"{method} {route}")
                current.set_attribute("http.route", route)
            if status:
                current.set_attribute("http.response.status_code", status)
                if status >= 500:
                    current.set_status(StatusCode.ERROR)
            # Kept on export only as organisation_attributes allows (privacy.AttributePolicy).
            slug = (scope.get("path_params") or {}).get("slug")
            if isinstance(slug, str):
                current.set_attribute(ORGANISATION_SLUG, slug)
            org_id = getattr((scope.get("state") or {}).get("org"), "id", None)
            if org_id is not None:
                current.set_attribute(ORGANISATION_ID, str(org_id))
            otel_context.detach(token)
            current.end()


async def serve_verified(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve a signed call whose signature was just verified: its server span continues
    the caller's trace (``traceparent``) when ``TraceRequests`` left it for this point."""
    requests = (scope.get("extensions") or {}).pop(_VERIFIED_LATER, None)
    if not isinstance(requests, TraceRequests):
        await app(scope, receive, send)
        return
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in (b"traceparent", b"tracestate")
    }
    await requests.serve(app, scope, receive, send, extract(carrier))


# --- messages (media-node heartbeats over RabbitMQ) ------------------------------------------


@contextlib.contextmanager
def message_span(operation: str, destination: str, headers: MutableMapping[str, Any]) -> Iterator[None]:
    """``publish``: a PRODUCER span whose trace context is written into the message's
    ``headers``; ``process``: a CONSUMER span continuing the context read from them."""
    if operation == "publish":
        with span(f"publish {destination}", SpanKind.PRODUCER, _messaging(operation, destination)):
            _propagator.inject(headers)
            yield
        return
    carrier = {
        key: value.decode("latin-1") if isinstance(value, bytes) else str(value)
        for key, value in headers.items()
        if key in (TRACEPARENT, TRACESTATE)
    }
    with span(f"process {destination}", SpanKind.CONSUMER, _messaging(operation, destination), extract(carrier)):
        yield


def _messaging(operation: str, destination: str) -> dict[str, str]:
    return {"messaging.system": "rabbitmq", "messaging.operation": operation, "messaging.destination.name": destination}


# --- Celery -------------------------------------------------------------------------------


def _celery_publish(headers: MutableMapping[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        headers.update(carrier)


_task_spans: dict[str, tuple[trace.Span, object]] = {}


def _celery_prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    carrier = {key: str(getattr(request, key)) for key in (TRACEPARENT, TRACESTATE) if getattr(request, key, None)}
    name = str(getattr(task, "name", "task"))
    current = tracer.start_span(
        f"run {name}",
        context=extract(carrier),
        kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "rabbitmq", "messaging.operation": "process", "konsil.task": name},
    )
    _task_spans[task_id] = (current, otel_context.attach(trace.set_span_in_context(current)))


def _celery_postrun(task_id: str = "", state: str | None = None, **_: Any) -> None:
    found = _task_spans.pop(task_id, None)
    if found is None:
        return
    current, token = found
    if state not in (None, "SUCCESS"):
        current.set_status(StatusCode.ERROR)
    with contextlib.suppress(Exception):
        otel_context.detach(token)  # type: ignore[arg-type]
    current.end()


def _celery_failure(task_id: str = "", exception: BaseException | None = None, **_: Any) -> None:
    found = _task_spans.get(task_id)
    if found is not None and exception is not None:
        found[0].set_attribute("error.type", type(exception).__name__)
        found[0].set_status(StatusCode.ERROR)


def instrument_celery() -> None:
    """Trace context in the headers of every task sent, and a span around every task run
    (parented to the sender's span). Celery's signals are process-wide."""
    from celery import signals

    signals.before_task_publish.connect(_celery_publish, weak=False)
    signals.task_prerun.connect(_celery_prerun, weak=False)
    signals.task_postrun.connect(_celery_postrun, weak=False)
    signals.task_failure.connect(_celery_failure, weak=False)


# --- Vault ---------------------------------------------------------------------------------


def vault_operation(method: str, url: str) -> str:
    """``POST transit/datakey/plaintext`` for a request to ``…/v1/transit/datakey/plaintext/org-…``:
    the key name (which holds an organisation id) and anything after it are left out."""
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    parts = [part for part in path.split("/") if part][1:]  # without "v1"
    kept: list[str] = []
    for part in parts[:3]:
        if part.startswith(("org-", "konsil-")) or any(ch.isdigit() for ch in part):
            break
        kept.append(part)
    return f"{method.upper()} {'/'.join(kept)}"


def instrument_vault(client: Any) -> None:
    """A CLIENT span and a ``konsil_vault_request_seconds`` sample for every request the
    hvac ``client`` sends (its adapter's ``request``), named by operation, never by key."""
    adapter = getattr(client, "adapter", None)
    original = getattr(adapter, "request", None)
    if original is None or getattr(original, "_konsil_traced", False):
        return

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        operation = vault_operation(method, url)
        started = time.perf_counter()
        outcome = "error"
        with span(f"vault {operation}", SpanKind.CLIENT, {"konsil.vault.operation": operation}) as current:
            try:
                answer = original(method, url, *args, **kwargs)
                outcome = "ok"
                return answer
            except Exception as exc:
                outcome = type(exc).__name__
                raise
            finally:
                current.set_attribute("konsil.vault.outcome", outcome)
                metrics.vault_request.record(
                    time.perf_counter() - started, {"operation": operation, "outcome": outcome}
                )

    request._konsil_traced = True  # type: ignore[attr-defined]
    adapter.request = request  # type: ignore[union-attr]


def in_current_context(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` bound to the caller's context (its current span included), for
    ``run_in_executor``, which does not carry context variables into its threads."""
    ctx = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> T:
        return ctx.run(fn, *args, **kwargs)

    return run


# --- export ---------------------------------------------------------------------------------

_enabled = False


def tracing_enabled() -> bool:
    """Whether spans are exported at all (an OTLP endpoint is configured)."""
    return _enabled


def set_tracing_enabled(on: bool) -> None:
    global _enabled
    _enabled = on


class DropCounter:
    """Counts dropped spans (``konsil_telemetry_dropped_spans_total``) and logs it, never
    per span: at the first drop, then at most once a minute while spans are dropped."""

    LOG_EVERY_SECONDS = 60.0

    def __init__(self) -> None:
        self.total = 0
        self._logged_total = 0
        self._logged_at: float | None = None
        self._lock = threading.Lock()

    def dropped(self, count: int, why: str) -> None:
        if count <= 0:
            return
        metrics.dropped_spans.add(count, {"reason": why})
        now = time.monotonic()
        with self._lock:
            self.total += count
            due = self._logged_at is None or now - self._logged_at >= self.LOG_EVERY_SECONDS
            if due:
                self._logged_at = now
                since, self._logged_total = self.total - self._logged_total, self.total
        if due:
            log.warning(
                "telemetry: spans are being dropped (%s; %d since the last report); "
                "counted in konsil_telemetry_dropped_spans_total",
                why,
                since,
            )


class BoundedBatchProcessor(SpanProcessor):
    """Ends of sampled spans go to a bounded queue (a request only appends to it); a
    thread exports them in batches. A full queue drops the new span, a failed export
    its batch; both are counted."""

    def __init__(
        self,
        exporter: SpanExporter,
        drops: DropCounter,
        max_queue: int = 4096,
        batch_size: int = 512,
        delay_seconds: float = 1.0,
    ) -> None:
        self.exporter = exporter
        self.drops = drops
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.delay = delay_seconds
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._wake = threading.Event()
        self._flushed = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="konsil-span-export", daemon=True)
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        if len(self._queue) >= self.max_queue:
            self.drops.dropped(1, "queue_full")
            return
        self._queue.append(span)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def _export_some(self) -> None:
        while self._queue:
            batch: list[ReadableSpan] = []
            while self._queue and len(batch) < self.batch_size:
                batch.append(self._queue.popleft())
            self.exporter.export(batch)  # ScrubbingExporter counts a failure

    def _loop(self) -> None:
        while not self._stop:
            self._wake.wait(self.delay)
            self._wake.clear()
            flushing = self._flushed
            try:
                self._export_some()
            except Exception:  # never let the export thread die
                log.exception("telemetry: span export failed")
            flushing.set()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self._flushed = threading.Event()
        done = self._flushed
        self._wake.set()
        return done.wait(timeout_millis / 1000)

    def shutdown(self) -> None:
        self.force_flush(5_000)
        self._stop = True
        self._wake.set()
        self._thread.join(5)
        self.exporter.shutdown()
