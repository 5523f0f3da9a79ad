"""The access-log collector: each of its checks passes on a log the service wrote and
fails, saying why, on one changed behind its back (raw SQL or entries appended with
the fault in them, as a buggy or careless writer would)."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from konsil.compliance.access_log import chain
from konsil.compliance.access_log.service import AccessEvent, append, entries
from konsil.compliance.access_log.tables import AccessLogEntry, AccessLogHead
from konsil.compliance.dsr import service as dsr
from konsil.compliance.dsr.schemas import RequestIn
from konsil.compliance.evidence import access_log
from konsil.compliance.evidence.model import Check, Observation
from konsil.platform.core.region import RegionContext
from konsil.tenants.actors import Actor, record
from konsil.tenants.tables import Organisation, Visit
from tests.compliance.evidence.conftest import Org, assert_no_personal_data, new_org, new_visit, scope_of

RULES = (
    "chain_verifies",
    "entries_in_period",
    "individual_actors",
    "nen7513_fields",
    "log_reads_logged",
    "admin_access_with_reason",
    "subject_extract",
)


async def collected(ctx: RegionContext, org: Org) -> Observation:
    observation = await access_log.collect(ctx, scope_of(org.id))
    assert_no_personal_data(observation, org.owner_email)
    return observation


def failing(observation: Observation, name: str) -> Check:
    check = observation.check(name)
    assert check.result == "fail", check
    others = [c for c in observation.checks if c.result == "fail" and c.name != name]
    assert not others, others
    return check


def entry(org_id: uuid.UUID, **fields: str) -> AccessEvent:
    """An entry of the kind the portal writes, with ``fields`` changed."""
    base: dict[str, str] = {
        "actor": f"member:{uuid.uuid4()}",
        "actor_role": "expert",
        "on_behalf_of": "",
        "subject_ref": f"visit:{uuid.uuid4()}",
        "action": "read",
        "object_type": "visit",
        "object_id": str(uuid.uuid4()),
        "source_address": "198.51.100.20",
        "outcome": "success",
        "purpose": "provide the service",
        "source": "region:eu/test",
    }
    return AccessEvent(org_id=org_id, **{**base, **fields})  # type: ignore[arg-type]


async def seq_of(entry_id: uuid.UUID) -> int:
    row = await AccessLogEntry.select(AccessLogEntry.seq).where(AccessLogEntry.id == entry_id).first()
    assert row is not None
    return int(row["seq"])


async def test_a_log_the_service_wrote_passes_every_check(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    visit_id, _ = await new_visit(ctx, org)
    # An operator handles a request from the command line, with its reason.
    operator = Actor("operator:cli", "operator", "operator:cli", "local")
    row = await Organisation.select().where(Organisation.id == org.id).first()
    assert row is not None
    await dsr.file(ctx, operator, row, RequestIn(kind="access", phone="+4791234567"))
    # The owner reads the organisation's log (as the access-log page does).
    await record(
        ctx, org.owner.for_purpose("review the access log"), org.id, "read", "access_log", "entries:5", "access_log"
    )

    observation = await collected(ctx, org)

    assert {c.name for c in observation.checks} == set(RULES)
    assert [c.result for c in observation.checks] == ["pass"] * len(RULES), observation.checks
    assert observation.method == "TEST"
    chain = observation.evidence["chain"]
    assert chain["ok"] and chain["head_seq"] == chain["checked"]
    assert observation.check("admin_access_with_reason").figures["staff_accesses"] == 1
    assert observation.check("log_reads_logged").figures["log_reads"] == 2  # the owner's and this collection's
    created = observation.evidence["created_in_period"]
    assert {k: v["created"] for k, v in created.items() if v["created"]} == {
        "visit": 1,
        "call": 1,
        "member": 1,
        "room": 1,
        "data_subject_request": 1,
    }
    assert observation.evidence["subject_extract"]["subject_ref"] == f"visit:{visit_id}"
    # The collection's reads of the log are in the log: its own, and the extract's.
    reads = await AccessLogEntry.select(AccessLogEntry.subject_ref).where(
        (AccessLogEntry.org_id == org.id) & (AccessLogEntry.actor == access_log.EVIDENCE_ACTOR)
    )
    assert sorted(r["subject_ref"] for r in reads) == ["access_log", f"visit:{visit_id}"]


async def test_an_edited_entry_breaks_the_chain(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    await AccessLogEntry.raw(
        "UPDATE access_log_entry SET purpose = 'nothing happened' WHERE org_id = {} AND seq = 3", org.id
    )
    check = failing(await collected(ctx, org), "chain_verifies")
    assert "entry #3" in check.reason and "modified" in check.reason and "no longer matches its hash" in check.reason
    assert check.figures["problem_seq"] == 3


async def test_a_head_moved_to_a_forged_entry_is_found_by_the_collections_own_read(ctx: RegionContext) -> None:
    """A well-formed entry appended beside the service and the head moved to it: the
    chain alone agrees, but the collection appends its own read first, which checks the
    head it extends and records it in the chain as not sealed by the region."""
    org = await new_org(ctx)
    await new_visit(ctx, org)
    last = (await entries(org.id, 10_000))[-1]
    unhashed = msgspec.structs.replace(
        last, id=uuid.uuid4(), seq=last.seq + 1, prev_hash=last.entry_hash, actor=f"member:{uuid.uuid4()}"
    )
    forged = msgspec.structs.replace(unhashed, entry_hash=chain.entry_hash(unhashed))
    await AccessLogEntry.insert(AccessLogEntry(**msgspec.structs.asdict(forged)))
    await AccessLogHead.update({AccessLogHead.seq: forged.seq, AccessLogHead.entry_hash: forged.entry_hash}).where(
        AccessLogHead.org_id == org.id
    )

    observation = await collected(ctx, org)

    check = failing(observation, "chain_verifies")
    assert check.reason.startswith(
        f"The access log does not verify: the region found the chain head tampered at entry #{forged.seq} on "
    )
    assert "its seal did not match it" in check.reason and f"as entry #{forged.seq + 1}" in check.reason
    assert check.figures["problem_seq"] == forged.seq and check.figures["tampering_found"] == 1
    found = observation.evidence["chain"]["tampering_found"]
    assert [(f["kind"], f["seq"]) for f in found] == [("tampered", forged.seq)]
    again = failing(await collected(ctx, org), "chain_verifies").reason
    assert again.split(". Apart")[0] == check.reason.split(". Apart")[0], "it stays found"


async def test_a_record_created_without_its_entry_is_named(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    hidden = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    await Visit.insert(
        Visit(
            id=hidden,
            org_id=org.id,
            room_id=org.room.id,
            name="kf1:sealed-elsewhere",
            token_hash=uuid.uuid4().hex,
            consented_at=now,
            arrived_at=now,
            expires_at=now + dt.timedelta(days=30),
        )
    )
    check = failing(await collected(ctx, org), "entries_in_period")
    assert check.figures["records_without_entry"] == 1
    assert f"1 visit (e.g. id {hidden})" in check.reason


async def test_a_shared_actor_on_member_actions_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    shared = await append(entry(org.id, actor="front-desk", actor_role="expert"))
    check = failing(await collected(ctx, org), "individual_actors")
    assert check.figures["not_individual"] == 1
    assert f"#{await seq_of(shared)}" in check.reason and "one member, token or visit" in check.reason


async def test_an_anonymous_success_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await append(entry(org.id, actor="anonymous", actor_role="anonymous", on_behalf_of="anonymous", outcome="denied"))
    refused = await collected(ctx, org)
    assert refused.check("individual_actors").result == "pass"  # refused attempts by unknown callers are fine
    await append(entry(org.id, actor="anonymous", actor_role="anonymous", on_behalf_of="anonymous"))
    assert failing(await collected(ctx, org), "individual_actors").figures["not_individual"] == 1


async def test_an_entry_missing_a_nen7513_field_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    bare = await append(entry(org.id, purpose="", source_address=""))
    check = failing(await collected(ctx, org), "nen7513_fields")
    assert check.figures["complete"] == check.figures["entries"] - 1  # type: ignore[operator]
    assert 0 < check.figures["share_complete"] < 1  # type: ignore[operator]
    assert f"#{await seq_of(bare)}" in check.reason and "lack a NEN 7513 field" in check.reason


async def test_a_read_of_the_log_without_reader_or_purpose_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    read = await append(
        entry(
            org.id,
            actor="anonymous",
            actor_role="anonymous",
            on_behalf_of="anonymous",
            object_type="access_log",
            subject_ref="access_log",
            purpose="",
            outcome="failure",
        )
    )
    observation = await collected(ctx, org)
    check = observation.check("log_reads_logged")
    assert check.result == "fail"
    assert f"#{await seq_of(read)}" in check.reason and "reader and purpose" in check.reason


async def test_support_access_without_a_reason_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    await append(entry(org.id, actor="operator:cli", actor_role="operator", on_behalf_of="operator:cli"))
    check = failing(await collected(ctx, org), "admin_access_with_reason")
    assert check.figures == {"staff_accesses": 1, "without_reason": 1}
    assert "no specific reason" in check.reason


async def test_an_extract_that_misses_a_subjects_entry_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    visit_id, _ = await new_visit(ctx, org)
    # An entry about the visit stored beside the chain (seq 0), which the extract skips.
    await AccessLogEntry.raw(
        "INSERT INTO access_log_entry (id, org_id, seq, at, actor, actor_role, on_behalf_of, subject_ref, action, "
        "object_type, object_id, source_address, outcome, purpose, source, prev_hash, entry_hash) "
        "VALUES ({}, {}, 0, now(), 'member:x', 'expert', 'member:x', {}, 'read', 'visit', {}, '198.51.100.2', "
        "'success', 'provide the service', 'region:eu/test', '', '')",
        uuid.uuid4(),
        org.id,
        f"visit:{visit_id}",
        str(visit_id),
    )
    observation = await collected(ctx, org)
    check = observation.check("subject_extract")
    assert check.result == "fail", check
    expected = check.figures["expected"]
    assert check.figures["returned"] == expected - 1  # type: ignore[operator]
    assert f"returned {expected - 1} of its {expected} entries" in check.reason  # type: ignore[operator]


async def test_a_period_without_data_subjects_has_nothing_to_extract(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    empty = scope_of(org.id, days=30, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
    observation = await access_log.collect(ctx, empty)
    assert observation.check("subject_extract").result == "not_applicable"
    assert observation.check("entries_in_period").figures == {
        "entries": 0,
        "records_created": 0,
        "records_without_entry": 0,
    }
