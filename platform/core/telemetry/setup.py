"""Start a process's telemetry from its ``[telemetry]`` settings.

- logs: text or JSON lines, scrubbed, with trace ids (always, whatever else is on);
- traces (``otlp_endpoint`` set): a TracerProvider whose spans leave through the
  privacy scrubbing (``privacy.ScrubbingExporter``) and a bounded queue
  (``tracing.BoundedBatchProcessor``) to OTLP/HTTP, plus spans for PostgreSQL
  statements (asyncpg) and Celery tasks;
- metrics: one MeterProvider read by OTLP/HTTP (``otlp_endpoint``) and by the Prometheus
  endpoint ``GET /metrics`` on ``metrics_listen``.

The Prometheus endpoint is ``opentelemetry-exporter-prometheus`` (a reader of the same
instruments) served by ``prometheus_client``'s own small HTTP server in a thread: the
instruments are recorded once for both exports, the endpoint is on its own ops port
(never the public one), and it answers even while the event loop is busy.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from konsil.platform.core.telemetry import database, logs, tracing
from konsil.platform.core.telemetry.config import TelemetrySettings
from konsil.platform.core.telemetry.privacy import AttributePolicy, ScrubbingExporter

log = logging.getLogger("konsil.telemetry")

KINDS = ("region", "control", "worker", "beat", "media-node")


@dataclass
class Telemetry:
    """What ``setup`` started, to stop it (tests, benchmarks; processes stop at exit)."""

    settings: TelemetrySettings
    service_name: str
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    metrics_server: Any = None
    metrics_port: int = 0
    drops: tracing.DropCounter = field(default_factory=tracing.DropCounter)

    def shutdown(self) -> None:
        tracing.set_tracing_enabled(False)
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()


_current: Telemetry | None = None


def setup(settings: TelemetrySettings, kind: str, region: str | None = None) -> Telemetry:
    """Configure this process's telemetry (once; a second call returns the first)."""
    global _current
    if _current is not None:
        return _current
    service_name = f"{settings.service_name_prefix}-{kind}"
    logs.configure(settings.log_format, service_name)
    logs.apply_to_root()
    telemetry = Telemetry(settings, service_name)
    _current = telemetry
    if not settings.enabled:
        return telemetry
    attributes = {"service.name": service_name, "konsil.process": kind}
    if region:
        attributes["konsil.region"] = region
    resource = Resource.create(attributes)
    endpoint = settings.otlp_endpoint.rstrip("/")
    timeout = settings.export_timeout_seconds

    readers: list[MetricReader] = []
    if settings.metrics_listen:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        readers.append(PrometheusMetricReader())
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        interval = float(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "30000"))
        readers.append(
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=timeout),
                export_interval_millis=interval,
                export_timeout_millis=timeout * 1000,
            )
        )
    telemetry.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    otel_metrics.set_meter_provider(telemetry.meter_provider)
    if settings.metrics_listen:
        _serve_metrics(telemetry, settings.metrics_listen)

    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider = TracerProvider(
            resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))
        )
        exporter = ScrubbingExporter(
            OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=timeout),
            AttributePolicy(settings.organisation_attributes),
            lambda count: telemetry.drops.dropped(count, "export_failed"),
        )
        delay = float(os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "1000")) / 1000
        provider.add_span_processor(
            tracing.BoundedBatchProcessor(exporter, telemetry.drops, settings.max_queue_spans, delay_seconds=delay)
        )
        trace.set_tracer_provider(provider)
        telemetry.tracer_provider = provider
        tracing.set_tracing_enabled(True)
        database.instrument_asyncpg()
        tracing.instrument_celery()
    atexit.register(telemetry.shutdown)
    log.info(
        "telemetry: %s, otlp %s, metrics %s",
        service_name,
        "on" if endpoint else "off",
        settings.metrics_listen or "off",
    )
    return telemetry


def _serve_metrics(telemetry: Telemetry, listen: str) -> None:
    """``GET /metrics`` on ``listen`` in a thread; a port in use is logged, not fatal
    (telemetry never stops a service)."""
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    try:
        server, _thread = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0")  # noqa: S104
    except OSError as exc:
        log.warning("telemetry: cannot serve /metrics on %s (%s)", listen, exc.strerror or type(exc).__name__)
        return
    telemetry.metrics_server = server
    telemetry.metrics_port = server.server_address[1]


def current() -> Telemetry | None:
    return _current


def reset_for_tests() -> None:
    """Forget the process's telemetry (a test that sets it up more than once)."""
    global _current
    if _current is not None:
        _current.shutdown()
    _current = None
