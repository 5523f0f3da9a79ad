"""TenantKeys (tests/platform/keys/test_tenant_keys.py) over a real OpenBao server's
Transit engine: the same tests, another key provider."""

from __future__ import annotations

import pytest

from tests.platform.keys.test_tenant_keys import *  # noqa: F403  (its tests run here too)


@pytest.fixture(params=["vault-token"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
