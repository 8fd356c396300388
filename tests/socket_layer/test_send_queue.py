"""SendQueue (socket_layer/send_buffer.py): what python-engineio expects of an
asyncio.Queue, and its websocket sink mode (a packet written straight to the transport
when nothing waits before it, else queued and handed to the sink in order by a flush
task; ``None`` closes the sink after what was queued before it), with the byte count
and the bound kept right in both modes.

The asyncio.Queue semantics run against asyncio.Queue itself too: the reference."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from engineio import packet

from socket_layer.send_buffer import SendQueue, packet_bytes, text_frame
from tests.support.builders import bounded_eio_socket
from tests.support.waiting import wait_for

LIMIT = 1 << 20


def msg(data: str | bytes) -> packet.Packet:
    return packet.Packet(packet.MESSAGE, data=data)


def frame_text(frame: bytes) -> str:
    """The text of a final, unmasked server-to-client text frame (RFC 6455 5.2)."""
    assert frame[0] == 0x81, frame[:2]
    n = frame[1]
    assert n & 0x80 == 0, "server frames are not masked"
    head = 2
    if n == 126:
        n, head = int.from_bytes(frame[2:4], "big"), 4
    elif n == 127:
        n, head = int.from_bytes(frame[2:10], "big"), 10
    payload = frame[head:]
    assert len(payload) == n, (len(payload), n)
    return payload.decode()


class FakeSink:
    """A websocket as the queue sees it, recording, in one timeline, what reached it:
    ``("frame", text)`` for a direct write, ``("send", message)`` for a send,
    ``("close", None)``.  ``direct = False`` refuses direct writes (something in
    flight); ``hold()`` keeps every send open until ``release()``.  It is the
    queue's writer too (its held sends count in the backlog)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.direct = True
        self.sending = asyncio.Event()
        self.closed = asyncio.Event()
        self.aborted = False
        self.in_flight_bytes = 0
        self._gate: asyncio.Event | None = None

    def hold(self) -> None:
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
        self._gate = None

    def try_write_frame(self, frame: bytes) -> bool:
        if not self.direct:
            return False
        self.log.append(("frame", frame_text(frame)))
        return True

    async def send(self, message: Any) -> None:
        self.log.append(("send", message))
        self.in_flight_bytes += len(message)
        self.sending.set()
        try:
            if self._gate is not None:
                await self._gate.wait()
        finally:
            self.in_flight_bytes -= len(message)

    async def close(self) -> None:
        self.log.append(("close", None))
        self.closed.set()

    def unread_bytes(self) -> int:
        return self.in_flight_bytes

    def abort(self) -> None:
        self.aborted = True


def send_queue() -> SendQueue:
    return SendQueue(SimpleNamespace(sockets={}), LIMIT)


def texts(log: list[tuple[str, Any]]) -> list[Any]:
    """What reached the sink, in order, whichever way (a direct frame or a send)."""
    return [data for kind, data in log if kind != "close"]


async def flushed(queue: SendQueue) -> None:
    """Until nothing is queued and no flush task runs (join: every item done)."""
    async with asyncio.timeout(2):
        await queue.join()
    await wait_for(lambda: queue._flusher is None, 2, "the flush task to end")


# --- asyncio.Queue's semantics: SendQueue and, as the reference, asyncio.Queue ---------

QUEUES: list[Callable[[], Any]] = [send_queue, asyncio.Queue]
QUEUE_IDS = ["SendQueue", "asyncio.Queue"]


@pytest.fixture(params=QUEUES, ids=QUEUE_IDS)
def make_queue(request: pytest.FixtureRequest) -> Callable[[], Any]:
    factory: Callable[[], Any] = request.param
    return factory


async def test_fifo_and_sizes(make_queue: Callable[[], Any]) -> None:
    q = make_queue()
    assert q.empty() and q.qsize() == 0 and not q.full()
    items = [msg(f"m{i}") for i in range(5)]
    for item in items[:3]:
        q.put_nowait(item)
    for item in items[3:]:
        await q.put(item)
    q.put_nowait(None)  # engine.io's closed marker is an item like any other
    assert q.qsize() == 6 and not q.empty()
    got = [q.get_nowait() for _ in range(5)] + [await q.get()]
    assert got == [*items, None]
    assert q.empty() and q.qsize() == 0


