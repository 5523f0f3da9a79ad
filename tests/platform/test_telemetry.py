"""The telemetry privacy scrubbing and its plumbing: what a span, a log line or a metric
may carry when it leaves a process, the bounded export that never makes a request wait,
and the [telemetry] settings. Spans are exported over real OTLP/HTTP to a real receiver
(tests/telemetry_receiver.py) and read back decoded, as a collector would read them."""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from konsil.media_nodes.agent_settings import load_agent_settings
from konsil.platform.core.settings import ConfigError, load_control_settings, load_settings
from konsil.platform.core.signing import Verifier, sign
from konsil.platform.core.telemetry import logs, tracing
from konsil.platform.core.telemetry.config import TelemetrySettings
from konsil.platform.core.telemetry.privacy import (
    ORGANISATION_ID,
    ORGANISATION_SLUG,
    AttributePolicy,
    ScrubbingExporter,
    scrub_sql,
    scrub_text,
)
from konsil.platform.core.web import SignedCalls
from tests.telemetry_receiver import Receiver, ReceiverServer

EMAIL = "jane.marker7f3a@clinic.example"
PHONE = "+47 912 34 567"
TOKEN = "Zq8xN3vB7mK2pL9wR4tY6uI1oP5aS0dF"


# --- free text and SQL --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        (f"sent to {EMAIL} today", EMAIL),
        (f"call {PHONE} please", "912 34 567"),
        ("call 004791234567", "004791234567"),
        (f"GET /welcome/{TOKEN}", TOKEN),
        ("GET /eu-clinic/portal?email=x%40y.no&next=/a", "x%40y.no"),
        ("authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("cookie: konsil_session=s3cr3t-value", "s3cr3t-value"),
        ("password=hunter2", "hunter2"),
    ],
)
def test_free_text_loses_personal_data(text: str, gone: str) -> None:
    assert gone not in scrub_text(text)


def test_free_text_keeps_ids_dates_and_words() -> None:
    text = (
        "purge run 550e8400-e29b-41d4-a716-446655440000 on 2026-11-29T04:00:00 removed 12 rows of visit; "
        "listening on 192.168.100.200:8000"
    )
    assert scrub_text(text) == text


def test_sql_keeps_the_parameterised_text_only() -> None:
    statement = (
        "SELECT \"member\".\"id\" FROM member WHERE email = 'jane@x.example' AND phone = E'+4791234567' "
        "AND age > 42 AND org_id = $1 AND body = $tag$Jane Doe$tag$ LIMIT 10"
    )
    scrubbed = scrub_sql(statement)
    assert scrubbed == (
        'SELECT "member"."id" FROM member WHERE email = ? AND phone = ? AND age > ? '
        "AND org_id = $1 AND body = ? LIMIT ?"
    )


# --- spans, exported for real -----------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with ReceiverServer() as running:
        yield running


def _exporting(receiver_url: str, organisation_attributes: Any = "none") -> tuple[TracerProvider, tracing.DropCounter]:
    drops = tracing.DropCounter()
    provider = TracerProvider(resource=Resource.create({"service.name": "konsil-test"}))
    exporter = ScrubbingExporter(
        OTLPSpanExporter(endpoint=f"{receiver_url}/v1/traces", timeout=2),
        AttributePolicy(organisation_attributes),
        lambda n: drops.dropped(n, "export_failed"),
    )
    provider.add_span_processor(tracing.BoundedBatchProcessor(exporter, drops, max_queue=64, delay_seconds=0.05))
    return provider, drops


