"""UserChannelManager's user-room subscriptions: the subscribes requested in one
event-loop iteration go out as one SUBSCRIBE (chunked), one timer per flushed batch
gives up on the unconfirmed ones, and enter_room returns only once its room's channel
is subscribed (or that wait expired).  Real Redis where Redis answers; a fake
connection where the test decides when (or whether) Redis confirms."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import asyncio as aioredis

from quart_app.core.redis_pools import PoolLimits, async_client
from socket_layer import user_channels
from socket_layer.user_channels import UserChannelManager
from tests.benchmarks.mass_disconnect import _Server
from tests.support.services import RedisServer
from tests.support.waiting import wait_for

N = 500


def _manager(url: str) -> UserChannelManager:
    """A manager on its own channel prefix (other tests' channels are never touched)."""
    manager = UserChannelManager(url, channel=f"rt-test-subscribe-{uuid.uuid4().hex[:10]}")
    manager.set_server(_Server())
    return manager


class _Spy:
    """Wraps the live subscriber connection: every command sent, every subscribe
    confirmation Redis sent back (recorded before the manager sees it)."""

    def __init__(self, manager: UserChannelManager) -> None:
        conn = manager._conn
        assert conn is not None
        self.commands: list[tuple[str, ...]] = []
        self.confirmed: set[str] = set()
        send, control = conn.command, conn.on_control

        def command(*args: str) -> None:
            self.commands.append(args)
            send(*args)

        def on_control(kind: str, channel: str) -> None:
            if kind == "subscribe":
                self.confirmed.add(channel)
            control(kind, channel)

        conn.command = command  # type: ignore[method-assign]
        conn.on_control = on_control

    def sent(self, name: str) -> list[tuple[str, ...]]:
        return [c for c in self.commands if c[0] == name]


@contextlib.asynccontextmanager
async def _listening(url: str) -> AsyncIterator[UserChannelManager]:
    """A manager whose listener holds its subscriptions (no python-socketio thread)."""
    manager = _manager(url)
    manager._listener = asyncio.ensure_future(manager._listen_forever())
    try:
        await asyncio.wait_for(manager.subscribed.wait(), 10)
        yield manager
    finally:
        await manager.close()


@contextlib.asynccontextmanager
async def _publisher(url: str) -> AsyncIterator[aioredis.Redis]:
    client = async_client(url, PoolLimits(size=20, timeout=10.0))
    try:
        yield client
    finally:
        await client.aclose()


def _record_deliveries(manager: UserChannelManager) -> list[tuple[str, str]]:
    delivered: list[tuple[str, str]] = []

    def deliver_packet(room: str, text: str) -> int:
        delivered.append((room, text))
        return 0

    manager.deliver_packet = deliver_packet  # type: ignore[method-assign]
    return delivered


async def _round_trip(manager: UserChannelManager) -> None:
    """Return once Redis processed every command sent before on the subscriber."""
    assert manager._conn is not None
    manager._pong.clear()
    manager._conn.command("PING")
    await asyncio.wait_for(manager._pong.wait(), 5)


def _subscribe_calls(port: int) -> int:
    import redis

    client = redis.Redis(port=port)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_subscribe", {}).get("calls", 0))


async def test_a_burst_of_first_sockets_is_one_subscribe_and_each_returns_once_confirmed(
    own_redis: RedisServer,
) -> None:
    async with _listening(own_redis.url) as manager, _publisher(own_redis.url) as pub:
        spy = _Spy(manager)
        delivered = _record_deliveries(manager)
        sids = [await manager.connect(f"e{i}", "/") for i in range(N)]
        calls_before = await asyncio.to_thread(_subscribe_calls, own_redis.port)
        timers_before = len(getattr(asyncio.get_running_loop(), "_scheduled", ()))
        early: list[str] = []
        receivers: list[int] = []

        async def connect(i: int, sid: str) -> None:
            room = f"user:{i}"
            await manager.enter_room(sid, "/", room)
            channel = f"{manager.channel}:{room}"
            if channel not in spy.confirmed:
                early.append(channel)
            receivers.append(await pub.publish(channel, f'42["hello",{{"i":{i}}}]'))

        tasks = [asyncio.ensure_future(connect(i, sid)) for i, sid in enumerate(sids)]
        await asyncio.sleep(0)  # every enter_room has asked; its batch is flushed now
        # asyncio's loop shows its timer heap (uvloop's does not)
        timers = len(getattr(asyncio.get_running_loop(), "_scheduled", ())) - timers_before
        await asyncio.wait_for(asyncio.gather(*tasks), 20)

        assert timers <= 2, f"{timers} timers for one batch of {N} enter_room"
        assert early == [], f"{len(early)} enter_room returned before Redis confirmed"
        subscribes = spy.sent("SUBSCRIBE")
        assert 1 <= len(subscribes) <= 2, f"{len(subscribes)} SUBSCRIBE commands for {N} rooms"
        assert sum(len(c) - 1 for c in subscribes) == N
        calls = await asyncio.to_thread(_subscribe_calls, own_redis.port) - calls_before
        assert calls == len(subscribes)
        # published right after each enter_room returned: Redis had the subscriber
        assert receivers == [1] * N
        await wait_for(lambda: len(delivered) == N, within=10, what="every message delivered")
        assert {room for room, _ in delivered} == {f"user:{i}" for i in range(N)}

        # the second socket of a user: nothing sent, nothing to wait for
        spy.commands.clear()
        other = await manager.connect("second", "/")
        await manager.enter_room(other, "/", "user:7")
        await asyncio.sleep(0)
        assert spy.commands == []


async def test_more_rooms_than_a_chunk_are_several_subscribes(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(user_channels, "SUBSCRIBE_CHUNK", 40)
    async with _listening(redis_url) as manager:
        spy = _Spy(manager)
        sids = [await manager.connect(f"e{i}", "/") for i in range(100)]
        await asyncio.wait_for(
            asyncio.gather(*(manager.enter_room(s, "/", f"user:{i}") for i, s in enumerate(sids))),
            10,
        )
        assert [len(c) - 1 for c in spy.sent("SUBSCRIBE")] == [40, 40, 20]


async def test_leave_then_join_of_one_room_in_one_tick_ends_subscribed(redis_url: str) -> None:
    async with _listening(redis_url) as manager, _publisher(redis_url) as pub:
        spy = _Spy(manager)
        a = await manager.connect("ea", "/")
        b = await manager.connect("eb", "/")
        await manager.enter_room(a, "/", "user:1")
        channel = f"{manager.channel}:user:1"
        assert spy.sent("SUBSCRIBE") == [("SUBSCRIBE", channel)]
        spy.commands.clear()

        # the last socket leaves (its UNSUBSCRIBE scheduled) and, in the same event-loop
        # iteration before the flush, another socket of that user joins
        asyncio.get_running_loop().call_soon(manager.basic_leave_room, a, "/", "user:1")
        await asyncio.wait_for(manager.enter_room(b, "/", "user:1"), 5)
        await _round_trip(manager)

        assert spy.sent("UNSUBSCRIBE") == []
        assert await pub.publish(channel, '42["still",{}]') == 1
        assert manager._subs.get(channel) is True


async def test_join_then_leave_in_one_tick_ends_unsubscribed_and_wakes_the_joiner(
    redis_url: str,
) -> None:
    async with _listening(redis_url) as manager, _publisher(redis_url) as pub:
        spy = _Spy(manager)
        a = await manager.connect("ea", "/")
        channel = f"{manager.channel}:user:2"
        entering = asyncio.ensure_future(manager.enter_room(a, "/", "user:2"))
        # its connect handler ends at once (the socket went away): in the same iteration
        asyncio.get_running_loop().call_soon(manager.basic_leave_room, a, "/", "user:2")
        await asyncio.wait_for(entering, 2)  # not the whole ROOM_SUBSCRIBE_WAIT_S
        await asyncio.sleep(0)
        await _round_trip(manager)
        assert spy.sent("SUBSCRIBE") == []
        assert await pub.publish(channel, '42["gone",{}]') == 0
        assert channel not in manager._subs


async def test_a_reconnect_resubscribes_every_local_room_in_a_handful_of_commands(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resyncs: list[str] = []

    async def fake_resync(server: Any, reason: str) -> None:
        resyncs.append(reason)

    monkeypatch.setattr(user_channels, "emit_resync", fake_resync)
    monkeypatch.setattr(user_channels, "RETRY_FIRST_S", 0.05)
    async with _listening(redis_url) as manager, _publisher(redis_url) as pub:
        delivered = _record_deliveries(manager)
        sids = [await manager.connect(f"e{i}", "/") for i in range(N)]
        await asyncio.gather(*(manager.enter_room(s, "/", f"user:{i}") for i, s in enumerate(sids)))
        old = manager._conn
        assert old is not None and old.transport is not None
        sent: list[tuple[str, ...]] = []
        original = user_channels.UserChannelManager._connect

        async def connect_and_spy(self: UserChannelManager) -> Any:
            conn = await original(self)
            send = conn.command

            def command(*args: str) -> None:
                sent.append(args)
                send(*args)

            conn.command = command  # type: ignore[method-assign]
            return conn

        monkeypatch.setattr(manager, "_connect", connect_and_spy.__get__(manager))
        manager.subscribed.clear()
        old.transport.abort()  # the connection is lost

        await wait_for(lambda: bool(resyncs), within=10, what="the reconnect's resync")
        assert manager.subscribed.is_set() and manager.listener_failures == 1
        subscribes = [c for c in sent if c[0] == "SUBSCRIBE"]
        assert 1 <= len(subscribes) <= 2
        channels = {ch for c in subscribes for ch in c[1:]}
        assert channels == {manager.channel} | {f"{manager.channel}:user:{i}" for i in range(N)}
        for i in (0, N // 2, N - 1):
            assert await pub.publish(f"{manager.channel}:user:{i}", '42["back",{}]') == 1
        await wait_for(lambda: len(delivered) == 3, within=5, what="delivery after reconnect")
        assert manager.listener_failures == 1


# ------------------------------------------------------------- a fake connection


class _FakeConn:
    """A subscriber connection that records commands and confirms nothing by itself."""

    def __init__(self) -> None:
        self.transport = object()
        self.commands: list[tuple[str, ...]] = []

    def command(self, *args: str) -> None:
        self.commands.append(args)


@pytest.fixture
def fake() -> tuple[UserChannelManager, _FakeConn]:
    manager = _manager("redis://127.0.0.1:1/0")  # never connected
    conn = _FakeConn()
    manager._conn = conn  # type: ignore[assignment]
    return manager, conn


async def test_unconfirmed_subscribes_return_after_the_wait_with_one_warning(
    fake: tuple[UserChannelManager, _FakeConn],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager, conn = fake
    monkeypatch.setattr(user_channels, "ROOM_SUBSCRIBE_WAIT_S", 0.3)
    sids = [await manager.connect(f"e{i}", "/") for i in range(20)]
    caplog.set_level(logging.WARNING, logger=user_channels.__name__)
    started = time.monotonic()
    entering = [
        asyncio.ensure_future(manager.enter_room(s, "/", f"user:{i}")) for i, s in enumerate(sids)
    ]
    await asyncio.sleep(0.1)
    assert not any(t.done() for t in entering)  # still waiting for Redis
    await asyncio.wait_for(asyncio.gather(*entering), 3)
    took = time.monotonic() - started

    assert 0.3 <= took < 2.0
    assert len(conn.commands) == 1 and conn.commands[0][0] == "SUBSCRIBE"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "20 of 20" in warnings[0]
    # a later request sends the SUBSCRIBE again (the channel was given up, not kept)
    late = asyncio.ensure_future(manager.enter_room(sids[0], "/", "user:0"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert conn.commands[-1] == ("SUBSCRIBE", f"{manager.channel}:user:0")
    manager._on_control("subscribe", f"{manager.channel}:user:0")
    await asyncio.wait_for(late, 1)


async def test_cancelling_one_waiter_leaves_the_others_waiting(
    fake: tuple[UserChannelManager, _FakeConn],
) -> None:
    manager, conn = fake
    sids = [await manager.connect(f"e{i}", "/") for i in range(3)]
    channel = f"{manager.channel}:user:9"
    waiting = [asyncio.ensure_future(manager.enter_room(s, "/", "user:9")) for s in sids]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert conn.commands == [("SUBSCRIBE", channel)]  # one for the three sockets
    waiting[0].cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert waiting[0].cancelled()
    assert not waiting[1].done() and not waiting[2].done()
    another = await manager.connect("e3", "/")
    waiting.append(asyncio.ensure_future(manager.enter_room(another, "/", "user:9")))
    await asyncio.sleep(0)
    assert conn.commands == [("SUBSCRIBE", channel)]  # in flight: not sent again

    manager._on_control("subscribe", channel)
    await asyncio.wait_for(asyncio.gather(*waiting[1:]), 1)
    assert all(t.done() and not t.cancelled() and t.exception() is None for t in waiting[1:])


async def test_a_resubscribe_waits_for_the_reply_to_its_own_subscribe(
    fake: tuple[UserChannelManager, _FakeConn],
) -> None:
    """Subscribe, unsubscribe, subscribe, all sent before Redis answered the first:
    the first reply must not return the second enter_room (Redis may have processed
    the UNSUBSCRIBE and not yet the second SUBSCRIBE)."""
    manager, conn = fake
    a = await manager.connect("ea", "/")
    b = await manager.connect("eb", "/")
    channel = f"{manager.channel}:user:5"
    first = asyncio.ensure_future(manager.enter_room(a, "/", "user:5"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    manager.basic_leave_room(a, "/", "user:5")
    await asyncio.sleep(0)
    second = asyncio.ensure_future(manager.enter_room(b, "/", "user:5"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert conn.commands == [
        ("SUBSCRIBE", channel),
        ("UNSUBSCRIBE", channel),
        ("SUBSCRIBE", channel),
    ]
    await asyncio.wait_for(first, 1)  # its room was left: nothing to wait for

    manager._on_control("subscribe", channel)  # the reply to the first SUBSCRIBE
    manager._on_control("unsubscribe", channel)
    await asyncio.sleep(0)
    assert not second.done()
    manager._on_control("subscribe", channel)  # the reply to the second
    await asyncio.wait_for(second, 1)
    assert manager._subs[channel] is True


async def test_without_a_connection_nothing_is_sent_and_nothing_waits() -> None:
    manager = _manager("redis://127.0.0.1:1/0")
    sid = await manager.connect("e0", "/")
    await asyncio.wait_for(manager.enter_room(sid, "/", "user:3"), 1)
    await asyncio.sleep(0)
    channel = f"{manager.channel}:user:3"
    assert manager._subs == {channel: False} and manager._to_subscribe == {}
    assert manager._local_room_channels() == [channel]  # what the reconnect subscribes
