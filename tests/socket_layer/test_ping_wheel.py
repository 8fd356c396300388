"""The per-process ping timer: each socket's PING goes out one interval after it was
scheduled (at most one tick late), closed sockets get none, one task serves all."""

from __future__ import annotations

import asyncio
from typing import Any

from engineio import packet

from socket_layer.ping_wheel import PingWheel


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
