"""The registry and the region DB (real PostgreSQL, and SQLite for the cordons): replicas
write what they heard, the newest heartbeat wins, replay marks survive a restart, the
ops API's and the ops CLI's cordons are the same and every replica follows them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from piccolo.engine.base import Engine

from konsil.media_nodes import cordons
from konsil.media_nodes.heartbeat import HeartbeatRejected
from konsil.media_nodes.ops_api import node_views
from konsil.media_nodes.registry_store import follow_cordons, load_replay_marks, write_nodes
from konsil.media_nodes.tables import MEDIA_NODE_TABLES, MediaNode, MediaNodeCordon
from konsil.platform.cli.migrations import Target, migrate_target
from konsil.platform.core import database
from tests.conftest import bindings_restored
from tests.media_nodes.test_registry import Clock, beat, registry, send


@pytest.fixture
async def clean(region_engine: Engine[Any]) -> Any:
    await MediaNode.delete(force=True).run()
    await MediaNodeCordon.delete(force=True).run()
    yield
    await MediaNode.delete(force=True).run()
    await MediaNodeCordon.delete(force=True).run()


async def test_replicas_write_the_newest_heartbeat_and_never_go_back(clean: None) -> None:
    first, second = registry(), registry()
    send(first, beat("eu-1", seq=5, allocations=3, restarts=2))
    send(second, beat("eu-1", seq=4, allocations=1))  # this replica heard an older beat last
    await write_nodes(first, {})
    await write_nodes(second, {})
    [row] = await MediaNode.select().run()
    assert (row["last_seq"], row["allocations"], row["restarts"], row["state"]) == (5, 3, 2, "active")
    send(second, beat("eu-1", seq=6, allocations=0))
    await write_nodes(second, {})
    [row] = await MediaNode.select().run()
    assert (row["last_seq"], row["allocations"]) == (6, 0)


async def test_a_restarted_replica_refuses_a_replayed_heartbeat(clean: None) -> None:
    before = registry()
    send(before, beat("eu-1", seq=7))
    await write_nodes(before, {})
    restarted = registry()
    await load_replay_marks(restarted)
    with pytest.raises(HeartbeatRejected, match="replayed"):
        send(restarted, beat("eu-1", seq=7))
    send(restarted, beat("eu-1", seq=8))  # the node's next heartbeat is fine


async def test_a_node_that_leaves_is_shown_as_left(clean: None) -> None:
    reg = registry()
    send(reg, beat("eu-1", seq=1))
    written: dict[str, int] = {}
    await write_nodes(reg, written)
    send(reg, beat("eu-1", seq=2, state="leaving"))
    await write_nodes(reg, written)
    [row] = await MediaNode.select().run()
    assert row["state"] == "left"
    [view] = await node_views(None)
    assert view.status == "left" and not view.alive


async def test_every_replica_follows_drains_from_the_db(clean: None) -> None:
    clock = Clock()
    reg = registry(clock)
    send(reg, beat("eu-1", seq=1, allocations=2))
    send(reg, beat("eu-2", seq=1))
    await write_nodes(reg, {})  # the nodes are known to the region DB
    await cordons.cordon("eu", "eu-1", "kernel", drain=True)  # by the ops CLI, or another replica
    await follow_cordons(reg)
    [draining] = [v for v in await node_views(reg) if v.node_id == "eu-1"]
    assert draining.status == "draining" and draining.allocations == 2 and draining.reason == "kernel"
    send(reg, beat("eu-1", seq=2, allocations=0))
    [drained] = [v for v in await node_views(reg) if v.node_id == "eu-1"]
    assert drained.status == "drained"
    # A node cordoned before it ever joined (asked for: new_node) is listed too.
    await cordons.cordon("eu", "eu-9", "not racked yet", new_node=True)
    await follow_cordons(reg)
    assert {v.node_id: v.status for v in await node_views(reg)} == {
        "eu-1": "drained",
        "eu-2": "active",
        "eu-9": "cordoned",
    }
    await cordons.uncordon("eu", "eu-1")
    await follow_cordons(reg)
    assert reg.node("eu-1") is not None and not reg.node("eu-1").cordoned  # type: ignore[union-attr]


@pytest.fixture(params=["postgres", "sqlite"])
async def cordon_table(request: pytest.FixtureRequest, clean: None, tmp_path: Path) -> AsyncIterator[None]:
    """The cordons on the region's PostgreSQL, or on a migrated SQLite file (the
    embedded default, where ``konsil media-nodes`` works the same)."""
    if request.param == "postgres":
        yield
        return
    dsn = f"sqlite://{tmp_path / 'region.sqlite'}"
    await asyncio.to_thread(migrate_target, Target("sqlite region", "region", dsn))
    with bindings_restored(MEDIA_NODE_TABLES):
        database.bind(MEDIA_NODE_TABLES, database.engine_for(dsn))
        yield


async def test_the_ops_api_and_the_ops_cli_cordon_alike(cordon_table: None) -> None:
    """The API's cordon (with this replica's registry) and the CLI's (without) write the
    same row; a second cordon changes its reason and drain, not its time."""
    here, elsewhere = registry(), registry()
    for replica in (here, elsewhere):
        send(replica, beat("eu-1", seq=1, allocations=1))

    await cordons.cordon("eu", "eu-1", "kernel", registry=here)  # the ops API
    assert here.node("eu-1").cordoned and not elsewhere.node("eu-1").cordoned  # type: ignore[union-attr]
    [first] = await cordons.cordons()
    assert (first.node_id, first.reason, first.drain) == ("eu-1", "kernel", False)

    await cordons.cordon("eu", "eu-1", "kernel, then drain", drain=True)  # the ops CLI
    [second] = await cordons.cordons()
    assert (second.reason, second.drain, second.cordoned_at) == ("kernel, then drain", True, first.cordoned_at)
    await follow_cordons(elsewhere)
    assert elsewhere.node("eu-1").draining_by_ops  # type: ignore[union-attr]

    await cordons.cordon("eu", "eu-2", "x" * 300, new_node=True)
    assert [len(c.reason) for c in await cordons.cordons() if c.node_id == "eu-2"] == [cordons.REASON_LENGTH]

    assert await cordons.uncordon("eu", "eu-1", registry=here) is True
    assert not here.node("eu-1").cordoned  # type: ignore[union-attr]
    assert await cordons.uncordon("eu", "eu-1", registry=elsewhere) is False, "no cordon left to lift"
    assert [c.node_id for c in await cordons.cordons()] == ["eu-2"]


async def test_a_node_the_region_never_heard_of_is_refused(cordon_table: None) -> None:
    """``cordon ghost-node`` stored a cordon of nothing and ``uncordon never-existed``
    said it takes new calls again. Known is: heard by this replica, written to the region
    DB by any replica (the node may be offline now), or cordoned already."""
    heard = registry()
    send(heard, beat("eu-1", seq=1))
    await write_nodes(heard, {})  # eu-1 is known to the region DB, and then goes offline
    here = registry()
    send(here, beat("eu-3", seq=1))  # eu-3 only this replica has heard so far
    for action in (cordons.cordon, cordons.uncordon):
        with pytest.raises(cordons.UnknownNode) as refused:
            await action("eu", "ghost-node", registry=here)
        assert str(refused.value) == "no media node 'ghost-node' is known in region eu; known nodes: eu-1, eu-3"
    assert await cordons.cordons() == [], "nothing stored for an unknown node"
    with pytest.raises(cordons.UnknownNode, match=r"known nodes: eu-1$"):
        await cordons.cordon("eu", "eu-3")  # the ops CLI has no registry: eu-3 is not in the DB yet
    await cordons.cordon("eu", "eu-1", "offline, still known")  # no replica hears it now
    await cordons.cordon("eu", "eu-3", registry=here)
    await cordons.cordon("eu", "eu-new", "not racked yet", new_node=True)
    assert [c.node_id for c in await cordons.cordons()] == ["eu-1", "eu-3", "eu-new"]
    assert await cordons.uncordon("eu", "eu-new") is True
    await MediaNode.delete(force=True).run()
    with pytest.raises(cordons.UnknownNode, match=r"known nodes: eu-1, eu-3$"):
        await cordons.cordon("eu", "eu-new")  # uncordoned and never heard: unknown again
