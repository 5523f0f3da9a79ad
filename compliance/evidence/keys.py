"""Key-management evidence (NEN 7510 A.10.1.2; P7).

Asks the region's own key service (Vault Transit, or the local keyring of the embedded
default) about the organisation's key, a live call each time (the data-key cache is
not used): its current version and when each version was made, which versions are
retired (refused for unwrapping), and how long the answer took. From the region's
database: the organisation's wrapped data keys and the key versions they are wrapped
under. No key material is read.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from konsil.compliance.evidence.common import days, failed, iso, months_back, not_applicable, observation, passed
from konsil.compliance.evidence.model import Check, Observation, Scope
from konsil.platform.core.keys.provider import KeyDestroyed, KeyInfo, KeyUnavailable
from konsil.platform.core.keys.tables import TenantDataKey
from konsil.platform.core.region import RegionContext

COLLECTOR = "keys"
DESCRIPTION = (
    "Asked the region's key service for the organisation's key versions and when each was made, "
    "and read which key versions its stored data keys are wrapped under."
)
ROTATION_MONTHS = 12


async def collect(region: RegionContext, scope: Scope) -> Observation:
    provider = region.keys.provider
    info: KeyInfo | None = None
    created: dict[int, datetime] = {}
    outcome = "answered"
    error: str | None = None
    started = time.monotonic()
    try:
        info = await provider.key_info(scope.org_id)
        created = await provider.version_created(scope.org_id)
    except KeyDestroyed:
        outcome = "destroyed"
    except KeyUnavailable as exc:
        outcome, error = "unreachable", str(exc)  # the provider's messages name no key material
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    data_keys = await _data_keys(scope)
    checks = [
        _key_rotation(scope, outcome, info, created),
        _key_service_reachable(provider.name, outcome, error, elapsed_ms),
    ]
    evidence: dict[str, Any] = {
        "key_service": {"provider": provider.name, "outcome": outcome, "error": error, "elapsed_ms": elapsed_ms},
        "key": {
            "latest_version": info.latest_version if info else None,
            "min_decryption_version": info.min_decryption_version if info else None,
            "retired_versions": (info.min_decryption_version - 1) if info else None,
            "versions_created": {str(v): iso(at) for v, at in sorted(created.items())},
        },
        "data_keys": data_keys,
    }
    return observation(scope, COLLECTOR, "TEST", DESCRIPTION, checks, evidence)


async def _data_keys(scope: Scope) -> dict[str, Any]:
    rows = (
        await TenantDataKey.select(TenantDataKey.purpose, TenantDataKey.key_version, TenantDataKey.created_at)
        .where(TenantDataKey.org_id == scope.org_id)
        .run()
    )
    versions: dict[str, int] = {}
    for row in rows:
        versions[str(row["key_version"])] = versions.get(str(row["key_version"]), 0) + 1
    return {
        "count": len(rows),
        "by_purpose": {p: sum(1 for r in rows if r["purpose"] == p) for p in sorted({r["purpose"] for r in rows})},
        "by_key_version": dict(sorted(versions.items())),
        "oldest_created": iso(min((r["created_at"] for r in rows), default=None)),
    }


def _key_rotation(scope: Scope, outcome: str, info: KeyInfo | None, created: dict[int, datetime]) -> Check:
    name = "key_rotation"
    if outcome == "destroyed":
        return not_applicable(
            name, "The organisation's key was destroyed (crypto-shredded): nothing is encrypted under it any more."
        )
    if info is None:
        return failed(name, "The key service could not be asked, so the key's age cannot be shown.")
    latest = info.latest_version
    figures: dict[str, Any] = {
        "latest_version": latest,
        "retired_versions": info.min_decryption_version - 1,
        "last_rotation": iso(created.get(latest)) if latest > 1 else None,
    }
    made = created.get(latest)
    if made is None:
        return failed(
            name,
            f"The key service does not record when key version {latest} was made, so its age cannot be shown.",
            **figures,
        )
    age = scope.now - made
    figures["current_version_age_days"] = days(age)
    limit = months_back(scope.now, ROTATION_MONTHS)
    retired = info.min_decryption_version - 1
    history = (
        f"last rotated {made:%Y-%m-%d}" if latest > 1 else f"never rotated since it was made on {made:%Y-%m-%d}"
    ) + (f"; versions 1 to {retired} are retired" if retired > 1 else "; version 1 is retired" if retired == 1 else "")
    current = f"The current key version {latest} is {days(age):g} days old"
    if made < limit:
        return failed(name, f"{current}, older than {ROTATION_MONTHS} months ({history}).", **figures)
    return passed(name, f"{current}, within {ROTATION_MONTHS} months ({history}).", **figures)


def _key_service_reachable(provider: str, outcome: str, error: str | None, elapsed_ms: float) -> Check:
    name = "key_service_reachable"
    figures: dict[str, Any] = {"provider": provider, "elapsed_ms": elapsed_ms}
    service = "the region's Vault" if provider == "vault-transit" else "the region's local keyring"
    if outcome == "unreachable":
        return failed(name, f"The key service ({service}) did not answer: {error}.", **figures)
    found = (
        "the organisation's key no longer exists" if outcome == "destroyed" else "it reported the organisation's key"
    )
    return passed(name, f"The key service ({service}) answered in {elapsed_ms:g} ms; {found}.", **figures)
