"""A recording python-socketio client for tests of the progress socket.

    client = await connect_client(server.url, token=tok, transports=["polling"])
    snap = await client.wait_for("snapshot")            # first payload
    events = await client.wait_for("progress", count=3)  # all payloads once >= 3
    ack = await client.call("resume", {"jobs": {...}})
    await client.close()

    refused = await connect_client(url, token="bad", transports=[...], expect_refusal=True)
    refused.refusal  # {"code": 1008, "reason": "invalid_token"} (err.data in socket.io-client)
    refused.refusal_message  # "invalid_token" (err.message)

Every wait has a timeout (failing the test, never hanging it); close() aborts the
engine.io transport, so a polling client does not linger ~30 s (STACK.md trap).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import engineio
import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from socket_layer.protocol import SOCKETIO_PATH

TRANSPORTS = [["websocket"], ["polling"]]
TRANSPORT_IDS = ["websocket", "polling"]


class _PollingEngineIOClient(engineio.AsyncClient):  # type: ignore[misc]
    """engine.io client that treats a truncated long-poll response as a failed request.

    python-engineio's polling read loop reads the body outside its error handling (it
    catches only ValueError), so when a web process dies between the response headers
    and the body (nginx: "upstream prematurely closed connection while reading
    upstream") aiohttp's ClientPayloadError ends the read loop silently: no disconnect,
    hence no reconnect, ever.  socket.io-client in a browser sees an XHR error and
    reconnects; reading the body here, where a failure becomes the loop's ordinary
    "request failed" path, gives the test client the same behaviour.
    """

    async def _send_request(
        self,
        method: str,
        url: str,
        headers: Any = None,
        body: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 (python-engineio's signature)
    ) -> Any:
        response = await super()._send_request(method, url, headers, body, timeout)
        if response is None or isinstance(response, str):
            return response
        try:
            await response.read()  # aiohttp keeps the body: the loop's read() returns it
        # RuntimeError: aiohttp's "Connection closed." when the session closes under a
        # pending long-poll; escaping, it killed the read loop without waking the write
        # loop, which then logged "packet queue is empty" into a later test
        except (TimeoutError, aiohttp.ClientError, RuntimeError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return response


async def _end_transport_loops(eio: engineio.AsyncClient) -> None:
    """Wait (briefly) for the engine.io client's read and write loops to end, waking
    the write loop with engine.io's close marker first.

    After an aborted polling session the write loop can be left waiting on an empty
    queue (the read loop, ending, waits for it); 7 s later it logs "packet queue is
    empty, aborting" at ERROR, into whichever test then runs.
    """
    loops = [t for t in (eio.write_loop_task, eio.read_loop_task) if t is not None and not t.done()]
    if not loops:
        return
    if eio.write_loop_task is not None and not eio.write_loop_task.done():
        eio.queue.put_nowait(None)
    _, pending = await asyncio.wait(loops, timeout=2)
    for task in pending:  # a transport call that does not return: stop it here
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=1)


class FastCloseClient(socketio.AsyncClient):  # type: ignore[misc]
    """``AsyncClient`` whose ``disconnect()`` does not wait for the pending long-poll,
    and whose polling transport survives a truncated response (see above).

    engineio's server answers a polling client's pending GET only at ping_interval +
    ping_timeout after a close, and the stock client waits for it.  Here the
    DISCONNECT/CLOSE packets are flushed (the server learns of the close at once) and
    then the HTTP session is cut.  connect() calls this too after a refusal.
    """

    async def disconnect(self) -> None:
        eio = self.eio
        for namespace in list(self.namespaces):
            await self._send_packet(self.packet_class(sio_packet.DISCONNECT, namespace=namespace))
        if eio.state == "connected":
            if eio.current_transport == "polling":
                await eio._send_packet(eio_packet.Packet(eio_packet.CLOSE))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(eio.queue.join(), 2)
                await eio.disconnect(abort=True)
            else:
                await asyncio.wait_for(eio.disconnect(), 3)
        self.connected = False
        await _end_transport_loops(eio)

    def _engineio_client_class(self) -> type:
        return _PollingEngineIOClient


class RecordingClient:
    def __init__(self) -> None:
        self.sio = FastCloseClient(reconnection=False, logger=False, engineio_logger=False)
        self.received: dict[str, list[Any]] = {}
        #: (monotonic time, event name, payload) in arrival order
        self.timeline: list[tuple[float, str, Any]] = []
        #: connect_error's data (what socket.io-client calls ``err.data``)
        self.refusal: Any = None
        self.refusal_message: Any = None
        self.refusal_packet: Any = None
        self.disconnected = asyncio.Event()
        self._changed = asyncio.Event()

        @self.sio.on("*")
        async def _any(event: str, *args: Any) -> None:
            payload = args[0] if len(args) == 1 else list(args)
            self.received.setdefault(event, []).append(payload)
            self.timeline.append((time.monotonic(), event, payload))
            self._changed.set()

        @self.sio.event
        async def connect_error(data: Any = None) -> None:
            # the packet is {"message": reason, "data": {...}}; socket.io-client exposes
            # these as err.message and err.data — keep the same split here
            self.refusal_packet = data
            if isinstance(data, dict) and "data" in data:
                self.refusal = data["data"]
                self.refusal_message = data.get("message")
            else:
                self.refusal = data
            self._changed.set()

        @self.sio.event
        async def disconnect(reason: Any = None) -> None:
            self.disconnected.set()
            self._changed.set()

    def events(self, name: str) -> list[Any]:
        return list(self.received.get(name, []))

    async def wait_for(self, name: str, count: int = 1, wait_s: float = 10.0) -> Any:
        """The first payload of ``name`` (count 1) or the list of all once there are at
        least ``count``; raises TimeoutError naming what did arrive."""
        deadline = time.monotonic() + wait_s
        while len(self.received.get(name, [])) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = {k: len(v) for k, v in self.received.items()}
                raise TimeoutError(f"waited {wait_s}s for {count} x {name!r}; got {got}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        items = self.received[name]
        return items[0] if count == 1 else list(items)

    async def call(self, event: str, data: Any, wait_s: float = 10.0) -> Any:
        return await self.sio.call(event, data, timeout=wait_s)

    async def close(self) -> None:
        """Disconnect cleanly if possible, else abort the transport; never hangs."""
        try:
            await asyncio.wait_for(self.sio.disconnect(), 5)
        except Exception:  # we abort below anyway
            pass
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.eio.disconnect(abort=True), 3)


async def connect_client(
    url: str,
    *,
    token: str | None,
    transports: list[str],
    via_query: bool = False,
    auth: Any = None,
    expect_refusal: bool = False,
    wait_s: float = 10.0,
) -> RecordingClient:
    """Connect a recording client; the token goes in ``auth`` (or ``?token=``).

    With ``expect_refusal`` the connection must be refused (AssertionError otherwise)
    and the client is already closed; its ``refusal`` holds the connect_error data.
    ``auth`` overrides the auth payload entirely (malformed payload tests).
    """
    client = RecordingClient()
    target = url
    payload: Any = auth
    if auth is None and token is not None:
        if via_query:
            target = f"{url}/?token={token}"
        else:
            payload = {"token": token}
    try:
        await asyncio.wait_for(
            client.sio.connect(
                target,
                auth=payload,
                transports=transports,
                socketio_path=SOCKETIO_PATH,
                wait_timeout=wait_s,
            ),
            wait_s + 5,
        )
    except socketio.exceptions.ConnectionError:
        await client.close()
        if expect_refusal:
            return client
        raise
    except BaseException:
        await client.close()
        raise
    if expect_refusal:
        await client.close()
        raise AssertionError("the connection was accepted but a refusal was expected")
    return client
