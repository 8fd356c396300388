"""Under each abuse of the hardening findings, another user is served as if nothing
happened.

One web process per abuse (production defaults for pings, presence TTL and every
limit; its own Redis) and a witness user B with two clients, one over websocket and
one over long-polling.  B's job publishes events at a steady rate through the worker's
path (:class:`tasks.publisher.JobPublisher`: persisted, then emitted on Redis) while
user A's abuse runs for a few seconds, and ``/api/health`` is polled from another
process.  Then each of B's clients must hold exactly seq 1..N of B's job (no gap, no
duplicate, nothing of anyone else's) without having been disconnected, and health
must have answered within its budget (9 in 10 under 100 ms).  A table row per abuse is
printed: what the abuse got back, B's events sent/received per client, health
p50/p90/max.

Each abuse is a wave repeated until the window has passed (at least ``min_waves``):

- ``uploads``: 4 multi-megabyte real MP4 uploads at once (UPLOADS_PER_ADDRESS);
- ``reserved-events``: 20 sockets of A each sending ``42["disconnect"]`` once in;
- ``login-race``: 60 parallel login guesses on one username (the right one among them);
- ``big-bodies``: four 300 MB bodies to ``/api/auth/login``;
- ``resume-flood``: 5 sockets of A with 10 resumes in flight each, A's 20 jobs of history;
- ``polling-flood``: 50 anonymous engine.io polling handshakes from a new address;
- ``zombie-sockets``: 50 connected websockets each sending a malformed packet
  (``42[``), at least 400 over the run;
- ``slow-readers``: a websocket of A that stops reading while 300 x 64 KB events of A
  are published.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import aiohttp
import httpx
import pytest

from models.entities import JobStatus, ProcessingJob, User
from quart_app.core.config import Config
from quart_app.core.redis_pools import PoolLimits
from quart_app.core.tokens import issue_token
from socket_layer.emitter import ProgressEmitter
from socket_layer.protocol import SOCKETIO_PATH
from tasks.journal import RedisJournal
from tasks.publisher import JobPublisher, make_emitter
from tests.conftest import TEST_SECRET
from tests.support.attackers import (
    RawSocket,
    connected_websocket,
    from_address,
    login_attempt,
    push_body,
    stalled_websocket,
    tcp_connection,
    try_handshake,
)
from tests.support.builders import PASSWORD, make_job, make_list, make_user, video_event
from tests.support.health_watch import HealthWatch
from tests.support.live import LiveServer
from tests.support.media import noise_mp4
from tests.support.services import RedisServer
from tests.support.sio_client import RecordingClient, connect_client
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

#: how long each abuse runs (its waves repeat until then) while B's events flow
WINDOW_S = 3.0
#: B's job publishes one event this often (about 20/s, whatever the abuse)
FEED_EVERY_S = 0.05
#: how long B's clients may take to receive the last event once the abuse ended: the
#: events are contiguous or not, this only bounds a test that would otherwise hang
DELIVERY_WAIT_S = 30.0
WITNESS_TRANSPORTS = ("websocket", "polling")
#: B's job must have published at least this many events over the abuse (20/s nominal;
#: far fewer would mean the witness barely watched it)
MIN_FEED_EVENTS = 10
#: the only events B's clients may receive
WITNESS_EVENTS = {"snapshot", "progress"}


def realistic_settings() -> dict[str, Any]:
    """The production defaults where the test settings differ (fast pings, a short
    presence TTL); every limit the abuses meet is at its default already."""
    defaults = Config()
    return {
        "ws_ping_interval": defaults.ws_ping_interval,
        "ws_ping_timeout": defaults.ws_ping_timeout,
        "ws_presence_ttl": defaults.ws_presence_ttl,
    }


def token(user: User) -> str:
    return issue_token(TEST_SECRET, user.id)


# --- the witness ----------------------------------------------------------------------------


class WitnessFeed:
    """B's job publishing an event every FEED_EVERY_S through the worker's publisher
    (persisted with its seq, then emitted) from entry to exit; ``sent`` counts them.
    Exit stops after the event in progress, so every counted event was published."""

    def __init__(self, config: Config, job: ProcessingJob) -> None:
        assert config.redis_url
        self.emitter = make_emitter(config)
        self.journal = RedisJournal.from_url(config.redis_url, limits=PoolLimits.of(config))
        self.publisher = JobPublisher(
            job_id=job.id,
            owner_id=job.owner_id,
            last_seq=job.last_seq,
            total_videos=job.total_videos,
            emitter=self.emitter,
            buffer_size=config.retry_buffer_size,
            journal=self.journal,
        )
        self.sent = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            await self.publisher.send(video_event(self.publisher, self.sent + 1))
            self.sent += 1
            due += FEED_EVERY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, due - time.monotonic()))

    async def __aenter__(self) -> WitnessFeed:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        try:
            assert self._task is not None
            await self._task
            if kind is None:
                assert self.publisher.stats.publish_failures == 0, self.publisher.stats
        finally:
            await self.publisher.drain(5.0)
            await self.emitter.close()
            await self.journal.close()


def seqs_of(client: RecordingClient, job: ProcessingJob) -> tuple[list[int], list[Any]]:
    """(the seqs of ``job``'s progress events ``client`` received, in order; everything
    else it received that is not B's: other jobs' events, other event names)."""
    mine: list[int] = []
    foreign: list[Any] = []
    for name, payloads in client.received.items():
        if name not in WITNESS_EVENTS:
            foreign += [(name, p) for p in payloads]
    for event in client.events("progress"):
        if isinstance(event, dict) and event.get("job_id") == str(job.id):
            mine.append(event["seq"])
        else:
            foreign.append(event)
    return mine, foreign


# --- the abuses -------------------------------------------------------------------------------


@dataclass
class Arena:
    """What every abuse gets: the server, the attacker A, the MP4 to upload."""

    server: LiveServer
    attacker: User
    clip: Path


class Abuse(ABC):
    """One abuse: ``setup`` once, then ``wave`` repeated (each returns what the abuse
    got back, counted), ``close`` at the end (also after a failure)."""

    min_waves = 1

    async def setup(self, arena: Arena) -> None:
        self.arena = arena

    @abstractmethod
    async def wave(self, n: int) -> Counter[str]:
        """Wave ``n`` (0, 1, ...) of the abuse; what it got back."""

    async def close(self) -> None:
        return None


class Uploads(Abuse):
    """UPLOADS_PER_ADDRESS (4) multi-megabyte real MP4 uploads at once into a new list of
    A, each accepted (202) and streamed to disk; then the list is deleted (204), which
    removes the files (the waves would otherwise fill the disk at loopback speed)."""

    AT_ONCE = 4

    async def setup(self, arena: Arena) -> None:
        await super().setup(arena)
        self.content = arena.clip.read_bytes()
        headers = {"Authorization": f"Bearer {token(arena.attacker)}"}
        self.http = httpx.AsyncClient(base_url=arena.server.url, timeout=60, headers=headers)

    async def _upload(self, list_id: uuid.UUID, i: int) -> str:
        r = await self.http.post(
            f"/api/lists/{list_id}/videos/upload",
            files=[("file", (f"clip {i}.mp4", self.content, "video/mp4"))],
        )
        return f"upload {r.status_code}"

    async def wave(self, n: int) -> Counter[str]:
        list_id = (await make_list(self.arena.attacker)).id
        got = Counter(
            await asyncio.gather(*(self._upload(list_id, i) for i in range(self.AT_ONCE)))
        )
        got[f"delete {(await self.http.delete(f'/api/lists/{list_id}')).status_code}"] += 1
        return got

    async def close(self) -> None:
        await self.http.aclose()


class ReservedEvents(Abuse):
    """20 sockets of A (alternately websocket and polling) each sending
    ``42["disconnect"]`` once its CONNECT is accepted; the server must close each."""

    SOCKETS = 20

    async def setup(self, arena: Arena) -> None:
        await super().setup(arena)
        self.http = aiohttp.ClientSession()

    async def wave(self, n: int) -> Counter[str]:
        transport = WITNESS_TRANSPORTS[n % 2]
        raws = [RawSocket(self.http, self.arena.server, transport) for _ in range(self.SOCKETS)]
        got: Counter[str] = Counter()
        try:
            for raw in raws:
                await raw.open()
                if await raw.connect(token(self.arena.attacker)):
                    await raw.send('2["disconnect"]')
                    try:
                        got[await raw.outcome()] += 1
                    except TimeoutError:  # A gets no events: a socket left open is silent
                        got["still open"] += 1
                else:
                    got["refused"] += 1
        finally:
            await asyncio.gather(*(raw.close() for raw in raws))
        return got

    async def close(self) -> None:
        await self.http.close()


class LoginRace(Abuse):
    """60 parallel guesses on one (new) username, the right password among them."""

    GUESSES = 60

    async def setup(self, arena: Arena) -> None:
        await super().setup(arena)
        self.http = httpx.AsyncClient(base_url=arena.server.url, timeout=60)

    async def wave(self, n: int) -> Counter[str]:
        victim = await make_user()
        guesses = [f"wrong-{i}" for i in range(self.GUESSES - 1)] + [PASSWORD]
        answers = await asyncio.gather(
            *(login_attempt(self.http, victim.username, g) for g in guesses)
        )
        return Counter(str(r.status_code) for r in answers)

    async def close(self) -> None:
        await self.http.aclose()


class BigBodies(Abuse):
    """Four 300 MB bodies (two chunked, two with Content-Length) to /api/auth/login.
    The server answers 413 after a few KB and closes; a client still sending then may
    get the connection reset before it read the answer ("reset")."""

    SIZE = 300 * 1024 * 1024

    async def _body(self, chunked: bool) -> str:
        try:
            status, _sent, _s = await push_body(
                self.arena.server.port, "/api/auth/login", self.SIZE, chunked=chunked
            )
        except ConnectionError:
            return "reset"
        return str(status)

    async def wave(self, n: int) -> Counter[str]:
        return Counter(await asyncio.gather(*(self._body(i % 2 == 0) for i in range(4))))


class ResumeFlood(Abuse):
    """5 sockets of A (all the per-user limit allows), 10 resumes in flight on each, each
    resume asking for the whole history of A's 20 jobs of 50 events."""

    SOCKETS = 5
    IN_FLIGHT = 10

    async def setup(self, arena: Arena) -> None:
        await super().setup(arena)
        vlist = await make_list(arena.attacker)
        jobs = [await make_job(vlist, total=1000, events=50) for _ in range(20)]
        self.request = {"jobs": {str(job.id): 0 for job in jobs}}
        url = f"{arena.server.url}{SOCKETIO_PATH}"
        self.clients = [
            await connect_client(url, token=token(arena.attacker), transports=["websocket"])
            for _ in range(self.SOCKETS)
        ]

    async def wave(self, n: int) -> Counter[str]:
        calls = [
            c.call("resume", self.request, wait_s=30)
            for c in self.clients
            for _ in range(self.IN_FLIGHT)
        ]
        return Counter(str(ack.get("error", "events")) for ack in await asyncio.gather(*calls))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in getattr(self, "clients", [])))


