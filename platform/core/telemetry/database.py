"""A CLIENT span per PostgreSQL statement (asyncpg, under piccolo and the fixed SQL of
``platform/core/database.py``): the statement as parameterised text, never the values.

Piccolo and the fixed SQL pass values as parameters (``$1``), which are not recorded;
literals written into a statement are replaced by ``?`` on export (``privacy.scrub_sql``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from konsil.platform.core.telemetry import tracing

_METHODS = ("execute", "executemany", "fetch", "fetchval", "fetchrow")
_instrumented = False


def _operation(query: str) -> str:
    words = query.split(None, 1)
    return words[0].upper()[:20] if words else "SQL"


def _traced(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def run(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        # No span outside a recorded trace (a sampled-out request, a background loop).
        if not tracing.tracing_enabled() or not isinstance(query, str) or not trace.get_current_span().is_recording():
            return await method(self, query, *args, **kwargs)
        operation = _operation(query)
        attributes = {"db.system": "postgresql", "db.operation": operation, "db.statement": query}
        # A leaf span: never made current (nothing runs inside it), which saves half its cost.
        current = tracing.tracer.start_span(operation, kind=SpanKind.CLIENT, attributes=attributes)
        try:
            return await method(self, query, *args, **kwargs)
        except BaseException as exc:
            current.set_attribute("error.type", type(exc).__name__)
            current.set_status(StatusCode.ERROR)
            raise
        finally:
            current.end()

    return run


def instrument_asyncpg() -> None:
    """Wrap asyncpg's query methods (process-wide, once)."""
    global _instrumented
    if _instrumented:
        return
    _instrumented = True
    import asyncpg

    for name in _METHODS:
        setattr(asyncpg.Connection, name, _traced(getattr(asyncpg.Connection, name)))
