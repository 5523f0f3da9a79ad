"""Konsil's metrics: one named instrument per thing an ops team watches, recorded by
the areas through this module (they never import the OpenTelemetry SDK).

The instruments come from OpenTelemetry's global meter. Until a process sets up
telemetry (``platform/core/telemetry/setup.py``) they record into the API's no-op
meter, which costs a function call; afterwards the same objects feed the OTLP
exporter and the Prometheus ``/metrics`` endpoint.

Attributes are low-cardinality names (a table, a result, an operation, a media node),
never an organisation or a person.
"""

from __future__ import annotations

from opentelemetry import metrics as otel_metrics

_meter = otel_metrics.get_meter("konsil")

# Names are final Prometheus names; the Prometheus exporter adds ``_total`` to counters
# and the unit to the others, so units are given where the name does not end in one.
waiting_visitors = _meter.create_up_down_counter(
    "konsil_waiting_visitors", description="Visitors in a waiting room (each replica counts its own changes)"
)
active_calls = _meter.create_up_down_counter(
    "konsil_active_calls", description="Calls admitted and not yet ended (each replica counts its own changes)"
)
admit_to_connected = _meter.create_histogram(
    "konsil_admit_to_connected",
    unit="s",
    description="Time from a visitor's admission to the call's media flowing (its first quality sample), per side",
    explicit_bucket_boundaries_advisory=[0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120],
)
purge_rows_deleted = _meter.create_counter(
    "konsil_purge_rows_deleted", description="Rows deleted by retention purges, by kind of record"
)
relay_allocations = _meter.create_counter(
    "konsil_relay_allocations", description="TURN relay allocations handed to calls, by result"
)
relay_load = _meter.create_histogram(
    "konsil_relay_load",
    description="Calls already allocated to the media node chosen for a new call, by node (its load when chosen)",
    explicit_bucket_boundaries_advisory=[0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
)
key_cache = _meter.create_counter(
    "konsil_key_cache_lookups", description="Data-key cache lookups, by result (hit/miss)"
)
vault_request = _meter.create_histogram(
    "konsil_vault_request",
    unit="s",
    description="Vault requests by operation and outcome",
    explicit_bucket_boundaries_advisory=[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
)
access_log_appends = _meter.create_counter(
    "konsil_access_log_appends", description="Entries appended to the organisations' access logs"
)
dropped_spans = _meter.create_counter(
    "konsil_telemetry_dropped_spans",
    description="Spans dropped because the telemetry endpoint was down or too slow (queue full or export failed)",
)
