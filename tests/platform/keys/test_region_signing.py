"""The region's own signing key in the embedded default (a keyring file), what every
signer shares (key ids anyone can recompute, canonical JSON), and which signer a region's
settings give. The Vault Transit signer against a real OpenBao:
tests/e2e/test_region_signing_vault.py."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from konsil.platform.core.keys.build import build_key_provider, build_region_signer
from konsil.platform.core.keys.region_signing import (
    KeySet,
    LocalSigner,
    Signature,
    SigningUnavailable,
    Verifier,
    canonical_json,
    verify,
)
from konsil.platform.core.keys.vault_signing import VaultSigner
from konsil.platform.core.settings import ConfigError, RegionSettings, Settings, VaultSettings, load_settings


def raw_public(key_set: KeySet, kid: str) -> bytes:
    x = next(k.x for k in key_set.keys if k.kid == kid)
    return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))


async def test_signatures_verify_with_the_published_key_alone(tmp_path: Path) -> None:
    signer = LocalSigner(tmp_path / "signing", "eu")
    message = b'{"kind":"test"}'
    signature = await signer.sign(message)
    key_set = await signer.key_set()
    assert key_set.region == "eu" and [k.status for k in key_set.keys] == ["current"]
    assert signature.alg == "EdDSA" and signature.kid == key_set.keys[0].kid
    # Anyone recomputes the key id from the key, and checks with cryptography alone.
    raw = raw_public(key_set, signature.kid)
    assert hashlib.sha256(raw).hexdigest()[:16] == signature.kid
    Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(signature.value), message)
    assert verify(key_set, message, signature)
    assert not verify(key_set, message + b" ", signature)
    assert not verify(key_set, message, Signature(kid="0" * 16, value=signature.value))


async def test_a_verifier_of_a_key_set_answers_as_verify_does(tmp_path: Path) -> None:
    """The verifier (keys decoded once, for the many receipts of a report) checks every
    signature by the same rules: the named key, the exact bytes."""
    signer = LocalSigner(tmp_path / "signing", "eu")
    old = await signer.sign(b"before")
    await signer.rotate_key()
    new = await signer.sign(b"after")
    key_set = await signer.key_set()
    verifier = Verifier(key_set)
    cases = [
        (b"before", old),
        (b"after", new),
        (b"after", old),  # another message
        (b"after ", new),  # one byte more
        (b"after", Signature(kid="0" * 16, value=new.value)),  # a key the set does not list
        (b"after", Signature(kid=new.kid, value=old.value)),  # another signature
        (b"after", Signature(kid=new.kid, value="not base64!")),
    ]
    assert [verifier.verify(m, s) for m, s in cases] == [verify(key_set, m, s) for m, s in cases]
    assert [verifier.verify(m, s) for m, s in cases] == [True, True, False, False, False, False, False]
    assert verifier.knows(old.kid) and verifier.knows(new.kid) and not verifier.knows("0" * 16)
    # A key set entry that is no Ed25519 key verifies nothing.
    broken = msgspec.structs.replace(key_set, keys=[msgspec.structs.replace(key_set.keys[1], x="AAAA")])
    assert not Verifier(broken).verify(b"after", new) and not verify(broken, b"after", new)


async def test_the_keyring_file_is_private_and_made_once(tmp_path: Path) -> None:
    signer = LocalSigner(tmp_path / "signing", "eu")
    await signer.sign(b"x")
    assert stat.S_IMODE(signer.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(signer.directory.stat().st_mode) == 0o700
    again = LocalSigner(tmp_path / "signing", "eu")
    assert await again.key_set() == await signer.key_set(), "a second instance finds the same key"


async def test_a_rotation_keeps_every_earlier_signature_verifiable(tmp_path: Path) -> None:
    signer = LocalSigner(tmp_path / "signing", "eu")
    first = await signer.sign(b"before")
    new_kid = await signer.rotate_key()
    second = await signer.sign(b"after")
    key_set = await signer.key_set()
    assert second.kid == new_kid != first.kid
    assert [(k.kid, k.status) for k in key_set.keys] == [(first.kid, "retired"), (new_kid, "current")]
    assert key_set.current().kid == new_kid
    assert verify(key_set, b"before", first) and verify(key_set, b"after", second)


async def test_the_running_service_signs_with_a_key_the_cli_rotated(tmp_path: Path) -> None:
    """The region service and ``konsil keys rotate-signing`` share the keyring: the
    service's next signature uses the new key, and its key set lists it."""
    service = LocalSigner(tmp_path / "signing", "eu")
    old = await service.sign(b"a")
    cli = LocalSigner(tmp_path / "signing", "eu")
    new_kid = cli.rotate()
    assert (await service.sign(b"b")).kid == new_kid
    assert {k.kid: k.status for k in (await service.key_set()).keys} == {old.kid: "retired", new_kid: "current"}


