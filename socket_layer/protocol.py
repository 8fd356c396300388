"""Names shared by the Socket.IO server, the emitter and the clients (DESIGN section 5).

Every room name, event name and refusal reason is defined here once and imported.
"""

from __future__ import annotations

SOCKETIO_PATH = "/api/ws/progress"
NAMESPACE = "/"

# server -> client
EVENT_SNAPSHOT = "snapshot"
EVENT_PROGRESS = "progress"
EVENT_RESYNC = "resync"
# client -> server
EVENT_RESUME = "resume"

REFUSAL_CODE = 1008
REASON_INVALID_TOKEN = "invalid_token"
REASON_TOO_MANY_CONNECTIONS = "too_many_connections"
#: the server could not check the connection (database down): retry later, do not log out
UNAVAILABLE_CODE = 1011
REASON_UNAVAILABLE = "unavailable"

#: how long a finished job stays in the `snapshot`
SNAPSHOT_FINISHED_WINDOW_S = 300

#: python-socketio's pub/sub channel name prefix (one Redis key prefix for all of reeltrack)
REDIS_CHANNEL = "reeltrack:socketio"


def user_room(user_id: object) -> str:
    """The room every socket of ``user_id`` joins; progress events go only here."""
    return f"user:{user_id}"


def refusal(reason: str) -> dict[str, object]:
    """The data of a ``connect_error`` refusal (code 1008; 1011 for ``unavailable``)."""
    code = UNAVAILABLE_CODE if reason == REASON_UNAVAILABLE else REFUSAL_CODE
    return {"code": code, "reason": reason}


#: Redis key prefix of the per-user connection registry (a ZSET of live sockets per user)
PRESENCE_KEY_PREFIX = "reeltrack:ws:conns:"


def presence_key(user_id: object) -> str:
    """The Redis ZSET holding ``<process>:<sid>`` -> expiry for every live socket of a user."""
    return f"{PRESENCE_KEY_PREFIX}{user_id}"
