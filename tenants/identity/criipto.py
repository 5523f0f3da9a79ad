"""Criipto Verify (now also called Idura Verify), the eID broker a region checks
Norwegian BankID, Danish MitID and Swedish BankID through, over OpenID Connect: the
authorization code flow with PKCE (S256), state and nonce, written with httpx against
the broker's discovery document (``{issuer}/.well-known/openid-configuration``).

The ID token is checked with joserfc: its signature against the broker's JWKS (RS256 or
ES256; the keys fetched again once when a token names a key id not seen yet, as after
a key rotation), ``iss`` equal to the configured issuer, ``aud`` containing the client
id (and ``azp``, if present, equal to it), ``exp``/``iat`` with a minute of leeway, the
``nonce`` of this attempt, and the eID used (``acr`` / ``identityscheme``).

The eID is chosen with ``acr_values``; the person's national ID number comes in a claim
of its own per eID: ``socialno`` (Norwegian fødselsnummer), ``cprNumberIdentifier``
(Danish CPR, asked for with the ``ssn`` scope), ``ssn`` (Swedish personnummer); the
verified name in ``name``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
import msgspec
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from konsil.platform.core.identity import Eid, IdentityRejected, IdentityUnavailable, VerifiedIdentity
from konsil.platform.core.settings import IdentitySettings

log = logging.getLogger(__name__)

SecretSource = Callable[[], Awaitable[str]]


class EidProfile(msgspec.Struct, frozen=True):
    acr_values: str  # what the authorize request asks for
    acr_prefix: str  # what the token's acr must start with
    scheme_prefix: str  # Criipto's identityscheme claim, when present
    scope: str
    claim: str  # the national ID number's claim


EID_PROFILES: dict[Eid, EidProfile] = {
    # Substantial: the BankID app (biometrics); "urn:grn:authn:no:bankid" is high (code device).
    "no_bankid": EidProfile(
        "urn:grn:authn:no:bankid:substantial", "urn:grn:authn:no:bankid", "nobankid", "openid", "socialno"
    ),
    "dk_mitid": EidProfile(
        "urn:grn:authn:dk:mitid:substantial", "urn:grn:authn:dk:mitid", "dkmitid", "openid ssn", "cprNumberIdentifier"
    ),
    "se_bankid": EidProfile(
        "urn:grn:authn:se:bankid:same-device", "urn:grn:authn:se:bankid", "sebankid", "openid", "ssn"
    ),
}
ALGORITHMS = ["RS256", "ES256"]
LEEWAY_SECONDS = 60
MAX_TOKEN_AGE_SECONDS = 600  # an ID token issued longer ago than this is not taken
DISCOVERY_MAX_AGE = 3600.0
# Criipto's prompt language: en, da, sv, nb (no "de"/"nl": English then).
UI_LOCALES = {"en": "en", "nb": "nb", "de": "en", "nl": "en"}


class _Discovery(msgspec.Struct):
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class _TokenResponse(msgspec.Struct):
    id_token: str
    token_type: str = ""


def code_challenge(verifier: str) -> str:
    """PKCE S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class CriiptoVerify:
    """The region's Criipto Verify application (``IdentityBroker``)."""

    def __init__(self, settings: IdentitySettings, secret: str | SecretSource) -> None:
        self._issuer = settings.issuer.rstrip("/")
        self._client_id = settings.client_id
        self._auth = settings.token_auth
        self._secret_value = secret if isinstance(secret, str) else None
        self._secret_source = None if isinstance(secret, str) else secret
        self._timeout = httpx.Timeout(settings.timeout_seconds, connect=min(3.0, settings.timeout_seconds))
        self._discovery: _Discovery | None = None
        self._discovered_at = 0.0
        self._keys: KeySet | None = None

    @property
    def description(self) -> str:
        return f"Criipto Verify at {self._issuer}"

    # --- the broker's documents -------------------------------------------------------------

    async def _get_json(self, url: str, what: str) -> Any:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(url, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise IdentityUnavailable(f"the eID service did not answer ({what}: {type(exc).__name__})") from None
        if response.status_code != 200:
            raise IdentityUnavailable(f"the eID service answered {response.status_code} ({what})")
        try:
            return response.json()
        except ValueError:
            raise IdentityUnavailable(f"the eID service's {what} is not JSON") from None

    async def _configuration(self) -> _Discovery:
        if self._discovery is not None and time.monotonic() - self._discovered_at < DISCOVERY_MAX_AGE:
            return self._discovery
        raw = await self._get_json(f"{self._issuer}/.well-known/openid-configuration", "discovery")
        try:
            found = msgspec.convert(raw, _Discovery)
        except msgspec.ValidationError as exc:
            raise IdentityUnavailable(f"the eID service's discovery document is incomplete ({exc})") from None
        if found.issuer.rstrip("/") != self._issuer:
            raise IdentityUnavailable("the eID service's discovery document names another issuer")
        self._discovery, self._discovered_at = found, time.monotonic()
        return found

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            raw = await self._get_json((await self._configuration()).jwks_uri, "signing keys")
            try:
                self._keys = KeySet.import_key_set(raw)
            except (JoseError, ValueError, TypeError, KeyError):
                raise IdentityUnavailable("the eID service's signing keys could not be read") from None
        return self._keys

    async def _secret(self) -> str:
        if self._secret_value is None:
            assert self._secret_source is not None
            try:
                self._secret_value = await self._secret_source()
            except Exception as exc:
                raise IdentityUnavailable(f"the eID client secret could not be read ({type(exc).__name__})") from None
        return self._secret_value

    # --- the flow ----------------------------------------------------------------------------

    async def authorization_url(
        self, eid: Eid, *, state: str, nonce: str, code_challenge: str, redirect_uri: str, locale: str
    ) -> str:
        profile = EID_PROFILES[eid]
        endpoint = (await self._configuration()).authorization_endpoint
        query = {
            "response_type": "code",
            "client_id": self._client_id,
            "redirect_uri": redirect_uri,
            "scope": profile.scope,
            "acr_values": profile.acr_values,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            "response_mode": "query",
            "ui_locales": UI_LOCALES.get(locale, "en"),
        }
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"

    async def verify(
        self, code: str, *, eid: Eid, code_verifier: str, nonce: str, redirect_uri: str
    ) -> VerifiedIdentity:
        id_token = await self._exchange(code, code_verifier, redirect_uri)
        claims = await self._checked_claims(id_token, nonce)
        return _identity(eid, claims)

    async def _exchange(self, code: str, code_verifier: str, redirect_uri: str) -> str:
        endpoint = (await self._configuration()).token_endpoint
        secret = await self._secret()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        if self._auth == "client_secret_post":
            form.update(client_id=self._client_id, client_secret=secret)
            auth: tuple[str, str] | None = None
        else:
            auth = (_form_encoded(self._client_id), _form_encoded(secret))
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                headers = {"accept": "application/json"}
                if auth is None:
                    response = await client.post(endpoint, data=form, headers=headers)
                else:
                    response = await client.post(endpoint, data=form, auth=auth, headers=headers)
        except httpx.HTTPError as exc:
            raise IdentityUnavailable(f"the eID service did not answer (token: {type(exc).__name__})") from None
        if response.status_code in (400, 401):
            # invalid_grant (a used or expired code, a wrong verifier), invalid_client.
            error = _error_code(response)
            raise IdentityRejected(f"the eID service refused the code ({error})")
        if response.status_code != 200:
            raise IdentityUnavailable(f"the eID service answered {response.status_code} (token)")
        try:
            return msgspec.json.decode(response.content, type=_TokenResponse).id_token
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise IdentityUnavailable("the eID service's token answer has no ID token") from None

    async def _checked_claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            token = jwt.decode(id_token, await self._key_set(), algorithms=ALGORITHMS)
        except JoseError as exc:
            if exc.error not in ("invalid_key_id", "missing_key"):
                raise IdentityRejected(f"the ID token's signature is not valid ({exc.error})") from None
            # A key id not seen yet: the broker may have rotated its keys.
            try:
                token = jwt.decode(id_token, await self._key_set(refresh=True), algorithms=ALGORITHMS)
            except JoseError as again:
                raise IdentityRejected(f"the ID token's signature is not valid ({again.error})") from None
        except (ValueError, TypeError):
            raise IdentityRejected("the ID token is not a token") from None
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": (await self._configuration()).issuer},
            aud={"essential": True, "value": self._client_id},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        claims = dict(token.claims)
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise IdentityRejected(f"the ID token does not fit ({_claim_problem(exc)})") from None
        if "azp" in claims and claims["azp"] != self._client_id:
            raise IdentityRejected("the ID token does not fit (it was issued to another client: azp)")
        iat = claims["iat"]
        if not isinstance(iat, int | float) or iat < time.time() - MAX_TOKEN_AGE_SECONDS - LEEWAY_SECONDS:
            raise IdentityRejected("the ID token does not fit (issued too long ago)")
        return claims


def _identity(eid: Eid, claims: dict[str, Any]) -> VerifiedIdentity:
    profile = EID_PROFILES[eid]
    acr = claims.get("acr")
    if isinstance(acr, str) and not acr.startswith(profile.acr_prefix):
        raise IdentityRejected("the ID token does not fit (another eID was used: acr)")
    scheme = claims.get("identityscheme")
    if isinstance(scheme, str) and not scheme.lower().startswith(profile.scheme_prefix):
        raise IdentityRejected("the ID token does not fit (another eID was used: identityscheme)")
    national_id = claims.get(profile.claim)
    name = claims.get("name")
    if not isinstance(national_id, str) or not national_id.isdigit() or not 6 <= len(national_id) <= 16:
        raise IdentityRejected(f"the ID token has no national ID number ({profile.claim})")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        raise IdentityRejected("the ID token has no verified name (name)")
    return VerifiedIdentity(eid=eid, national_id=national_id, name=name.strip(), subject=str(claims["sub"])[:200])


def _form_encoded(value: str) -> str:
    """RFC 6749 §2.3.1: client id and secret are form-encoded before HTTP Basic."""
    return quote_plus(value)


def _error_code(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", "")
    except (ValueError, AttributeError):
        error = ""
    return error if isinstance(error, str) and error.replace("_", "").isalnum() and len(error) < 40 else "refused"


def _claim_problem(exc: JoseError) -> str:
    """Which claim failed, in words (the claim's value is not repeated)."""
    description = str(getattr(exc, "description", "") or exc.error)
    if exc.error == "expired_token":
        return "it has expired: exp"
    for claim in ("aud", "iss", "nonce", "sub", "exp", "iat"):
        if f"'{claim}'" in description or f'"{claim}"' in description:
            return f"{exc.error}: {claim}"
    return exc.error


def build_identity_broker(settings: IdentitySettings, secret: SecretSource | None) -> CriiptoVerify | None:
    """The region's eID broker by its ``identity`` settings; None with provider "none"."""
    if settings.provider == "none":
        return None
    if secret is None and settings.client_secret_path:
        raise ValueError("identity.client_secret_path is set but no Vault reader was given")
    return CriiptoVerify(settings, secret if secret is not None else settings.client_secret)