class PollingFlood(Abuse):
    """50 anonymous engine.io polling handshakes at once from a new loopback address
    each wave, waves back to back, never continued: they pile up to the pending caps
    (256 per address, 1,024 in all), then are refused.  (Health waits behind what is in
    flight: at 100-200 at once its p90 was 75-83 ms on an idle 2-core box.)"""

    HANDSHAKES = 50

    async def wave(self, n: int) -> Counter[str]:
        async with from_address(f"127.0.3.{n + 1}") as http:
            answers = await asyncio.gather(
                *(try_handshake(http, self.arena.server) for _ in range(self.HANDSHAKES))
            )
        return Counter(str(status) for status, _text in answers)


class ZombieSockets(Abuse):
    """50 connected websockets (10 new users x the per-user limit 5) each sending a
    malformed packet; each must be closed by the server.  At least 400 over the run."""

    USERS, PER_USER = 10, 5
    min_waves = 8

    async def setup(self, arena: Arena) -> None:
        await super().setup(arena)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.url = f"ws://127.0.0.1:{arena.server.port}{SOCKETIO_PATH}/?EIO=4&transport=websocket"

    async def _closed(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        await ws.send_str("42[")
        with contextlib.suppress(TimeoutError):
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    return "closed"
        return "open"

    async def wave(self, n: int) -> Counter[str]:
        users = [await make_user() for _ in range(self.USERS)]
        sockets = await asyncio.gather(
            *(
                connected_websocket(self.http, self.url, token(user))
                for user in users
                for _ in range(self.PER_USER)
            )
        )
        try:
            return Counter(await asyncio.gather(*(self._closed(ws) for ws in sockets)))
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))

    async def close(self) -> None:
        await self.http.close()


