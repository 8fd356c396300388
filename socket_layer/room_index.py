"""A per-socket index of rooms for python-socketio client managers.

python-socketio's ``BaseManager`` keeps ``rooms[namespace][room] -> {sid: eio_sid}``
only, so ``basic_disconnect`` (and ``get_rooms``) scan every room of the namespace to
find the few a socket is in.  Every socket has a room of its own (its sid), so that is
O(sockets) per disconnect and quadratic for a mass disconnect: 5,000 sockets closing
together kept one process busy for about 10 s.  Its pending-connect/-disconnect lists
make ``is_connected`` and their ``remove`` O(sockets waiting) as well.

:class:`RoomIndex`, mixed in before the manager class, keeps ``sid -> rooms`` up to
date in ``basic_enter_room`` / ``basic_leave_room`` (the only places python-socketio
changes membership) and disconnects in O(rooms of that socket); the pending lists
become insertion-ordered sets with the same interface.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class SidSet:
    """The ``list`` interface python-socketio uses for its pending sids (``append``,
    ``remove``, ``in``, ``len``, iteration) with O(1) membership and removal."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, None] = {}

    def append(self, sid: str) -> None:
        self._items[sid] = None

    def remove(self, sid: str) -> None:
        """Raises ValueError when ``sid`` is absent, like ``list.remove``."""
        try:
            del self._items[sid]
        except KeyError:
            raise ValueError(sid) from None

    def __contains__(self, sid: object) -> bool:
        return sid in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))


class RoomIndex:
    """Mixin for ``socketio.AsyncManager`` subclasses (put it first among the bases)."""

    rooms: dict[str, dict[Any, Any]]
    callbacks: dict[str, Any]
    pending_connect: dict[str, Any]
    pending_disconnect: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: namespace -> sid -> the rooms it is in (``None``, its own sid room included;
        #: a list: a socket is in a few rooms, and an empty set costs 216 bytes)
        self.sid_rooms: dict[str, dict[str, list[Any]]] = {}

    def basic_enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        joined = self.sid_rooms.setdefault(namespace, {}).setdefault(sid, [])
        if room not in joined:
            joined.append(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        by_sid = self.sid_rooms.get(namespace)
        if by_sid is None:
            return
        joined = by_sid.get(sid)
        if joined is not None:
            if room in joined:
                joined.remove(room)
            if not joined:
                del by_sid[sid]
                if not by_sid:
                    del self.sid_rooms[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        """The rooms ``sid`` is in (its own sid room included, ``None`` not), as
        python-socketio's ``get_rooms`` returns them."""
        joined = self.sid_rooms.get(namespace, {}).get(sid, ())
        return [room for room in joined if room is not None]

    async def pre_connect(self, eio_sid: str, namespace: str) -> Any:
        # a coroutine, like socketio.AsyncManager's (which calls BaseManager's)
        if namespace not in self.pending_connect:
            self.pending_connect[namespace] = SidSet()
        return await super().pre_connect(eio_sid, namespace)  # type: ignore[misc]

    def pre_disconnect(self, sid: str, namespace: str) -> Any:
        if namespace not in self.pending_disconnect:
            self.pending_disconnect[namespace] = SidSet()
        return super().pre_disconnect(sid, namespace)  # type: ignore[misc]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """python-socketio's ``basic_disconnect`` without the scan of every room."""
        if namespace not in self.rooms:
            return
        # leave through basic_leave_room: subclasses hook it (unsubscribe a user room)
        for room in list(self.sid_rooms.get(namespace, {}).get(sid, ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if len(sids) == 0:
                    del pending[namespace]
