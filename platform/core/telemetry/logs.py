"""Log lines of every process: plain text (the default) or JSON lines carrying the
trace and span ids, both scrubbed (``privacy.scrub_text``) before they are written.

The trace ids are taken when a record is made (``install_record_factory``), in the
thread and task that logged it: Litestar writes records from a queue-listener thread,
where the request's span is no longer current. In JSON lines an exception is given
by its type and the places it passed through, never its message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import traceback
from typing import Any

from opentelemetry import trace

from konsil.platform.core.telemetry.privacy import scrub_text

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_format = "text"
_service = ""
_factory_installed = False


def configure(log_format: str, service: str = "") -> None:
    """Choose the format of every ``Formatter`` of this module, process-wide."""
    global _format, _service
    _format = log_format
    _service = service
    install_record_factory()


def install_record_factory() -> None:
    """Every log record gets ``trace_id`` and ``span_id`` (hex, "" outside a span)."""
    global _factory_installed
    if _factory_installed:
        return
    _factory_installed = True
    previous = logging.getLogRecordFactory()

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = record.span_id = ""
        return record

    logging.setLogRecordFactory(make)


def _places(exc: BaseException) -> list[str]:
    """Where an exception passed: ``file:line in function``, without any value."""
    return [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in traceback.extract_tb(exc.__traceback__)]


class Formatter(logging.Formatter):
    """The format chosen by ``configure``; every line scrubbed of personal data."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(TEXT_FORMAT, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        if _format == "json":
            return self.format_json(record)
        line: str = super().format(record)
        return scrub_text(line)

    def format_json(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub_text(record.getMessage()),
        }
        if _service:
            line["service"] = _service
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            line["trace_id"] = trace_id
            line["span_id"] = getattr(record, "span_id", "")
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line["exception"] = {"type": type(exc).__name__, "at": _places(exc)}
        return json.dumps(line, ensure_ascii=False)


def apply_to_root() -> None:
    """Use ``Formatter`` on the handlers the root logger has now (``logging.basicConfig``
    of the command line; Celery's worker and beat keep them)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(Formatter())