def _seeded_span(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /welcome/" + TOKEN, kind=SpanKind.SERVER) as span:
        span.set_attributes(
            {
                "http.request.method": "GET",
                "http.route": "/welcome/{token:str}",
                "http.response.status_code": 200,
                "url.full": f"http://eu.example/welcome/{TOKEN}?email={EMAIL}",
                "url.path": f"/welcome/{TOKEN}",
                "url.query": f"email={EMAIL}",
                "http.url": f"http://eu.example/welcome/{TOKEN}",
                "http.request.header.cookie": "konsil_session=abc",
                "http.request.header.authorization": f"Bearer {TOKEN}",
                "enduser.id": EMAIL,
                "konsil.visitor_name": "Jane Marker",
                "db.statement": f"SELECT 1 FROM member WHERE email = '{EMAIL}' AND phone = '{PHONE}'",  # noqa: S608
                "db.system": "postgresql",
                ORGANISATION_ID: "3f0e2a4c-1111-4222-8333-944445555666",
                ORGANISATION_SLUG: "praxis-marker",
            }
        )
        span.add_event("note", {"person": "Jane Marker", "exception.type": "X"})
        span.record_exception(ValueError(f"no member {EMAIL} named Jane Marker"))
        span.set_status(trace.StatusCode.ERROR, f"failed for {EMAIL}")


def _wait_for_spans(receiver: Receiver, count: int = 1) -> list[Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = receiver.spans()
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError("no span reached the receiver")


def test_an_exported_span_keeps_allowed_keys_only(receiver: Receiver) -> None:
    provider, drops = _exporting(receiver.url)
    _seeded_span(provider)
    provider.force_flush()
    [received] = _wait_for_spans(receiver)
    provider.shutdown()
    attributes = received.attributes
    assert attributes == {
        "http.request.method": "GET",
        "http.route": "/welcome/{token:str}",
        "http.response.status_code": 200,
        "db.statement": "SELECT ? FROM member WHERE email = ? AND phone = ?",
        "db.system": "postgresql",
    }
    assert received.span.name == "GET /welcome/<token>"
    assert received.span.status.code == 2 and received.span.status.message == ""
    [exception, note] = sorted(received.span.events, key=lambda e: e.name)
    assert [(kv.key, kv.value.string_value) for kv in exception.attributes] == [("exception.type", "ValueError")]
    assert [kv.key for kv in note.attributes] == ["exception.type"]
    everything = "\n".join(receiver.texts())
    for seed in (EMAIL, "Jane Marker", TOKEN, "912 34 567", "konsil_session", "praxis-marker", "3f0e2a4c"):
        assert seed not in everything
    assert drops.total == 0


@pytest.mark.parametrize(
    ("setting", "kept"),
    [("none", set()), ("id", {ORGANISATION_ID}), ("slug", {ORGANISATION_ID, ORGANISATION_SLUG})],
)
def test_organisation_attributes_only_as_configured(receiver: Receiver, setting: str, kept: set[str]) -> None:
    provider, _ = _exporting(receiver.url, setting)
    _seeded_span(provider)
    provider.force_flush()
    [received] = _wait_for_spans(receiver)
    provider.shutdown()
    assert {key for key in received.attributes if key.startswith("konsil.organisation")} == kept


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_collector_that_is_down_costs_no_request_time_and_drops_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, drops = _exporting(f"http://127.0.0.1:{_closed_port()}")
    tracer = provider.get_tracer("test")
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="konsil.telemetry"):
        for _ in range(2000):
            with tracer.start_as_current_span("GET /x"):
                pass
        spent = time.perf_counter() - started
        provider.force_flush(10_000)
        deadline = time.monotonic() + 10
        while drops.total < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
    provider.shutdown()
    # 2000 spans ended while the exporter failed: each end is a queue append (or a counted drop).
    assert spent < 2.0, spent
    assert drops.total == 2000  # every span: over the queue bound, or in a failed batch
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not per span


# --- server spans and trace context ------------------------------------------------------


@pytest.fixture(scope="module")
def global_receiver() -> Iterator[Receiver]:
    """The process's global tracer provider, exporting to a receiver (set once per process)."""
    with ReceiverServer() as running:
        provider, _ = _exporting(running.url)
        trace.set_tracer_provider(provider)
        tracing.set_tracing_enabled(True)
        try:
            yield running
        finally:
            tracing.set_tracing_enabled(False)
            provider.force_flush()


SECRET = "control-secret-0123456789"
PATH = "/api/v1/orgs/praxis/x"


async def _call(app: Any, headers: list[tuple[bytes, bytes]]) -> int:
    """One GET through the server's layers: TraceRequests, then SignedCalls, then ``app``."""
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope: Any = {"type": "http", "method": "GET", "path": PATH, "headers": headers, "query_string": b""}
    verified = SignedCalls(app, Verifier({"control": SECRET}, 60), max_body=1024)
    await tracing.TraceRequests(verified)(scope, receive, send)
    return int(sent[0]["status"])


def _signed(secret: str) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in sign(secret, "GET", PATH, b"", "control").items()]


