"""Vault/OpenBao Transit as the key provider of a region in services mode.

One transit key per organisation (``org-<uuid>``, aes256-gcm96). Data keys come from
``transit/datakey/plaintext``; the organisation key never leaves Vault. hvac is
synchronous, so every call runs on a small dedicated thread pool.

Failures fail closed: an unreachable, sealed or failing Vault is ``KeyUnavailable``
(503), a missing key ``KeyDestroyed`` (410), a wrapped data key the key refuses
``UnwrapRefused``. The hvac client is kept across failures, so the provider recovers
by itself when Vault returns.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import hvac
import hvac.exceptions as hvac_errors
import requests

from konsil.platform.core.keys.login import AuthMethod, VaultLogin
from konsil.platform.core.keys.provider import (
    DataKey,
    KeyDestroyed,
    KeyInfo,
    KeyServiceError,
    KeyServiceMisconfigured,
    KeyUnavailable,
    UnwrapRefused,
    key_name,
    wrapped_version,
)
from konsil.platform.core.telemetry import in_current_context, instrument_vault

T = TypeVar("T")

KEY_TYPE = "aes256-gcm96"
DATA_KEY_BYTES = 32
_MISSING_KEY = ("encryption key not found", "key not found", "no existing key named", "could not delete key")
_UNAVAILABLE = (
    hvac_errors.VaultDown,
    hvac_errors.InternalServerError,
    hvac_errors.BadGateway,
    hvac_errors.RateLimitExceeded,
    hvac_errors.UnexpectedError,
    hvac_errors.VaultNotInitialized,
)


def _reason(exc: hvac_errors.VaultError) -> str:
    """Vault's own error text (it names no key material), shortened."""
    errors = getattr(exc, "errors", None)
    text = "; ".join(str(e) for e in errors) if errors else str(getattr(exc, "message", "") or "")
    # Vault's words may quote a key's path (transit/keys/org-<id>): the reason goes to logs
    # and 5xx log lines, which name no organisation (telemetry's organisation_attributes).
    text = _UUID.sub("…", text)
    return text[:200] or type(exc).__name__


_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def _unmounted(reason: str) -> str:
    """Vault's "no handler for route 'transit/keys/org-…'" in words an operator acts on:
    the mount (the route's first segment) has no secrets engine enabled."""
    found = re.search(r"""route ['"]?([^/'"\s]+)/""", reason)
    if found is None:
        return reason
    return f"no secrets engine is enabled at Vault mount {found.group(1)!r} (enable Transit or KV v2 there)"


def _translate(exc: Exception, *, unwrapping: bool) -> KeyServiceError:
    """Map an hvac/requests failure onto the provider's errors."""
    if isinstance(exc, requests.exceptions.RequestException):
        return KeyUnavailable(f"key service unreachable ({type(exc).__name__})")
    if isinstance(exc, _UNAVAILABLE):
        return KeyUnavailable(f"key service failed: {_reason(exc)}")
    if isinstance(exc, hvac_errors.Forbidden):
        return KeyServiceMisconfigured("key service denied the request (permission denied)")
    if isinstance(exc, hvac_errors.InvalidPath):
        reason = _reason(exc)
        if "no handler for route" in reason:  # transit engine not mounted: misconfigured, not shredded
            return KeyServiceMisconfigured(f"key service misconfigured: {_unmounted(reason)}")
        return KeyDestroyed("organisation key not found")
    if isinstance(exc, hvac_errors.InvalidRequest):
        reason = _reason(exc)
        if any(marker in reason.lower() for marker in _MISSING_KEY):
            return KeyDestroyed("organisation key not found")
        if unwrapping:
            return UnwrapRefused(f"wrapped data key refused: {reason}")
        return KeyUnavailable(f"key service rejected the request: {reason}")
    if isinstance(exc, hvac_errors.VaultError):
        return KeyUnavailable(f"key service failed: {_reason(exc)}")
    return KeyUnavailable(f"key service call failed ({type(exc).__name__})")


def _created_at(value: Any) -> datetime | None:
    """A key version's creation time as Transit reports it: Unix seconds (symmetric
    keys) or, for asymmetric keys, an object with an RFC 3339 ``creation_time``."""
    if isinstance(value, dict):
        value = value.get("creation_time")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _vault_ciphertext(wrapped: str) -> str:
    if not wrapped.startswith("vault:"):
        raise UnwrapRefused("not a Vault-wrapped data key")
    wrapped_version(wrapped)  # raises UnwrapRefused when malformed
    return wrapped