class SlowReaders(Abuse):
    """A websocket of A (4 KB receive buffer) that stops reading once connected, while
    300 x 64 KB events of A are published through the worker's emitter at 150 a second
    (paced: a Redis subscriber more than 8 MB behind would be cut, whoever it is);
    the server must close the socket once WS_SEND_BUFFER_BYTES wait for it."""

    EVENTS, EVENT_BYTES, PER_SECOND = 300, 64 * 1024, 150.0
    CLOSED_WITHIN_S = 10.0

    async def setup(self, arena: Arena) -> None:
        await super().setup(arena)
        self.emitter: ProgressEmitter = make_emitter(arena.server.config)

    async def wave(self, n: int) -> Counter[str]:
        server = self.arena.server
        reader = await make_user()  # the previous wave's slot may not be released yet
        sock = await asyncio.to_thread(stalled_websocket, server.port, token(reader))
        client_port = sock.getsockname()[1]
        pad = "x" * self.EVENT_BYTES
        try:
            due = time.monotonic()
            for _ in range(self.EVENTS):
                await self.emitter.publish_progress(
                    reader.id, {"job_id": str(uuid.uuid4()), "pad": pad}
                )
                due += 1 / self.PER_SECOND
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            closed = await wait_until(
                lambda: not tcp_connection(server.port, client_port)[0], self.CLOSED_WITHIN_S
            )
        finally:
            sock.close()
        return Counter({"closed" if closed else "open": 1})

    async def close(self) -> None:
        if hasattr(self, "emitter"):
            await self.emitter.close()


