"""The region's own signing key in its OpenBao (Transit, Ed25519), against real OpenBao
servers: made on first use and never exportable, signatures anyone verifies with the
published key set, rotation that keeps old signatures verifiable (also from
``konsil keys rotate-signing``, for both backends), a sealed or unreachable Vault as
``SigningUnavailable``, and the README's policy: enough for the region, and no more."""

from __future__ import annotations

import base64
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import hvac
import hvac.exceptions
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from konsil.platform.core.keys.region_signing import SigningUnavailable, key_id, verify
from konsil.platform.core.keys.vault import VaultTransitProvider
from konsil.platform.core.keys.vault_signing import VaultSigner
from konsil.platform.core.settings import load_settings
from konsil.regions import container
from konsil.regions.container import build_region
from konsil.regions.tables import REGION_TABLES
from konsil.tenants import visits
from konsil.tenants.actors import Actor
from konsil.tenants.tables import CallRelayReceipt
from tests.conftest import KEY_CLIENT_TIMEOUT, BaoServer, Stack, bindings_restored, free_port, services_config
from tests.e2e.test_faults import openbao_with_unseal_key
from tests.e2e.test_verifying_doc import new_call

README = Path(__file__).resolve().parents[2] / "README.md"


def unique_key() -> str:
    return f"konsil-region-signing-t{secrets.token_hex(4)}"


@pytest.fixture
async def root_signer(bao: BaoServer) -> AsyncIterator[VaultSigner]:
    """A signer on a key of its own, logged in with the root token."""
    client = VaultTransitProvider(bao.url, token=bao.root_token, timeout=KEY_CLIENT_TIMEOUT)
    signer = VaultSigner(client, "eu", unique_key(), owns_client=True)
    try:
        yield signer
    finally:
        await signer.close()


async def test_first_use_makes_a_non_exportable_ed25519_key_in_vault(bao: BaoServer, root_signer: VaultSigner) -> None:
    signature = await root_signer.sign(b"the signed bytes")
    stored = bao.client().secrets.transit.read_key(root_signer.key_name)["data"]
    assert stored["type"] == "ed25519" and stored["latest_version"] == 1
    assert stored["exportable"] is False and stored["allow_plaintext_backup"] is False
    with pytest.raises(hvac.exceptions.InvalidRequest):  # Vault itself will not release it
        bao.client().secrets.transit.export_key(root_signer.key_name, key_type="signing-key")
    # The key set is Vault's public key, its id recomputable from it alone.
    key_set = await root_signer.key_set()
    raw = base64.b64decode(stored["keys"]["1"]["public_key"])
    [entry] = key_set.keys
    assert entry.kid == key_id(raw) == signature.kid and entry.status == "current" and key_set.region == "eu"
    assert base64.urlsafe_b64decode(entry.x + "=") == raw
    created = datetime.fromisoformat(entry.created_at)
    assert created.tzinfo is not None and abs((datetime.now(UTC) - created).total_seconds()) < 60
    Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(signature.value), b"the signed bytes")
    assert verify(key_set, b"the signed bytes", signature) and not verify(key_set, b"other bytes", signature)


async def test_rotation_keeps_old_signatures_verifiable_and_a_running_signer_follows(
    bao: BaoServer, root_signer: VaultSigner
) -> None:
    before = await root_signer.sign(b"before")
    # The CLI rotates with a client of its own; the running service's signer follows.
    cli = VaultSigner(VaultTransitProvider(bao.url, token=bao.root_token), "eu", root_signer.key_name, owns_client=True)
    try:
        new_kid = await cli.rotate_key()
    finally:
        await cli.close()
    after = await root_signer.sign(b"after")
    assert after.kid == new_kid != before.kid
    key_set = await root_signer.key_set()
    assert [(k.kid, k.status) for k in key_set.keys] == [(before.kid, "retired"), (new_kid, "current")]
    assert verify(key_set, b"before", before) and verify(key_set, b"after", after)
    assert not verify(key_set, b"before", msgspec.structs.replace(before, kid=new_kid))


async def test_a_sealed_vault_is_signing_unavailable_until_unsealed(tmp_path: Path) -> None:
    with openbao_with_unseal_key(tmp_path) as server:
        signer = VaultSigner(
            VaultTransitProvider(server.url, token=server.token, timeout=2), "eu", unique_key(), owns_client=True
        )
        try:
            first = await signer.sign(b"one")
            server.client().sys.seal()
            with pytest.raises(SigningUnavailable, match="sealed") as refused:
                await signer.sign(b"two")
            assert signer.key_name in str(refused.value) and server.token not in str(refused.value)
            with pytest.raises(SigningUnavailable, match="sealed"):
                await signer.key_set()
            server.client().sys.submit_unseal_key(server.unseal_key)
            again = await signer.sign(b"two")  # recovered by itself, same key
            assert again.kid == first.kid and verify(await signer.key_set(), b"two", again)
        finally:
            await signer.close()