async def test_get_nowait_on_an_empty_queue_raises_queue_empty(
    make_queue: Callable[[], Any],
) -> None:
    q = make_queue()
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    q.put_nowait(msg("a"))
    q.get_nowait()
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()


async def test_get_waits_for_a_put(make_queue: Callable[[], Any]) -> None:
    q = make_queue()
    getter = asyncio.create_task(q.get())
    for _ in range(3):
        await asyncio.sleep(0)
    assert not getter.done()
    item = msg("late")
    q.put_nowait(item)
    async with asyncio.timeout(2):
        assert await getter is item


async def test_getters_are_served_in_order(make_queue: Callable[[], Any]) -> None:
    q = make_queue()
    first, second = asyncio.create_task(q.get()), asyncio.create_task(q.get())
    await asyncio.sleep(0)
    a, b = msg("a"), msg("b")
    q.put_nowait(a)
    q.put_nowait(b)
    async with asyncio.timeout(2):
        assert (await first, await second) == (a, b)


async def test_a_getter_woken_then_cancelled_leaves_the_item_for_the_next(
    make_queue: Callable[[], Any],
) -> None:
    q = make_queue()
    first, second = asyncio.create_task(q.get()), asyncio.create_task(q.get())
    await asyncio.sleep(0)  # both wait
    item = msg("only")
    q.put_nowait(item)  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it could take the item
    async with asyncio.timeout(2):
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await second is item
    assert q.empty()


async def test_a_waiting_getter_cancelled_is_forgotten(make_queue: Callable[[], Any]) -> None:
    q = make_queue()
    gone = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    later = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    item = msg("x")
    q.put_nowait(item)
    async with asyncio.timeout(2):
        assert await later is item


async def test_join_returns_only_once_every_item_is_done(make_queue: Callable[[], Any]) -> None:
    q = make_queue()
    async with asyncio.timeout(1):
        await q.join()  # nothing put: at once
    for i in range(3):
        q.put_nowait(msg(str(i)))
    joiners = [asyncio.create_task(q.join()) for _ in range(2)]
    for _ in range(3):
        q.get_nowait()
    for _ in range(2):
        q.task_done()
        await asyncio.sleep(0)
        assert not any(j.done() for j in joiners)  # got but not all marked done
    q.task_done()
    async with asyncio.timeout(2):
        await asyncio.gather(*joiners)


async def test_task_done_too_often_raises_value_error(make_queue: Callable[[], Any]) -> None:
    q = make_queue()
    with pytest.raises(ValueError):
        q.task_done()
    q.put_nowait(msg("a"))
    q.get_nowait()
    q.task_done()
    with pytest.raises(ValueError):
        q.task_done()


async def test_engineio_poll_over_a_send_queue() -> None:
    """python-engineio's own long-polling read (AsyncSocket.poll: a ``get`` under
    ``wait_for``, then ``get_nowait`` until empty, ``None`` put back) works unchanged."""
    eio, sock, _ = bounded_eio_socket(LIMIT)
    poll = asyncio.create_task(sock.poll())
    await asyncio.sleep(0)
    a, b = msg("a"), msg("b")
    await sock.send(a)
    await sock.send(b)
    sock.queue.put_nowait(None)
    async with asyncio.timeout(2):
        assert await poll == [a, b]
        assert await sock.poll() == []  # the closed marker, left for the next poll
        await sock.queue.join()


# --- the byte count ----------------------------------------------------------------------


async def test_queued_bytes_count_what_is_queued_only() -> None:
    q = send_queue()
    a, b = msg("x" * 10), msg(b"\x00\x01\x02")
    q.put_nowait(a)
    q.put_nowait(None)  # counts nothing
    q.put_nowait(b)
    assert q.queued_bytes == packet_bytes(a) + packet_bytes(b) == 11 + 4
    assert q.get_nowait() is a
    assert q.queued_bytes == 4
    assert q.get_nowait() is None
    assert q.queued_bytes == 4
    q.get_nowait()
    assert q.queued_bytes == 0 and q.backlog() == 0


