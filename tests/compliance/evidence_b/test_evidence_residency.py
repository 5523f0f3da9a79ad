"""The residency collector on the real PostgreSQL region database: calls with receipts
issued by the tenant service pass; a call without a receipt, one with a forged
receipt, one whose receipt names another region or a relay that is not the region's
fail, each named by call id; and what the region queues for the control plane is
checked for plain e-mail addresses."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from piccolo.columns import Varchar
from piccolo.engine.base import Engine

from konsil.compliance.evidence import residency
from konsil.media_nodes import receipts
from konsil.media_nodes.receipts import ResidencyReceipt
from konsil.media_nodes.tables import MediaNode
from konsil.platform.core import clock
from konsil.platform.core.region import RegionContext
from konsil.tenants import login_index, visits
from konsil.tenants.tables import CallRelayReceipt, LoginIndexChange
from tests.compliance.evidence_b.support import (
    assert_no_personal_data,
    assert_well_formed,
    dsn_of,
    new_call,
    new_org,
    period,
    region_context,
)

CHECKS = ("receipts_valid", "control_plane_holds_none")


@pytest.fixture
async def ctx(region_engine: Engine[Any], tmp_path: Path) -> AsyncIterator[RegionContext]:
    async with region_context(dsn_of(region_engine), tmp_path / "keyring") as context:
        yield context


async def media_node() -> str:
    """A media node of this region, as its heartbeats leave it in the registry table."""
    node_id = f"eu-node-{secrets.token_hex(3)}"
    await MediaNode.insert(MediaNode(node_id=node_id, state="active", healthy=True)).run()
    return node_id


async def store_receipt(call_id: uuid.UUID, org_id: uuid.UUID, body: str, signature: str, key_id: str) -> None:
    await CallRelayReceipt.insert(
        CallRelayReceipt(
            id=uuid.uuid4(),
            org_id=org_id,
            call_id=call_id,
            body=body,
            signature=signature,
            key_id=key_id,
            expires_at=clock.now(),
        )
    ).run()


async def signed(ctx: RegionContext, call_id: uuid.UUID, region: str, relays: list[str]) -> tuple[str, str, str]:
    """A receipt body and a signature by this region's key."""
    receipt = ResidencyReceipt(
        call_id=str(call_id),
        region=region,
        jurisdiction=ctx.region.jurisdiction,
        relays=relays,
        issued_at=clock.now().isoformat(),
    )
    signature = await ctx.signer.sign(receipts.signed_bytes(receipt))
    return msgspec.json.encode(receipt).decode(), signature.value, signature.kid


