"""A progress client that behaves like the web dashboard's store (DESIGN section 4 rule 6).

    tracker = ProgressTracker("alice-ws-0", url, token=tok, transport="websocket")
    await tracker.start()          # connects; python-socketio reconnects by itself
    tracker.history(job_id)        # the events applied for a job, seq 1..n without holes
    await tracker.stop()

State machine, per job: the last applied seq; an event is applied only when its seq is
exactly ``last + 1`` (then any buffered successors follow), dropped when ``<= last``
(a duplicate: a resume answer and the live stream may overlap), buffered when it leaves
a gap — and a gap, a ``resync``, a ``snapshot`` naming a newer seq and every (re)connect
ask the server with ``resume`` for everything after the last applied seqs.  Resumes run
one at a time in a background task; a failed or unanswered one (the database may be
down) is retried while the client is connected, and so is one that left a gap open
(the event may still sit in a worker's retry buffer).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from socket_layer.protocol import SOCKETIO_PATH
from tests.support.sio_client import FastCloseClient
from tests.support.waiting import wait_until

#: seconds one resume call may wait for its ack before it is retried
RESUME_TIMEOUT = 3.0
#: pause before retrying a resume that failed or left a gap
RESUME_RETRY = 0.3


class ProgressTracker:
    """One dashboard tab of one user on one transport."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        token: str,
        transport: str,
        source_ip: str | None = None,
    ) -> None:
        """``source_ip``: connect from this loopback address (nginx's sticky hash keys on
        the client address, so a test picks the upstream by picking the address)."""
        self.name = name
        self.url = url
        self.token = token
        self.transport = transport
        #: job id -> applied events, seq 1..n in order
        self.applied: dict[str, list[dict[str, Any]]] = {}
        #: job id -> events received ahead of a gap, by seq
        self.buffered: dict[str, dict[int, dict[str, Any]]] = {}
        #: every job id that reached this client in any payload
        self.seen_jobs: set[str] = set()
        #: events whose seq was applied already with DIFFERENT content (two writers)
        self.conflicts: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.connects = 0
        self.disconnects = 0
        self.resyncs = 0
        self.gaps = 0
        self.resumes = 0
        self.failed_resumes = 0
        self.live_events = 0
        self.resumed_events = 0
        self._want_resume = asyncio.Event()
        self._resumer: asyncio.Task[None] | None = None
        self.http: aiohttp.ClientSession | None = None
        if source_ip is not None:
            self.http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=(source_ip, 0), force_close=True)
            )
        self.sio = FastCloseClient(
            reconnection=True,
            reconnection_delay=0.2,
            reconnection_delay_max=1.0,
            randomization_factor=0.1,
            http_session=self.http,
            logger=False,
            engineio_logger=False,
        )
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("progress", self._on_progress)
        self.sio.on("snapshot", self._on_snapshot)
        self.sio.on("resync", self._on_resync)

    # -- state ----------------------------------------------------------------------------
    def last_seq(self, job_id: str) -> int:
        return len(self.applied.get(job_id, []))

    def history(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.applied.get(job_id, []))

    def apply(self, event: dict[str, Any]) -> None:
        """Apply one event by the rules above (never raises for a strange payload)."""
        job = event.get("job_id")
        seq = event.get("seq")
        if not isinstance(job, str) or not isinstance(seq, int):
            return
        self.seen_jobs.add(job)
        applied = self.applied.setdefault(job, [])
        if seq <= len(applied):
            if seq >= 1 and applied[seq - 1] != event:
                self.conflicts.append((applied[seq - 1], event))
            return
        if seq > len(applied) + 1:
            self.buffered.setdefault(job, {})[seq] = event
            self.gaps += 1
            self.request_resume()
            return
        applied.append(event)
        ahead = self.buffered.get(job, {})
        while len(applied) + 1 in ahead:
            applied.append(ahead.pop(len(applied) + 1))
        for seq_ahead in [s for s in ahead if s <= len(applied)]:
            del ahead[seq_ahead]

    def has_gap(self) -> bool:
        return any(self.buffered.values())

    # -- socket handlers ----------------------------------------------------------------------
    async def _on_connect(self) -> None:
        self.connects += 1
        self.request_resume()

    async def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnects += 1

    async def _on_progress(self, data: Any) -> None:
        if isinstance(data, dict):
            self.live_events += 1
            self.apply(data)

    async def _on_snapshot(self, data: Any) -> None:
        # the latest event of each active job: newer than ours -> a gap -> resume
        for event in (data or {}).get("jobs", []) if isinstance(data, dict) else []:
            if isinstance(event, dict):
                self.apply(event)

    async def _on_resync(self, data: Any = None) -> None:
        self.resyncs += 1
        self.request_resume()

    # -- resume ---------------------------------------------------------------------------
    def request_resume(self) -> None:
        self._want_resume.set()

    async def _resume_loop(self) -> None:
        while True:
            await self._want_resume.wait()
            self._want_resume.clear()
            # handlers run before connect() sets `connected` (the snapshot too): wait for
            # it; while disconnected the wish is kept for the next connection
            if not await wait_until(lambda: self.sio.connected, within=5.0):
                self._want_resume.set()
                continue
            jobs = {job: self.last_seq(job) for job in self.applied}
            if not jobs:
                continue
            self.resumes += 1
            try:
                reply = await self.sio.call("resume", {"jobs": jobs}, timeout=RESUME_TIMEOUT)
            except Exception:  # disconnected or no ack (the DB may be down): retry
                reply = None
            if not isinstance(reply, dict) or not isinstance(reply.get("events"), list):
                self.failed_resumes += 1
                await asyncio.sleep(RESUME_RETRY)
                self._want_resume.set()
                continue
            for event in reply["events"]:
                if isinstance(event, dict):
                    self.resumed_events += 1
                    self.apply(event)
            if reply.get("truncated"):
                self._want_resume.set()
            elif self.has_gap():  # not in the history yet (a worker's retry buffer)
                await asyncio.sleep(RESUME_RETRY)
                self._want_resume.set()

    # -- life cycle -----------------------------------------------------------------------------
    async def start(self, wait_s: float = 15.0) -> ProgressTracker:
        """Connect (raises socketio ConnectionError when refused) and start resuming."""
        self._resumer = asyncio.create_task(self._resume_loop())
        await asyncio.wait_for(
            self.sio.connect(
                self.url,
                auth={"token": self.token},
                transports=[self.transport],
                socketio_path=SOCKETIO_PATH,
                wait_timeout=wait_s,
            ),
            wait_s + 5,
        )
        return self

    async def stop(self) -> None:
        """Stop reconnecting and resuming, close the connection; never hangs."""
        self.sio.reconnection = False
        abort = getattr(self.sio, "_reconnect_abort", None)
        if abort is not None:
            abort.set()
        if self._resumer is not None:
            self._resumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._resumer
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.eio.disconnect(abort=True), 3)
        task = getattr(self.sio, "_reconnect_task", None)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 3)
        if self.http is not None:  # only after reconnecting stopped: it would open another
            await self.http.close()

    def stats(self) -> dict[str, int]:
        return {
            "connects": self.connects,
            "disconnects": self.disconnects,
            "resyncs": self.resyncs,
            "gaps": self.gaps,
            "resumes": self.resumes,
            "failed_resumes": self.failed_resumes,
            "live": self.live_events,
            "resumed": self.resumed_events,
        }
