"""The key-provider contract (tests/platform/keys/test_provider_contract.py) against a
real OpenBao server, with token and with AppRole auth: the same tests, other kinds."""

from __future__ import annotations

import pytest

from tests.platform.keys.test_provider_contract import *  # noqa: F403  (the contract's tests run here too)


@pytest.fixture(params=["vault-token", "vault-approle"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
