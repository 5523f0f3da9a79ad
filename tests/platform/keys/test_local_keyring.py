"""The local keyring's own promises: its files, and sharing one keyring between
instances (the region service and the ``konsil keys`` CLI). Several processes
rotating at once: tests/e2e/test_local_keyring_processes.py."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pytest

from konsil.platform.core.keys.local import KeyringError, LocalKeyring
from konsil.platform.core.keys.provider import KeyDestroyed, KeyInfo, KeyUnavailable, UnwrapRefused


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_first_use_creates_a_private_master_key(keyring_dir: Path) -> None:
    LocalKeyring(keyring_dir)
    assert mode(keyring_dir / "master.key") == 0o600
    assert mode(keyring_dir / "keyring.json") == 0o600
    assert mode(keyring_dir) == 0o700


def test_a_keyring_folder_others_can_read_is_made_private(keyring_dir: Path) -> None:
    LocalKeyring(keyring_dir)
    keyring_dir.chmod(0o755)
    LocalKeyring(keyring_dir)
    assert mode(keyring_dir) == 0o700


async def test_refuses_a_master_key_others_can_read(keyring_dir: Path) -> None:
    LocalKeyring(keyring_dir)
    (keyring_dir / "master.key").chmod(0o640)
    with pytest.raises(KeyringError, match="chmod 600"):
        LocalKeyring(keyring_dir)


async def test_refuses_a_keyring_without_its_master_key(keyring_dir: Path) -> None:
    LocalKeyring(keyring_dir)
    (keyring_dir / "master.key").unlink()
    with pytest.raises(KeyringError, match="master key"):
        LocalKeyring(keyring_dir)
    assert not (keyring_dir / "master.key").exists()


async def test_keyring_file_holds_no_plaintext_keys(keyring_dir: Path) -> None:
    keyring = LocalKeyring(keyring_dir)
    org = uuid.uuid4()
    await keyring.create_key(org)
    data_key = await keyring.generate_data_key(org)
    text = (keyring_dir / "keyring.json").read_text()
    assert data_key.plaintext.hex() not in text
    assert set(json.loads(text)["orgs"]) == {str(org)}


async def test_missing_keyring_file_is_an_outage_not_a_fresh_start(keyring_dir: Path) -> None:
    keyring = LocalKeyring(keyring_dir)
    org = uuid.uuid4()
    await keyring.create_key(org)
    data_key = await keyring.generate_data_key(org)
    (keyring_dir / "keyring.json").rename(keyring_dir / "keyring.json.away")

    with pytest.raises(KeyUnavailable):
        await keyring.unwrap(org, data_key.wrapped)
    with pytest.raises(KeyUnavailable):
        await keyring.create_key(uuid.uuid4())
    assert not (keyring_dir / "keyring.json").exists()

    (keyring_dir / "keyring.json.away").rename(keyring_dir / "keyring.json")
    assert await keyring.unwrap(org, data_key.wrapped) == data_key.plaintext


async def test_a_keyring_sealed_by_another_master_key_is_unavailable(keyring_dir: Path, tmp_path: Path) -> None:
    keyring = LocalKeyring(keyring_dir)
    org = uuid.uuid4()
    await keyring.create_key(org)
    other = LocalKeyring(tmp_path / "other")
    (tmp_path / "other" / "keyring.json").write_bytes((keyring_dir / "keyring.json").read_bytes())
    with pytest.raises(KeyUnavailable):
        await other.generate_data_key(org)


async def test_two_instances_share_one_keyring(keyring_dir: Path) -> None:
    service, cli = LocalKeyring(keyring_dir), LocalKeyring(keyring_dir)
    org = uuid.uuid4()
    await service.create_key(org)
    old = await service.generate_data_key(org)

    assert await cli.rotate(org) == 2
    assert await service.key_info(org) == KeyInfo(latest_version=2, min_decryption_version=1)
    assert (await service.generate_data_key(org)).key_version == 2
    rewrapped = await cli.rewrap(org, old.wrapped)
    await cli.retire(org, 2)
    with pytest.raises(UnwrapRefused):
        await service.unwrap(org, old.wrapped)
    assert await service.unwrap(org, rewrapped) == old.plaintext

    await cli.delete_key(org)
    with pytest.raises(KeyDestroyed):
        await service.unwrap(org, rewrapped)