async def test_calls_relayed_by_the_regions_media_nodes_pass(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    node_a, node_b = await media_node(), await media_node()
    first, second = await new_call(org, phone="+4791234567"), await new_call(org)
    await visits.record_relay(ctx, org.actor, first, node_a)
    await visits.record_relay(ctx, org.actor, second, node_a)
    await visits.record_relay(ctx, org.actor, second, node_b)  # the call moved to another node
    scope = period(org)

    observation = await residency.collect(ctx, scope)

    assert_well_formed(observation, "residency", scope, CHECKS)
    receipts_check = observation.check("receipts_valid")
    assert receipts_check.result == "pass", receipts_check.reason
    assert receipts_check.figures["calls"] == 2 and receipts_check.figures["valid"] == 2
    assert receipts_check.reason.startswith("Every call of the period (2) has a residency receipt")
    assert observation.evidence["receipts"]["relays_named"] == {node_a: 2, node_b: 1}
    control = observation.check("control_plane_holds_none")
    assert control.result == "pass", control.reason
    assert "keyed hash" in control.reason and "not read" in control.reason
    assert observation.result == "pass"
    assert_no_personal_data(observation, org.personal)


async def test_a_call_without_a_valid_receipt_of_the_region_fails_and_is_named(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    node = await media_node()
    good = await new_call(org)
    await visits.record_relay(ctx, org.actor, good, node)
    without = await new_call(org)
    forged = await new_call(org)
    await visits.record_relay(ctx, org.actor, forged, node)
    # Someone with database access rewrites the relay the receipt names; the signature stays.
    row = await CallRelayReceipt.select().where(CallRelayReceipt.call_id == forged.id).first().run()
    assert row is not None
    body = msgspec.json.decode(row["body"], type=ResidencyReceipt)
    tampered = msgspec.json.encode(msgspec.structs.replace(body, relays=["somewhere-else"])).decode()
    await CallRelayReceipt.update({CallRelayReceipt.body: tampered}).where(CallRelayReceipt.id == row["id"]).run()
    elsewhere = await new_call(org)
    await store_receipt(elsewhere.id, org.id, *await signed(ctx, elsewhere.id, "us", [node]))
    stranger = await new_call(org)
    await store_receipt(stranger.id, org.id, *await signed(ctx, stranger.id, "eu", ["us-node-1"]))
    swapped = await new_call(org)
    await store_receipt(swapped.id, org.id, *await signed(ctx, good.id, "eu", [node]))
    scope = period(org)

    observation = await residency.collect(ctx, scope)

    result = observation.check("receipts_valid")
    assert result.result == "fail"
    assert result.figures == {
        "calls": 6,
        "valid": 1,
        "missing": 1,
        "bad_signature": 1,
        "other_call": 1,
        "other_region": 1,
        "unknown_relay": 1,
    }
    assert result.reason.startswith("5 of 6 calls of the period are not shown to have stayed in region eu (EU/EEA)")
    assert f"1 call with no receipt ({without.id})" in result.reason
    assert f"1 call with a receipt that does not verify (bad signature or unreadable body) ({forged.id})" in (
        result.reason
    )
    assert f"1 call with a receipt naming another region ({elsewhere.id})" in result.reason
    assert f"not one of this region's media nodes ({stranger.id})" in result.reason
    assert f"a receipt issued for another call ({swapped.id})" in result.reason
    assert str(good.id) not in result.reason
    problems = observation.evidence["receipts"]["problems"]
    assert problems["missing"] == {"count": 1, "call_ids": [str(without.id)]}
    assert observation.result == "fail"
    assert_no_personal_data(observation, org.personal)


async def test_a_region_without_media_nodes_says_why_its_calls_have_no_receipt(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    call = await new_call(org)

    result = (await residency.collect(ctx, period(org))).check("receipts_valid")

    assert result.result == "fail"
    assert f"1 call with no receipt ({call.id})" in result.reason
    assert "only a call given a registered media node gets a receipt" in result.reason


async def test_calls_outside_the_period_or_of_another_organisation_are_not_looked_at(ctx: RegionContext) -> None:
    org, other = await new_org(ctx), await new_org(ctx)
    await new_call(other)  # no receipt, but not this organisation's
    mine = await new_call(org)  # no receipt
    scope = period(org)
    later = msgspec.structs.replace(scope, period_start=scope.period_end - dt.timedelta(seconds=30))

    counted = (await residency.collect(ctx, scope)).check("receipts_valid")
    after_it = (await residency.collect(ctx, later)).check("receipts_valid")

    assert counted.figures["calls"] == 1 and counted.figures["missing"] == 1
    assert f"({mine.id})" in counted.reason
    assert after_it.result == "not_applicable"
    assert after_it.reason.startswith("No call of the organisation started in the period")


async def test_a_plain_email_queued_for_the_control_plane_fails_named_by_change_id(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    # What members.invite queues is a keyed hash; a change carrying the address itself
    # (a bug, or a hand edit) would send it to the control plane in plain text.
    hashed = uuid.uuid4()
    await LoginIndexChange.insert(LoginIndexChange(id=hashed, org_id=org.id, email_lookup=org.owner.email_lookup)).run()
    plain = uuid.uuid4()
    await LoginIndexChange.insert(LoginIndexChange(id=plain, org_id=org.id, email_lookup=org.owner_email)).run()

    observation = await residency.collect(ctx, period(org))

    control = observation.check("control_plane_holds_none")
    assert control.result == "fail"
    assert control.figures["queued_changes"] == 2 and control.figures["not_keyed_hashes"] == 1
    assert f"1 queued change ({plain})" in control.reason
    assert "could reach the control plane in plain text" in control.reason
    assert str(hashed) not in control.reason
    assert observation.evidence["control_plane"]["not_keyed_hashes"]["queued_change_ids"] == [str(plain)]
    assert_no_personal_data(observation, org.personal)


def test_a_new_field_in_the_message_to_the_control_plane_fails_until_reviewed() -> None:
    assert residency.unreviewed_fields() == [], "the shipped message and outbox are reviewed"

    class GrownSync(login_index.LoginIndexSync, frozen=True):
        names: list[str]

    class GrownOutbox(LoginIndexChange, tablename="login_index_change_grown"):
        email = Varchar(length=320)

    assert residency.unreviewed_fields(GrownSync, GrownOutbox) == ["message field names", "outbox column email"]
