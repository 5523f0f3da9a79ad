"""What may leave a process in its telemetry, and the scrubbing that ensures it.

Spans keep only attribute keys of an allow-list (``ALLOWED_ATTRIBUTES``): the method,
the route *template* (``/api/v1/orgs/{slug}/visits/{visit_id}``, never the path with
its slugs, tokens or query string), status codes, the database system and its
statement as parameterised text (values of literals are replaced by ``?``), messaging
and Vault operation names, the exception *type*. Everything else (URLs, queries,
headers, cookies, parameters, exception messages and stack traces, event attributes,
status descriptions) is dropped before export, whatever an instrumentation library
set. Organisation ids and slugs are kept only when ``organisation_attributes`` allows.

Every string that is kept, log messages included, also passes ``scrub_text``: e-mail
addresses, phone numbers, bearer tokens and long random strings, ``key=value`` secrets
and query strings are replaced by placeholders. Names cannot be recognised in free
text; they are kept out by allowing no free-text attribute at all, and log messages
are written without them (the project's logging rule), which the end-to-end privacy
test checks with seeded names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status, StatusCode

OrganisationAttributes = Literal["none", "id", "slug"]

ORGANISATION_ID = "konsil.organisation.id"
ORGANISATION_SLUG = "konsil.organisation.slug"

# Keys whose values carry no personal data by construction (names of things, numbers,
# templates). Anything not listed is dropped.
ALLOWED_ATTRIBUTES = frozenset(
    {
        # HTTP (old and new semantic conventions); the route is a template, never a path.
        "http.request.method",
        "http.method",
        "http.route",
        "http.response.status_code",
        "http.status_code",
        "url.scheme",
        "network.protocol.version",
        "server.address",
        "server.port",
        # Database: the system and the parameterised statement (scrubbed of literals).
        "db.system",
        "db.system.name",
        "db.name",
        "db.namespace",
        "db.operation",
        "db.operation.name",
        "db.statement",
        "db.query.text",
        "db.collection.name",
        "net.peer.name",
        "net.peer.port",
        "net.transport",
        # Messaging (Celery tasks, media-node heartbeats).
        "messaging.system",
        "messaging.operation",
        "messaging.operation.type",
        "messaging.destination.name",
        # Errors: the type only, never the message.
        "error.type",
        "exception.type",
        # Konsil's own.
        "konsil.region",
        "konsil.task",
        "konsil.vault.operation",
        "konsil.vault.outcome",
        "konsil.media_node",
        "konsil.websocket",
    }
)
_STATEMENT_KEYS = frozenset({"db.statement", "db.query.text"})
_EVENT_ATTRIBUTES = frozenset({"exception.type"})

# --- free text -----------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_AUTH = re.compile(r"(?i)\b(bearer|basic|token|digest)(\s+|=|:\s+)[^\s,;\"']+")
_SECRET_PAIR = re.compile(
    r"(?i)\b(password|passwd|secret|token|csrf[_-]?token|session|cookie|set-cookie|authorization|api[_-]?key|"
    r"email|e-mail|phone|name)(\"?\s*=\s*\"?|\"?\s*:\s+\"?|\":\"?)([^\s,;&\"']+)"
)
_QUERY = re.compile(r"\?[^\s\"'<>]*")
_HEX = re.compile(r"[0-9a-fA-F]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# A long run of letters/digits/_/- holding both letters and digits: a token, a key, a hash.
_TOKEN = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{20,}(?![\w-])", re.ASCII)
# Seven or more digits, maybe with a leading +, spaces, dots, dashes or brackets between.
_PHONE = re.compile(r"(?<![\w.-])\+?\(?\d[\d ().\-/]{5,}\d(?![\w-])")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?![\d-])")


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    if _DATE.match(text) or _IPV4.fullmatch(text) or sum(ch.isdigit() for ch in text) < 7:
        return text
    return "<number>"


def _token(match: re.Match[str]) -> str:
    """Random-looking: mixed case with digits (URL-safe base64), long hex, or very long.
    Identifiers (``konsil_t3e1f2_eu``) and UUIDs stay."""
    text = match.group(0)
    if _UUID.fullmatch(text):
        return text
    mixed = any(ch.isupper() for ch in text) and any(ch.islower() for ch in text)
    if mixed or len(text) >= 40 or (len(text) >= 32 and _HEX.fullmatch(text)):
        return "<token>"
    return text


def scrub_text(text: str) -> str:
    """``text`` with e-mail addresses, phone numbers, tokens, ``key=value`` secrets and
    query strings replaced by placeholders. UUIDs (row ids, run ids) are kept."""
    if not text:
        return text
    text = _EMAIL.sub("<email>", text)
    text = _QUERY.sub("?<query>", text)
    text = _AUTH.sub(lambda m: f"{m.group(1)}{m.group(2)}<token>", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", text)
    text = _TOKEN.sub(_token, text)
    return _PHONE.sub(_phone, text)


# --- SQL -----------------------------------------------------------------------------------

_SQL_STRING = re.compile(r"(?:[EeBbXxNn])?'(?:[^']|'')*'")
_SQL_DOLLAR = re.compile(r"\$([A-Za-z_]\w*)?\$.*?\$\1\$", re.DOTALL)
_SQL_NUMBER = re.compile(r"(?<![\w$.])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w])")
_SQL_DOUBLE_QUOTED = re.compile(r'"[^"]*"')
_SQL_KEYWORD = re.compile(
    r"(?i)^\s*(select|insert|update|delete|with|begin|commit|rollback|create|alter|drop|set|copy|"
    r"listen|unlisten|notify|lock|truncate|explain|savepoint|release|prepare|execute|show|vacuum)\b"
)


@functools.lru_cache(maxsize=4096)
def scrub_sql(statement: str) -> str:
    """The statement as parameterised text: string, dollar-quoted and numeric literals
    become ``?`` (placeholders ``$1`` stay), so no value can ride along; identifiers stay."""
    statement = _SQL_DOLLAR.sub("?", statement)
    statement = _SQL_STRING.sub("?", statement)
    # Quoted identifiers (names of tables and columns) stay as they are; numbers elsewhere go.
    parts = _SQL_DOUBLE_QUOTED.split(statement)
    names = _SQL_DOUBLE_QUOTED.findall(statement)
    out = [_SQL_NUMBER.sub("?", parts[0])]
    for name, part in zip(names, parts[1:], strict=True):
        out += (name, _SQL_NUMBER.sub("?", part))
    return _EMAIL.sub("<email>", "".join(out))[:2000]


# --- spans ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _clean(key: str, value: str) -> str:
    """A kept string attribute, scrubbed (cached: routes, methods and statements repeat)."""
    return scrub_sql(value) if key in _STATEMENT_KEYS else scrub_text(value)[:500]


class AttributePolicy:
    """Which attributes survive, for a given ``organisation_attributes`` setting."""

    def __init__(self, organisation_attributes: OrganisationAttributes = "none") -> None:
        allowed = set(ALLOWED_ATTRIBUTES)
        if organisation_attributes in ("id", "slug"):
            allowed.add(ORGANISATION_ID)
        if organisation_attributes == "slug":
            allowed.add(ORGANISATION_SLUG)
        self.allowed = frozenset(allowed)
        self.organisation_attributes = organisation_attributes

    def value(self, key: str, value: Any) -> Any:
        if isinstance(value, str):
            return _clean(key, value)
        if isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, Sequence):
            return tuple(self.value(key, item) for item in value if isinstance(item, (str, bool, int, float)))
        return None

    def attributes(self, attributes: Mapping[str, Any] | None, allowed: frozenset[str] | None = None) -> dict[str, Any]:
        keep = self.allowed if allowed is None else allowed
        out: dict[str, Any] = {}
        for key, value in (attributes or {}).items():
            if key in keep:
                cleaned = self.value(key, value)
                if cleaned is not None:
                    out[key] = cleaned
        return out

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def span_name(name: str) -> str:
        if _SQL_KEYWORD.match(name):
            return scrub_sql(name)[:200]
        return scrub_text(name)[:200]

    def scrub(self, span: ReadableSpan) -> ReadableSpan:
        """A copy of ``span`` holding only what may leave the process."""
        events = [
            Event(
                event.name if event.name == "exception" else scrub_text(event.name)[:100],
                self.attributes(event.attributes, _EVENT_ATTRIBUTES),
                event.timestamp,
            )
            for event in span.events
        ]
        links = [Link(link.context) for link in span.links]
        # A status description is usually an exception's message: the code only.
        status = Status(span.status.status_code) if span.status.status_code is StatusCode.ERROR else span.status
        return ReadableSpan(
            name=self.span_name(span.name),
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=self.attributes(span.attributes),
            events=events,
            links=links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )


class ScrubbingExporter(SpanExporter):
    """Wraps the real exporter: every span is scrubbed (``AttributePolicy.scrub``) before
    the wrapped exporter sees it; a failed export is reported as dropped spans."""

    def __init__(self, inner: SpanExporter, policy: AttributePolicy, on_failed: Callable[[int], None]) -> None:
        self.inner = inner
        self.policy = policy
        self.on_failed = on_failed

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export([self.policy.scrub(span) for span in spans])
        except Exception:  # an exporter must never take the process down
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.on_failed(len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)