async def test_queued_bytes_through_direct_writes_and_flushes() -> None:
    q, sink = send_queue(), FakeSink()
    q.attach(sink)
    q.put_nowait(msg("direct"))  # written at once: never counted
    assert q.queued_bytes == 0
    sink.direct = False
    sink.hold()
    q.put_nowait(msg("a" * 100))  # queued; the flush takes it into a held send
    q.put_nowait(msg("b" * 50))
    assert q.queued_bytes == 101 + 51
    async with asyncio.timeout(2):
        await sink.sending.wait()
    assert q.queued_bytes == 51  # the one being sent left the queue
    sink.release()
    await flushed(q)
    assert q.queued_bytes == 0


# --- the websocket sink ------------------------------------------------------------------


async def test_a_packet_put_while_idle_is_written_straight_to_the_transport() -> None:
    q, sink = send_queue(), FakeSink()
    q.attach(sink)
    tasks_before = len(asyncio.all_tasks())
    for i in range(3):
        q.put_nowait(msg(f"m{i}"))
    await q.put(packet.Packet(packet.PING))
    assert sink.log == [("frame", "4m0"), ("frame", "4m1"), ("frame", "4m2"), ("frame", "2")]
    assert q.qsize() == 0 and q.queued_bytes == 0
    assert len(asyncio.all_tasks()) == tasks_before  # no flush task for a direct write
    async with asyncio.timeout(1):
        await q.join()  # direct writes leave nothing unfinished


async def test_refused_direct_writes_are_queued_and_flushed_in_order() -> None:
    q, sink = send_queue(), FakeSink()
    q.attach(sink)
    sink.direct = False
    for i in range(4):
        q.put_nowait(msg(f"m{i}"))
    assert q.qsize() == 4  # nothing written synchronously
    await flushed(q)
    assert sink.log == [("send", f"4m{i}") for i in range(4)]


async def test_a_packet_put_during_a_held_send_comes_after_it() -> None:
    q, sink = send_queue(), FakeSink()
    q.attach(sink)
    sink.direct = False
    sink.hold()
    q.put_nowait(msg("first"))
    async with asyncio.timeout(2):
        await sink.sending.wait()
    assert q.qsize() == 0  # the flush took it: the queue looks empty...
    sink.direct = True  # ...and the transport would take a direct write now
    q.put_nowait(msg("second"))
    q.put_nowait(msg("third"))
    assert sink.log == [("send", "4first")]  # neither overtook the send in flight
    sink.release()
    await flushed(q)
    assert sink.log == [("send", "4first"), ("send", "4second"), ("send", "4third")]
    q.put_nowait(msg("idle again"))  # flush over: straight to the transport again
    assert sink.log[-1] == ("frame", "4idle again")


async def test_none_closes_the_sink_after_the_packets_before_it() -> None:
    q, sink = send_queue(), FakeSink()
    q.attach(sink)
    sink.direct = False
    sink.hold()
    q.put_nowait(msg("a"))
    q.put_nowait(msg("b"))
    q.put_nowait(None)
    async with asyncio.timeout(2):
        await sink.sending.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not sink.closed.is_set()  # "a" is still being sent
    sink.release()
    async with asyncio.timeout(2):
        await sink.closed.wait()
    await flushed(q)
    assert sink.log == [("send", "4a"), ("send", "4b"), ("close", None)]
    q.put_nowait(msg("after the close"))  # not written: the sink is done
    assert sink.log[-1] == ("close", None) and q.qsize() == 1


async def test_none_on_an_idle_sink_closes_it() -> None:
    q, sink = send_queue(), FakeSink()
    q.attach(sink)
    q.put_nowait(None)
    async with asyncio.timeout(2):
        await sink.closed.wait()
    assert sink.log == [("close", None)]


async def test_packets_queued_before_attach_are_flushed_first() -> None:
    q, sink = send_queue(), FakeSink()
    q.put_nowait(msg("early1"))  # long-polling days: nothing to write to
    q.put_nowait(msg("early2"))
    q.attach(sink)
    q.put_nowait(msg("late"))  # the transport is idle, but two packets are before it
    await flushed(q)
    assert texts(sink.log) == ["4early1", "4early2", "4late"]


async def test_packets_queued_before_attach_stay_first_behind_a_held_send() -> None:
    q, sink = send_queue(), FakeSink()
    q.put_nowait(msg("early1"))
    q.put_nowait(msg("early2"))
    sink.direct = False
    sink.hold()
    q.attach(sink)
    async with asyncio.timeout(2):
        await sink.sending.wait()  # early1 held in the transport
    sink.direct = True
    q.put_nowait(msg("late"))
    sink.release()
    await flushed(q)
    assert sink.log == [("send", "4early1"), ("send", "4early2"), ("send", "4late")]


