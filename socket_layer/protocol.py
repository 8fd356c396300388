"""Names shared by the Socket.IO server, the emitter and the clients (DESIGN section 5).

Every room name, event name, refusal reason, Redis channel and key name of the socket
layer is defined here once and imported.
"""

from __future__ import annotations

from quart_app.core.config import REDIS_KEY_PREFIX

SOCKETIO_PATH = "/api/ws/progress"
NAMESPACE = "/"

# server -> client
EVENT_SNAPSHOT = "snapshot"
EVENT_PROGRESS = "progress"
EVENT_RESYNC = "resync"
# client -> server
EVENT_RESUME = "resume"
#: event names a client may never send: socket.io reserves them for a connection's own
#: life cycle (socket.io's list plus python-socketio's client-side ones); python-socketio
#: would run the server's handler for them (a ``disconnect`` would free the slot of a
#: socket that stays connected), so a client sending one is disconnected
RESERVED_EVENTS = frozenset(
    {
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
        "__disconnect_final",
    }
)

#: the ``error`` of a ``resume`` ack when that socket already has one in flight
ERROR_RESUME_IN_PROGRESS = "resume_in_progress"
#: the ``error`` of a ``resume`` ack when the user's resume allowance is used up (the ack
#: also carries ``retry_after`` seconds)
ERROR_RESUME_RATE_LIMITED = "resume_rate_limited"

REFUSAL_CODE = 1008
REASON_INVALID_TOKEN = "invalid_token"
REASON_TOO_MANY_CONNECTIONS = "too_many_connections"
#: the server could not check the connection (database down): retry later, do not log out
UNAVAILABLE_CODE = 1011
REASON_UNAVAILABLE = "unavailable"

#: how long a finished job stays in the `snapshot`
SNAPSHOT_FINISHED_WINDOW_S = 300

#: every socket of one user joins the room ``user:<id>``
USER_ROOM_PREFIX = "user:"

#: python-socketio's pub/sub channel; a user room's own channel is ``<this>:user:<id>``
REDIS_CHANNEL = f"{REDIS_KEY_PREFIX}socketio"

#: Redis key prefix of the per-user connection registry (a ZSET of live sockets per user)
PRESENCE_KEY_PREFIX = f"{REDIS_KEY_PREFIX}ws:conns:"

#: the two wires between publishers and web processes (``SOCKETIO_MANAGER``): a Redis
#: channel per user room carrying final engine.io packets, or python-socketio's own
#: pub/sub protocol on its one channel
WIRE_USER_CHANNELS = "user-channels"
WIRE_STOCK = "stock"
WIRES = (WIRE_USER_CHANNELS, WIRE_STOCK)

#: backoff between a web process's Redis listener reconnect attempts (seconds): short,
#: because clients wait for the resync that follows
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


def user_room(user_id: object) -> str:
    """The room every socket of ``user_id`` joins; progress events go only here."""
    return f"{USER_ROOM_PREFIX}{user_id}"


def is_user_room(room: object) -> bool:
    """Whether ``room`` is a user room (the only rooms with a Redis channel of their own)."""
    return isinstance(room, str) and room.startswith(USER_ROOM_PREFIX)


def room_channel(room: str, channel: str = REDIS_CHANNEL) -> str:
    """The Redis channel of one (user) room."""
    return f"{channel}:{room}"


def sharded_channel(room: str, channel: str = REDIS_CHANNEL) -> str:
    """The Redis Cluster channel of one (user) room: the room is its hash tag
    (``<channel>:{user:<id>}``), so each user's channel lives on one slot."""
    return f"{channel}:{{{room}}}"


def sharded_room(name: str, channel: str = REDIS_CHANNEL) -> str | None:
    """The room of a :func:`sharded_channel` name; None for any other name."""
    prefix = f"{channel}:{{"
    if name.startswith(prefix) and name.endswith("}"):
        return name[len(prefix) : -1]
    return None


def refusal(reason: str) -> dict[str, object]:
    """The data of a ``connect_error`` refusal (code 1008; 1011 for ``unavailable``)."""
    code = UNAVAILABLE_CODE if reason == REASON_UNAVAILABLE else REFUSAL_CODE
    return {"code": code, "reason": reason}


def presence_key(user_id: object) -> str:
    """The Redis ZSET holding ``<process>:<sid>`` -> expiry for every live socket of a user."""
    return f"{PRESENCE_KEY_PREFIX}{user_id}"