class VaultTransitProvider:
    """KeyProvider over a region's Vault/OpenBao Transit engine."""

    name = "vault-transit"

    def __init__(
        self,
        url: str,
        *,
        mount: str = "transit",
        auth: AuthMethod = "token",
        token: str = "",
        role_id: str = "",
        secret_id: str = "",
        kubernetes_role: str = "",
        kubernetes_jwt_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token",
        timeout: float = 5.0,
        auth_mount: str = "",
    ) -> None:
        if auth == "token" and not token:
            raise ValueError("Vault token auth needs a token")
        if auth == "approle" and not (role_id and secret_id):
            raise ValueError("Vault AppRole auth needs role_id and secret_id")
        if auth == "kubernetes" and not kubernetes_role:
            raise ValueError("Vault Kubernetes auth needs kubernetes_role")
        if auth not in ("token", "approle", "kubernetes"):
            raise ValueError(f"unknown Vault auth method {auth!r}")
        self.url = url
        self.mount = mount
        self.auth = auth
        self.round_trips = 0
        self._role_id = role_id
        self._secret_id = secret_id
        self._kubernetes_role = kubernetes_role
        self._kubernetes_jwt_path = kubernetes_jwt_path
        self._auth_mount = auth_mount or auth
        self._client = hvac.Client(url=url, token=token or None, timeout=timeout)
        instrument_vault(self._client)  # a span and a latency sample per Vault request
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vault-transit")
        self._lock = threading.Lock()  # guards round_trips and logins
        self._login_generation = 0  # bumped on every successful login
        self._logged_in = auth == "token"
        self._closed = False

    def __repr__(self) -> str:  # never shows the token
        return f"VaultTransitProvider(url={self.url!r}, mount={self.mount!r}, auth={self.auth!r})"

    # -- plumbing -----------------------------------------------------------------

    def _count(self) -> None:
        with self._lock:
            self.round_trips += 1

    def _login(self, seen_generation: int) -> None:
        """Log in (AppRole/Kubernetes) unless another thread already did since ``seen_generation``."""
        with self._lock:
            if self._logged_in and self._login_generation != seen_generation:
                return
            self.round_trips += 1
            try:
                if self.auth == "approle":
                    self._client.auth.approle.login(
                        role_id=self._role_id, secret_id=self._secret_id, mount_point=self._auth_mount
                    )
                else:
                    try:
                        with open(self._kubernetes_jwt_path, encoding="utf-8") as f:
                            jwt = f.read().strip()
                    except OSError as exc:
                        raise KeyUnavailable(
                            f"cannot read the Kubernetes service-account token at {self._kubernetes_jwt_path}"
                        ) from exc
                    self._client.auth.kubernetes.login(self._kubernetes_role, jwt, mount_point=self._auth_mount)
            except requests.exceptions.RequestException as exc:
                raise KeyUnavailable(f"key service unreachable ({type(exc).__name__})") from exc
            except hvac_errors.VaultError as exc:
                raise KeyUnavailable(f"login to the key service failed ({self.auth}): {_reason(exc)}") from None
            self._logged_in = True
            self._login_generation += 1

    def _blocking(self, op: Callable[[Any], T], unwrapping: bool) -> T:
        """Run one hvac operation in a worker thread: log in lazily, again once on 403."""
        generation = self._login_generation
        if not self._logged_in:
            self._login(generation)
            generation = self._login_generation
        try:
            try:
                self._count()
                return op(self._client.secrets.transit)
            except hvac_errors.Forbidden:
                if self.auth == "token":
                    raise
                self._login(generation)  # token expired or revoked
                self._count()
                return op(self._client.secrets.transit)
        except (requests.exceptions.RequestException, hvac_errors.VaultError) as exc:
            raise _translate(exc, unwrapping=unwrapping) from (
                exc if isinstance(exc, requests.exceptions.RequestException) else None
            )

    async def _call(self, op: Callable[[Any], T], *, unwrapping: bool = False) -> T:
        if self._closed:
            raise KeyUnavailable("key provider is closed")
        loop = asyncio.get_running_loop()
        # The caller's context goes along, so the Vault request's span joins its trace.
        return await loop.run_in_executor(self._executor, in_current_context(self._blocking), op, unwrapping)

    async def transit(self, op: Callable[[Any], T]) -> T:
        """One operation on this Vault's Transit engine (``op`` gets hvac's transit API)
        with this client's login, its retry after an expired token and its errors: the
        region's signing key (``keys/vault_signing.py``) shares them."""
        return await self._call(op)

    async def read_secret(self, path: str, key: str, mount: str = "secret") -> str:
        """One value from this Vault's KV v2 engine (the TURN relays' shared secret)."""

        def op(_transit: Any) -> str:
            found = self._client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=True
            )
            return str(found["data"]["data"][key])

        try:
            return await self._call(op)
        except KeyDestroyed:
            raise KeyUnavailable(f"no secret at {mount}/{path} in the region's Vault") from None
        except KeyError:
            raise KeyUnavailable(f"the secret at {mount}/{path} has no {key!r}") from None

    # -- KeyProvider ----------------------------------------------------------------

    async def create_key(self, org_id: uuid.UUID) -> None:
        name, mount = key_name(org_id), self.mount
        await self._call(lambda t: t.create_key(name, key_type=KEY_TYPE, mount_point=mount))

    async def generate_data_key(self, org_id: uuid.UUID) -> DataKey:
        name, mount = key_name(org_id), self.mount
        response = await self._call(
            lambda t: t.generate_data_key(name, key_type="plaintext", bits=DATA_KEY_BYTES * 8, mount_point=mount)
        )
        data = response["data"]
        try:
            plaintext = base64.b64decode(data["plaintext"], validate=True)
        except (binascii.Error, KeyError, TypeError):
            raise KeyUnavailable("key service returned a malformed data key") from None
        if len(plaintext) != DATA_KEY_BYTES:
            raise KeyUnavailable("key service returned a data key of the wrong size")
        wrapped = str(data["ciphertext"])
        version = int(data.get("key_version") or wrapped_version(wrapped))
        return DataKey(plaintext=plaintext, wrapped=wrapped, key_version=version)

    async def unwrap(self, org_id: uuid.UUID, wrapped: str) -> bytes:
        name, mount, ciphertext = key_name(org_id), self.mount, _vault_ciphertext(wrapped)
        response = await self._call(lambda t: t.decrypt_data(name, ciphertext, mount_point=mount), unwrapping=True)
        try:
            plaintext = base64.b64decode(response["data"]["plaintext"], validate=True)
        except (binascii.Error, KeyError, TypeError):
            raise UnwrapRefused("wrapped value is not a data key") from None
        if len(plaintext) != DATA_KEY_BYTES:
            raise UnwrapRefused("wrapped value is not a data key")
        return plaintext

    async def rewrap(self, org_id: uuid.UUID, wrapped: str) -> str:
        name, mount, ciphertext = key_name(org_id), self.mount, _vault_ciphertext(wrapped)
        response = await self._call(lambda t: t.rewrap_data(name, ciphertext, mount_point=mount), unwrapping=True)
        return str(response["data"]["ciphertext"])

    async def rotate(self, org_id: uuid.UUID) -> int:
        name, mount = key_name(org_id), self.mount
        response = await self._call(lambda t: t.rotate_key(name, mount_point=mount))
        data = response.get("data") if isinstance(response, dict) else None
        if data and "latest_version" in data:  # OpenBao and newer Vault answer with the key
            return int(data["latest_version"])
        return (await self.key_info(org_id)).latest_version

    async def key_info(self, org_id: uuid.UUID) -> KeyInfo:
        name, mount = key_name(org_id), self.mount
        data = (await self._call(lambda t: t.read_key(name, mount_point=mount)))["data"]
        return KeyInfo(
            latest_version=int(data["latest_version"]), min_decryption_version=int(data["min_decryption_version"])
        )

    async def version_created(self, org_id: uuid.UUID) -> dict[int, datetime]:
        """Transit's ``keys`` map: version → creation time (Unix seconds for symmetric keys)."""
        name, mount = key_name(org_id), self.mount
        data = (await self._call(lambda t: t.read_key(name, mount_point=mount)))["data"]
        created: dict[int, datetime] = {}
        for version, value in (data.get("keys") or {}).items():
            when = _created_at(value)
            if when is not None and str(version).isdigit():
                created[int(version)] = when
        return created

    async def retire(self, org_id: uuid.UUID, min_decryption_version: int) -> None:
        if min_decryption_version < 1:
            raise ValueError("min_decryption_version starts at 1")
        name, mount = key_name(org_id), self.mount
        try:
            await self._call(
                lambda t: t.update_key_configuration(
                    name, min_decryption_version=min_decryption_version, mount_point=mount
                )
            )
        except KeyUnavailable as exc:  # Vault refuses a minimum above the latest version
            if "cannot set min decryption version" in str(exc):
                raise ValueError(f"cannot retire up to version {min_decryption_version}: above the latest") from None
            raise

    async def delete_key(self, org_id: uuid.UUID) -> None:
        name, mount = key_name(org_id), self.mount
        try:
            await self._call(lambda t: t.update_key_configuration(name, deletion_allowed=True, mount_point=mount))
            await self._call(lambda t: t.delete_key(name, mount_point=mount))
        except KeyDestroyed:
            return  # already gone: crypto-shredding is idempotent

    async def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        adapter = getattr(self._client, "adapter", None)
        if adapter is not None:
            adapter.close()


def client_for(login: VaultLogin, mount: str = "transit") -> VaultTransitProvider:
    """A Vault client logged in as ``login`` (its Transit ``mount`` for tenant keys)."""
    return VaultTransitProvider(
        login.url,
        mount=mount,
        auth=login.auth,
        token=login.token,
        role_id=login.role_id,
        secret_id=login.secret_id,
        kubernetes_role=login.kubernetes_role,
        kubernetes_jwt_path=login.kubernetes_jwt_path,
        timeout=login.timeout_seconds,
    )
