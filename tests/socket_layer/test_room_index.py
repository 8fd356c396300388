"""The per-socket room index: the same membership answers as python-socketio's own
manager, a disconnect leaves exactly that socket's rooms (through basic_leave_room, so a
user room's channel is unsubscribed), and it costs O(rooms of the socket)."""

from __future__ import annotations

import socketio

from tests.benchmarks.mass_disconnect import IndexedManager, _Server, measure


async def _populated(cls: type) -> tuple[socketio.AsyncManager, list[str]]:
    manager = cls()
    manager.set_server(_Server())
    sids = []
    for i in range(12):
        sid = await manager.connect(f"e{i}", "/")
        await manager.enter_room(sid, "/", f"user:{i // 5}")
        if i % 3 == 0:
            await manager.enter_room(sid, "/", "extra")
        sids.append(sid)
    await manager.leave_room(sids[3], "/", "extra")
    return manager, sids


async def test_membership_matches_python_socketio_before_and_after_disconnects() -> None:
    stock, sids = await _populated(socketio.AsyncManager)
    indexed, same = await _populated(IndexedManager)
    assert sids == same
    for sid in sids:
        assert sorted(indexed.get_rooms(sid, "/")) == sorted(stock.get_rooms(sid, "/"))
    for sid in sids[:7]:
        for manager in (stock, indexed):
            manager.pre_disconnect(sid, "/")
            assert not manager.is_connected(sid, "/")
            await manager.disconnect(sid, "/")
    assert indexed.rooms == stock.rooms
    assert indexed.pending_disconnect == stock.pending_disconnect == {}
    for sid in sids:
        assert sorted(indexed.get_rooms(sid, "/")) == sorted(stock.get_rooms(sid, "/"))
    assert set(indexed.sid_rooms["/"]) == set(sids[7:])


async def test_the_user_channel_manager_unsubscribes_the_last_sockets_room() -> None:
    from socket_layer.user_channels import UserChannelManager

    manager = UserChannelManager("redis://127.0.0.1:1/0")
    manager.set_server(_Server())
    left: list[str] = []
    manager._schedule_unsubscribe = left.append  # type: ignore[method-assign]
    a = await manager.connect("ea", "/")
    b = await manager.connect("eb", "/")
    for sid in (a, b):
        manager.basic_enter_room(sid, "/", "user:1")
    await manager.disconnect(a, "/", ignore_queue=True)
    assert left == []
    await manager.disconnect(b, "/", ignore_queue=True)
    assert left == [f"{manager.channel}:user:1"]
    assert manager.rooms == {} and manager.sid_rooms == {}


async def test_a_mass_disconnect_is_linear_not_quadratic() -> None:
    small = await measure(IndexedManager, 2000)
    large = await measure(IndexedManager, 8000)
    # stock python-socketio: 4x the sockets cost ~16x (every room scanned per disconnect)
    assert large["disconnect_all_s"] < 8 * max(small["disconnect_all_s"], 0.005)
