"""LeanQueue (socket_layer/lean_queue.py) behaves as asyncio.Queue and holds nothing
while idle.

The semantic tests run once against ``asyncio.Queue`` and once against ``LeanQueue``:
the same assertions pass for both, so LeanQueue is asyncio.Queue as far as they see.
A randomised run of puts, gets, cancellations and ``task_done`` compares the two queues'
complete traces.  Then the LeanQueue-only part: an idle queue (never used, or used and
drained) holds no deque and no waiter list, and is a fraction of asyncio.Queue's size.

The tests step the event loop with ``asyncio.sleep(0)`` (one loop iteration, no timer):
with no I/O involved asyncio runs ready callbacks in FIFO order, so "let every task
run until it blocks" is deterministic.
"""

from __future__ import annotations

import asyncio
import gc
import random
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from socket_layer.lean_queue import LeanQueue

QueueFactory = Callable[..., Any]


@pytest.fixture(params=[asyncio.Queue, LeanQueue], ids=["asyncio.Queue", "LeanQueue"])
def make_queue(request: pytest.FixtureRequest) -> QueueFactory:
    factory: QueueFactory = request.param
    return factory


async def settle(rounds: int = 5) -> None:
    """Run every ready task until it blocks (a few loop iterations, no timer)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def cancel_all(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------- the same behaviour


async def test_fifo(make_queue: QueueFactory) -> None:
    q = make_queue()
    for item in range(5):
        q.put_nowait(item)
    for item in range(5, 10):
        await q.put(item)
    assert [q.get_nowait() for _ in range(3)] == [0, 1, 2]
    assert [await q.get() for _ in range(7)] == [3, 4, 5, 6, 7, 8, 9]
    assert q.empty()


async def test_get_waits_for_a_put(make_queue: QueueFactory) -> None:
    q = make_queue()
    getter = asyncio.create_task(q.get())
    await settle()
    assert not getter.done()
    q.put_nowait("item")
    assert await asyncio.wait_for(getter, 5) == "item"
    assert q.empty()


async def test_getters_are_served_in_the_order_they_came(make_queue: QueueFactory) -> None:
    q = make_queue()
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await settle()
    for item in "abc":
        q.put_nowait(item)
    assert await asyncio.gather(*getters) == ["a", "b", "c"]


async def test_put_waits_while_full_and_resumes_when_one_is_taken(
    make_queue: QueueFactory,
) -> None:
    q = make_queue(maxsize=2)
    assert q.maxsize == 2
    await q.put("a")
    q.put_nowait("b")
    assert q.full()
    putter = asyncio.create_task(q.put("c"))
    await settle()
    assert not putter.done()
    assert q.qsize() == 2
    assert await q.get() == "a"
    await asyncio.wait_for(putter, 5)
    assert q.qsize() == 2 and q.full()
    assert [q.get_nowait(), q.get_nowait()] == ["b", "c"]


async def test_putters_resume_in_the_order_they_came(make_queue: QueueFactory) -> None:
    q = make_queue(maxsize=1)
    q.put_nowait(0)
    putters = [asyncio.create_task(q.put(item)) for item in (1, 2, 3)]
    await settle()
    taken = []
    for _ in range(4):
        taken.append(await asyncio.wait_for(q.get(), 5))
        await settle()
    assert taken == [0, 1, 2, 3]
    assert all(p.done() for p in putters)


async def test_a_cancelled_getter_loses_no_item(make_queue: QueueFactory) -> None:
    q = make_queue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await settle()
    first.cancel()
    await settle()
    assert first.cancelled()
    q.put_nowait("item")
    assert await asyncio.wait_for(second, 5) == "item"


async def test_a_getter_woken_then_cancelled_passes_its_wake_up_on(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await settle()
    q.put_nowait("item")  # resolves first's waiter ...
    first.cancel()  # ... and first is cancelled before it runs
    await settle()
    assert first.cancelled()
    assert second.done(), "the wake-up went down with the cancelled getter"
    assert second.result() == "item"
    assert q.empty()


async def test_a_getter_woken_then_cancelled_leaves_the_item(make_queue: QueueFactory) -> None:
    q = make_queue()
    only = asyncio.create_task(q.get())
    await settle()
    q.put_nowait("item")
    only.cancel()
    await settle()
    assert only.cancelled()
    assert q.qsize() == 1 and q.get_nowait() == "item"


async def test_a_getter_cancelled_before_its_wake_up_wakes_no_one_else(
    make_queue: QueueFactory,
) -> None:
    """asyncio.Queue passes a wake-up on only when the cancelled getter had received
    one: a getter cancelled while still waiting must not wake the next in line, which
    would then find nothing and queue again behind those that came after it."""
    q = make_queue()
    getters = [asyncio.create_task(q.get(), name=f"g{i}") for i in range(4)]
    await settle()
    getters[1].cancel()  # still waiting: its waiter is cancelled, its step scheduled
    q.put_nowait("x")  # wakes g0
    await settle()
    assert getters[0].result() == "x" and getters[1].cancelled()
    q.put_nowait("y")
    q.put_nowait("z")
    await settle()
    assert [getters[2].result(), getters[3].result()] == ["y", "z"]


async def test_a_cancelled_putter_loses_no_wake_up(make_queue: QueueFactory) -> None:
    q = make_queue(maxsize=1)
    q.put_nowait("a")
    first = asyncio.create_task(q.put("b"))
    second = asyncio.create_task(q.put("c"))
    await settle()
    first.cancel()
    await settle()
    assert first.cancelled()
    assert q.get_nowait() == "a"
    await asyncio.wait_for(second, 5)
    assert q.get_nowait() == "c" and q.empty()


async def test_a_putter_woken_then_cancelled_passes_its_wake_up_on(
    make_queue: QueueFactory,
) -> None:
    q = make_queue(maxsize=1)
    q.put_nowait("a")
    first = asyncio.create_task(q.put("b"))
    second = asyncio.create_task(q.put("c"))
    await settle()
    assert q.get_nowait() == "a"  # resolves first's waiter ...
    first.cancel()  # ... and first is cancelled before it runs
    await settle()
    assert first.cancelled()
    assert second.done(), "the wake-up went down with the cancelled putter"
    assert q.qsize() == 1 and q.get_nowait() == "c"


async def test_a_putter_cancelled_before_its_wake_up_wakes_no_one_else(
    make_queue: QueueFactory,
) -> None:
    q = make_queue(maxsize=1)
    q.put_nowait(0)
    putters = [asyncio.create_task(q.put(item), name=f"p{item}") for item in (1, 2, 3, 4)]
    await settle()
    putters[1].cancel()  # still waiting
    assert q.get_nowait() == 0  # wakes p1
    await settle()
    assert putters[0].done() and putters[1].cancelled()
    taken = []
    for _ in range(3):
        taken.append(q.get_nowait())
        await settle()
    assert taken == [1, 3, 4]


async def test_nowait_raises_when_empty_or_full(make_queue: QueueFactory) -> None:
    q = make_queue(maxsize=1)
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    q.put_nowait(1)
    with pytest.raises(asyncio.QueueFull):
        q.put_nowait(2)
    assert q.get_nowait() == 1
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    unbounded = make_queue()
    for item in range(1000):
        unbounded.put_nowait(item)
    assert not unbounded.full() and unbounded.qsize() == 1000


async def test_join_waits_for_every_task_done(make_queue: QueueFactory) -> None:
    q = make_queue()
    await asyncio.wait_for(q.join(), 5)  # nothing unfinished: returns at once
    q.put_nowait("a")
    q.put_nowait("b")
    joiners = [asyncio.create_task(q.join()) for _ in range(2)]
    q.get_nowait()
    q.get_nowait()
    await settle()
    assert not any(j.done() for j in joiners), "join returned with tasks not done"
    q.task_done()
    await settle()
    assert not any(j.done() for j in joiners)
    q.task_done()
    await asyncio.wait_for(asyncio.gather(*joiners), 5)
    with pytest.raises(ValueError, match="task_done"):
        q.task_done()
    await asyncio.wait_for(q.join(), 5)


async def test_a_cancelled_joiner_leaves_the_others_waiting(make_queue: QueueFactory) -> None:
    q = make_queue()
    q.put_nowait("a")
    gone = asyncio.create_task(q.join())
    stays = asyncio.create_task(q.join())
    await settle()
    await cancel_all(gone)
    q.get_nowait()
    q.task_done()
    await asyncio.wait_for(stays, 5)


async def test_qsize_empty_full(make_queue: QueueFactory) -> None:
    q = make_queue(maxsize=2)
    assert (q.qsize(), q.empty(), q.full()) == (0, True, False)
    q.put_nowait(1)
    assert (q.qsize(), q.empty(), q.full()) == (1, False, False)
    q.put_nowait(2)
    assert (q.qsize(), q.empty(), q.full()) == (2, False, True)
    q.get_nowait()
    q.get_nowait()
    assert (q.qsize(), q.empty(), q.full()) == (0, True, False)
    unbounded = make_queue()
    assert unbounded.maxsize == 0 and not unbounded.full()


async def _random_run(factory: QueueFactory, seed: int) -> list[Any]:
    """A random interleaving of puts, gets, nowait calls, cancellations (of waiting and
    of woken tasks), task_done and joins; returns everything observable, in order."""
    rnd = random.Random(seed)
    q = factory(maxsize=rnd.choice([0, 1, 2, 3]))
    trace: list[Any] = []
    tasks: list[tuple[str, asyncio.Task[Any]]] = []
    for step in range(120):
        op = rnd.random()
        if op < 0.25:
            tasks.append((f"get{step}", asyncio.create_task(q.get())))
        elif op < 0.45:
            tasks.append((f"put{step}", asyncio.create_task(q.put(step))))
        elif op < 0.55:
            try:
                q.put_nowait(step)
                trace.append(("put_nowait", step))
            except asyncio.QueueFull:
                trace.append(("put_nowait", "full"))
        elif op < 0.65:
            try:
                trace.append(("get_nowait", q.get_nowait()))
            except asyncio.QueueEmpty:
                trace.append(("get_nowait", "empty"))
        elif op < 0.8 and tasks:
            name, task = rnd.choice(tasks)
            trace.append(("cancel", name, task.cancel()))
        elif op < 0.88:
            try:
                q.task_done()
                trace.append(("task_done", True))
            except ValueError:
                trace.append(("task_done", False))
        elif op < 0.92:
            tasks.append((f"join{step}", asyncio.create_task(q.join())))
        for _ in range(rnd.choice([0, 0, 1, 2])):
            await asyncio.sleep(0)
        trace.append(("state", q.qsize(), q.empty(), q.full()))
        trace.append(("done", sorted(name for name, t in tasks if t.done())))
    await settle()
    for name, task in tasks:
        if task.cancelled():
            trace.append((name, "cancelled"))
        elif task.done():
            trace.append((name, "result", task.result()))
        else:
            trace.append((name, "pending"))
    await cancel_all(*(task for _, task in tasks))
    remaining = []
    while not q.empty():
        remaining.append(q.get_nowait())
    trace.append(("remaining", remaining))
    return trace


@pytest.mark.parametrize("seed", range(60))
async def test_random_runs_trace_the_same_as_asyncio_queue(seed: int) -> None:
    expected = await _random_run(asyncio.Queue, seed)
    got = await _random_run(LeanQueue, seed)
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"seed {seed}: first difference at trace entry {index}"


# ------------------------------------------------------ LeanQueue only: idle = empty


def assert_idle(q: LeanQueue) -> None:
    assert q._items is None, "an idle LeanQueue keeps its deque"
    assert q._getters is None, "an idle LeanQueue keeps a getter list"
    assert q._putters is None, "an idle LeanQueue keeps a putter list"
    assert q._joiners is None, "an idle LeanQueue keeps a joiner list"


async def test_a_new_queue_holds_nothing() -> None:
    assert_idle(LeanQueue())
    assert_idle(LeanQueue(10))


async def test_a_drained_queue_holds_nothing() -> None:
    q = LeanQueue(maxsize=1)
    getter = asyncio.create_task(q.get())
    await settle()
    await q.put("a")  # to the waiting getter
    assert await asyncio.wait_for(getter, 5) == "a"
    q.task_done()
    q.put_nowait("b")
    putter = asyncio.create_task(q.put("c"))  # waits: full
    await settle()
    assert q.get_nowait() == "b"
    await asyncio.wait_for(putter, 5)
    joiner = asyncio.create_task(q.join())
    await settle()
    assert q.get_nowait() == "c"
    q.task_done()
    q.task_done()
    await asyncio.wait_for(joiner, 5)
    assert_idle(q)


async def test_a_queue_whose_waiters_were_cancelled_holds_nothing() -> None:
    q = LeanQueue(maxsize=1)
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await settle()
    q.put_nowait("a")
    getters[0].cancel()  # woken, then cancelled: passes the item to getters[1]
    await cancel_all(getters[2])
    await settle()
    assert getters[1].result() == "a"
    q.task_done()
    q.put_nowait("b")
    putters = [asyncio.create_task(q.put(n)) for n in range(2)]
    joiner = asyncio.create_task(q.join())
    await settle()
    await cancel_all(*putters, joiner)
    q.get_nowait()
    q.task_done()
    assert_idle(q)


def _idle_bytes(factory: QueueFactory, count: int, *, used: bool) -> float:
    """Bytes per queue that ``count`` live idle queues hold (``used``: each put to,
    read from and drained first), measured with tracemalloc."""
    loop = asyncio.new_event_loop()
    try:

        async def use(q: Any) -> None:
            getter = asyncio.create_task(q.get())
            await asyncio.sleep(0)
            await q.put(1)
            await getter
            q.put_nowait(2)
            q.get_nowait()

        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            queues = [factory(10) for _ in range(count)]
            if used:
                for q in queues:
                    loop.run_until_complete(use(q))
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(queues) == count
        return held / count
    finally:
        loop.close()


@pytest.mark.parametrize("used", [False, True], ids=["never-used", "drained"])
def test_an_idle_lean_queue_is_a_fraction_of_an_asyncio_queue(used: bool) -> None:
    stock = _idle_bytes(asyncio.Queue, 500, used=used)
    lean = _idle_bytes(LeanQueue, 500, used=used)
    print(
        f"\nidle queue ({'drained' if used else 'new'}): asyncio.Queue {stock:.0f} B, "
        f"LeanQueue {lean:.0f} B"
    )
    assert stock > 1500  # what it is measured against: 3 deques and an Event
    assert lean * 10 < stock, (stock, lean)
