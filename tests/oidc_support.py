"""The local OpenID Connect provider of the national eID tests: the certified
``oidc-provider`` (npm) run by node, configured like Criipto Verify
(tests/oidc_provider/provider.mjs). The test person of each eID is fixed here."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

FOLDER = Path(__file__).parent / "oidc_provider"
PERSONS: dict[str, dict[str, str]] = {
    "no": {"name": "Kari Nordmann", "socialno": "17029012345", "identityscheme": "nobankid-oidc", "country": "NO"},
    "dk": {
        "name": "Ditlev Von Testesen",
        "cprNumberIdentifier": "2101270087",
        "identityscheme": "dkmitid",
        "country": "DK",
    },
    "se": {"name": "Terne Paulsen", "ssn": "196802020575", "identityscheme": "sebankid", "country": "SE"},
}


@dataclass
class OidcProvider:
    issuer: str
    client_id: str
    client_secret: str
    jwk: RSAKey  # the provider's signing key (tests sign their own tokens with it)

    def mode(self, mode: str) -> None:
        """How the next token answers misbehave (provider.mjs: normal, forge, audience,
        expired, slow, error)."""
        response = httpx.post(f"{self.issuer}/test/mode", json={"mode": mode}, timeout=5)
        assert response.status_code == 200, response.text


def node_modules_ready() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not installed (scripts/install-system-packages)")
    if not (FOLDER / "node_modules" / ".installed").exists():
        pytest.fail("the OIDC provider's packages are not installed: make tests/oidc_provider/node_modules/.installed")


@contextlib.contextmanager
def oidc_provider(
    run_dir: Path, port: int, redirect_uris: list[str], auth_method: str = "client_secret_basic"
) -> Iterator[OidcProvider]:
    """A running provider on 127.0.0.1:``port`` with one confidential client, stopped afterwards."""
    node_modules_ready()
    key = RSAKey.generate_key(2048, parameters={"kid": f"k{secrets.token_hex(4)}", "use": "sig", "alg": "RS256"})
    client_id, client_secret = f"urn:konsil:test:{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    config: dict[str, Any] = {
        "port": port,
        "client": {
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": auth_method,
        },
        "jwk": key.as_dict(private=True),
        "persons": PERSONS,
    }
    config_file = run_dir / f"oidc-{port}.json"
    config_file.write_text(json.dumps(config))
    log_file = (run_dir / f"oidc-{port}.log").open("wb")
    process = subprocess.Popen(
        ["node", str(FOLDER / "provider.mjs"), str(config_file)], cwd=FOLDER, stdout=log_file, stderr=log_file
    )
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the OIDC provider stopped: {(run_dir / f'oidc-{port}.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the OIDC provider did not start within 30 s")
            time.sleep(0.1)
        yield OidcProvider(issuer, client_id, client_secret, key)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()


def follow_to_callback(authorize_url: str, callback_prefix: str) -> dict[str, str]:
    """Go through the provider's login as the visitor's browser would (its cookies kept),
    until it sends the browser to ``callback_prefix``: that redirect's query."""
    with httpx.Client(timeout=10) as browser:
        url = authorize_url
        for _ in range(12):
            response = browser.get(url)
            assert response.status_code in (302, 303), (response.status_code, response.text[:500])
            url = str(response.next_request.url) if response.next_request else response.headers["location"]
            if url.startswith(callback_prefix):
                return dict(httpx.URL(url).params)
    raise AssertionError("the provider never sent the browser back")
