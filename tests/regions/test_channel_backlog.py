"""A subscriber's backlog is bounded in events and bytes: past either bound it is
dropped, the subscriber takes nothing more, its stream ends and its socket is told.
Fed as Litestar's channels plugin feeds it (``put_nowait`` per event), and through
the plugin on the in-memory backend of the embedded default;
tests/e2e/test_signaling_input.py floods a real region over PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend

from konsil.platform.core.channels import BoundedSubscriber, RegionChannels


@pytest.fixture
async def plugin() -> AsyncIterator[ChannelsPlugin]:
    channels = RegionChannels(MemoryChannelsBackend())
    async with channels:
        yield channels


async def test_the_plugin_hands_events_to_bounded_subscribers(plugin: ChannelsPlugin) -> None:
    subscriber = await plugin.subscribe(["call:a"])
    assert isinstance(subscriber, BoundedSubscriber)
    await plugin.wait_published(b"offer", ["call:a"])
    async with asyncio.timeout(5):
        async for event in subscriber.iter_events():
            assert event == b"offer"
            break
    assert subscriber.backlog == 0 and subscriber.backlog_bytes == 0
    await plugin.unsubscribe(subscriber, ["call:a"])
    # Unsubscribing ends its stream (the end mark is not counted as backlog).
    assert [event async for event in subscriber.iter_events()] == []


async def test_a_reader_that_keeps_up_gets_everything(plugin: ChannelsPlugin) -> None:
    # put_nowait is what the plugin calls for each event of a subscribed channel.
    subscriber = BoundedSubscriber(plugin)
    got: list[bytes] = []
    for round_ in range(5):
        for number in range(BoundedSubscriber.MAX_EVENTS):  # a full backlog, then read out
            assert subscriber.put_nowait(b"%d-%d" % (round_, number))
        async for event in subscriber.iter_events():
            got.append(event)
            if subscriber.backlog == 0:
                break
        assert subscriber.backlog_bytes == 0
    assert len(got) == 5 * BoundedSubscriber.MAX_EVENTS and not subscriber.overflowed


@pytest.mark.parametrize(("size", "fits"), [(10, BoundedSubscriber.MAX_EVENTS), (20_000, 26)])
async def test_a_reader_that_does_not_read_is_cut_off(plugin: ChannelsPlugin, size: int, fits: int) -> None:
    """Small events hit the event bound, 20 kB offers the byte bound (512 KiB)."""
    subscriber = BoundedSubscriber(plugin)
    told: list[str] = []
    subscriber.on_overflow = lambda: told.append("overflow")
    for _ in range(fits):
        assert subscriber.put_nowait(b"x" * size)
    assert subscriber.backlog == fits and subscriber.backlog_bytes == fits * size
    assert not subscriber.overflowed and told == []

    accepted = [subscriber.put_nowait(b"x" * size) for _ in range(3000)]  # the flood of the attack run
    assert not any(accepted)
    assert subscriber.overflowed and told == ["overflow"]  # told once
    assert subscriber.backlog == 1 and subscriber.backlog_bytes == 0  # only the end-of-stream mark
    assert [event async for event in subscriber.iter_events()] == []  # the stream has ended


async def test_channels_are_forgotten_when_their_last_subscriber_leaves(plugin: ChannelsPlugin) -> None:
    """Litestar keeps an entry for every channel ever subscribed; a region serves
    calls for months, four channels each."""
    for call in range(500):
        channels = [f"call:{call}", f"call:{call}:visitor"]
        first, second = await plugin.subscribe(channels), await plugin.subscribe(channels[:1])
        await plugin.unsubscribe(first, channels)
        await plugin.wait_published(b"still relayed", channels[:1])
        async with asyncio.timeout(5):
            async for event in second.iter_events():
                assert event == b"still relayed"
                break
        await plugin.unsubscribe(second, channels[:1])
    assert plugin._channels == {}
