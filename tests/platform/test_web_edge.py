"""The shared web plumbing: security headers on every response, and OpenAPI documents
whose every operation documents its errors in the one shape the services answer with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar

from konsil.platform.control.app import create_control_app
from konsil.platform.core.settings import ControlSettings, RegionSettings, Settings, VaultSettings
from konsil.platform.core.web import SECURITY_HEADERS, security_headers
from konsil.regions.app import create_region_app


async def test_security_headers_are_added_and_a_routes_own_header_is_kept() -> None:
    message: Any = {
        "type": "http.response.start",
        "status": 404,
        "headers": [(b"content-type", b"application/json"), (b"Referrer-Policy", b"same-origin")],
    }
    await security_headers(message, {})  # type: ignore[arg-type]
    names = [name.lower() for name, _ in message["headers"]]
    assert sorted(names) == sorted([b"content-type", *(n.encode() for n in SECURITY_HEADERS)])
    assert (b"Referrer-Policy", b"same-origin") in message["headers"]
    body: Any = {"type": "http.response.body", "body": b"{}"}
    await security_headers(body, {})  # type: ignore[arg-type]
    assert body == {"type": "http.response.body", "body": b"{}"}


def settings(tmp_path: Path) -> Settings:
    region = RegionSettings(
        id="eu",
        jurisdiction="EU/EEA",
        public_url="http://127.0.0.1:9",
        listen="127.0.0.1:9",
        database=f"sqlite:///{tmp_path / 'region.sqlite'}",
        internal_secret="eu-secret-for-tests-only",
        vault=VaultSettings(backend="local", keyring_path=str(tmp_path / "keyring")),
    )
    control = ControlSettings(
        database=f"sqlite:///{tmp_path / 'control.sqlite'}", listen="127.0.0.1:8", public_url="http://127.0.0.1:8"
    )
    return Settings(mode="embedded", discovery_key="discovery-key-for-tests", control=control, regions=[region])


@pytest.mark.parametrize("which", ["control", "region"])
def test_every_operation_documents_its_errors_in_the_shared_shape(tmp_path: Path, which: str) -> None:
    app: Litestar = (
        create_control_app(settings(tmp_path).for_control())
        if which == "control"
        else create_region_app(settings(tmp_path))
    )
    schema = app.openapi_schema.to_schema()
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "message"]
    assert set(error["properties"]) == {"error", "message", "details"}
    operations = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            operations += 1
            statuses = {int(code) for code in operation["responses"]}
            assert {429, 500, 503} <= statuses, (method, path)
            if operation.get("parameters") or operation.get("requestBody"):
                assert 400 in statuses, (method, path)
            if operation.get("requestBody"):
                assert {413, 415} <= statuses, (method, path)
            if "{" in path:
                assert 404 in statuses, (method, path)
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    assert response["content"] == {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    }, (method, path, code)
    assert operations >= (3 if which == "control" else 30)
