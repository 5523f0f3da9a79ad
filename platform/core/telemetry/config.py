"""The ``[telemetry]`` table: where traces and metrics go, how logs are written, and
whether organisation ids or slugs may appear on them.

Off by default: nothing is exported and no port is opened unless an operator names
an OTLP endpoint or a metrics address. Its own module (not ``platform/core/settings.py``)
so that the media-node agent, which must not import the region's settings types,
reads the same keys through its ``AgentSettings``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# host:port of the ops port (``0.0.0.0:9464`` in the Helm charts), or "" for none.
MetricsListen = Annotated[str, msgspec.Meta(pattern=r"^([0-9a-zA-Z.\-\[\]:]+:[0-9]{1,5})?\Z")]
OtlpEndpoint = Annotated[str, msgspec.Meta(pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?\Z")]


class TelemetrySettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How a process reports to the ops team's tools (OpenTelemetry, Prometheus).

    Whatever is configured, spans and log lines pass the privacy scrubbing of
    ``platform/core/telemetry/privacy.py`` before they leave the process."""

    # OTLP/HTTP base URL of a collector (e.g. http://otel-collector:4318): traces go to
    # <endpoint>/v1/traces and metrics to <endpoint>/v1/metrics. "" exports nothing.
    otlp_endpoint: OtlpEndpoint = ""
    # host:port of the Prometheus scrape endpoint GET /metrics; "" opens no port.
    metrics_listen: MetricsListen = ""
    # "json": one JSON object a line with trace_id and span_id, for a log collector.
    log_format: Literal["text", "json"] = "text"
    # Whether organisation ids (or ids and slugs) may appear on spans and metrics.
    organisation_attributes: Literal["none", "id", "slug"] = "none"
    # service.name is <prefix>-region, -control, -worker, -beat or -media-node.
    service_name_prefix: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9-]{0,39}\Z")] = "konsil"
    # A collector that does not answer within this long loses that batch (counted as
    # dropped); requests never wait for it.
    export_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=30)] = 2.0
    # The share of traces recorded (decided where a trace starts; the region service follows
    # the gateway's choice, a worker the region's): 0.1 records one in ten, 1.0 all. Spans
    # cost tens of microseconds each in Python; with one in ten, bench/telemetry_overhead
    # finds no cost beyond its noise floor (bench/README.md). Metrics and logs are never sampled.
    trace_sample_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1
    # Spans waiting for export at most; beyond, new spans are dropped and counted.
    max_queue_spans: Annotated[int, msgspec.Meta(ge=64, le=1_000_000)] = 4096

    @property
    def enabled(self) -> bool:
        return bool(self.otlp_endpoint or self.metrics_listen)
