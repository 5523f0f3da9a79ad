"""The Criipto Verify client (tenants/identity/criipto.py) against a real OpenID Connect
provider run locally by node (tests/oidc_provider): the whole authorization code flow
with PKCE for each eID, and what it must refuse: a forged token, another audience, an
expired token, another nonce, a replayed code, a wrong PKCE verifier, a provider that
does not answer."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from konsil.platform.core.identity import Eid, IdentityBroker, IdentityRejected, IdentityUnavailable, mask_national_id
from konsil.platform.core.keys.local import LocalKeyring
from konsil.platform.core.keys.vault import VaultTransitProvider
from konsil.platform.core.settings import ConfigError, IdentitySettings
from konsil.regions.container import region_identity
from konsil.tenants.identity.criipto import CriiptoVerify, code_challenge
from tests.conftest import KEY_CLIENT_TIMEOUT, BaoServer, bare_region, free_port
from tests.oidc_support import OidcProvider, follow_to_callback, oidc_provider

CALLBACK = "http://127.0.0.1:1/identity/callback"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with oidc_provider(tmp_path_factory.mktemp("oidc"), free_port(), [CALLBACK]) as running:
        yield running


@pytest.fixture(autouse=True)
def normal_mode(provider: OidcProvider) -> Iterator[None]:
    provider.mode("normal")
    yield
    provider.mode("normal")


def client(provider: OidcProvider, **extra: object) -> CriiptoVerify:
    settings = msgspec.convert(
        {
            "provider": "criipto",
            "issuer": provider.issuer,
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
            **extra,
        },
        IdentitySettings,
    )
    return CriiptoVerify(settings, settings.client_secret)


class Attempt:
    def __init__(self) -> None:
        self.state = secrets.token_urlsafe(24)
        self.nonce = secrets.token_urlsafe(24)
        self.verifier = secrets.token_urlsafe(48)


async def log_in(broker: IdentityBroker, eid: Eid, attempt: Attempt) -> str:
    """The visitor's browser through the provider's login: the code it brings back."""
    url = await broker.authorization_url(
        eid,
        state=attempt.state,
        nonce=attempt.nonce,
        code_challenge=code_challenge(attempt.verifier),
        redirect_uri=CALLBACK,
        locale="nb",
    )
    query = await asyncio.to_thread(follow_to_callback, url, CALLBACK)
    assert query["state"] == attempt.state
    return query["code"]


@pytest.mark.parametrize(
    ("eid", "national_id", "name", "auth"),
    [
        ("no_bankid", "17029012345", "Kari Nordmann", "client_secret_basic"),
        ("dk_mitid", "2101270087", "Ditlev Von Testesen", "client_secret_basic"),
        ("se_bankid", "196802020575", "Terne Paulsen", "client_secret_basic"),
    ],
)
async def test_each_eid_gives_the_verified_person(
    provider: OidcProvider, eid: Eid, national_id: str, name: str, auth: str
) -> None:
    broker = client(provider, token_auth=auth)
    attempt = Attempt()
    code = await log_in(broker, eid, attempt)
    identity = await broker.verify(
        code, eid=eid, code_verifier=attempt.verifier, nonce=attempt.nonce, redirect_uri=CALLBACK
    )
    assert (identity.eid, identity.national_id, identity.name) == (eid, national_id, name)
    assert national_id not in repr(identity) and name not in repr(identity)


async def test_client_secret_post_works_too(tmp_path: Path) -> None:
    with oidc_provider(tmp_path, free_port(), [CALLBACK], auth_method="client_secret_post") as running:
        broker = client(running, token_auth="client_secret_post")
        attempt = Attempt()
        code = await log_in(broker, "no_bankid", attempt)
        identity = await broker.verify(
            code, eid="no_bankid", code_verifier=attempt.verifier, nonce=attempt.nonce, redirect_uri=CALLBACK
        )
        assert identity.national_id == "17029012345"


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("forge", "signature is not valid (bad_signature)"),
        ("audience", "does not fit (invalid_claim: aud)"),
        ("expired", "does not fit (it has expired: exp)"),
    ],
)
async def test_untrustworthy_tokens_are_refused(provider: OidcProvider, mode: str, words: str) -> None:
    broker = client(provider)
    attempt = Attempt()
    code = await log_in(broker, "no_bankid", attempt)
    provider.mode(mode)
    with pytest.raises(IdentityRejected) as refused:
        await broker.verify(
            code, eid="no_bankid", code_verifier=attempt.verifier, nonce=attempt.nonce, redirect_uri=CALLBACK
        )
    assert words in refused.value.reason
    assert "17029012345" not in refused.value.reason and "Kari" not in refused.value.reason


async def test_another_nonce_and_another_eid_are_refused(provider: OidcProvider) -> None:
    broker = client(provider)
    attempt = Attempt()
    code = await log_in(broker, "no_bankid", attempt)
    with pytest.raises(IdentityRejected, match="nonce"):
        await broker.verify(
            code, eid="no_bankid", code_verifier=attempt.verifier, nonce="not-ours", redirect_uri=CALLBACK
        )
    # A Norwegian login where the room asked for Swedish BankID.
    attempt = Attempt()
    code = await log_in(broker, "no_bankid", attempt)
    with pytest.raises(IdentityRejected, match="another eID"):
        await broker.verify(
            code, eid="se_bankid", code_verifier=attempt.verifier, nonce=attempt.nonce, redirect_uri=CALLBACK
        )


async def test_a_code_works_once_and_only_with_its_verifier(provider: OidcProvider) -> None:
    broker = client(provider)
    attempt = Attempt()
    code = await log_in(broker, "se_bankid", attempt)
    with pytest.raises(IdentityRejected, match="refused the code"):
        await broker.verify(
            code, eid="se_bankid", code_verifier=secrets.token_urlsafe(48), nonce=attempt.nonce, redirect_uri=CALLBACK
        )
    attempt = Attempt()
    code = await log_in(broker, "se_bankid", attempt)
    await broker.verify(
        code, eid="se_bankid", code_verifier=attempt.verifier, nonce=attempt.nonce, redirect_uri=CALLBACK
    )
    with pytest.raises(IdentityRejected, match="refused the code"):
        await broker.verify(
            code, eid="se_bankid", code_verifier=attempt.verifier, nonce=attempt.nonce, redirect_uri=CALLBACK
        )


async def test_a_provider_that_does_not_answer_in_time(provider: OidcProvider) -> None:
    broker = client(provider, timeout_seconds=1.0)
    attempt = Attempt()
    code = await log_in(broker, "no_bankid", attempt)
    provider.mode("slow")
    started = time.monotonic()
    with pytest.raises(IdentityUnavailable, match="did not answer"):
        await broker.verify(
            code, eid="no_bankid", code_verifier=attempt.verifier, nonce=attempt.nonce, redirect_uri=CALLBACK
        )
    assert time.monotonic() - started < 5
    provider.mode("error")
    with pytest.raises(IdentityUnavailable, match="answered 503"):
        await broker.verify(
            code, eid="no_bankid", code_verifier=attempt.verifier, nonce=attempt.nonce, redirect_uri=CALLBACK
        )


async def test_an_issuer_that_never_answers() -> None:
    # A socket that takes connections and never says a word.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        settings = IdentitySettings(
            provider="criipto", issuer=f"http://127.0.0.1:{port}", client_id="x", client_secret="y", timeout_seconds=0.5
        )
        broker = CriiptoVerify(settings, "y")
        with pytest.raises(IdentityUnavailable, match="did not answer"):
            await broker.authorization_url(
                "no_bankid", state="s", nonce="n", code_challenge="c", redirect_uri=CALLBACK, locale="en"
            )


def test_settings_and_masking() -> None:
    with pytest.raises(msgspec.ValidationError, match="https"):
        msgspec.convert(
            {"provider": "criipto", "issuer": "http://example.criipto.id", "client_id": "a", "client_secret": "b"},
            IdentitySettings,
        )
    with pytest.raises(msgspec.ValidationError, match="client_secret or client_secret_path"):
        msgspec.convert({"provider": "criipto", "issuer": "https://x.criipto.id", "client_id": "a"}, IdentitySettings)
    with pytest.raises(msgspec.ValidationError, match="not both"):
        msgspec.convert(
            {
                "provider": "criipto",
                "issuer": "https://x.criipto.id",
                "client_id": "a",
                "client_secret": "b",
                "client_secret_path": "c",
            },
            IdentitySettings,
        )
    assert mask_national_id("17029012345") == "17•••••••45"
    assert mask_national_id("1234") == "••••"


async def test_the_region_reads_the_client_secret_from_its_vault(
    provider: OidcProvider, bao: BaoServer, tmp_path: Path
) -> None:
    bao.client().secrets.kv.v2.create_or_update_secret(
        path="konsil/criipto", secret={"client_secret": provider.client_secret}, mount_point="secret"
    )
    identity = {"provider": "criipto", "issuer": provider.issuer, "client_id": provider.client_id}
    region = bare_region(
        identity=msgspec.convert({**identity, "client_secret_path": "konsil/criipto"}, IdentitySettings)
    )
    vault = VaultTransitProvider(bao.url, token=bao.root_token, timeout=KEY_CLIENT_TIMEOUT)
    try:
        broker = region_identity(region, vault)
        assert isinstance(broker, CriiptoVerify) and broker.description == f"Criipto Verify at {provider.issuer}"
        attempt = Attempt()
        code = await log_in(broker, "dk_mitid", attempt)
        identity_found = await broker.verify(
            code, eid="dk_mitid", code_verifier=attempt.verifier, nonce=attempt.nonce, redirect_uri=CALLBACK
        )
        assert identity_found.national_id == "2101270087"
        missing = bare_region(
            identity=msgspec.convert({**identity, "client_secret_path": "konsil/no-such-secret"}, IdentitySettings)
        )
        absent = region_identity(missing, vault)
        assert absent is not None
        attempt = Attempt()
        code = await log_in(absent, "dk_mitid", attempt)
        with pytest.raises(IdentityUnavailable, match="client secret could not be read"):
            await absent.verify(
                code, eid="dk_mitid", code_verifier=attempt.verifier, nonce=attempt.nonce, redirect_uri=CALLBACK
            )
    finally:
        await vault.close()
    with pytest.raises(ConfigError, match=r"regions\.eu\.identity\.client_secret_path: needs the vault backend"):
        region_identity(region, LocalKeyring(tmp_path / "keyring"))
    assert region_identity(bare_region(), LocalKeyring(tmp_path / "keyring")) is None
