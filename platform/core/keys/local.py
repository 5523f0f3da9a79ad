"""The local keyring of the embedded default: Vault Transit's semantics in a file.

``<directory>/master.key`` holds a 32-byte master key (base64, mode 0600).
``<directory>/keyring.json`` holds, per organisation, each key version sealed with
AES-GCM under the master key (aad ``<org>|v<N>``), the latest version and the minimum
version that may still unwrap. Writes replace the file atomically under an exclusive
``flock`` on ``keyring.lock``, so the region service and the ``konsil keys`` CLI can
share one keyring; readers reload when the file changed.

Wrapped data keys look like ``local:v<N>:<base64url(nonce | ciphertext)>``: AES-GCM
under version N of the organisation's key, aad binding the organisation id.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from konsil.platform.core.keys.provider import (
    DataKey,
    KeyDestroyed,
    KeyInfo,
    KeyServiceError,
    KeyUnavailable,
    UnwrapRefused,
    wrapped_version,
)

T = TypeVar("T")
log = logging.getLogger("konsil.keys")

MASTER_FILE = "master.key"
KEYRING_FILE = "keyring.json"
LOCK_FILE = "keyring.lock"
KEY_BYTES = 32
NONCE_BYTES = 12
SCHEME = "local"
FORMAT = 1
_B64URL = re.compile(r"[A-Za-z0-9_-]+")

# {"latest": int, "min_decryption_version": int, "versions": {"N": b64}, "created": {"N": ISO 8601}}
# ("created" is missing from entries written before it was recorded.)
Entry = dict[str, Any]
State = dict[str, Any]  # {"format": 1, "orgs": {"<org uuid>": Entry}}


class KeyringError(RuntimeError):
    """The keyring cannot be used safely; the service refuses to start."""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a 0600 file next to ``path``, fsync it, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _org_aad(org: str, version: int) -> bytes:
    return f"{org}|v{version}".encode()


def _data_key_aad(org: str, version: int) -> bytes:
    return f"datakey|{org}|v{version}".encode()


class LocalKeyring:
    """KeyProvider over a master-key-protected keyring file."""

    name = "local"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.round_trips = 0
        self._keyring_path = self.directory / KEYRING_FILE
        self._lock_path = self.directory / LOCK_FILE
        self._master_path = self.directory / MASTER_FILE
        self._thread_lock = threading.Lock()
        self._state: State | None = None
        self._signature: tuple[int, ...] | None = None
        self._master = AESGCM(self._open_master())

    def __repr__(self) -> str:
        return f"LocalKeyring({str(self.directory)!r})"

    # -- files ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _flock(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _open_master(self) -> bytes:
        """Create the keyring on first use; refuse a master key others can read."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(self.directory.stat().st_mode) & 0o077:  # made by hand or an older version
            self.directory.chmod(0o700)
            log.warning("the local keyring's folder %s was open to group or others: now 0700", self.directory)
        with self._flock():
            if not self._master_path.exists():
                if self._keyring_path.exists():
                    raise KeyringError(
                        f"{self._keyring_path} exists but {self._master_path} is missing: "
                        "restore the master key; a new one could not open the keyring"
                    )
                _atomic_write(self._master_path, base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
                _atomic_write(self._keyring_path, self._dump({"format": FORMAT, "orgs": {}}))
            mode = stat.S_IMODE(self._master_path.stat().st_mode)
            if mode & 0o077:
                raise KeyringError(
                    f"{self._master_path} is accessible by group or others (mode {mode:04o}); "
                    f"run: chmod 600 {self._master_path}"
                )
            try:
                master = base64.b64decode(self._master_path.read_bytes().strip(), validate=True)
            except (binascii.Error, ValueError):
                master = b""
            if len(master) != KEY_BYTES:
                raise KeyringError(f"{self._master_path} does not hold a base64 32-byte key")
            return master

    @staticmethod
    def _dump(state: State) -> bytes:
        return json.dumps(state, indent=1, sort_keys=True).encode() + b"\n"

    def _load(self, *, fresh: bool = False) -> State:
        """The keyring's current state; re-read when the file changed (or ``fresh``)."""
        try:
            with open(self._keyring_path, "rb") as f:
                st = os.fstat(f.fileno())
                signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                if not fresh and self._state is not None and signature == self._signature:
                    return self._state
                raw = f.read()
        except FileNotFoundError:
            raise KeyUnavailable("local keyring file is missing") from None
        try:
            state: State = json.loads(raw)
            if state.get("format") != FORMAT or not isinstance(state.get("orgs"), dict):
                raise ValueError
        except (ValueError, AttributeError):
            raise KeyUnavailable("local keyring file is unreadable") from None
        if not fresh:  # a fresh copy is about to be changed: keep it out of the cache
            self._state, self._signature = state, signature
        return state

    def _write(self, state: State) -> None:
        _atomic_write(self._keyring_path, self._dump(state))

    # -- sealed organisation keys ---------------------------------------------------------

    def _seal_org_key(self, org: str, version: int, key: bytes) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return base64.b64encode(nonce + self._master.encrypt(nonce, key, _org_aad(org, version))).decode()

    def _org_key(self, org: str, entry: Entry, version: int) -> bytes:
        try:
            blob = base64.b64decode(entry["versions"][str(version)], validate=True)
            return self._master.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _org_aad(org, version))
        except (InvalidTag, binascii.Error, ValueError, KeyError, TypeError):
            raise KeyUnavailable("local keyring entry cannot be opened with this master key") from None

    @staticmethod
    def _entry(state: State, org: str) -> Entry:
        entry: Entry | None = state["orgs"].get(org)
        if entry is None:
            raise KeyDestroyed("organisation key not found")
        return entry

    def _wrap(self, org: str, entry: Entry, data_key: bytes) -> tuple[str, int]:
        version = int(entry["latest"])
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self._org_key(org, entry, version)).encrypt(nonce, data_key, _data_key_aad(org, version))
        return f"{SCHEME}:v{version}:{_b64url(nonce + sealed)}", version

    def _open(self, org: str, entry: Entry, wrapped: str) -> bytes:
        version = wrapped_version(wrapped)
        if version < int(entry["min_decryption_version"]):
            raise UnwrapRefused("wrapped data key refused: its key version is retired")
        if str(version) not in entry["versions"]:
            raise UnwrapRefused("wrapped data key refused: unknown key version")
        try:
            blob = _unb64url(wrapped.split(":", 2)[2])
            key = AESGCM(self._org_key(org, entry, version))
            data_key = key.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _data_key_aad(org, version))
        except (InvalidTag, ValueError, binascii.Error):
            raise UnwrapRefused("wrapped data key refused: message authentication failed") from None
        if len(data_key) != KEY_BYTES:
            raise UnwrapRefused("wrapped value is not a data key")
        return data_key

    @staticmethod
    def _check_scheme(wrapped: str) -> None:
        if not wrapped.startswith(f"{SCHEME}:"):
            raise UnwrapRefused("not a local-keyring wrapped data key")
        wrapped_version(wrapped)  # raises UnwrapRefused when malformed

    # -- running operations ---------------------------------------------------------------

    def _read(self, fn: Callable[[State], T]) -> T:
        with self._thread_lock:
            try:
                return fn(self._load())
            except KeyServiceError:
                raise
            except OSError as exc:
                raise KeyUnavailable(f"local keyring unreadable ({type(exc).__name__})") from None

    def _mutate(self, fn: Callable[[State], tuple[T, bool]]) -> T:
        """Apply ``fn`` to a fresh copy under the file lock; write when it says so."""
        with self._thread_lock:
            try:
                with self._flock():
                    state = self._load(fresh=True)
                    result, changed = fn(state)
                    if changed:
                        self._write(state)
                    return result
            except KeyServiceError:
                raise
            except OSError as exc:
                raise KeyUnavailable(f"local keyring unavailable ({type(exc).__name__})") from None

    async def _run(self, fn: Callable[[], T]) -> T:
        self.round_trips += 1
        return await asyncio.to_thread(fn)

    # -- KeyProvider ------------------------------------------------------------------------

    async def create_key(self, org_id: uuid.UUID) -> None:
        org = str(org_id)

        def create(state: State) -> tuple[None, bool]:
            if org in state["orgs"]:
                return None, False
            state["orgs"][org] = {
                "latest": 1,
                "min_decryption_version": 1,
                "versions": {"1": self._seal_org_key(org, 1, secrets.token_bytes(KEY_BYTES))},
                "created": {"1": _now()},
            }
            return None, True

        await self._run(lambda: self._mutate(create))

    async def generate_data_key(self, org_id: uuid.UUID) -> DataKey:
        org = str(org_id)

        def generate(state: State) -> DataKey:
            entry = self._entry(state, org)
            plaintext = secrets.token_bytes(KEY_BYTES)
            wrapped, version = self._wrap(org, entry, plaintext)
            return DataKey(plaintext=plaintext, wrapped=wrapped, key_version=version)

        return await self._run(lambda: self._read(generate))

    async def unwrap(self, org_id: uuid.UUID, wrapped: str) -> bytes:
        org = str(org_id)
        self._check_scheme(wrapped)
        return await self._run(lambda: self._read(lambda state: self._open(org, self._entry(state, org), wrapped)))

    async def rewrap(self, org_id: uuid.UUID, wrapped: str) -> str:
        org = str(org_id)
        self._check_scheme(wrapped)

        def rewrap(state: State) -> str:
            entry = self._entry(state, org)
            return self._wrap(org, entry, self._open(org, entry, wrapped))[0]

        return await self._run(lambda: self._read(rewrap))

    async def rotate(self, org_id: uuid.UUID) -> int:
        org = str(org_id)

        def rotate(state: State) -> tuple[int, bool]:
            entry = self._entry(state, org)
            version = int(entry["latest"]) + 1
            entry["versions"][str(version)] = self._seal_org_key(org, version, secrets.token_bytes(KEY_BYTES))
            entry.setdefault("created", {})[str(version)] = _now()
            entry["latest"] = version
            return version, True

        return await self._run(lambda: self._mutate(rotate))

    async def key_info(self, org_id: uuid.UUID) -> KeyInfo:
        org = str(org_id)

        def info(state: State) -> KeyInfo:
            entry = self._entry(state, org)
            return KeyInfo(
                latest_version=int(entry["latest"]), min_decryption_version=int(entry["min_decryption_version"])
            )

        return await self._run(lambda: self._read(info))

    async def version_created(self, org_id: uuid.UUID) -> dict[int, datetime]:
        org = str(org_id)

        def created(state: State) -> dict[int, datetime]:
            entry = self._entry(state, org)
            found: dict[int, datetime] = {}
            for version, when in (entry.get("created") or {}).items():
                try:
                    found[int(version)] = datetime.fromisoformat(when)
                except (TypeError, ValueError):
                    continue  # a hand-edited time: reported as not recorded
            return found

        return await self._run(lambda: self._read(created))

    async def retire(self, org_id: uuid.UUID, min_decryption_version: int) -> None:
        if min_decryption_version < 1:
            raise ValueError("min_decryption_version starts at 1")
        org = str(org_id)

        def retire(state: State) -> tuple[None, bool]:
            entry = self._entry(state, org)
            if min_decryption_version > int(entry["latest"]):
                raise ValueError(f"cannot retire up to version {min_decryption_version}: above the latest")
            entry["min_decryption_version"] = min_decryption_version
            return None, True

        await self._run(lambda: self._mutate(retire))

    async def delete_key(self, org_id: uuid.UUID) -> None:
        org = str(org_id)

        def delete(state: State) -> tuple[None, bool]:
            return None, state["orgs"].pop(org, None) is not None

        await self._run(lambda: self._mutate(delete))

    async def close(self) -> None:
        self._state, self._signature = None, None
