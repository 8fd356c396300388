"""Guards in front of python-engineio for input it handles badly.

A websocket frame that is not an engine.io packet (``"zzz"``) makes python-engineio's
websocket handler raise out of its loop: hypercorn logs a traceback per frame and the
socket is only cleaned up by the ping timeout (its user's connection slot held until
then).  :func:`guard_polling_posts` also wraps the websocket class so such a frame ends
the connection at once, as a transport close.

An oversize long-polling POST (``Content-Length`` above ``max_http_buffer_size``) makes
python-engineio 4.15 disconnect the session with ``close(wait=True)`` inside the POST
handler; that waits for the CLOSE packet to be fetched by a GET that a misbehaving
client never sends, so the POST (and its memory) hangs until hypercorn gives up with a
500.  :func:`guard_polling_posts` answers such a POST ``413`` before engineio sees it.
(The websocket transport enforces the same limit correctly: the socket is closed.)
Polling POSTs within the limit are read here, at the REST API's body pace
(BODY_READ_TIMEOUT, BODY_MIN_RATE: a stalled or trickling one answers ``408``), and
checked to be an engine.io payload; junk answers ``400`` and ends the session (engineio
would log a traceback per POST).  A POST with a body but no ``Content-Length`` answers
``411``: engineio reads it as empty only once it has all arrived, however slowly.

Socket.IO packets python-socketio cannot handle (``42``, ``42[``, bytes outside a
binary event, a client CONNECT_ERROR, a binary placeholder naming no attachment) make it
log a traceback per packet; an event with a reserved name
(:data:`socket_layer.protocol.RESERVED_EVENTS`: ``42["disconnect"]``) makes it run the
server's own handler for that name (a ``disconnect`` frees the slot of a socket that
stays connected).  :func:`guard_socketio_packets` disconnects such a client instead, as
the reference socket.io server does on a parse error, and counts it
(``reeltrack_socketio_packets_refused_total{reason}``).  Every abort here uses
:func:`abort_session`, which never waits for a client to come back and closes the
transport at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from engineio.packet import Packet

from quart_app.core import metrics
from quart_app.core.body_pace import BodyPace, BodyTooSlowError
from socket_layer.protocol import RESERVED_EVENTS

log = logging.getLogger(__name__)

#: attachments a client's binary packet may announce (no client event takes any; a
#: packet announcing more would hold every attachment in memory until the last came)
MAX_ATTACHMENTS = 8
#: nesting a binary packet's data may have (python-socketio rebuilds it recursively)
MAX_BINARY_DEPTH = 32

#: ``reeltrack_socketio_packets_refused_total`` reasons
REFUSED_MALFORMED = "malformed"
REFUSED_RESERVED_EVENT = "reserved_event"
REFUSED_BINARY = "binary"

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _query_sid(scope: dict[str, Any]) -> str | None:
    from urllib.parse import parse_qs

    query = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(query).get("sid")
    return values[0] if values else None


async def _send_json(send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def guard_polling_posts(
    eio: Any, max_bytes: int, *, read_timeout: float | None = None, min_rate: int = 0
) -> None:
    """Wrap ``eio.handle_request`` so a polling POST declaring more than ``max_bytes``
    gets ``413 {"code": "message_too_large", ...}`` at once (the session lives on; the
    message is dropped), one with a body but no length ``411 length_required`` (every
    engine.io client sends one; engineio would read the body as empty, however long it
    took to arrive), one whose body stalls or trickles (``read_timeout`` /
    ``min_rate``: BODY_READ_TIMEOUT / BODY_MIN_RATE, as for the REST API) ``408
    request_timeout``, and so websocket frames engine.io cannot decode close their
    connection cleanly."""
    original: Asgi = eio.handle_request
    too_large = f"Socket.IO messages are limited to {max_bytes} bytes"

    # a plain function returning the coroutine to await: no frame of its own stays in
    # the chain under every websocket for the connection's life
    def handle_request(scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        if scope.get("type") == "websocket":
            _guard_websocket_class(eio)
        elif scope.get("type") == "http" and scope.get("method") == "POST":
            length = _content_length(scope)
            if length is not None and 0 < length <= max_bytes:
                return _checked_post(scope, receive, send)
            if length is not None and length > max_bytes:
                return _send_json(send, 413, "message_too_large", too_large)
            if length is None and _has_body(scope):
                return _send_json(
                    send, 411, "length_required", "a Socket.IO POST must declare its Content-Length"
                )
        return original(scope, receive, send)

    async def _checked_post(scope: dict[str, Any], receive: Any, send: Any) -> None:
        pace = BodyPace(read_timeout, min_rate) if read_timeout else None
        try:
            body, pending = await _read_body(receive, pace)
        except BodyTooSlowError as slow:
            await _send_json(send, 408, "request_timeout", str(slow))
            return
        if not _valid_payload(body):
            metrics.packet_refused(REFUSED_MALFORMED)
            sid = _query_sid(scope)
            if sid is not None:
                await abort_session(eio, sid)
            await _send_json(send, 400, "malformed_packet", "not an engine.io payload")
            return
        replayed = [{"type": "http.request", "body": body, "more_body": False}, *pending]

        async def replay() -> Any:
            return replayed.pop(0) if replayed else await receive()

        await original(scope, replay, send)

    eio.handle_request = handle_request


def _guard_websocket_class(eio: Any) -> None:
    """Wrap engineio's websocket class (whatever is installed by then: the fan-out layer
    installs its own at start-up) so undecodable frames read as a closed connection."""
    current = eio._async["websocket"]
    if getattr(current, "_reeltrack_guarded", False):
        return

    class GuardedWebSocket(current):  # type: ignore[misc, valid-type]
        _reeltrack_guarded = True

        async def wait(self) -> Any:
            data = await super().wait()
            if data is None or client_packet(data) is None:
                return None
            return data

    eio._async["websocket"] = GuardedWebSocket


def client_packet(data: Any) -> Packet | None:
    """The engine.io packet of a client's websocket frame, or None for one engine.io
    cannot decode (logged and counted: the caller closes the connection)."""
    try:
        return Packet(encoded_packet=data)
    except Exception:  # any decoding error: garbage from the client
        log.info("closing a websocket that sent an undecodable engine.io frame")
        metrics.packet_refused(REFUSED_MALFORMED)
        return None


def _refusal(sio: Any, data: Any) -> str | None:
    """Why python-socketio must not see this client packet (a ``REFUSED_*`` reason), or
    None when it can handle it without an error and without running a handler that is
    not the client's to call."""
    from socketio import packet as sio_packet

    if not isinstance(data, str):
        return REFUSED_MALFORMED  # bytes are only valid as a pending packet's attachments
    try:
        pkt = sio.packet_class(encoded_packet=data)
    except Exception:  # undecodable: bad JSON, bad namespace syntax, bad ack id
        return REFUSED_MALFORMED
    kind = pkt.packet_type
    if kind in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
        if not (isinstance(pkt.data, list) and pkt.data and isinstance(pkt.data[0], str)):
            return REFUSED_MALFORMED
        if pkt.data[0] in RESERVED_EVENTS:
            return REFUSED_RESERVED_EVENT
    elif kind in (sio_packet.ACK, sio_packet.BINARY_ACK):
        if not (isinstance(pkt.data, list) and pkt.id is not None):
            return REFUSED_MALFORMED
    elif kind == sio_packet.CONNECT:
        return None if pkt.data is None or isinstance(pkt.data, dict) else REFUSED_MALFORMED
    elif kind != sio_packet.DISCONNECT:
        return REFUSED_MALFORMED  # a client CONNECT_ERROR, or no packet type at all
    if kind in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK) and not _attachments_fit(
        pkt.data, pkt.attachment_count
    ):
        return REFUSED_BINARY
    return None


