"""A lean Socket.IO client over raw WebSocket frames, for load generation.

python-socketio's AsyncClient costs too much CPU and memory to run thousands of clients
in one process; this speaks the same protocol directly (engine.io v4 / socket.io v5
text packets over RFC 6455 frames): ``0{...}`` open, ``40{auth}`` connect, ping ``2`` ->
pong ``3``, ``42["event",data]`` events, ``42N["resume",...]`` with ack ``43N[...]``.
Like a browser it offers ``permessage-deflate`` (and inflates compressed frames), so the
server's per-connection compression cost is part of what is measured.

As a process (``python -m tests.benchmarks.wsclient --url ws://host:port/path/``) it
reads JSON commands on stdin and answers one JSON line each (see :func:`serve_commands`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import random
import sys
import time
import zlib
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from socket_layer.protocol import ERROR_RESUME_RATE_LIMITED

_OPEN_TIMEOUT = 60.0


def _frame(text: str) -> bytes:
    """A masked, final text frame (clients must mask)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        header = bytes((0x81, 0x80 | n))
    elif n < 65536:
        header = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    if n:
        key = (mask * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return header + mask + payload


def _control(opcode: int, payload: bytes = b"") -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


def _parse_ts(created_at: str) -> float:
    return datetime.fromisoformat(created_at).timestamp()


class Stats:
    """Counters shared by all clients of one process."""

    def __init__(self) -> None:
        self.reset()
        self.pings = 0
        self.resyncs = 0
        self.reconnects = 0
        self.resumed = 0
        self.last_resume_at: float | None = None

    def reset(self) -> None:
        self.received = 0
        self.foreign = 0
        self.lat_ms: list[float] = []
        self.per_user: dict[str, int] = {}


class Client(asyncio.Protocol):
    """One simulated browser tab of one user."""

    def __init__(
        self,
        fleet: Fleet,
        user: str,
        token: str,
        jobs: list[str],
    ) -> None:
        self.fleet = fleet
        self.user = user
        self.token = token
        self.jobs = set(jobs)
        self.last_seq: dict[str, int] = {}
        self.expected_seq: dict[str, int] = {}  # set by the reconnect benchmark
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshaken = False
        self.inflater: Any = None
        self.connected = False  # socket.io namespace connected
        self.is_open = False  # TCP + websocket alive
        self.opened: asyncio.Future[bool] | None = None
        self.error: str | None = None
        self.ack_id = 0
        self.pending_resume: int | None = None
        self.resume_again = False  # asked for while one was in flight
        self.want_reconnect = False
        self.closing = False
        self.frag: list[bytes] = []
        self.frag_compressed = False
        # a source address per client: nginx's sticky hash spreads clients by address
        n = fleet.next_index()
        self.source_ip = f"{fleet.source_ip.rsplit('.', 2)[0]}.{n // 250 % 250}.{n % 250 + 1}"

    # ------------------------------------------------------------- connection

    async def connect(self) -> float:
        """Open the websocket and the socket.io namespace; returns seconds taken.

        Raises ConnectionError (refused, timeout, connect_error)."""
        fl = self.fleet
        loop = asyncio.get_running_loop()
        self.opened = loop.create_future()
        self.buf.clear()
        self.handshaken = False
        self.connected = False
        self.inflater = None
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: self, fl.host, fl.port, local_addr=(self.source_ip, 0)
                ),
                _OPEN_TIMEOUT,
            )
            ok = await asyncio.wait_for(self.opened, _OPEN_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self._abort()
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
        if not ok:
            self._abort()
            raise ConnectionError(self.error or "refused")
        return time.monotonic() - t0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        fl = self.fleet
        ext = (
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            if fl.deflate
            else ""
        )
        transport.write(
            (
                f"GET {fl.path}?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {fl.host}:{fl.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        was_connected = self.connected
        self.is_open = False
        self.connected = False
        self.transport = None
        # an unanswered resume died with the connection: the next one asks afresh
        self.pending_resume = None
        self.resume_again = False
        if self.opened is not None and not self.opened.done():
            self.error = self.error or "connection lost during handshake"
            self.opened.set_result(False)
        if self.fleet.reconnect and not self.closing and was_connected:
            self.fleet.schedule_reconnect(self)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def send_text(self, text: str) -> None:
        if self.transport is not None:
            self.transport.write(_frame(text))

    # ------------------------------------------------------------- frames

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            if " 101 " not in head.split("\r\n", 1)[0]:
                self.error = head.split("\r\n", 1)[0]
                self._abort()
                return
            self.handshaken = True
            self.is_open = True
            if "permessage-deflate" in head.lower():
                self.inflater = zlib.decompressobj(-15)
        while len(buf) >= 2:
            b0 = buf[0]
            n = buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = int.from_bytes(buf[2:4], "big")
                off = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = int.from_bytes(buf[2:10], "big")
                off = 10
            if len(buf) < off + n:
                return
            payload = bytes(buf[off : off + n])
            del buf[: off + n]
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode in (1, 2, 0):
                if opcode != 0:
                    self.frag_compressed = bool(b0 & 0x40)
                self.frag.append(payload)
                if not fin:
                    continue
                whole = b"".join(self.frag)
                self.frag = []
                if self.frag_compressed and self.inflater is not None:
                    whole = self.inflater.decompress(whole + b"\x00\x00\xff\xff")
                self.on_packet(whole.decode())
            elif opcode == 8:
                self._abort()
                return
            elif opcode == 9 and self.transport is not None:
                self.transport.write(_control(10, payload))

    # ------------------------------------------------------------- engine.io / socket.io

    def on_packet(self, text: str) -> None:
        kind = text[0]
        if kind == "4":
            sub = text[1]
            if sub == "2":
                self.on_event(text[2:])
            elif sub == "3":
                self.on_ack(text[2:])
            elif sub == "0":
                self.connected = True
                if self.opened is not None and not self.opened.done():
                    self.opened.set_result(True)
                self.fleet.on_connected(self)
            elif sub == "4":
                self.error = text[2:]
                if self.opened is not None and not self.opened.done():
                    self.opened.set_result(False)
            elif sub == "1":
                self.connected = False
        elif kind == "2":
            self.fleet.stats.pings += 1
            self.send_text("3")
        elif kind == "0":
            self.send_text("40" + json.dumps({"token": self.token}))
        elif kind == "1":
            self._abort()

    def on_event(self, body: str) -> None:
        stats = self.fleet.stats
        if body.startswith('["progress",'):
            # the fields this client needs, without decoding the whole event (the
            # clients share 2 cores with the server they measure)
            now = time.time()
            stats.received += 1
            i = body.find('"job_id":"') + 10
            job = body[i : i + 36]
            if job not in self.jobs:
                stats.foreign += 1
                return
            i = body.find('"seq":', i) + 6
            seq = int(body[i : body.find(",", i)])
            i = body.rfind('"created_at":"') + 14
            stats.per_user[self.user] = stats.per_user.get(self.user, 0) + 1
            stats.lat_ms.append((now - _parse_ts(body[i : body.find('"', i)])) * 1000.0)
            if seq > self.last_seq.get(job, 0):
                self.last_seq[job] = seq
            return
        name, data = json.loads(body)
        if name == "resync":
            stats.resyncs += 1
            self.send_resume()

    def send_resume(self) -> None:
        """Ask for what this client missed.  One resume in flight at a time, as the
        browser does (the server answers a second one ``resume_in_progress``): asked
        for while one is in flight, it is sent when that one is answered."""
        if not self.connected:
            return
        if self.pending_resume is not None:
            self.resume_again = True
            return
        self.ack_id += 1
        self.pending_resume = self.ack_id
        jobs = {j: self.last_seq.get(j, 0) for j in self.jobs}
        self.send_text(f"42{self.ack_id}" + json.dumps(["resume", {"jobs": jobs}]))

    def on_ack(self, body: str) -> None:
        i = 0
        while i < len(body) and body[i].isdigit():
            i += 1
        ack = int(body[:i])
        if ack != self.pending_resume:
            return
        self.pending_resume = None
        (reply,) = json.loads(body[i:])
        if reply.get("error") == ERROR_RESUME_RATE_LIMITED:  # the user's allowance is spent
            delay = float(reply.get("retry_after") or 1.0)
            asyncio.get_running_loop().call_later(delay, self.send_resume)
            return
        for ev in reply.get("events", []):
            job, seq = ev["job_id"], ev["seq"]
            if job in self.jobs and seq > self.last_seq.get(job, 0):
                self.last_seq[job] = seq
        stats = self.fleet.stats
        stats.resumed += 1
        if self.complete():
            stats.last_resume_at = time.time()
        if self.resume_again:
            self.resume_again = False
            self.send_resume()

    def complete(self) -> bool:
        return all(self.last_seq.get(j, 0) >= s for j, s in self.expected_seq.items())


class Fleet:
    """All clients of this process."""

    def __init__(self, url: str, source_ip: str, deflate: bool, reconnect: bool) -> None:
        u = urlparse(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.path = u.path if u.path.endswith("/") else u.path + "/"
        self.source_ip = source_ip
        self.deflate = deflate
        self.reconnect = reconnect
        self.resume_on_connect = False
        self.clients: list[Client] = []
        self._index = 0
        self.stats = Stats()
        self._tasks: set[asyncio.Task[None]] = set()

    def next_index(self) -> int:
        self._index += 1
        return self._index - 1

    def on_connected(self, client: Client) -> None:
        if self.resume_on_connect:
            client.send_resume()

    def schedule_reconnect(self, client: Client) -> None:
        task = asyncio.get_running_loop().create_task(self._reconnect(client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconnect(self, client: Client) -> None:
        # socket.io-client's defaults: 1 s doubling to 5 s, randomisation 0.5
        attempt = 0
        while not client.closing:
            delay = min(1.0 * 2**attempt, 5.0)
            await asyncio.sleep(delay * (1 + random.uniform(-0.5, 0.5)))
            try:
                await client.connect()
            except ConnectionError:
                attempt += 1
                continue
            self.stats.reconnects += 1
            return

    async def connect_all(self, specs: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        times: list[float] = []
        errors: list[str] = []

        async def one(spec: dict[str, Any]) -> None:
            c = Client(self, spec["user"], spec["token"], spec.get("jobs", []))
            async with sem:
                try:
                    times.append(await c.connect() * 1000.0)
                except ConnectionError as exc:
                    errors.append(str(exc))
                    return
            self.clients.append(c)

        await asyncio.gather(*(one(s) for s in specs))
        # the client is not what is measured: keep its own collector out of the way
        gc.collect()
        gc.freeze()
        return {
            "connected": len(times),
            "failed": len(errors),
            "errors": errors[:5],
            "connect_ms": times,
        }

    def snapshot(self, reset: bool) -> dict[str, Any]:
        s = self.stats
        out = {
            "received": s.received,
            "foreign": s.foreign,
            "lat_ms": [round(x, 3) for x in s.lat_ms],
            "per_user": s.per_user,
            "open": sum(1 for c in self.clients if c.is_open),
            "connected": sum(1 for c in self.clients if c.connected),
            "pings": s.pings,
            "resyncs": s.resyncs,
            "reconnects": s.reconnects,
            "resumed": s.resumed,
            "complete": sum(1 for c in self.clients if c.expected_seq and c.complete()),
            "last_resume_at": s.last_resume_at,
        }
        if reset:
            s.reset()
        return out


def write_line(text: str) -> None:
    """One line on stdout, whole: the event loop may have made the pipe non-blocking
    (stdin and stdout can share one file description), and a partial write of a large
    reply would cut it at the pipe's 64 KB."""
    fd = sys.stdout.fileno()
    os.set_blocking(fd, True)
    view = memoryview((text + "\n").encode())
    while view:
        view = view[os.write(fd, view) :]


async def serve_commands(fleet: Fleet) -> None:
    """Commands (one JSON object per line), each answered by one JSON line:

    - ``{"cmd": "connect", "clients": [{user, token, jobs}], "concurrency": N}``
    - ``{"cmd": "stats", "reset": bool}``
    - ``{"cmd": "expect", "seqs": {job_id: seq}, "resume_on_connect": bool}``
    - ``{"cmd": "resume"}``: every connected client sends ``resume`` now
    - ``{"cmd": "exit"}``
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(obj: dict[str, Any]) -> None:
        write_line(json.dumps(obj))

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        what = cmd["cmd"]
        if what == "connect":
            answer(await fleet.connect_all(cmd["clients"], cmd.get("concurrency", 50)))
        elif what == "stats":
            answer(fleet.snapshot(bool(cmd.get("reset"))))
        elif what == "expect":
            seqs = cmd["seqs"]
            for c in fleet.clients:
                c.expected_seq = {j: seqs[j] for j in c.jobs if j in seqs}
            fleet.resume_on_connect = bool(cmd.get("resume_on_connect"))
            fleet.stats.resumed = 0
            fleet.stats.last_resume_at = None
            answer({"ok": True})
        elif what == "resume":
            for c in fleet.clients:
                if c.connected:
                    c.send_resume()
            answer({"ok": True})
        elif what == "exit":
            for c in fleet.clients:
                c.close()
            answer({"ok": True})
            break
        else:
            answer({"error": f"unknown command {what}"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--source-ip", default="127.0.0.1")
    parser.add_argument("--no-deflate", action="store_true")
    parser.add_argument("--reconnect", action="store_true")
    args = parser.parse_args()
    from tests.benchmarks.common import raise_nofile

    raise_nofile()
    gc.set_threshold(100_000, 50, 100)
    fleet = Fleet(args.url, args.source_ip, not args.no_deflate, args.reconnect)
    try:  # the clients are not what is measured: give them the fastest loop there is
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve_commands(fleet))


if __name__ == "__main__":
    main()
