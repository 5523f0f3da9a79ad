"""Konsil's metrics: one named instrument per thing an ops team watches, recorded by
the areas through this module (they never import the OpenTelemetry SDK).

The instruments come from OpenTelemetry's global meter. Until a process sets up
telemetry (``platform/core/telemetry/setup.py``) they record into the API's no-op
meter, which costs a function call; afterwards the same objects feed the OTLP
exporter and the Prometheus ``/metrics`` endpoint.

Attributes are low-cardinality names (a table, a result, an operation, a media node),
never a person; an organisation only on the ``_by_organisation`` gauges, and only when
``organisation_attributes`` allows it.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Observation

_meter = otel_metrics.get_meter("konsil")

# Names are final Prometheus names; the Prometheus exporter adds ``_total`` to counters
# and the unit to the others, so units are given where the name does not end in one.


class RegionGauge:
    """A region-wide count read from the region database (``tenants/live_counts.py``
    refreshes it every few seconds) and observed by each export: true whichever replica
    admitted, ended, purged or timed out what it counts. Every replica reports the same
    value, so a dashboard takes ``max`` over replicas, not ``sum``. Nothing is observed
    while the count is unknown (never read, or the database did not answer): a stale
    count would say something false."""

    def __init__(self, name: str, description: str, meter: otel_metrics.Meter | None = None) -> None:
        self.name = name
        self._points: tuple[tuple[int, dict[str, str]], ...] = ()
        self.instrument = (meter or _meter).create_observable_gauge(
            name, callbacks=[self._observe], description=description
        )

    def set(self, points: Iterable[tuple[int, dict[str, str]]]) -> None:
        """The current values, each with its attributes (replaced at once: an export
        running in another thread sees the old set or the new one)."""
        self._points = tuple(points)

    def clear(self) -> None:
        self._points = ()

    def observed(self) -> tuple[tuple[int, dict[str, str]], ...]:
        return self._points

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attributes) for value, attributes in self._points]


# Totals of the region, always; the split by organisation only where
# ``organisation_attributes`` allows ids (attribute konsil.organisation.id, and
# konsil.organisation.slug with "slug"). Separate names, so that summing either never
# counts a visitor twice.
waiting_visitors = RegionGauge(
    "konsil_waiting_visitors", "Visitors waiting in the region's waiting rooms now (region-wide; max over replicas)"
)
active_calls = RegionGauge(
    "konsil_active_calls", "Calls admitted and not yet ended in the region now (region-wide; max over replicas)"
)
waiting_visitors_by_organisation = RegionGauge(
    "konsil_waiting_visitors_by_organisation",
    "Visitors waiting now, by organisation (only with organisation_attributes = id or slug)",
)
active_calls_by_organisation = RegionGauge(
    "konsil_active_calls_by_organisation",
    "Calls admitted and not yet ended now, by organisation (only with organisation_attributes = id or slug)",
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