#: abuse id -> (the abuse, the outcomes it may get back: anything else fails the test)
ABUSES: dict[str, tuple[Callable[[], Abuse], set[str]]] = {
    "uploads": (Uploads, {"upload 202", "delete 204"}),
    "reserved-events": (ReservedEvents, {"closed", "refused"}),
    # 200/401 checked, 429 throttled, 503 the hashing pool full
    "login-race": (LoginRace, {"200", "401", "429", "503"}),
    "big-bodies": (BigBodies, {"413", "reset"}),
    "resume-flood": (ResumeFlood, {"events", "resume_in_progress", "resume_rate_limited"}),
    # 429: a pending-session cap (per address, in total)
    "polling-flood": (PollingFlood, {"200", "429"}),
    "zombie-sockets": (ZombieSockets, {"closed"}),
    "slow-readers": (SlowReaders, {"closed"}),
}


async def run_waves(abuse: Abuse) -> tuple[Counter[str], int]:
    """Waves until WINDOW_S passed (at least ``min_waves``); returns (the outcomes
    counted, the waves run)."""
    got: Counter[str] = Counter()
    until = time.monotonic() + WINDOW_S
    waves = 0
    while waves < abuse.min_waves or time.monotonic() < until:
        got += await abuse.wave(waves)
        waves += 1
    return got, waves


# --- the table ------------------------------------------------------------------------------