async def _app(scope: Any, receive: Any, send: Any) -> None:
    scope["path_template"] = "/api/v1/orgs/{slug:str}/x"
    scope["path_params"] = {"slug": "praxis"}
    with tracing.span("inner"):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_only_a_verified_signed_call_continues_the_callers_trace(global_receiver: Receiver) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    caller = (b"traceparent", parent.encode())
    assert await _call(_app, [*_signed(SECRET), caller]) == 204
    # A browser's trace context, and one beside a forged signature, are never continued:
    # the forged call is refused before any span starts (no chosen trace ids, no forced sampling).
    assert await _call(_app, [caller]) == 204
    assert await _call(_app, [*_signed("not-the-control-secret-000"), caller]) == 401
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    spans = [s for s in _wait_for_spans(global_receiver, 4) if s.span.kind == s.span.SPAN_KIND_SERVER]
    continued = [s for s in spans if s.span.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"]
    assert len(continued) == 1, "only the verified call continues the caller's trace"
    (signed,) = continued
    assert signed.span.parent_span_id.hex() == "b7ad6b7169203331"
    assert signed.span.name == "GET /api/v1/orgs/{slug:str}/x"
    assert signed.attributes == {
        "http.request.method": "GET",
        "http.route": "/api/v1/orgs/{slug:str}/x",
        "http.response.status_code": 204,
    }
    browser = spans[-1]
    assert browser.span.trace_id.hex() != "0af7651916cd43dd8448eb211c80319c"
    assert browser.span.name == "GET /api/v1/orgs/{slug:str}/x"


def test_trace_header_line_carries_the_current_span(global_receiver: Receiver) -> None:
    assert tracing.trace_header_line() == b""
    with tracing.span("outer") as current:
        context = current.get_span_context()
        line = tracing.trace_header_line().decode()
        assert (
            line == f"traceparent: 00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}\r\n"
        )


def test_vault_operations_name_no_key() -> None:
    assert tracing.vault_operation("POST", "http://v:8200/v1/transit/datakey/plaintext/org-1234") == (
        "POST transit/datakey/plaintext"
    )
    assert tracing.vault_operation("GET", "http://v:8200/v1/transit/keys/org-ab12?x=1") == "GET transit/keys"
    assert tracing.vault_operation("POST", "http://v:8200/v1/auth/approle/login") == "POST auth/approle/login"


# --- log lines -------------------------------------------------------------------------


def test_json_log_lines_carry_trace_ids_and_no_personal_data(global_receiver: Receiver) -> None:
    logs.configure("json", "konsil-test")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.Formatter())
    logger = logging.getLogger("konsil.test.telemetry")
    logger.addHandler(handler)
    try:
        with tracing.span("outer") as current:
            logger.warning("no member %s at %s", EMAIL, PHONE)
            try:
                raise ValueError(f"Jane Marker {EMAIL}")
            except ValueError:
                logger.exception("lookup failed")
    finally:
        logger.removeHandler(handler)
        logs.configure("text")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    context = current.get_span_context()
    assert first["trace_id"] == f"{context.trace_id:032x}" and first["span_id"] == f"{context.span_id:016x}"
    assert first["message"] == "no member <email> at <number>"
    assert first["service"] == "konsil-test" and first["level"] == "WARNING"
    assert second["exception"]["type"] == "ValueError"
    assert "Jane Marker" not in stream.getvalue() and EMAIL not in stream.getvalue()


