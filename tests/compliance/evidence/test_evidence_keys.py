"""The key-management collector against the region's real local keyring (the OpenBao
provider answers the same calls: tests/e2e/test_key_providers_vault.py runs the
provider contract, ``version_created`` included, against a real OpenBao)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

from konsil.compliance.evidence import keys
from konsil.compliance.evidence.model import Observation
from konsil.platform.core.region import RegionContext
from tests.compliance.evidence.conftest import Org, assert_no_personal_data, new_org, scope_of


async def collected(ctx: RegionContext, org: Org) -> Observation:
    observation = await keys.collect(ctx, scope_of(org.id))
    assert_no_personal_data(observation, org.owner_email)
    return observation


def keyring_file(ctx: RegionContext) -> Path:
    return Path(ctx.region.vault.keyring_path) / "keyring.json"


def edit_keyring(ctx: RegionContext, org: Org, change: dict[str, object]) -> None:
    """Change the organisation's keyring entry as time (or an older Konsil) would have."""
    path = keyring_file(ctx)
    state = json.loads(path.read_text())
    state["orgs"][str(org.id)].update(change)
    path.write_text(json.dumps(state))


@contextlib.contextmanager
def keyring_moved_away(ctx: RegionContext) -> Iterator[None]:
    """The key service gone (its keyring folder moved away), then back."""
    folder = Path(ctx.region.vault.keyring_path)
    folder.rename(folder.with_name("keyring-away"))
    try:
        yield
    finally:
        folder.with_name("keyring-away").rename(folder)


async def test_a_new_key_and_a_rotated_one_pass(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    fresh = await collected(ctx, org)
    assert [c.result for c in fresh.checks] == ["pass", "pass"], fresh.checks
    assert "never rotated since it was made on" in fresh.check("key_rotation").reason
    assert fresh.evidence["data_keys"]["by_key_version"] == {"1": 2}

    await ctx.keys.rotate(org.id)
    await ctx.keys.retire_old_versions(org.id)
    rotated = await collected(ctx, org)

    check = rotated.check("key_rotation")
    assert check.result == "pass"
    assert check.figures["latest_version"] == 2 and check.figures["retired_versions"] == 1
    assert check.figures["last_rotation"] == rotated.evidence["key"]["versions_created"]["2"]
    assert "last rotated" in check.reason and "version 1 is retired" in check.reason
    assert rotated.evidence["data_keys"]["by_key_version"] == {"2": 2}
    reachable = rotated.check("key_service_reachable")
    assert reachable.result == "pass" and reachable.figures["provider"] == "local"


async def test_a_key_version_older_than_twelve_months_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    made = (dt.datetime.now(dt.UTC) - dt.timedelta(days=400)).isoformat(timespec="seconds")
    edit_keyring(ctx, org, {"created": {"1": made}})
    check = (await collected(ctx, org)).check("key_rotation")
    assert check.result == "fail"
    assert "The current key version 1 is 400 days old, older than 12 months" in check.reason
    assert check.figures["current_version_age_days"] == 400.0


async def test_a_key_version_of_unknown_age_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    edit_keyring(ctx, org, {"created": {}})  # written before versions recorded their time
    check = (await collected(ctx, org)).check("key_rotation")
    assert check.result == "fail" and "does not record when key version 1 was made" in check.reason


async def test_an_unreachable_key_service_fails_both_checks(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    with keyring_moved_away(ctx):
        observation = await collected(ctx, org)
    reachable = observation.check("key_service_reachable")
    assert reachable.result == "fail" and "did not answer: local keyring file is missing" in reachable.reason
    rotation = observation.check("key_rotation")
    assert rotation.result == "fail" and "could not be asked" in rotation.reason
    assert observation.evidence["key_service"]["outcome"] == "unreachable"


async def test_a_shredded_key_has_no_age_to_check(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await ctx.keys.shred(org.id)
    observation = await collected(ctx, org)
    assert observation.check("key_rotation").result == "not_applicable"
    reachable = observation.check("key_service_reachable")
    assert reachable.result == "pass" and "no longer exists" in reachable.reason
