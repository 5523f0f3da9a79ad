"""The key-provider tests here run against the local keyring only (no server): the
shared ``provider`` and ``outage`` fixtures (tests/conftest.py) take their kind from
here. The same tests against a real OpenBao run in tests/e2e/test_key_providers_vault.py
and tests/e2e/test_tenant_keys_vault.py."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["local"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
