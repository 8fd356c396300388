"""The external emitter: publishes progress events to random users at a target rate, the
way workers do (through Redis, never through the web process).

``--wire stock`` publishes python-socketio's own pub/sub message on its one channel (what
the stock ``RedisManager.emit`` writes); ``--wire reeltrack`` publishes exactly what
:class:`socket_layer.emitter.ProgressEmitter` writes; ``--wire node`` publishes what
``@socket.io/redis-emitter`` writes for ``emitter.to(room).emit("progress", event)``
(MessagePack, read by Node's ``@socket.io/redis-adapter``; checked against the real
emitter's bytes by :mod:`tests.benchmarks.node_fanout` before each Node run).  Each
event's ``created_at`` is its send time, so clients measure end-to-end latency from it (the
same for every wire).  Publishes are pipelined per 5 ms tick on a raw connection: the
emitter stands for many workers and must not be the bottleneck (redis-py's pipeline cost
~110 us per publish, this ~15 us).

``--cluster host:port,...`` (with ``--wire reeltrack``) publishes with SPUBLISH on each
user's sharded channel instead, on a connection per master, routed by the slot map
(what ProgressEmitter does with FANOUT_REDIS_CLUSTER).

Prints one JSON line: ``{"sent": N, "per_user": {...}, "elapsed": s, "late_ticks": n,
"behind": n}`` (``behind``: events sent in a catch-up burst at the end, not on schedule).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from redis.connection import parse_url
from redis.crc import key_slot

from socket_layer.protocol import (
    EVENT_PROGRESS,
    NAMESPACE,
    REDIS_CHANNEL,
    sharded_channel,
    user_room,
)

TICK = 0.005

#: (user id, job id, seq) -> (channel, message)
Encoder = Callable[[str, str, int], tuple[str, str | bytes]]


def stock_encoder() -> Encoder:
    """What python-socketio's write-only RedisManager publishes (the baseline's wire)."""
    host_id = uuid.uuid4().hex

    def encode(user: str, job: str, seq: int) -> tuple[str, str | bytes]:
        message = {
            "method": "emit",
            "event": EVENT_PROGRESS,
            "data": [make_event(job, seq)],
            "binary": False,
            "namespace": NAMESPACE,
            "room": user_room(user),
            "skip_sid": None,
            "callback": None,
            "host_id": host_id,
        }
        return REDIS_CHANNEL, json.dumps(message)

    return encode


def reeltrack_encoder() -> Encoder:
    """Byte for byte what ProgressEmitter publishes, from a template (checked against
    :func:`socket_layer.emitter.encode_user_emit` first): the emitter stands for many
    workers and its own JSON encoding must not eat the CPU the web process needs."""
    from socket_layer.emitter import encode_user_emit

    def encode(user: str, job: str, seq: int, ts: str | None = None) -> tuple[str, str]:
        ts = ts or _now()
        n = seq % 100
        channel = f"{REDIS_CHANNEL}:{user_room(user)}"
        return channel, (
            f'42["{EVENT_PROGRESS}",{{"job_id":"{job}","seq":{seq},"status":"processing",'
            f'"progress":{n},"current_video":{n},"total_videos":100,"processed_videos":{n},'
            f'"failed_videos":0,"message":"Processing video {n}/100: \'Benchmark clip {seq}\'",'
            f'"video_id":"{VIDEO_ID}","video_title":"Benchmark clip {seq}","error":null,'
            f'"created_at":"{ts}"}}]'
        )

    sample = make_event("00000000-0000-0000-0000-0000000000aa", 7)
    expected = encode_user_emit("u1", EVENT_PROGRESS, sample)
    if encode("u1", sample["job_id"], 7, sample["created_at"]) != expected:
        raise AssertionError("the emitter's template no longer matches ProgressEmitter's wire")
    return encode  # type: ignore[return-value]


VIDEO_ID = "6f1b3f5e-8d7a-4d61-9a53-3c2f5b1e0a77"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_event(job: str, seq: int) -> dict[str, Any]:
    return {
        "job_id": job,
        "seq": seq,
        "status": "processing",
        "progress": seq % 100,
        "current_video": seq % 100,
        "total_videos": 100,
        "processed_videos": seq % 100,
        "failed_videos": 0,
        "message": f"Processing video {seq % 100}/100: 'Benchmark clip {seq}'",
        "video_id": VIDEO_ID,
        "video_title": f"Benchmark clip {seq}",
        "error": None,
        "created_at": _now(),
    }


#: the redis-adapter's broadcast channel of a namespace (its ``key`` option's default
#: "socket.io"); an emit to exactly one room goes to that room's own sub-channel
NODE_CHANNEL = f"socket.io#{NAMESPACE}#"
#: the sender id @socket.io/redis-emitter puts in every message (adapters skip only their own)
NODE_EMITTER_UID = "emitter"


def _mp_str(s: str) -> bytes:
    """A MessagePack string (the smallest header, as notepack.io writes it)."""
    b = s.encode()
    n = len(b)
    if n < 0x20:
        return bytes((0xA0 | n,)) + b
    if n < 0x100:
        return bytes((0xD9, n)) + b
    if n < 0x10000:
        return b"\xda" + n.to_bytes(2, "big") + b
    return b"\xdb" + n.to_bytes(4, "big") + b


def _mp_uint(i: int) -> bytes:
    """A non-negative MessagePack integer (the smallest form, as notepack.io writes it)."""
    if i < 0x80:
        return bytes((i,))
    if i < 0x100:
        return bytes((0xCC, i))
    if i < 0x10000:
        return b"\xcd" + i.to_bytes(2, "big")
    if i < 0x100000000:
        return b"\xce" + i.to_bytes(4, "big")
    return b"\xcf" + i.to_bytes(8, "big")


def node_encoder() -> Encoder:
    """What ``@socket.io/redis-emitter`` 5.1 publishes for
    ``emitter.to(user_room(user)).emit("progress", make_event(job, seq))``: on channel
    ``socket.io#/#user:<id>#``, MessagePack of ``["emitter", {type: 2 (EVENT), data:
    ["progress", event], nsp: "/"}, {rooms: [room], flags: {}, except: []}]``.  Built
    from pieces, not by a generic encoder, for the reason :func:`reeltrack_encoder` is a
    template; the event's fields in :func:`make_event`'s order (the client sees them in
    that order in the JSON Node sends)."""
    s, u = _mp_str, _mp_uint
    head = (
        b"\x93"  # [uid, packet, opts]
        + s(NODE_EMITTER_UID)
        + b"\x83"  # packet: {type, data, nsp}
        + s("type")
        + u(2)
        + s("data")
        + b"\x92"  # [event name, event]
        + s(EVENT_PROGRESS)
        + b"\x8d"  # the event: a map of 13 fields
    )
    key = {
        k: s(k)
        for k in (
            "job_id",
            "seq",
            "status",
            "progress",
            "current_video",
            "total_videos",
            "processed_videos",
            "failed_videos",
            "message",
            "video_id",
            "video_title",
            "error",
            "created_at",
        )
    }
    status = key["status"] + s("processing")
    totals = key["total_videos"] + u(100)
    failed = key["failed_videos"] + u(0)
    video = key["video_id"] + s(VIDEO_ID)
    error = key["error"] + b"\xc0"
    mid = s("nsp") + s(NAMESPACE) + b"\x83" + s("rooms") + b"\x91"
    tail = s("flags") + b"\x80" + s("except") + b"\x90"

    def encode(user: str, job: str, seq: int, ts: str | None = None) -> tuple[str, bytes]:
        ts = ts or _now()
        n = u(seq % 100)
        room = user_room(user)
        return f"{NODE_CHANNEL}{room}#", b"".join(
            (
                head,
                key["job_id"],
                s(job),
                key["seq"],
                u(seq),
                status,
                key["progress"],
                n,
                key["current_video"],
                n,
                totals,
                key["processed_videos"],
                n,
                failed,
                key["message"],
                s(f"Processing video {seq % 100}/100: 'Benchmark clip {seq}'"),
                video,
                key["video_title"],
                s(f"Benchmark clip {seq}"),
                error,
                key["created_at"],
                s(ts),
                mid,
                s(room),
                tail,
            )
        )

    return encode  # type: ignore[return-value]


ENCODERS: dict[str, Callable[[], Encoder]] = {
    "stock": stock_encoder,
    "reeltrack": reeltrack_encoder,
    "node": node_encoder,
}


class _Publisher(asyncio.Protocol):
    """PUBLISH commands pipelined on one raw connection (RESP); counts the replies."""

    def __init__(self, command: bytes = b"PUBLISH") -> None:
        self.command = b"$%d\r\n%s\r\n" % (len(command), command)
        self.transport: asyncio.Transport | None = None
        self.replies = 0
        self.sent = 0
        self.expected = -1
        self.done = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.replies += data.count(b"\r\n")  # each reply is one ":<n>\r\n" line
        if self.replies >= self.expected >= 0:
            self.done.set()

    def publish_many(self, items: list[tuple[str, str | bytes]]) -> None:
        out = []
        for channel, payload in items:
            c = channel.encode()
            p = payload.encode() if isinstance(payload, str) else payload
            out.append(b"*3\r\n%s$%d\r\n%s\r\n$%d\r\n%s\r\n" % (self.command, len(c), c, len(p), p))
        assert self.transport is not None
        self.transport.write(b"".join(out))


async def run(
    redis_url: str,
    users: list[dict[str, Any]],
    rate: float,
    duration: float,
    encode: Encoder,
    seed: int,
    cluster: str = "",
) -> dict[str, Any]:
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    pubs: dict[tuple[str, int], _Publisher] = {}
    owner: dict[int, tuple[str, int]] = {}
    if cluster:
        owner = _slot_owners(cluster)
        for addr in sorted(set(owner.values())):
            _, pubs[addr] = await loop.create_connection(
                lambda: _Publisher(b"SPUBLISH"), addr[0], addr[1]
            )
    else:
        params = parse_url(redis_url)
        addr = (params.get("host", "127.0.0.1"), params.get("port", 6379))
        _, pubs[addr] = await loop.create_connection(_Publisher, *addr)
    default = next(iter(pubs.values()))
    seqs: dict[str, int] = {}
    per_user: dict[str, int] = {}
    sent = 0
    late = 0

    def batch(n: int) -> None:
        items: dict[_Publisher, list[tuple[str, str | bytes]]] = {}
        for _ in range(n):
            u = users[rng.randrange(len(users))]
            job = u["jobs"][0]
            seqs[job] = seqs.get(job, 0) + 1
            channel, message = encode(u["user"], job, seqs[job])
            if cluster:
                channel = sharded_channel(user_room(u["user"]))
                pub = pubs[owner[int(key_slot(channel.encode()))]]
            else:
                pub = default
            items.setdefault(pub, []).append((channel, message))
            per_user[u["user"]] = per_user.get(u["user"], 0) + 1
        for pub, group in items.items():
            pub.sent += len(group)
            pub.publish_many(group)

    cpu0 = time.process_time()
    start = time.monotonic()
    next_tick = start
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= duration:
            break
        due = int(rate * elapsed) - sent
        if due > 0:
            batch(due)
            sent += due
        next_tick += TICK
        pause = next_tick - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        else:
            late += 1
            next_tick = time.monotonic()
    # what is still due at the end was not sent on schedule (the emitter fell behind)
    behind = max(0, int(rate * duration) - sent)
    if behind > 0:
        batch(behind)
        sent += behind
    for pub in pubs.values():
        pub.expected = pub.sent
        pub.data_received(b"")
    try:
        await asyncio.wait_for(asyncio.gather(*(p.done.wait() for p in pubs.values())), 10)
    except TimeoutError:
        pass
    for pub in pubs.values():
        if pub.transport is not None:
            pub.transport.close()
    replies = sum(p.replies for p in pubs.values())
    if replies < sent:
        raise RuntimeError(f"Redis confirmed only {replies} of {sent} publishes")
    return {
        "cpu_s": time.process_time() - cpu0,
        "sent": sent,
        "per_user": per_user,
        "elapsed": time.monotonic() - start,
        "late_ticks": late,
        "behind": behind,
        "seqs": seqs,
    }


def _slot_owners(cluster: str) -> dict[int, tuple[str, int]]:
    """slot -> master address, as the first node of ``cluster`` (host:port,...) says."""
    host, _, port = cluster.split(",")[0].rpartition(":")
    client = redis.Redis(host=host, port=int(port), socket_timeout=5)
    try:
        reply = client.execute_command("CLUSTER SLOTS")
    finally:
        client.close()
    owners: dict[int, tuple[str, int]] = {}
    for start, end, master, *_replicas in reply:
        name = master[0].decode() if isinstance(master[0], bytes) else master[0]
        # a one-node cluster does not know its own address: the one asked is it
        addr = (name or host, int(master[1]))
        owners.update(dict.fromkeys(range(int(start), int(end) + 1), addr))
    return owners


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--users", required=True, help="JSON file: [{user, jobs}]")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--wire", choices=sorted(ENCODERS), default="reeltrack")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cluster", default="", help="host:port,... of a Redis Cluster")
    args = parser.parse_args()
    with open(args.users) as fh:
        users = json.load(fh)
    encode = ENCODERS[args.wire]()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        run(args.redis_url, users, args.rate, args.duration, encode, args.seed, args.cluster)
    )
    from tests.benchmarks.wsclient import write_line

    write_line(json.dumps(result))


if __name__ == "__main__":
    main()
