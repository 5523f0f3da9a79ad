"""The API documentation pages of both apps, served from the package: nothing is loaded
from another host (a CDN would tell a third party who reads the docs, and locked-down
hospital networks block them).

- ``/schema`` (and ``/schema/redoc``, where Redoc used to be): the OpenAPI document
  rendered on the server as plain HTML, no script at all;
- ``/schema/swagger``: Swagger UI from the ``swagger-ui-bundle`` package, its files at
  ``/schema/swagger-ui/…``, started by ``/static/swagger-init.js`` (no inline script:
  the pages' CSP is ``default-src 'self'``);
- ``/schema/openapi.json`` and ``/schema/openapi.yaml``: the document itself (OpenAPI
  3.1); ``/schema/openapi-3.0.json`` the same in 3.0 terms, which the packaged Swagger
  UI 4 reads.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, YamlRenderPlugin
from swagger_ui_bundle import swagger_ui_path

PATH = "/schema"
SWAGGER_ASSETS = "/swagger-ui"
# Only the files the page uses (the bundle also ships source maps and a sample page).
SWAGGER_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})
_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _head(title: str, *stylesheets: str) -> str:
    links = "".join(f'<link rel="stylesheet" href="{_e(href)}">' for href in stylesheets)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="same-origin"><title>{_e(title)}</title>'
        f'<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">{links}</head>'
    )


def _ref_name(schema: Mapping[str, Any] | None) -> str:
    """A schema as a short type: its component name, or its type."""
    if not schema:
        return ""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return f'<a href="#schema-{_e(name)}">{_e(name)}</a>'
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " | ".join(_ref_name(s) for s in schema[key])
    kind = schema.get("type", "")
    if kind == "array":
        return f"list of {_ref_name(schema.get('items'))}"
    if isinstance(kind, list):
        kind = " | ".join(kind)
    extra = f" ({_e(schema['format'])})" if "format" in schema else ""
    if "enum" in schema:
        extra = " — one of " + ", ".join(f"<code>{_e(v)}</code>" for v in schema["enum"])
    return f"{_e(kind)}{extra}"


def _operation(path: str, method: str, op: Mapping[str, Any]) -> str:
    anchor = _e(op.get("operationId") or f"{method}-{path}")
    parts = [
        f'<section class="op" id="op-{anchor}"><h3><span class="method {_e(method)}">{_e(method.upper())}</span> '
        f"<code>{_e(path)}</code></h3>"
    ]
    if op.get("summary"):
        parts.append(f'<p class="summary">{_e(op["summary"])}</p>')
    if op.get("description") and op.get("description") != op.get("summary"):
        parts.append(f"<p>{_e(op['description'])}</p>")
    params = op.get("parameters") or []
    if params:
        rows = "".join(
            f"<tr><td><code>{_e(p.get('name', ''))}</code></td><td>{_e(p.get('in', ''))}</td>"
            f"<td>{'yes' if p.get('required') else 'no'}</td><td>{_ref_name(p.get('schema'))}</td>"
            f"<td>{_e(p.get('description', ''))}</td></tr>"
            for p in params
            if isinstance(p, Mapping)
        )
        parts.append(
            '<div class="table-wrap"><table><caption>Parameters</caption><thead><tr><th>name</th><th>in</th>'
            f"<th>required</th><th>type</th><th>description</th></tr></thead><tbody>{rows}</tbody></table></div>"
        )
    body = op.get("requestBody")
    if isinstance(body, Mapping):
        for media, content in (body.get("content") or {}).items():
            parts.append(f"<p>Request body (<code>{_e(media)}</code>): {_ref_name(content.get('schema'))}</p>")
    responses = op.get("responses") or {}
    if responses:
        items = []
        for status, answer in sorted(responses.items()):
            described = _e(answer.get("description", "")) if isinstance(answer, Mapping) else ""
            shape = ""
            if isinstance(answer, Mapping):
                for content in (answer.get("content") or {}).values():
                    shape = _ref_name(content.get("schema"))
                    break
            items.append(f"<li><strong>{_e(status)}</strong> {described}{' — ' + shape if shape else ''}</li>")
        parts.append(f'<p class="label">Responses</p><ul class="responses">{"".join(items)}</ul>')
    parts.append("</section>")
    return "".join(parts)


def _schema(name: str, schema: Mapping[str, Any]) -> str:
    required = set(schema.get("required") or [])
    properties: Mapping[str, Any] = schema.get("properties") or {}
    parts = [f'<section class="schema" id="schema-{_e(name)}"><h3>{_e(name)}</h3>']
    if schema.get("description"):
        parts.append(f"<p>{_e(schema['description'])}</p>")
    if properties:
        rows = "".join(
            f"<tr><td><code>{_e(field)}</code></td><td>{_ref_name(spec)}</td>"
            f"<td>{'yes' if field in required else 'no'}</td><td>{_e(spec.get('description', ''))}</td></tr>"
            for field, spec in properties.items()
            if isinstance(spec, Mapping)
        )
        parts.append(
            '<div class="table-wrap"><table><thead><tr><th>field</th><th>type</th><th>required</th>'
            f"<th>description</th></tr></thead><tbody>{rows}</tbody></table></div>"
        )
    elif schema:
        parts.append(f"<p>{_ref_name(schema)}</p>")
    parts.append("</section>")
    return "".join(parts)


def render_document(document: Mapping[str, Any]) -> str:
    """The OpenAPI document as one HTML page: operations by tag, then the schemas."""
    info = document.get("info") or {}
    title = f"{info.get('title', 'API')} — API"
    by_tag: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
    for path, item in sorted((document.get("paths") or {}).items()):
        for method in _METHODS:
            op = item.get(method)
            if isinstance(op, Mapping):
                tag = (op.get("tags") or ["other"])[0]
                by_tag.setdefault(str(tag), []).append((path, method, op))
    toc = "".join(
        f'<li><a href="#tag-{_e(tag)}">{_e(tag)}</a> ({len(ops)})</li>' for tag, ops in sorted(by_tag.items())
    )
    sections = "".join(
        f'<h2 id="tag-{_e(tag)}">{_e(tag)}</h2>' + "".join(_operation(p, m, op) for p, m, op in ops)
        for tag, ops in sorted(by_tag.items())
    )
    schemas: Mapping[str, Any] = (document.get("components") or {}).get("schemas") or {}
    schema_html = "".join(_schema(name, spec) for name, spec in sorted(schemas.items()) if isinstance(spec, Mapping))
    return (
        _head(title, "/static/konsil.css", "/static/api-docs.css")
        + '<body class="wide api-docs"><a class="skip" href="#main">Skip to content</a>'
        + f'<header class="top"><strong class="brand">Konsil</strong><span>{_e(info.get("title", ""))}</span>'
        + '<span class="spacer"></span><nav class="doc-links" aria-label="Formats">'
        + f'<a href="{PATH}/swagger">Swagger UI</a><a href="{PATH}/openapi.json">openapi.json</a>'
        + f'<a href="{PATH}/openapi.yaml">openapi.yaml</a></nav></header>'
        + f'<main id="main"><h1>{_e(title)}</h1>'
        + f'<p class="muted">OpenAPI {_e(document.get("openapi", ""))} · version {_e(info.get("version", ""))}</p>'
        + (f"<p>{_e(info['description'])}</p>" if info.get("description") else "")
        + f'<nav aria-label="Contents"><ul class="toc">{toc}<li><a href="#schemas">Schemas</a></li></ul></nav>'
        + sections
        + f'<h2 id="schemas">Schemas</h2>{schema_html}</main></body></html>'
    )


class PlainDocs(OpenAPIRenderPlugin):
    """The OpenAPI document as plain HTML rendered here (Konsil's own small renderer)."""

    def __init__(self, path: Iterable[str] = ("/", "/redoc")) -> None:
        super().__init__(path=list(path), favicon="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return render_document(openapi_schema).encode()


class PackagedSwagger(OpenAPIRenderPlugin):
    """Swagger UI from the ``swagger-ui-bundle`` package, served by the app itself."""

    def __init__(self, path: str = "/swagger") -> None:
        super().__init__(path=path, favicon="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = f"{openapi_schema.get('info', {}).get('title', 'API')} — Swagger UI"
        assets = PATH + SWAGGER_ASSETS
        return (
            _head(title, f"{assets}/swagger-ui.css", "/static/api-docs.css")
            + f'<body class="swagger"><div id="swagger-ui" data-url="{PATH}/openapi-3.0.json"></div>'
            + f'<script src="{assets}/swagger-ui-bundle.js"></script>'
            + '<script src="/static/swagger-init.js"></script></body></html>'
        ).encode()

    def receive_router(self, router: Router) -> None:
        router.register(swagger_asset)
        router.register(openapi_30)


def _as_30(node: Any) -> Any:
    """One schema (or any part of the document) in OpenAPI 3.0 terms: ``null`` in a type
    list or a ``oneOf`` becomes ``nullable``, ``const`` an ``enum`` of one."""
    if isinstance(node, list):
        return [_as_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_30(value) for key, value in node.items()}
    kind = out.get("type")
    if isinstance(kind, list):
        others = [k for k in kind if k != "null"]
        out["type"] = others[0] if len(others) == 1 else others
        if len(others) < len(kind):
            out["nullable"] = True
        if isinstance(out["type"], list):  # several types: any of them
            out["oneOf"] = [{"type": k} for k in out.pop("type")]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for key in ("oneOf", "anyOf"):
        choices = out.get(key)
        if isinstance(choices, list) and any(isinstance(c, dict) and c.get("type") == "null" for c in choices):
            rest = [c for c in choices if not (isinstance(c, dict) and c.get("type") == "null")]
            out.pop(key)
            if len(rest) == 1 and "$ref" in rest[0]:
                out["allOf"] = rest
            elif len(rest) == 1:
                out.update(rest[0])
            else:
                out[key] = rest
            out["nullable"] = True
    return out


def as_openapi_30(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document for Swagger UI 4 (the version the ``swagger-ui-bundle`` package
    ships), which reads OpenAPI 3.0 only; Litestar writes 3.1."""
    converted: dict[str, Any] = _as_30(dict(document))
    converted["openapi"] = "3.0.3"
    return converted


@get("/openapi-3.0.json", opt={"public": True}, include_in_schema=False, sync_to_thread=False)
def openapi_30(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The OpenAPI document in 3.0 terms, for Swagger UI (``/schema/openapi.json`` is the document)."""
    document = request.app.openapi_schema.to_schema()
    return Response(msgspec.json.encode(as_openapi_30(document)), media_type="application/json")


_TYPES = {".css": "text/css", ".js": "text/javascript"}


@functools.cache
def _asset(name: str) -> bytes:
    return (Path(str(swagger_ui_path)) / name).read_bytes()


@get(f"{SWAGGER_ASSETS}/{{name:str}}", opt={"public": True}, include_in_schema=False, sync_to_thread=False)
def swagger_asset(name: str) -> Response[bytes]:
    """One of Swagger UI's files from the package (only those the page uses)."""
    if name not in SWAGGER_FILES:
        raise NotFoundException()
    return Response(
        _asset(name),
        media_type=_TYPES[Path(name).suffix],
        headers={"cache-control": "public, max-age=86400"},
    )


def openapi_config(title: str) -> OpenAPIConfig:
    """The OpenAPI documents and their pages at ``/schema``, for either app."""
    return OpenAPIConfig(
        title=title,
        version="1",
        render_plugins=[PlainDocs(), PackagedSwagger(), JsonRenderPlugin(), YamlRenderPlugin()],
        openapi_router=Router(path=PATH, route_handlers=[], opt={"public": True}, include_in_schema=False),
    )