async def test_attach_alone_flushes_what_was_queued() -> None:
    q, sink = send_queue(), FakeSink()
    q.put_nowait(msg("early"))
    q.put_nowait(None)  # closed while on long-polling: the websocket closes after it
    q.attach(sink)
    await flushed(q)
    assert texts(sink.log) == ["4early"] and sink.log[-1] == ("close", None)


async def test_binary_packets_go_through_send_in_order() -> None:
    q, sink = send_queue(), FakeSink()
    q.attach(sink)
    q.put_nowait(msg("text"))
    q.put_nowait(msg(b"\x01\x02"))  # no text frame for it: queued, sent as bytes
    q.put_nowait(msg("after"))  # behind the binary one
    await flushed(q)
    assert sink.log == [("frame", "4text"), ("send", b"\x01\x02"), ("send", "4after")]


async def test_detach_stops_writing() -> None:
    q, sink = send_queue(), FakeSink()
    q.attach(sink)
    q.put_nowait(msg("a"))
    assert q.detach() is None  # no flush in progress
    late = msg("b")
    q.put_nowait(late)
    for _ in range(5):
        await asyncio.sleep(0)
    assert sink.log == [("frame", "4a")]
    assert q.qsize() == 1 and q.get_nowait() is late  # left for whoever reads next


async def test_detach_returns_the_flush_in_progress() -> None:
    q, sink = send_queue(), FakeSink()
    q.attach(sink)
    sink.direct = False
    sink.hold()
    q.put_nowait(msg("a"))
    q.put_nowait(msg("b"))
    async with asyncio.timeout(2):
        await sink.sending.wait()
    flush = q.detach()
    assert flush is not None and not flush.done()
    sink.release()
    async with asyncio.timeout(2):
        await flush  # ends after "a": "b" is not written to a detached sink
    assert sink.log == [("send", "4a")]
    assert q.qsize() == 1 and q.queued_bytes == 2


async def test_a_failed_send_stops_the_flush() -> None:
    q, sink = send_queue(), FakeSink()

    async def broken(message: Any) -> None:
        sink.log.append(("send", message))
        raise OSError("connection reset")

    sink.send = broken  # type: ignore[method-assign]
    sink.direct = False
    q.attach(sink)
    q.put_nowait(msg("a"))
    q.put_nowait(msg("b"))
    await wait_for(lambda: q._flusher is None, 2, "the flush to end")
    assert sink.log == [("send", "4a")]  # "b" not tried on a broken connection
    assert q.qsize() == 1


# --- the bound ---------------------------------------------------------------------------


async def test_the_bound_counts_a_held_send_and_closes_the_socket() -> None:
    """In sink mode the backlog is the queue plus the websocket's share (a send held
    in the transport's drain): a packet finding more than the bound waiting closes the
    session, aborts the connection and frees the queue."""
    eio, sock, queue = bounded_eio_socket(100)
    sink = FakeSink()
    queue.writer = sink
    queue.attach(sink)
    sink.direct = False
    sink.hold()
    await sock.send(msg("x" * 150))  # nothing waits: passes although larger than the bound
    async with asyncio.timeout(2):
        await sink.sending.wait()
    assert queue.queued_bytes == 0 and queue.backlog() == 151  # held in the transport
    await sock.send(msg("y"))
    assert queue.overflowed and sink.aborted
    assert queue.qsize() == 0 and queue.queued_bytes == 0
    await wait_for(lambda: "s1" not in eio.sockets, 2, "the session to be aborted")
    assert sock.closed
    sink.release()
    queue.put_nowait(msg("z"))  # refused for good
    await wait_for(lambda: sink.closed.is_set(), 2, "the abort's closed marker to close it")
    assert queue.qsize() == 0
    assert [entry for entry in sink.log if entry[0] == "send"] == [("send", "4" + "x" * 150)]


def test_text_frame_lengths() -> None:
    for n in (0, 125, 126, 65535, 65536):
        text = "a" * n
        frame = text_frame(text)
        assert frame_text(frame) == text
        assert len(frame) - n == (2 if n < 126 else 4 if n < 65536 else 10)
