"""Rate limits of the control plane's cheap public routes: signup per source address,
login discovery per source address and per e-mail address; 429 with Retry-After.
The control plane runs in-process on a real PostgreSQL database with low limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from konsil.platform.control.app import create_control_app
from konsil.platform.control.tables import CONTROL_TABLES
from konsil.platform.core.settings import ControlSettings, RegionSettings, Settings
from tests.conftest import bindings_restored

DISCOVERY = "/api/v1/login-discovery"


@pytest.fixture
async def control(pg_database: Callable[[str, str], str]) -> AsyncIterator[AsyncTestClient[Any]]:
    dsn = await asyncio.to_thread(pg_database, "ratelimit_control", "control")
    settings = Settings(
        mode="services",
        discovery_key="discovery-key-for-tests",
        control=ControlSettings(
            database=dsn,
            listen="127.0.0.1:9",
            public_url="http://127.0.0.1:9",
            signups_per_address_hour=3,
            discoveries_per_address_minute=5,
            discoveries_per_email_minute=2,
        ),
        regions=[
            RegionSettings(
                id="eu",
                jurisdiction="EU/EEA",
                public_url="http://127.0.0.1:1",
                listen="127.0.0.1:1",
                database="sqlite:///unused",
                internal_secret="eu-secret-for-tests-only",
            )
        ],
    )
    with bindings_restored(CONTROL_TABLES):
        async with AsyncTestClient(create_control_app(settings.for_control())) as client:
            yield client


def signup_body(n: int) -> dict[str, Any]:
    return {
        "region": "xx",  # unknown: refused after the limit is counted: no region is called
        "organisation": {"name": "Praxis Nord", "slug": f"limited-{n}"},
        "owner": {"name": "Ada Owner", "email": f"ada{n}@x.example", "password": "correct horse battery"},
    }


def assert_limited(response: Any) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "too_many_requests"
    assert 1 <= int(response.headers["retry-after"]) <= 3600


async def test_signup_is_limited_per_source_address(control: AsyncTestClient[Any]) -> None:
    for n in range(3):
        assert (await control.post("/api/v1/signup", json=signup_body(n))).status_code == 400
    limited = await control.post("/api/v1/signup", json=signup_body(9))
    assert_limited(limited)
    assert int(limited.headers["retry-after"]) > 60, "an hourly limit"
    assert (await control.post(DISCOVERY, json={"email": "a@x.example"})).status_code == 200, "other routes go on"


async def test_login_discovery_is_limited_per_email_address(control: AsyncTestClient[Any]) -> None:
    for _ in range(2):
        assert (await control.post(DISCOVERY, json={"email": "Someone@X.example"})).status_code == 200
    # The same address in another spelling counts as the same address.
    assert_limited(await control.post(DISCOVERY, json={"email": "someone@x.example "[:-1]}))
    assert (await control.post(DISCOVERY, json={"email": "other@x.example"})).status_code == 200


async def test_login_discovery_is_limited_per_source_address(control: AsyncTestClient[Any]) -> None:
    for n in range(5):
        assert (await control.post(DISCOVERY, json={"email": f"p{n}@x.example"})).status_code == 200
    assert_limited(await control.post(DISCOVERY, json={"email": "fresh@x.example"}))
