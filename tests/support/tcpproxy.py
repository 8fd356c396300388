"""A TCP proxy a test can cut and restore (e.g. between the worker and PostgreSQL).

    proxy = TcpProxy("127.0.0.1", 5432).start()
    url = f"postgres://postgres@127.0.0.1:{proxy.port}/db"
    proxy.cut()       # every open connection is closed; new ones are accepted and closed
    proxy.restore()   # connections go through again
    proxy.stop()

    proxy, url = proxy_in_front_of(database_url)   # the same URL, through a new proxy

It runs its own event loop in a thread, so it keeps working whatever the test's loop does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from urllib.parse import urlsplit

from tests.support.services import free_port


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = port or free_port()
        self.connections_accepted = 0
        self.connections_refused = 0
        self._cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            self.connections_refused += 1
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        self.connections_accepted += 1
        self._writers.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self._cut:
                        break
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                for w in (writer, up_writer):
                    with contextlib.suppress(Exception):
                        w.close()
                self._writers.discard(writer)
                self._writers.discard(up_writer)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def _call(self, fn: object) -> None:
        async def run() -> None:
            fn()  # type: ignore[operator]

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def cut(self) -> None:
        """Close every proxied connection (both sides) and refuse new ones until restore."""

        def do() -> None:
            self._cut = True
            for w in list(self._writers):
                with contextlib.suppress(Exception):
                    w.transport.abort()
            self._writers.clear()

        self._call(do)

    def restore(self) -> None:
        def do() -> None:
            self._cut = False

        self._call(do)

    def stop(self) -> None:
        def do() -> None:
            self._cut = True
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                with contextlib.suppress(Exception):
                    w.transport.abort()

        with contextlib.suppress(Exception):
            self._call(do)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def proxy_in_front_of(url: str) -> tuple[TcpProxy, str]:
    """A started proxy to the host and port of ``url`` (a database URL), and ``url``
    rewritten to go through it."""
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    return proxy, url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
