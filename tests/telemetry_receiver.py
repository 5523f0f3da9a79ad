"""A real OTLP/HTTP receiver for the telemetry tests: an HTTP server on loopback that
decodes what Konsil's processes export (protobuf, as an OpenTelemetry collector would)
and keeps every request, decoded and raw, for the tests to scan."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

_KINDS: dict[str, tuple[type[Any], bytes]] = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse().SerializeToString()),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse().SerializeToString()),
    "/v1/logs": (ExportLogsServiceRequest, b""),
}


@dataclass
class ReceivedSpan:
    service: str
    span: Span

    @property
    def attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kv in self.span.attributes:
            value = kv.value
            out[kv.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
        return out


@dataclass
class Receiver:
    """What the receiver got: decoded requests by path, and every body as text."""

    url: str = ""
    requests: dict[str, list[Any]] = field(default_factory=lambda: {path: [] for path in _KINDS})
    raw: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[ReceivedSpan]:
        found: list[ReceivedSpan] = []
        with self.lock:
            requests = list(self.requests["/v1/traces"])
        for request in requests:
            for resource_spans in request.resource_spans:
                service = next(
                    (kv.value.string_value for kv in resource_spans.resource.attributes if kv.key == "service.name"),
                    "",
                )
                for scope_spans in resource_spans.scope_spans:
                    found += [ReceivedSpan(service, span) for span in scope_spans.spans]
        return found

    def metric_names(self) -> set[str]:
        with self.lock:
            requests = list(self.requests["/v1/metrics"])
        return {
            metric.name
            for request in requests
            for resource_metrics in request.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        }

    def texts(self) -> Iterator[str]:
        """Every request as JSON text (the protobuf decoded) and as raw bytes read as Latin-1."""
        with self.lock:
            decoded = [message for messages in self.requests.values() for message in messages]
            raw = list(self.raw)
        for message in decoded:
            yield MessageToJson(message)
        for body in raw:
            yield body.decode("latin-1")


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            encoding = self.headers.get("content-encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            kind = _KINDS.get(self.path)
            if kind is None:
                self.send_response(404)
                self.end_headers()
                return
            message = kind[0]()
            message.ParseFromString(body)
            with receiver.lock:
                receiver.requests[self.path].append(message)
                receiver.raw.append(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(kind[1])))
            self.end_headers()
            self.wfile.write(kind[1])

        def log_message(self, *args: Any) -> None:  # quiet
            return

    return Handler


class ReceiverServer:
    """``with ReceiverServer() as receiver:`` a running receiver at ``receiver.url``."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.receiver))
        self.receiver.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self.receiver

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
