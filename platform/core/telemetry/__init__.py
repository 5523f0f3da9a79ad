"""OpenTelemetry for every Konsil process, without personal data.

The areas use this package's small API and never the SDK: ``metrics`` (the named
instruments), ``span`` (a block traced), ``inject``/``trace_header_line`` (trace
context on a call to another process), ``instrument_vault`` and ``in_current_context``.
``setup`` (``setup.py``) is called once by each process's entry point. What may leave a
process is decided by ``privacy.py``.
"""

from __future__ import annotations

from konsil.platform.core.telemetry import metrics as metrics
from konsil.platform.core.telemetry.config import TelemetrySettings as TelemetrySettings
from konsil.platform.core.telemetry.tracing import TraceRequests as TraceRequests
from konsil.platform.core.telemetry.tracing import extract as extract
from konsil.platform.core.telemetry.tracing import in_current_context as in_current_context
from konsil.platform.core.telemetry.tracing import inject as inject
from konsil.platform.core.telemetry.tracing import instrument_vault as instrument_vault
from konsil.platform.core.telemetry.tracing import message_span as message_span
from konsil.platform.core.telemetry.tracing import span as span
from konsil.platform.core.telemetry.tracing import trace_header_line as trace_header_line
