"""The per-process ping timer: each socket's PING goes out one interval after it was
scheduled (at most one tick late), closed sockets get none, one task serves all; a
socket that does not answer its PING is closed for its ping timeout, and engine.io's
service task is replaced by a sweep that only forgets closed sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import engineio
from engineio import packet
from engineio.async_socket import AsyncSocket

from socket_layer.ping_wheel import PingWheel
from socket_layer.stopping import cancel_and_wait
from tests.support.waiting import wait_for


class FakeSocket:
    def __init__(self) -> None:
        self.closing = False
        self.closed = False
        self.last_ping: float | None = None
        self.sent: list[Any] = []
        self.pinged = asyncio.Event()

    async def send(self, pkt: Any) -> None:
        self.sent.append(pkt)
        self.pinged.set()


async def test_pings_go_out_one_interval_later_from_one_task() -> None:
    wheel = PingWheel(interval=0.3, tick=0.05)
    loop = asyncio.get_running_loop()
    sockets = [FakeSocket() for _ in range(200)]
    gone = FakeSocket()
    t0 = loop.time()
    for s in [*sockets, gone]:
        wheel.schedule(s)
    gone.closed = True
    tasks_before = len(asyncio.all_tasks())
    async with asyncio.timeout(5):
        await asyncio.gather(*(s.pinged.wait() for s in sockets))
    took = loop.time() - t0
    try:
        assert 0.3 <= took < 0.3 + 0.05 + 0.5, took
        assert all(len(s.sent) == 1 and s.sent[0].packet_type == packet.PING for s in sockets)
        assert all(s.last_ping is not None for s in sockets)
        assert gone.sent == [] and gone.last_ping is None
        assert len(asyncio.all_tasks()) <= tasks_before  # no task per socket
        assert wheel.pending() == 0
    finally:
        await wheel.stop()


# --- the ping timeout the wheel checks, and the sweep that replaces engine.io's service task


class AnsweringSocket(FakeSocket):
    """A FakeSocket with python-engineio's timeout check (it always answers in time)."""

    async def check_ping_timeout(self) -> bool:
        return True


async def test_a_socket_scheduled_while_the_wheel_waits_for_a_deadline_is_pinged_on_time() -> None:
    """The wheel also sleeps until ping-timeout deadlines, which lie further out than a
    new socket's (or an answered socket's) next PING: scheduling one must not wait for
    the deadline."""
    interval, tick, timeout = 0.2, 0.05, 2.0
    wheel = PingWheel(interval=interval, tick=tick, timeout=timeout)
    loop = asyncio.get_running_loop()
    first, second = AnsweringSocket(), AnsweringSocket()
    try:
        wheel.schedule(first)
        async with asyncio.timeout(5):
            await first.pinged.wait()  # the wheel now waits for first's deadline, 2 s on
            t0 = loop.time()
            wheel.schedule(second)
            await second.pinged.wait()
        took = loop.time() - t0
        assert interval <= took < interval + tick + 0.5, took
    finally:
        await wheel.stop()