def _attachments_fit(data: Any, count: int) -> bool:
    """A binary packet announces 1..MAX_ATTACHMENTS attachments, every placeholder in
    its data names one of them (python-socketio indexes its list with ``num``), and the
    data nests at most MAX_BINARY_DEPTH levels."""
    if not 1 <= count <= MAX_ATTACHMENTS:
        return False
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_BINARY_DEPTH:
            return False
        if isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            # the test python-socketio applies when it puts the attachments in place
            if item.get("_placeholder") and "num" in item:
                num = item["num"]
                if type(num) is not int or not 0 <= num < count:
                    return False
            else:
                stack.extend((child, depth + 1) for child in item.values())
    return True


def guard_socketio_packets(sio: Any) -> None:
    """Disconnect a client that sends a Socket.IO packet the server must not handle
    (``42``, ``42[``, ``4`` + junk, a client CONNECT_ERROR, an event with a reserved
    name, a binary packet whose placeholders name no attachment ...), as the reference
    socket.io server does on a parse error, instead of letting python-socketio raise a
    traceback into the log (or run a handler) for it; each one is counted by reason.
    Other packets (including binary attachments) go to python-socketio unchanged."""
    original = sio._handle_eio_message

    async def handle_eio_message(eio_sid: str, data: Any) -> None:
        if eio_sid not in sio._binary_packet:  # else: an attachment it is waiting for
            reason = _refusal(sio, data)
            if reason is not None:
                log.info("disconnecting a client that sent a refused Socket.IO packet (%s)", reason)
                metrics.packet_refused(reason)
                await abort_session(sio.eio, eio_sid)
                return
        await original(eio_sid, data)

    sio.eio.on("message", handle_eio_message)


async def abort_session(eio: Any, eio_sid: str) -> None:
    """Close an engine.io session NOW, without waiting for a long-polling client to
    fetch the CLOSE packet (a hostile one never does); the disconnect handlers run.

    python-engineio's ``close(abort=True)`` leaves a websocket's writer waiting on the
    socket's queue until ping interval + timeout: the ``None`` it reads as "closed"
    wakes it, so the websocket (or a pending long-poll) ends at once."""
    socket = eio.sockets.get(eio_sid)
    if socket is None or socket.closed:
        return
    try:
        await socket.close(wait=False, abort=True, reason=eio.reason.SERVER_DISCONNECT)
    finally:
        eio.sockets.pop(eio_sid, None)
        socket.queue.put_nowait(None)


def _valid_payload(body: bytes) -> bool:
    """Is a long-polling POST body a list of engine.io packets engineio can decode?"""
    from engineio.payload import Payload

    try:
        payload = Payload(encoded_payload=body.decode("utf-8"))
    except Exception:  # bad UTF-8, bad framing, bad packet
        return False
    return bool(payload.packets)


def _has_body(scope: dict[str, Any]) -> bool:
    return any(
        name.lower() == b"transfer-encoding" and value.lower() != b"identity"
        for name, value in scope.get("headers") or ()
    )


async def _read_body(
    receive: Any, pace: BodyPace | None = None
) -> tuple[bytes, list[dict[str, Any]]]:
    """The whole body and what came after it; raises
    :class:`~quart_app.core.body_pace.BodyTooSlowError` when it falls behind ``pace``."""
    chunks: list[bytes] = []
    events: list[dict[str, Any]] = []
    while True:
        event = await receive() if pace is None else await pace.next_message(receive)
        if event["type"] != "http.request":
            events.append(event)
            break
        chunks.append(event.get("body") or b"")
        if not event.get("more_body"):
            break
    return b"".join(chunks), events