@dataclass
class Matrix:
    """One row per abuse, in the order they ran."""

    rows: list[str] = field(default_factory=list)
    HEADER: ClassVar[str] = (
        f"{'abuse':<16} {'waves':>5}  {'what the abuse got':<44} "
        f"{'B ws sent/got':>13} {'B poll sent/got':>15}  health p50/p90/max ms"
    )

    def row(
        self,
        name: str,
        waves: int,
        got: Counter[str],
        sent: int,
        received: dict[str, int],
        health: HealthWatch,
    ) -> str:
        outcomes = ", ".join(f"{k} x{v}" for k, v in sorted(got.items()))
        ms = "/".join(f"{health.quantile(q) * 1000:.1f}" for q in (0.5, 0.9, 1.0))
        ws, poll = (f"{sent}/{received[t]}" for t in WITNESS_TRANSPORTS)
        line = (
            f"{name:<16} {waves:>5}  {outcomes:<44} {ws:>13} {poll:>15}  "
            f"{ms} ({len(health.times)} probes)"
        )
        self.rows.append(line)
        return line


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest) -> Iterator[Matrix]:
    """The table, printed once every abuse ran (past pytest's capture: it is the result)."""
    table = Matrix()
    yield table
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if table.rows:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print("\n" + "\n".join((table.HEADER, *table.rows)), flush=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real H.264 MP4 of about 3 MB (noise does not compress)."""
    path = noise_mp4(tmp_path_factory.mktemp("clips") / "noise.mp4", seconds=4)
    assert path.stat().st_size > 2 * 1024 * 1024
    return path


@pytest.fixture
async def witness_clients() -> AsyncIterator[dict[str, RecordingClient]]:
    """Filled by the test once its server is up; every client is closed at the end.
    Requested before the server, so it is closed after the server stopped: a polling
    client that leaves first keeps its last long-poll open on the server until the
    ping interval (30 s), and the shutdown would sit out its graceful timeout for it."""
    clients: dict[str, RecordingClient] = {}
    yield clients
    await asyncio.gather(*(c.close() for c in clients.values()))


# --- the test -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ABUSES))
async def test_another_user_gets_every_event_and_health_stays_fast(
    name: str,
    db: str,
    witness_clients: dict[str, RecordingClient],
    own_redis: RedisServer,
    start_live_server: Callable[..., Awaitable[LiveServer]],
    clip: Path,
    matrix: Matrix,
) -> None:
    make_abuse, allowed = ABUSES[name]
    server = await start_live_server(redis_url=own_redis.url, **realistic_settings())
    witness = await make_user()
    job = await make_job(
        await make_list(witness), status=JobStatus.PROCESSING, total=100_000, events=0
    )
    for transport in WITNESS_TRANSPORTS:
        witness_clients[transport] = await connect_client(
            server.url, token=token(witness), transports=[transport]
        )
    abuse = make_abuse()
    try:
        await abuse.setup(Arena(server, await make_user(), clip))
        async with HealthWatch(server.port) as health, WitnessFeed(server.config, job) as feed:
            got, waves = await run_waves(abuse)
    finally:
        await abuse.close()
    sent = feed.sent
    received: dict[str, list[int]] = {}
    foreign: dict[str, list[Any]] = {}
    for transport, client in witness_clients.items():
        with contextlib.suppress(TimeoutError):
            await client.wait_for("progress", count=sent, wait_s=DELIVERY_WAIT_S)
        received[transport], foreign[transport] = seqs_of(client, job)
    print("\n" + matrix.HEADER)
    print(matrix.row(name, waves, got, sent, {t: len(s) for t, s in received.items()}, health))

    assert set(got) <= allowed, f"{name}: unexpected answers {dict(got)}"
    assert sent >= MIN_FEED_EVENTS, f"B's job published only {sent} events"
    for transport, seqs in received.items():
        missing = sorted(set(range(1, sent + 1)) - set(seqs))
        assert seqs == list(range(1, sent + 1)), (
            f"{name}: B's {transport} client got {len(seqs)} of {sent}, missing {missing[:20]}"
        )
        assert not foreign[transport], f"{name}: B's {transport} client got {foreign[transport]}"
        assert not witness_clients[transport].disconnected.is_set(), transport
    health.assert_fast()
