"""TenantKeys: the data-key cache (no key-service round trip after warm-up; bounded
age and uses; emptied when the key is deleted), blind indexes, field binding. Over
the local keyring here; tests/e2e/test_tenant_keys_vault.py runs them over OpenBao."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from piccolo.engine.base import Engine

from konsil.platform.core.keys.cipher import FieldDecryptionError, FieldRef
from konsil.platform.core.keys.provider import KeyDestroyed, KeyProvider
from konsil.platform.core.keys.service import TenantKeys
from konsil.platform.core.keys.tables import TenantDataKey


@pytest.fixture
def keys(provider: KeyProvider, region_engine: Engine[Any]) -> TenantKeys:
    """Over the local keyring here; over OpenBao in tests/e2e/test_tenant_keys_vault.py."""
    return TenantKeys(provider, max_age_seconds=300, max_uses=1000)


def ref(org: uuid.UUID, row: uuid.UUID, column: str = "email") -> FieldRef:
    return FieldRef(org, "member", column, row)


async def test_after_warm_up_requests_make_no_round_trip(keys: TenantKeys) -> None:
    org = uuid.uuid4()
    await keys.provision(org)
    row = uuid.uuid4()
    sealed = (await keys.cipher(org)).seal(ref(org, row), "ada@example.org")
    before = keys.provider.round_trips
    for _ in range(200):
        cipher = await keys.cipher(org)
        assert cipher.open(ref(org, row), sealed) == "ada@example.org"
    assert keys.provider.round_trips == before


async def test_a_cold_cache_unwraps_the_stored_data_keys(keys: TenantKeys) -> None:
    org = uuid.uuid4()
    await keys.provision(org)
    sealed = (await keys.cipher(org)).seal(ref(org, org), "x")
    keys.evict(org)
    before = keys.provider.round_trips
    assert (await keys.cipher(org)).open(ref(org, org), sealed) == "x"
    assert keys.provider.round_trips == before + 2  # the field key and the index key


async def test_the_maximum_age_refreshes_the_cache(keys: TenantKeys) -> None:
    keys.max_age = 0.05
    org = uuid.uuid4()
    await keys.provision(org)
    await keys.cipher(org)
    before = keys.provider.round_trips
    await asyncio.sleep(0.1)  # time past the maximum age (read when the cache is used; no poller)
    await keys.cipher(org)
    assert keys.provider.round_trips == before + 2


async def test_the_maximum_uses_moves_encryption_to_a_fresh_data_key(keys: TenantKeys) -> None:
    keys.max_uses = 3
    org = uuid.uuid4()
    await keys.provision(org)
    cipher = await keys.cipher(org)
    sealed = [cipher.seal(ref(org, org), f"v{i}") for i in range(3)]
    first_key = cipher.active_key_id
    cipher = await keys.cipher(org)
    assert cipher.active_key_id != first_key
    assert await keys.data_key_count(org) == 3
    later = cipher.seal(ref(org, org), "later")
    keys.evict(org)
    cipher = await keys.cipher(org)
    assert [cipher.open(ref(org, org), s) for s in sealed] == ["v0", "v1", "v2"]
    assert cipher.open(ref(org, org), later) == "later"


async def test_the_use_budget_of_a_data_key_survives_cache_reloads(keys: TenantKeys) -> None:
    keys.max_uses = 3
    keys.max_age = 0.05
    org = uuid.uuid4()
    await keys.provision(org)
    cipher = await keys.cipher(org)
    first_key = cipher.active_key_id
    cipher.seal(ref(org, org), "a")
    cipher.seal(ref(org, org), "b")
    await asyncio.sleep(0.1)  # the entry expires; its two uses are written back
    cipher = await keys.cipher(org)
    assert cipher.active_key_id == first_key and cipher.encryptions == 2
    cipher.seal(ref(org, org), "c")
    await asyncio.sleep(0.1)  # expires again
    cipher = await keys.cipher(org)
    assert cipher.active_key_id != first_key, "a spent key is not used again after a reload"
    rows = await TenantDataKey.select().where(TenantDataKey.id == first_key).run()
    assert rows[0]["encryptions"] == 3


async def test_shredding_empties_the_cache_and_the_key_is_gone(keys: TenantKeys) -> None:
    org = uuid.uuid4()
    await keys.provision(org)
    await keys.cipher(org)
    await keys.shred(org)
    assert not keys.cached(org)
    with pytest.raises(KeyDestroyed):
        await keys.cipher(org)


async def test_a_field_only_opens_where_it_was_sealed(keys: TenantKeys) -> None:
    org, other = uuid.uuid4(), uuid.uuid4()
    await keys.provision(org)
    await keys.provision(other)
    cipher, other_cipher = await keys.cipher(org), await keys.cipher(other)
    row = uuid.uuid4()
    sealed = cipher.seal(ref(org, row), "+4712345678")
    for wrong in (ref(org, uuid.uuid4()), ref(org, row, "phone"), FieldRef(org, "visit", "email", row)):
        with pytest.raises(FieldDecryptionError):
            cipher.open(wrong, sealed)
    with pytest.raises(FieldDecryptionError, match="unknown data key"):
        other_cipher.open(ref(other, row), sealed)
    for damaged in (sealed[:-4], sealed.replace("kf1:", "kf9:"), "kf1:abc", sealed[:10] + "!" + sealed[11:]):
        with pytest.raises(FieldDecryptionError):
            cipher.open(ref(org, row), damaged)
    assert cipher.seal(ref(org, row), "same") != cipher.seal(ref(org, row), "same"), "fresh nonce each time"


async def test_blind_indexes_are_per_organisation(keys: TenantKeys) -> None:
    org, other = uuid.uuid4(), uuid.uuid4()
    await keys.provision(org)
    await keys.provision(other)
    a = (await keys.cipher(org)).blind_index("email", "ada@example.org")
    assert a == (await keys.cipher(org)).blind_index("email", "ada@example.org")
    assert a != (await keys.cipher(other)).blind_index("email", "ada@example.org")
    assert a != (await keys.cipher(org)).blind_index("phone", "ada@example.org")


async def test_rotation_rewraps_without_changing_the_data_keys(keys: TenantKeys) -> None:
    org = uuid.uuid4()
    await keys.provision(org)
    sealed = (await keys.cipher(org)).seal(ref(org, org), "kept")
    result = await keys.rotate(org)
    assert result.key_version == 2 and result.rewrapped == 2
    rows = await TenantDataKey.select().where(TenantDataKey.org_id == org).run()
    assert {r["key_version"] for r in rows} == {2} and all(":v2:" in r["wrapped"] for r in rows)
    info = await keys.retire_old_versions(org)
    assert info.min_decryption_version == 2
    assert (await keys.cipher(org)).open(ref(org, org), sealed) == "kept"
