"""Mass disconnect inside a client manager: N sockets (5 per user room) disconnected
one after another, as python-socketio does when they all close at once.  Stock
``socketio.AsyncManager`` (its ``basic_disconnect`` scans every room per disconnect)
against the same manager with :class:`socket_layer.room_index.RoomIndex` mixed in.

``python -m tests.benchmarks.mass_disconnect [--sizes 5000,10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

import socketio

from socket_layer.room_index import RoomIndex
from tests.benchmarks.common import print_table

PER_USER = 5


class _Eio:
    def __init__(self) -> None:
        self._ids = itertools.count()

    def generate_id(self) -> str:
        return f"s{next(self._ids)}"


class _Server:
    packet_class = socketio.packet.Packet

    def __init__(self) -> None:
        self.eio = _Eio()


class IndexedManager(RoomIndex, socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's manager with the per-socket room index."""


async def measure(manager_cls: type[Any], n: int) -> dict[str, Any]:
    """Connect ``n`` sockets, then time their disconnects (all pending at once, as when
    every transport closes in the same moment)."""
    manager = manager_cls()
    manager.set_server(_Server())
    sids = []
    for i in range(n):
        sid = await manager.connect(f"e{i}", "/")
        await manager.enter_room(sid, "/", f"user:{i // PER_USER}")
        sids.append(sid)
    t0 = time.perf_counter()
    for sid in sids:
        manager.pre_disconnect(sid, "/")
    for sid in sids:
        await manager.disconnect(sid, "/")
    took = time.perf_counter() - t0
    assert not manager.rooms.get("/"), "rooms left behind"
    return {
        "sockets": n,
        "disconnect_all_s": round(took, 3),
        "per_socket_us": round(took / n * 1e6, 1),
    }


async def run(sizes: list[int]) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for name, cls in (("stock", socketio.AsyncManager), ("room-index", IndexedManager)):
        rows = [await measure(cls, n) for n in sizes]
        results[name] = rows
        print_table(f"mass disconnect in the client manager: {name}", rows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[5000, 10000]
    )
    args = parser.parse_args()
    asyncio.run(run(args.sizes))


if __name__ == "__main__":
    main()