def test_text_log_lines_are_scrubbed_too() -> None:
    record = logging.LogRecord("konsil.x", logging.WARNING, __file__, 1, "mail %s", (EMAIL,), None)
    assert EMAIL not in logs.Formatter().format(record)


# --- settings -----------------------------------------------------------------------------


def test_telemetry_settings_read_from_the_file_and_environment(tmp_path: Any) -> None:
    config = tmp_path / "konsil.toml"
    config.write_text(
        '[control]\ndatabase = "sqlite:///c.db"\nlisten = "127.0.0.1:8000"\npublic_url = "http://127.0.0.1:8000"\n'
        '[telemetry]\notlp_endpoint = "http://collector:4318"\nlog_format = "json"\n'
    )
    settings = load_settings(config, {"KONSIL_TELEMETRY__METRICS_LISTEN": "0.0.0.0:9464"})
    assert settings.telemetry == TelemetrySettings(
        otlp_endpoint="http://collector:4318", metrics_listen="0.0.0.0:9464", log_format="json"
    )
    assert load_control_settings(config).telemetry.otlp_endpoint == "http://collector:4318"
    assert settings.for_control().telemetry == settings.telemetry
    assert load_settings(None, {}).telemetry == TelemetrySettings()  # embedded default: off
    assert not TelemetrySettings().enabled


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('otlp_endpoint = "collector:4318"', "otlp_endpoint"),
        ('otlp_endpoint = "http://c:4318/?token=x"', "otlp_endpoint"),
        ('log_format = "xml"', "log_format"),
        ('organisation_attributes = "name"', "organisation_attributes"),
        ('metrics_listen = "9464"', "metrics_listen"),
        ("surprise = 1", "surprise"),
    ],
)
def test_bad_telemetry_settings_name_the_key(tmp_path: Any, line: str, key: str) -> None:
    config = tmp_path / "konsil.toml"
    config.write_text(f"[telemetry]\n{line}\n")
    with pytest.raises(ConfigError, match=key):
        load_settings(config, {})


def test_settings_struct_round_trips() -> None:
    settings = TelemetrySettings(organisation_attributes="slug")
    assert msgspec.convert(msgspec.to_builtins(settings), TelemetrySettings) == settings


def test_the_media_node_agent_reads_the_same_telemetry_table(tmp_path: Any) -> None:
    config = tmp_path / "konsil.toml"
    config.write_text(
        '[telemetry]\notlp_endpoint = "http://collector:4318"\nmetrics_listen = "0.0.0.0:9464"\n'
        '[[regions]]\nid = "eu"\nbroker_url = "amqp://guest:guest@127.0.0.1:5672/eu"\n'
        'media_node_key = "0123456789abcdef0123"\nturn_secret = "0123456789abcdef"\n'
    )
    settings = load_agent_settings(config, "eu", {})
    assert settings.telemetry == TelemetrySettings(otlp_endpoint="http://collector:4318", metrics_listen="0.0.0.0:9464")
    config.write_text(config.read_text().replace('"http://collector:4318"', '"collector"'))
    with pytest.raises(ConfigError, match="telemetry"):
        load_agent_settings(config, "eu", {})


def test_a_heartbeat_carries_the_nodes_trace_to_the_registry(global_receiver: Receiver) -> None:
    headers: dict[str, Any] = {"x-konsil-signature": "abc"}
    with tracing.message_span("publish", "konsil.heartbeats", headers):
        sent = trace.get_current_span().get_span_context()
    # Over AMQP, header values arrive as bytes.
    arrived = {key: value.encode() if isinstance(value, str) else value for key, value in headers.items()}
    with tracing.message_span("process", "konsil.heartbeats", arrived):
        received = trace.get_current_span()
    assert received.get_span_context().trace_id == sent.trace_id
    assert received.parent is not None and received.parent.span_id == sent.span_id  # type: ignore[attr-defined]
