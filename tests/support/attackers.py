"""What the live abuse tests throw at a web process, each helper shared by the test of
its finding and by the abuse matrix (tests/ops/test_abuse_matrix.py):

- :func:`push_body`: a huge request body sent as fast as the server takes it;
- :func:`login_attempt`: one password guess;
- :class:`RawSocket`: an engine.io session spoken by hand (reserved event names...);
- :func:`connected_websocket`: a raw websocket whose Socket.IO CONNECT was accepted
  (then fed malformed packets);
- :func:`stalled_websocket`: a raw websocket that stops reading once connected;
- :func:`handshake` / :func:`try_handshake`: an anonymous engine.io long-polling
  handshake, never continued.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import Callable

import aiohttp
import httpx

from socket_layer.protocol import SOCKETIO_PATH
from tests.support.live import LiveServer

# --- HTTP ---------------------------------------------------------------------------------


async def push_body(port: int, path: str, total: int, *, chunked: bool) -> tuple[int, int, float]:
    """Send up to ``total`` body bytes as fast as the server takes them; returns (status,
    bytes sent when the answer came, seconds until it came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {total}\r\n\r\n"
    writer.write(head.encode())
    block = b" " * (256 * 1024)
    chunk = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
    sent = 0
    began = time.perf_counter()
    answer = asyncio.create_task(reader.readuntil(b"\r\n\r\n"))
    try:
        while sent < total and not answer.done():
            writer.write(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except TimeoutError:  # the server stopped reading: wait for its answer
                break
            sent += len(block)
        head_bytes = await asyncio.wait_for(answer, 10)
    except (ConnectionError, asyncio.IncompleteReadError):
        head_bytes = await asyncio.wait_for(answer, 10)
    finally:
        writer.close()
    status = int(head_bytes.split(b" ", 2)[1])
    return status, sent, time.perf_counter() - began


async def login_attempt(
    http: httpx.AsyncClient, username: str, password: str, address: str | None = None
) -> httpx.Response:
    """POST /api/auth/login, from ``address`` (X-Forwarded-For) when given."""
    headers = {"X-Forwarded-For": address} if address else {}
    return await http.post(
        "/api/auth/login", json={"username": username, "password": password}, headers=headers
    )


# --- Socket.IO ----------------------------------------------------------------------------


class RawSocket:
    """One engine.io v4 session spoken by hand (websocket or long-polling), answering
    pings in the background, recording every Socket.IO packet the server sends and
    whether the server closed the session."""

    def __init__(self, http: aiohttp.ClientSession, server: LiveServer, transport: str) -> None:
        self.http = http
        self.base = f"{server.url}{SOCKETIO_PATH}/?EIO=4&transport={transport}"
        self.transport = transport
        self.packets: list[str] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._sid = ""
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        if self.transport == "websocket":
            self._ws = await self.http.ws_connect(self.base)
            opened = await self._ws.receive(timeout=5)
            assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0")
        else:
            async with self.http.get(self.base) as r:
                assert r.status == 200
                self._sid = json.loads((await r.text())[1:])["sid"]
        self._reader = asyncio.create_task(self._read())

    async def send(self, *packets: str | bytes) -> None:
        """Send engine.io packets: text is a message (``4`` is prepended), bytes a binary
        message (an attachment)."""
        if self._ws is not None:
            for p in packets:
                if isinstance(p, bytes):
                    await self._ws.send_bytes(p)
                else:
                    await self._ws.send_str("4" + p)
            return
        body = "\x1e".join(
            "b" + base64.b64encode(p).decode() if isinstance(p, bytes) else "4" + p for p in packets
        )
        await self._post(body)

    async def _post(self, body: str) -> None:
        with contextlib.suppress(aiohttp.ClientError):
            async with self.http.post(f"{self.base}&sid={self._sid}", data=body) as r:
                await r.read()

    async def connect(self, token: str) -> bool:
        """Socket.IO CONNECT; True when accepted, False when refused."""
        await self.send("0" + json.dumps({"token": token}))
        reply = await self.wait(lambda p: p.startswith(("0{", "4{")))
        return reply.startswith("0{")

    async def wait(self, predicate: Callable[[str], bool], wait_s: float = 10.0) -> str:
        """The first Socket.IO packet (without the engine.io ``4``) matching ``predicate``."""
        async with asyncio.timeout(wait_s):
            while True:
                for p in self.packets:
                    if predicate(p):
                        return p
                if self.closed.is_set():
                    raise AssertionError(f"closed before the packet came; got {self.packets}")
                self._changed.clear()
                await self._changed.wait()

    async def outcome(self, wait_s: float = 10.0) -> str:
        """``closed`` (the server ended the session) or ``live`` (a progress event came)."""
        async with asyncio.timeout(wait_s):
            while True:
                if any(p.startswith('2["progress"') for p in self.packets):
                    return "live"
                if self.closed.is_set():
                    return "closed"
                self._changed.clear()
                await self._changed.wait()

    def _got(self, eio_packet: str) -> None:
        if eio_packet == "2":
            asyncio.create_task(self._pong())
        elif eio_packet == "1":
            self.closed.set()
        elif eio_packet.startswith("4"):
            self.packets.append(eio_packet[1:])
        self._changed.set()

    async def _pong(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.send_str("3")
        else:
            await self._post("3")

    async def _read(self) -> None:
        try:
            if self._ws is not None:
                async for msg in self._ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        self._got(msg.data)
            else:
                while not self.closed.is_set():
                    async with self.http.get(f"{self.base}&sid={self._sid}") as r:
                        if r.status != 200:  # the session is gone
                            break
                        for p in (await r.text()).split("\x1e"):
                            self._got(p)
        except aiohttp.ClientError:
            pass
        finally:
            self.closed.set()
            self._changed.set()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._ws is not None:
            await self._ws.close()


async def connected_websocket(
    http: aiohttp.ClientSession, url: str, token: str
) -> aiohttp.ClientWebSocketResponse:
    """A websocket to ``url`` (an engine.io websocket URL) whose Socket.IO CONNECT with
    ``token`` was accepted."""
    ws = await http.ws_connect(url)
    assert (await ws.receive(timeout=20)).data.startswith("0")
    await ws.send_str(f'40{{"token":"{token}"}}')
    while True:
        msg = await ws.receive(timeout=20)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        if msg.data.startswith("40"):
            return ws


def masked_text_frame(text: str) -> bytes:
    """A client-to-server websocket text frame (masked, as RFC 6455 requires)."""
    payload = text.encode()
    n = len(payload)
    assert n < 65536
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def stalled_websocket(port: int, token: str) -> socket.socket:
    """A raw websocket Socket.IO client with a 4 KB receive buffer whose CONNECT was
    acknowledged; the caller never reads from it again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {SOCKETIO_PATH}/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    seen = b""
    while b"\r\n\r\n" not in seen or b"0{" not in seen:
        seen += sock.recv(4096)
    assert b" 101 " in seen.split(b"\r\n", 1)[0], seen
    sock.sendall(masked_text_frame(f'40{{"token":"{token}"}}'))
    while b"40{" not in seen:
        seen += sock.recv(4096)
    return sock


def tcp_connection(server_port: int, client_port: int) -> tuple[bool, int]:
    """(is the server's end of the connection from ``client_port`` still open, the
    bytes in its kernel send queue)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                local = int(fields[1].rsplit(":", 1)[1], 16)
                remote = int(fields[2].rsplit(":", 1)[1], 16)
                # state 06 TIME_WAIT, 07 CLOSE: what is left of a closed connection
                if local == server_port and remote == client_port and fields[3] not in ("06", "07"):
                    return True, int(fields[4].split(":")[0], 16)
    return False, 0


def handshake_url(server: LiveServer, sid: str | None = None) -> str:
    tail = f"&sid={sid}" if sid else ""
    return f"{server.url}{SOCKETIO_PATH}/?EIO=4&transport=polling{tail}"


def from_address(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def try_handshake(http: aiohttp.ClientSession, server: LiveServer) -> tuple[int, str]:
    """One anonymous engine.io long-polling handshake, never continued: (the status, the
    answer's text)."""
    async with http.get(handshake_url(server)) as r:
        return r.status, await r.text()


async def handshake(http: aiohttp.ClientSession, server: LiveServer) -> str:
    """An anonymous long-polling session (asserts it was accepted); returns its sid."""
    status, text = await try_handshake(http, server)
    assert status == 200, text
    return str(json.loads(text[1:])["sid"])