async def test_an_unreachable_vault_is_signing_unavailable() -> None:
    client = VaultTransitProvider(f"http://127.0.0.1:{free_port()}", token="t", timeout=KEY_CLIENT_TIMEOUT)
    signer = VaultSigner(client, "eu", owns_client=True)
    try:
        with pytest.raises(SigningUnavailable, match="unreachable"):
            await signer.sign(b"x")
    finally:
        await signer.close()


def token_with(bao: BaoServer, policy: str) -> str:
    name = f"t-{secrets.token_hex(4)}"
    root = bao.client()
    root.sys.create_or_update_policy(name, policy)
    return str(root.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"])


async def test_a_login_that_may_not_make_the_key_is_told_how_it_is_made(bao: BaoServer) -> None:
    name = unique_key()
    token = token_with(
        bao,
        f'path "transit/keys/{name}" {{ capabilities = ["read"] }}\n'
        f'path "transit/sign/{name}" {{ capabilities = ["update"] }}\n',
    )
    signer = VaultSigner(VaultTransitProvider(bao.url, token=token), "eu", name, owns_client=True)
    try:
        with pytest.raises(SigningUnavailable) as refused:
            await signer.sign(b"x")
        assert f"bao write -f transit/keys/{name} type=ed25519" in str(refused.value)
        bao.client().secrets.transit.create_key(name, key_type="ed25519")  # the operator does so
        assert verify(await signer.key_set(), b"x", await signer.sign(b"x"))
    finally:
        await signer.close()


@pytest.mark.parametrize(
    ("made", "why"),
    [({"key_type": "ed25519", "exportable": True}, "may be exported"), ({"key_type": "aes256-gcm96"}, "aes256")],
)
async def test_a_key_that_is_not_the_regions_alone_is_refused(
    bao: BaoServer, made: dict[str, object], why: str
) -> None:
    name = unique_key()
    bao.client().secrets.transit.create_key(name, **made)
    signer = VaultSigner(VaultTransitProvider(bao.url, token=bao.root_token), "eu", name, owns_client=True)
    try:
        with pytest.raises(SigningUnavailable, match=why):
            await signer.sign(b"x")
    finally:
        await signer.close()


def readme_policy() -> str:
    section = README.read_text().split("### The region's Vault (OpenBao)", 1)[1]
    found = re.search(r"```hcl\n(.*?)```", section, re.S)
    assert found, "README: the region's Vault policy"
    return found.group(1)


async def test_the_readmes_policy_is_enough_for_the_region_and_no_more(bao: BaoServer) -> None:
    """A login with exactly the README's policy runs every key operation of a region
    (tenant keys, its signing key, the relays' TURN secret), and cannot take the
    signing key out of the region's hands (export it, allow its deletion, delete it)."""
    policy = readme_policy()
    assert "konsil-region-signing-eu" in policy
    token = token_with(bao, policy)
    root = bao.client()
    root.secrets.kv.v2.create_or_update_secret(path="konsil/turn", secret={"secret": "turn-secret-for-tests"})
    provider = VaultTransitProvider(bao.url, token=token, timeout=KEY_CLIENT_TIMEOUT)
    try:
        org = uuid.uuid4()
        await provider.create_key(org)
        data_key = await provider.generate_data_key(org)
        assert await provider.unwrap(org, data_key.wrapped) == data_key.plaintext
        assert await provider.rotate(org) == 2
        assert await provider.unwrap(org, await provider.rewrap(org, data_key.wrapped)) == data_key.plaintext
        await provider.retire(org, 2)
        assert (await provider.key_info(org)).min_decryption_version == 2
        await provider.delete_key(org)
        assert await provider.read_secret("konsil/turn", "secret") == "turn-secret-for-tests"

        signer = VaultSigner(provider, "eu")  # the default key name, on the tenant keys' login
        first = await signer.sign(b"one")  # made on first use
        new_kid = await signer.rotate_key()  # konsil keys rotate-signing
        second = await signer.sign(b"two")
        key_set = await signer.key_set()
        assert second.kid == new_kid and verify(key_set, b"one", first) and verify(key_set, b"two", second)

        login = hvac.Client(url=bao.url, token=token)
        with pytest.raises(hvac.exceptions.Forbidden):
            login.secrets.transit.update_key_configuration(
                "konsil-region-signing-eu", deletion_allowed=True, exportable=True
            )
        with pytest.raises(hvac.exceptions.Forbidden):
            login.secrets.transit.delete_key("konsil-region-signing-eu")
        with pytest.raises(hvac.exceptions.Forbidden):
            login.secrets.transit.export_key("konsil-region-signing-eu", key_type="signing-key")
        with pytest.raises(hvac.exceptions.Forbidden):  # nor sign with another key of the engine
            login.secrets.transit.sign_data("konsil-region-signing-us", hash_input="eA==")
    finally:
        await provider.close()


def rotate_signing(config: Path, region: str = "eu") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KONSIL, "keys", "rotate-signing", "--region", region, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


KONSIL = [sys.executable, "-m", "konsil.platform.cli.main"]
NO_DATABASE = "postgresql://konsil@127.0.0.1:1/not_used"  # the command needs no database


@pytest.mark.parametrize("backend", ["vault", "local"])
async def test_rotate_signing_from_the_cli(bao: BaoServer, tmp_path: Path, backend: str) -> None:
    name = unique_key()
    vault = ["[regions.vault]", 'backend = "vault"', f'url = "{bao.url}"', f'token = "{bao.root_token}"']
    lines = [*vault, f'signing_key = "{name}"'] if backend == "vault" else None
    settings = services_config(tmp_path, NO_DATABASE, NO_DATABASE, lines)
    config = tmp_path / "konsil.toml"
    signer = container.region_signer(settings, settings.region("eu"))
    try:
        first = await signer.sign(b"before")
        done = rotate_signing(config)
        assert done.returncode == 0, done.stdout + done.stderr
        kid = re.search(r"signing key ([0-9a-f]{16}) is now current", done.stdout)
        assert kid and first.kid in done.stdout.split("retired", 1)[1], done.stdout
        after = await signer.sign(b"after")  # the running signer follows
        key_set = await signer.key_set()
        assert after.kid == kid.group(1) and verify(key_set, b"before", first) and verify(key_set, b"after", after)
        assert [k.status for k in key_set.keys] == ["retired", "current"]
    finally:
        await signer.close()
    unknown = rotate_signing(config, "zz")
    assert unknown.returncode == 2 and "no region with id 'zz'" in unknown.stderr


async def test_rotate_signing_with_vault_down_says_nothing_was_rotated(tmp_path: Path) -> None:
    lines = ["[regions.vault]", 'backend = "vault"', f'url = "http://127.0.0.1:{free_port()}"', 'token = "t"']
    lines.append("timeout_seconds = 1")
    services_config(tmp_path, NO_DATABASE, NO_DATABASE, lines)
    done = rotate_signing(tmp_path / "konsil.toml")
    assert done.returncode == 1 and "was not rotated" in done.stderr and "unreachable" in done.stderr
    assert "Traceback" not in done.stderr


async def test_no_receipt_is_stored_while_the_region_cannot_sign(stack: Stack) -> None:
    """The region's Vault away: a relay's receipt cannot be signed, so nothing is stored
    (and the call is not started: tenants/signaling.py), rather than a receipt unsigned."""
    made = stack.signup("eu")
    owner = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    assert owner.post(f"/api/v1/orgs/{made['slug']}/rooms", json={"slug": "room", "title": "R"}).status_code == 201
    call_id = uuid.UUID(new_call(stack, owner, made["slug"]))
    settings = load_settings(stack.run_dir / "region-eu.toml")
    eu = settings.region("eu")
    away = msgspec.structs.replace(eu, vault=msgspec.structs.replace(eu.vault, url=f"http://127.0.0.1:{free_port()}"))
    settings = msgspec.structs.replace(settings, regions=[away])
    with bindings_restored(REGION_TABLES):
        ctx = build_region(settings, away, service_name="cli")
        await container.start(ctx)
        try:
            call = await visits.call_by_id(uuid.UUID(made["organisation_id"]), call_id)
            assert call is not None
            actor = Actor("member:x", "owner", "member:x", "local")
            with pytest.raises(SigningUnavailable, match="unreachable"):
                await visits.record_relay(ctx, actor, call, "eu-relay-1")
            assert not await CallRelayReceipt.exists().where(CallRelayReceipt.call_id == call_id)
        finally:
            await container.stop(ctx)
