"""Error responses in the OpenAPI documents: every operation of both apps documents
the errors the shared web plumbing can answer it with, all in one shape (``Error``),
the shape ``konsil.platform.core.errors`` answers with. Done here once, from facts about
each handler (body, parameters, public or not), not by hand per route."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Reference, Schema
from litestar.routes import HTTPRoute

ERROR_SCHEMA_NAME = "Error"

ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["error", "message"],
    properties={
        "error": Schema(type=OpenAPIType.STRING, description="a stable code, e.g. invalid_input, not_found"),
        "message": Schema(type=OpenAPIType.STRING, description="what went wrong, in plain words"),
        "details": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.STRING),
            description="which values were refused, when there are several",
        ),
    },
    description="Every error answer of the Konsil APIs (a few add fields of their own, e.g. advice).",
)

# Answered on any operation by the shared plumbing.
ALWAYS: dict[int, str] = {
    429: "Too many attempts; the Retry-After header says after how many seconds to try again.",
    500: "Something went wrong on our side; nothing is shown about it.",
    503: "A service this needs (database, key service, region) does not answer; try again shortly.",
}
INPUT = {400: "The request is not valid (body, path or query values); `details` names what was refused."}
BODY = {
    413: "The request body is larger than the service accepts.",
    415: "The request body is not sent as application/json.",
}
AUTHENTICATED = {
    401: "Not logged in, or the credentials are not valid.",
    403: "The caller's role or token scope does not allow this, or the CSRF token is missing.",
}
FOUND = {404: "Not found, or not visible to the caller."}
CHANGE = {409: "Conflicts with the current state (for example, a name that is taken)."}


def _error_response(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description,
        content={"application/json": OpenAPIMediaType(schema=Reference(f"#/components/schemas/{ERROR_SCHEMA_NAME}"))},
    )


def error_statuses(
    operation: Operation, *, method: str, opt: Mapping[str, Any], has_body: bool, extra: Mapping[int, str]
) -> dict[int, str]:
    """The error statuses an operation may answer, with their descriptions. A handler
    names statuses of its own in ``opt["errors"]`` (a public login answers 401)."""
    statuses = dict(ALWAYS)
    statuses.update(extra)
    statuses.update(opt.get("errors", {}))
    public = bool(opt.get("public"))
    parameters = operation.parameters or []
    if parameters or has_body:
        statuses.update(INPUT)
    if has_body:
        statuses.update(BODY)
    if not public:
        statuses.update(AUTHENTICATED)
    if any(getattr(p, "param_in", None) == "path" for p in parameters):
        statuses.update(FOUND)
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        statuses.update(CHANGE)
    return statuses


def _portable_patterns(node: object, seen: set[int]) -> None:
    """Patterns in the document in the dialect JSON Schema uses (ECMA-262), which
    clients and schemathesis read: Python's ``\\Z`` (end of the value) is ``$`` there
    (without the multiline flag ``$`` matches only at the very end), and the surrogate
    range is left out (a JSON text in UTF-8 cannot carry an unpaired surrogate; the
    decoder refuses one before any pattern runs, and the range breaks ECMA parsers)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, Schema) and node.pattern:
        node.pattern = node.pattern.replace(r"\Z", "$").replace(r"\ud800-\udfff", "")
    if isinstance(node, dict):
        children: list[object] = list(node.values())
    elif isinstance(node, list | tuple):
        children = list(node)
    elif dataclasses.is_dataclass(node):
        children = [getattr(node, field.name) for field in dataclasses.fields(node)]
    else:
        return
    for child in children:
        _portable_patterns(child, seen)


def _closed_struct_names(app: Litestar) -> set[str]:
    """Names of the request-body Structs (and the Structs inside them) that refuse
    unknown fields: their schemas say so (``additionalProperties: false``)."""
    annotations = [
        field.annotation
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if (field := handler.parsed_fn_signature.parameters.get("data")) is not None
    ]
    names: set[str] = set()
    seen: set[int] = set()

    def walk(node: object) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, msgspec.inspect.StructType) and node.forbid_unknown_fields:
            names.add(node.cls.__name__)
        if isinstance(node, msgspec.inspect.Type | msgspec.inspect.Field):
            for name in node.__struct_fields__:
                walk(getattr(node, name))
        elif isinstance(node, tuple | list):
            for child in node:
                walk(child)

    walk(msgspec.inspect.multi_type_info(annotations))
    return names


def document_errors(app: Litestar, extra: Mapping[int, str] | None = None) -> None:
    """Make patterns portable, add the shared error schema and each operation's error responses to the app's
    OpenAPI document (built now; Litestar serves the same object later). ``extra``:
    statuses the app's own exception handlers may answer on any operation."""
    openapi = app.openapi_schema
    _portable_patterns(openapi, set())
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    closed = _closed_struct_names(app)
    for component in openapi.components.schemas.values():
        if component.title in closed:
            component.additional_properties = False
    openapi.components.schemas[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path_item = (openapi.paths or {}).get(route.path_format or "/")
        if path_item is None:
            continue
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            for method in handler.http_methods:
                operation = getattr(path_item, method.lower(), None)
                if not isinstance(operation, Operation):
                    continue
                statuses = error_statuses(
                    operation,
                    method=method,
                    opt=handler.opt,
                    has_body=operation.request_body is not None,
                    extra=extra or {},
                )
                responses = operation.responses if operation.responses is not None else {}
                for code, response in list(responses.items()):
                    # Litestar documents its own error shape; ours replaces it.
                    if code[:1] in ("4", "5") and isinstance(response, OpenAPIResponse):
                        responses[code] = _error_response(statuses.get(int(code)) or response.description or "Error.")
                for status, description in sorted(statuses.items()):
                    responses.setdefault(str(status), _error_response(description))
                operation.responses = dict(sorted(responses.items()))
