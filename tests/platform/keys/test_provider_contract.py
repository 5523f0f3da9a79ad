"""The key-provider contract: every implementation (Vault Transit with token and
AppRole auth against a real OpenBao, and the local keyring) behaves the same. Here
against the local keyring; tests/e2e/test_key_providers_vault.py runs these tests
against OpenBao."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

import pytest

from konsil.platform.core.keys.provider import (
    KeyDestroyed,
    KeyInfo,
    KeyProvider,
    KeyUnavailable,
    UnwrapRefused,
    wrapped_version,
)
from tests.conftest import wait_until_async


async def new_org(provider: KeyProvider) -> uuid.UUID:
    org = uuid.uuid4()
    await provider.create_key(org)
    return org


def tampered(wrapped: str) -> list[str]:
    """Wrapped values that must never unwrap: cut short, one payload character
    changed, another version, and values that are not wrapped keys at all."""
    scheme, version, payload = wrapped.split(":", 2)
    middle = len(payload) // 2
    flipped = payload[:middle] + ("A" if payload[middle] != "A" else "B") + payload[middle + 1 :]
    return [
        wrapped[:-8],
        f"{scheme}:{version}:{payload[: middle - middle % 4]}",
        f"{scheme}:{version}:{flipped}",
        f"{scheme}:v7:{payload}",
        f"{scheme}:{version}:",
        f"{scheme}:vX:{payload}",
        "other:v1:" + payload,
        "garbage",
        "",
    ]


async def test_create_is_idempotent(provider: KeyProvider) -> None:
    org = await new_org(provider)
    await provider.create_key(org)
    assert await provider.key_info(org) == KeyInfo(latest_version=1, min_decryption_version=1)


async def test_data_key_unwraps_to_the_same_bytes(provider: KeyProvider) -> None:
    org = await new_org(provider)
    data_key = await provider.generate_data_key(org)
    assert len(data_key.plaintext) == 32
    assert data_key.key_version == wrapped_version(data_key.wrapped) == 1
    assert base64.b64encode(data_key.plaintext).decode() not in data_key.wrapped
    assert await provider.unwrap(org, data_key.wrapped) == data_key.plaintext
    other = await provider.generate_data_key(org)
    assert other.plaintext != data_key.plaintext and other.wrapped != data_key.wrapped


async def test_another_organisations_key_refuses_the_data_key(provider: KeyProvider) -> None:
    org_a, org_b = await new_org(provider), await new_org(provider)
    data_key = await provider.generate_data_key(org_a)
    with pytest.raises(UnwrapRefused) as refused:
        await provider.unwrap(org_b, data_key.wrapped)
    assert base64.b64encode(data_key.plaintext).decode() not in str(refused.value)
    with pytest.raises(UnwrapRefused):
        await provider.rewrap(org_b, data_key.wrapped)
    assert await provider.unwrap(org_a, data_key.wrapped) == data_key.plaintext


async def test_tampered_wrapped_keys_are_refused_never_misread(provider: KeyProvider) -> None:
    org = await new_org(provider)
    data_key = await provider.generate_data_key(org)
    for bad in tampered(data_key.wrapped):
        with pytest.raises(UnwrapRefused):
            await provider.unwrap(org, bad)
        with pytest.raises(UnwrapRefused):
            await provider.rewrap(org, bad)


async def test_unknown_organisation_has_no_key(provider: KeyProvider) -> None:
    org = await new_org(provider)
    wrapped = (await provider.generate_data_key(org)).wrapped
    never_created = uuid.uuid4()
    with pytest.raises(KeyDestroyed):
        await provider.generate_data_key(never_created)
    with pytest.raises(KeyDestroyed):
        await provider.unwrap(never_created, wrapped)
    with pytest.raises(KeyDestroyed):
        await provider.rewrap(never_created, wrapped)
    with pytest.raises(KeyDestroyed):
        await provider.key_info(never_created)
    with pytest.raises(KeyDestroyed):
        await provider.rotate(never_created)
    with pytest.raises(KeyDestroyed):
        await provider.retire(never_created, 1)


async def test_rotation_keeps_old_data_keys_and_rewrap_moves_them_up(provider: KeyProvider) -> None:
    org = await new_org(provider)
    old = await provider.generate_data_key(org)

    assert await provider.rotate(org) == 2
    assert await provider.key_info(org) == KeyInfo(latest_version=2, min_decryption_version=1)
    assert await provider.unwrap(org, old.wrapped) == old.plaintext
    new = await provider.generate_data_key(org)
    assert new.key_version == 2 and ":v2:" in new.wrapped

    rewrapped = await provider.rewrap(org, old.wrapped)
    assert ":v2:" in rewrapped and rewrapped != old.wrapped
    assert base64.b64encode(old.plaintext).decode() not in rewrapped
    assert await provider.unwrap(org, rewrapped) == old.plaintext

    assert await provider.rotate(org) == 3
    assert wrapped_version(await provider.rewrap(org, rewrapped)) == 3


async def test_each_version_records_when_it_was_made(provider: KeyProvider) -> None:
    """Key-age evidence (compliance/evidence/keys.py) reads these times."""
    org = await new_org(provider)
    before = datetime.now(UTC) - timedelta(seconds=2)  # the key service may round down
    [(version, first)] = (await provider.version_created(org)).items()
    assert version == 1 and before <= first <= datetime.now(UTC) and first.tzinfo is not None
    await provider.rotate(org)
    created = await provider.version_created(org)
    assert sorted(created) == [1, 2] and created[1] == first and first <= created[2] <= datetime.now(UTC)
    with pytest.raises(KeyDestroyed):
        await provider.version_created(uuid.uuid4())


async def test_retired_versions_no_longer_unwrap(provider: KeyProvider) -> None:
    org = await new_org(provider)
    old = await provider.generate_data_key(org)
    await provider.rotate(org)
    rewrapped = await provider.rewrap(org, old.wrapped)

    await provider.retire(org, 2)

    assert await provider.key_info(org) == KeyInfo(latest_version=2, min_decryption_version=2)
    with pytest.raises(UnwrapRefused):
        await provider.unwrap(org, old.wrapped)
    with pytest.raises(UnwrapRefused):
        await provider.rewrap(org, old.wrapped)
    assert await provider.unwrap(org, rewrapped) == old.plaintext
    with pytest.raises(ValueError):
        await provider.retire(org, 3)  # above the latest version
    with pytest.raises(ValueError):
        await provider.retire(org, 0)


async def test_deleting_the_key_shreds_every_data_key(provider: KeyProvider) -> None:
    org = await new_org(provider)
    data_key = await provider.generate_data_key(org)
    await provider.rotate(org)
    rewrapped = await provider.rewrap(org, data_key.wrapped)

    await provider.delete_key(org)

    for wrapped in (data_key.wrapped, rewrapped):
        with pytest.raises(KeyDestroyed):
            await provider.unwrap(org, wrapped)
        with pytest.raises(KeyDestroyed):
            await provider.rewrap(org, wrapped)
    with pytest.raises(KeyDestroyed):
        await provider.generate_data_key(org)
    with pytest.raises(KeyDestroyed):
        await provider.key_info(org)
    await provider.delete_key(org)  # idempotent
    await provider.delete_key(uuid.uuid4())  # never created: fine too

    # A key created again under the same name is a new key: the old data keys stay shredded.
    await provider.create_key(org)
    with pytest.raises(UnwrapRefused):
        await provider.unwrap(org, data_key.wrapped)


async def test_round_trips_are_counted(provider: KeyProvider) -> None:
    org = await new_org(provider)
    before = provider.round_trips
    data_key = await provider.generate_data_key(org)
    await provider.unwrap(org, data_key.wrapped)
    assert provider.round_trips >= before + 2


async def test_outage_fails_closed_and_recovers_by_itself(
    provider: KeyProvider, outage: Callable[[], AbstractContextManager[None]]
) -> None:
    org = await new_org(provider)
    data_key = await provider.generate_data_key(org)

    ticks = 0

    async def heartbeat() -> None:  # the event loop keeps running while the key service hangs
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    try:
        with outage():
            started = time.monotonic()
            with pytest.raises(KeyUnavailable):
                await provider.unwrap(org, data_key.wrapped)
            with pytest.raises(KeyUnavailable):
                await provider.generate_data_key(org)
            elapsed = time.monotonic() - started
    finally:
        beat.cancel()
    assert elapsed < 15, "the client timeout bounds the wait"
    if provider.name == "vault-transit":
        # The calls hung until the client timeout; the loop kept running meanwhile
        # (a blocking call would leave ticks at 0).
        assert ticks >= 5

    # Same provider object, no rebuild: it works again once the service is back. A server
    # just woken from SIGSTOP on a busy machine can take longer than the tests' 1 s client
    # timeout for its first answers, so the provider is asked until it answers (each call
    # a fresh attempt: nothing is rebuilt or reset in between).
    # Only the client timeout may fail such an attempt; any other error fails the test.
    timed_out: list[str] = []

    async def recovered() -> bytes | None:
        try:
            return await provider.unwrap(org, data_key.wrapped)
        except KeyUnavailable as exc:
            assert "Timeout" in str(exc), f"not a timeout after the outage: {exc}"
            timed_out.append(str(exc))
            return None

    plaintext = await wait_until_async(recovered, "the key service to answer again", within=60, every=0.5)
    assert plaintext == data_key.plaintext, timed_out
    assert len((await provider.generate_data_key(org)).plaintext) == 32