async def test_a_socket_that_never_answers_is_closed_one_that_answers_is_not() -> None:
    """python-engineio's own sockets and check: the silent one is closed for its ping
    timeout, ``timeout`` (plus at most two ticks, plus slack) after its PING, and its
    transport woken with the closed marker; the one answering every PING (its PONG goes
    through engine.io's ``receive`` -> ``schedule_ping`` -> the wheel) gets its next
    PING an interval after each PONG (one, however many PONGs) and stays open past its
    timeout."""
    interval, timeout, tick = 0.2, 1.0, 0.05
    eio = engineio.AsyncServer(async_mode="asgi", ping_interval=interval, ping_timeout=timeout)
    eio.ping_wheel = wheel = PingWheel(interval, tick=tick, timeout=timeout)
    assert PingWheel.install(eio) is wheel
    reasons: dict[str, str] = {}
    closed = asyncio.Event()

    async def on_disconnect(sid: str, reason: str) -> None:
        reasons[sid] = reason
        closed.set()

    eio.on("disconnect", on_disconnect)
    loop = asyncio.get_running_loop()
    silent, alive = AsyncSocket(eio, "silent"), AsyncSocket(eio, "alive")
    eio.sockets.update(silent=silent, alive=alive)
    alive_pings: list[float] = []
    last_ping_after_pong: list[float | None] = []
    silent_pinged_at: float | None = None
    silent_got: list[Any] = []

    async def answer_every_ping() -> None:
        while True:
            pkt = await alive.queue.get()
            alive.queue.task_done()
            if pkt is not None and pkt.packet_type == packet.PING:
                alive_pings.append(loop.time())
                await alive.receive(packet.Packet(packet.PONG))
                last_ping_after_pong.append(alive.last_ping)
                # a second PONG for the same PING schedules nothing (engine.io's rule)
                await alive.receive(packet.Packet(packet.PONG))

    async def read_and_never_answer() -> None:
        nonlocal silent_pinged_at
        while True:
            pkt = await silent.queue.get()
            silent.queue.task_done()
            silent_got.append(pkt)
            if pkt is not None and pkt.packet_type == packet.PING and silent_pinged_at is None:
                silent_pinged_at = loop.time()

    readers = [
        asyncio.create_task(answer_every_ping()),
        asyncio.create_task(read_and_never_answer()),
    ]
    try:
        silent.schedule_ping()  # what engine.io does once a socket connected
        alive.schedule_ping()
        async with asyncio.timeout(5):
            await closed.wait()
        closed_at = loop.time()
        assert silent_pinged_at is not None
        waited = closed_at - silent_pinged_at
        assert timeout < waited <= timeout + 2 * tick + 0.3, waited
        assert reasons == {"silent": eio.reason.PING_TIMEOUT}
        assert silent.closed
        # its transport (a websocket's sink, a pending long-poll) is told: None
        await wait_for(lambda: silent_got[-1:] == [None], 2, "the closed marker")
        assert [p.packet_type for p in silent_got[:-1]] == [packet.PING]

        # the answering socket: past its own timeout, each PING an interval after a PONG
        await wait_for(lambda: len(alive_pings) >= 8, 5, "eight pings to the answering socket")
        assert alive_pings[-1] - alive_pings[0] > timeout
        gaps = [b - a for a, b in zip(alive_pings, alive_pings[1:], strict=False)]
        assert all(interval - 0.01 <= gap < interval + tick + 0.3 for gap in gaps), gaps
        assert set(last_ping_after_pong) == {None}  # the PONG ended the wait cycle
        assert not alive.closed and not alive.closing
        assert reasons == {"silent": eio.reason.PING_TIMEOUT}
    finally:
        await cancel_and_wait(*readers)
        await wheel.stop()


class SweptSocket:
    def __init__(self, sid: str, closed: bool) -> None:
        self.sid = sid
        self.closed = closed
        self.closing = False
        self.checks = 0

    async def check_ping_timeout(self) -> bool:
        self.checks += 1
        return True


async def test_install_replaces_the_service_task_with_the_sweep() -> None:
    """Installed, engine.io's service task (started as engine.io starts it) only
    forgets closed sockets, once per ping_timeout, checking no socket's ping itself
    (the wheel does); ``eio.shutdown()`` ends it."""
    eio = engineio.AsyncServer(async_mode="asgi", ping_interval=0.2, ping_timeout=0.3)
    wheel = PingWheel.install(eio)
    assert (wheel.interval, wheel.timeout) == (0.2, 0.3)
    gone, live = SweptSocket("gone", closed=True), SweptSocket("live", closed=False)
    eio.sockets.update(live=live, gone=gone)  # engine.io's own task would check live first
    # what engine.io's first handshake does (AsyncServer._handle_connect)
    eio.start_service_task = False
    eio.service_task_handle = handle = eio.start_background_task(eio._service_task)
    try:
        took = await wait_for(lambda: "gone" not in eio.sockets, 2, "the closed socket forgotten")
        assert took < 2 * 0.3
        assert eio.sockets == {"live": live}
        assert live.checks == 0 and gone.checks == 0  # engine.io's own task checks each one
        # waited for, not cancelled on a timeout (a cancel could be swallowed by the
        # sweep's wait_for and leave the test hanging instead of failing)
        shutdown = asyncio.create_task(eio.shutdown())
        done, _ = await asyncio.wait({shutdown}, timeout=2)
        assert shutdown in done, "eio.shutdown() did not end the sweep"
        assert handle.done() and eio.service_task_handle is None
    finally:
        handle.cancel()
        await wheel.stop()


async def test_a_short_interval_gets_ticks_a_tenth_of_it() -> None:
    """A ping is at most a tenth of an interval late: 0.5 s buckets stay for long
    intervals, short ones get finer buckets (0.5 s buckets on a 0.5 s interval let a ping
    go out up to twice as late)."""
    assert PingWheel(interval=25.0).tick == 0.5
    wheel = PingWheel(interval=0.4)
    assert wheel.tick == 0.04
    loop = asyncio.get_running_loop()
    sockets = [FakeSocket() for _ in range(20)]
    t0 = loop.time()
    for s in sockets:
        wheel.schedule(s)
    try:
        async with asyncio.timeout(5):
            await asyncio.gather(*(s.pinged.wait() for s in sockets))
        took = loop.time() - t0
        assert 0.4 <= took < 0.4 + 0.04 + 0.15, took
    finally:
        await wheel.stop()