async def test_a_keyring_others_can_read_is_refused(tmp_path: Path) -> None:
    signer = LocalSigner(tmp_path / "signing", "eu")
    await signer.sign(b"x")
    signer.path.chmod(0o644)
    with pytest.raises(SigningUnavailable, match="chmod 600"):
        await LocalSigner(tmp_path / "signing", "eu").sign(b"x")


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b'{"format": 1, "keys": []}',
        b'{"format": 1, "keys": [{"kid": "x", "private": "AA==", "created_at": ""}]}',
    ],
)
async def test_an_unreadable_keyring_is_unavailable_not_replaced(tmp_path: Path, content: bytes) -> None:
    signer = LocalSigner(tmp_path / "signing", "eu")
    signer.directory.mkdir(parents=True, mode=0o700)
    signer.path.write_bytes(content)
    signer.path.chmod(0o600)
    with pytest.raises(SigningUnavailable, match="signing keyring"):
        await signer.sign(b"x")
    assert signer.path.read_bytes() == content, "a damaged keyring is left for an operator, never overwritten"


async def test_a_key_whose_id_does_not_match_is_refused(tmp_path: Path) -> None:
    signer = LocalSigner(tmp_path / "signing", "eu")
    await signer.sign(b"x")
    data = json.loads(signer.path.read_text())
    data["keys"][0]["kid"] = "0123456789abcdef"
    signer.path.write_text(json.dumps(data))
    with pytest.raises(SigningUnavailable, match="does not match its id"):
        await LocalSigner(tmp_path / "signing", "eu").key_set()


def test_canonical_json_is_what_pythons_json_writes_sorted_and_compact() -> None:
    document = {"relays": ["eu-1", "eu-2"], "kind": "k", "jurisdiction": "EU/EEA (GDPR) — Bokmål", "n": 3, "b": None}
    expected = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_json(document) == expected


def region(**vault: object) -> tuple[Settings, RegionSettings]:
    settings = Settings(
        mode="services",
        discovery_key="discovery-key-for-tests",
        regions=[
            RegionSettings(
                id="eu",
                jurisdiction="EU/EEA",
                public_url="http://127.0.0.1:9",
                listen="127.0.0.1:9",
                database="sqlite:///unused.db",
                internal_secret="eu-secret-for-tests-only",
                vault=VaultSettings(**vault),  # type: ignore[arg-type]
            )
        ],
    )
    return settings, settings.regions[0]


async def test_the_vault_backend_signs_in_vault_on_the_tenant_keys_login(tmp_path: Path) -> None:
    settings, eu = region(backend="vault", url="http://127.0.0.1:9", token="t")
    provider = build_key_provider(settings, eu)
    try:
        signer = build_region_signer(settings, eu, provider)
        assert isinstance(signer, VaultSigner) and signer.client is provider
        assert signer.key_name == "konsil-region-signing-eu"
        named = build_region_signer(*region(backend="vault", url="http://127.0.0.1:9", token="t", signing_key="k1"))
        assert isinstance(named, VaultSigner) and named.key_name == "k1"
        await named.close()
    finally:
        await provider.close()
    with pytest.raises(ConfigError, match=r"regions\.eu\.vault\.token"):
        build_region_signer(*region(backend="vault", url="http://127.0.0.1:9"))


def test_the_local_backend_signs_with_the_keyring_next_to_the_data_keys(tmp_path: Path) -> None:
    signer = build_region_signer(*region(backend="local", keyring_path=str(tmp_path / "keyring-eu")))
    assert isinstance(signer, LocalSigner) and signer.directory == tmp_path / "keyring-eu" / "signing"


def test_a_signing_key_name_vault_would_not_take_is_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "konsil.toml"
    config.write_text(
        'discovery_key = "discovery-key-for-tests"\n[[regions]]\nid = "eu"\njurisdiction = "EU/EEA"\n'
        'public_url = "http://127.0.0.1:9"\nlisten = "127.0.0.1:9"\ndatabase = "sqlite:///x.db"\n'
        'internal_secret = "eu-secret-for-tests-only"\n[regions.vault]\nsigning_key = "keys/../other"\n'
    )
    with pytest.raises(ConfigError, match=r"vault\.signing_key"):
        load_settings(config, environ={})
