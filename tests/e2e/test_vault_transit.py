"""Vault Transit specifics against the real OpenBao server: authentication, expired
tokens, and misconfiguration that must read as an outage, never as a shredded key."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from konsil.platform.core.keys.provider import KeyUnavailable
from konsil.platform.core.keys.vault import VaultTransitProvider
from tests.conftest import BaoServer, free_port

CLIENT_TIMEOUT = 1.0


async def test_transit_keys_are_aes256_gcm96_and_not_exportable(bao: BaoServer) -> None:
    provider = VaultTransitProvider(bao.url, token=bao.root_token)
    try:
        org = uuid.uuid4()
        await provider.create_key(org)
        key = bao.client().secrets.transit.read_key(f"org-{org}")["data"]
        assert key["type"] == "aes256-gcm96"
        assert key["exportable"] is False and key["deletion_allowed"] is False
    finally:
        await provider.close()


async def test_approle_logs_in_again_when_its_token_is_revoked(bao: BaoServer) -> None:
    provider = VaultTransitProvider(bao.url, auth="approle", role_id=bao.role_id, secret_id=bao.secret_id)
    try:
        org = uuid.uuid4()
        await provider.create_key(org)
        data_key = await provider.generate_data_key(org)
        assert provider.round_trips == 3  # login, create, datakey

        bao.client().sys.revoke_prefix("auth/approle/login")

        assert await provider.unwrap(org, data_key.wrapped) == data_key.plaintext
        assert provider.round_trips == 6  # refused, login, retried
    finally:
        await provider.close()


async def test_wrong_approle_secret_is_unavailable_and_not_echoed(bao: BaoServer) -> None:
    secret = f"wrong-{uuid.uuid4()}"
    provider = VaultTransitProvider(bao.url, auth="approle", role_id=bao.role_id, secret_id=secret)
    try:
        with pytest.raises(KeyUnavailable) as failed:
            await provider.generate_data_key(uuid.uuid4())
        assert secret not in str(failed.value) and "approle" in str(failed.value)
    finally:
        await provider.close()


async def test_bad_token_is_unavailable_and_not_echoed(bao: BaoServer) -> None:
    token = f"s.{uuid.uuid4().hex}"
    provider = VaultTransitProvider(bao.url, token=token)
    try:
        with pytest.raises(KeyUnavailable) as failed:
            await provider.key_info(uuid.uuid4())
        assert token not in str(failed.value) and token not in repr(provider)
    finally:
        await provider.close()


async def test_unmounted_transit_engine_is_an_outage_not_a_shredded_key(bao: BaoServer) -> None:
    provider = VaultTransitProvider(bao.url, token=bao.root_token, mount="not-mounted")
    try:
        with pytest.raises(KeyUnavailable):
            await provider.generate_data_key(uuid.uuid4())
        with pytest.raises(KeyUnavailable):
            await provider.delete_key(uuid.uuid4())
    finally:
        await provider.close()


async def test_nothing_listening_is_unavailable() -> None:
    provider = VaultTransitProvider(f"http://127.0.0.1:{free_port()}", token="t", timeout=CLIENT_TIMEOUT)
    try:
        with pytest.raises(KeyUnavailable):
            await provider.generate_data_key(uuid.uuid4())
    finally:
        await provider.close()


async def test_kubernetes_auth_without_a_service_account_token_is_unavailable(bao: BaoServer, tmp_path: Path) -> None:
    provider = VaultTransitProvider(
        bao.url, auth="kubernetes", kubernetes_role="konsil-region", kubernetes_jwt_path=str(tmp_path / "missing")
    )
    try:
        with pytest.raises(KeyUnavailable, match="service-account token"):
            await provider.generate_data_key(uuid.uuid4())
    finally:
        await provider.close()


def test_auth_settings_are_checked_up_front() -> None:
    with pytest.raises(ValueError):
        VaultTransitProvider("http://127.0.0.1:8200")
    with pytest.raises(ValueError):
        VaultTransitProvider("http://127.0.0.1:8200", auth="approle", role_id="r")
    with pytest.raises(ValueError):
        VaultTransitProvider("http://127.0.0.1:8200", auth="kubernetes")
