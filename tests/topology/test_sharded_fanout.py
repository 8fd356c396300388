"""The fan-out on a Redis Cluster (FANOUT_REDIS_CLUSTER): a 3-master cluster with a
replica each, one web process and one worker on it (the queue on its own Redis),
dashboard clients of users whose channels land on all three shards.

First every user runs a short job with no fault: each master's SPUBLISH count (its
``cmdstat_spublish`` calls) must equal the events of the users whose channels it owns —
each shard carries its users' messages and nobody else's.  Then three faults, each in
its own round of jobs publishing for every user: one user's slot migrated to another
master, the web's subscriber connections on one master killed (CLIENT KILL), a master
SIGKILLed (its replica promoted).  After each only the sockets of the users whose channel
was on the moved shard get ``resync``; everyone ends with exactly the job's history,
seq contiguous.  The shard of each user, the per-shard counts and a row per fault
(events published, in history, missed per client, resyncs vs sockets affected) are
printed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.crc import key_slot

from quart_app.core.metrics import sample_value
from quart_app.sample_video import make_video
from socket_layer.protocol import sharded_channel, user_room
from tests.conftest import live_config
from tests.faults.rig import MediaOrigin
from tests.support.live import LiveServer, import_videos, sign_up
from tests.support.progress_client import ProgressTracker
from tests.support.redis_cluster import RedisClusterRig, cluster_support
from tests.support.services import RedisServer
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, web_and_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(cluster_support() is not None, reason=str(cluster_support())),
]

USERS_PER_SHARD = 2
VIDEOS = 8
COUNT_VIDEOS = 3
ORIGIN_DELAY_S = 0.1


@dataclass
class Installation:
    cluster: RedisClusterRig
    web: LiveServer
    worker: WorkerProcess
    origin: MediaOrigin
    samples: list[str]


@pytest.fixture
async def installation(fresh_pg_url: str, tmp_path: Path) -> AsyncIterator[Installation]:
    cluster = await asyncio.to_thread(RedisClusterRig(masters=3, replicas=1).start)
    queue = await asyncio.to_thread(RedisServer().start)
    origin_dir = tmp_path / "origin"
    origin_dir.mkdir()
    origin = await MediaOrigin(origin_dir).start()
    origin.delay = ORIGIN_DELAY_S
    samples = [make_video(origin_dir / "a.mp4").name]
    config = live_config(
        tmp_path,
        fresh_pg_url,
        queue.url,
        fanout_redis_cluster=cluster.nodes,
        import_allow_private_hosts=True,
        rate_limit_per_minute=0,
        ws_ping_interval=1.0,
        ws_ping_timeout=5.0,
        slice_videos=2,  # the users' jobs take turns: every user's events flow together
    )
    try:
        async with web_and_worker(config, "sharded") as (web, worker):
            yield Installation(cluster, web, worker, origin, samples)
    finally:
        await origin.stop()
        await asyncio.to_thread(cluster.stop)
        await asyncio.to_thread(queue.stop, True)


@dataclass
class User:
    uid: str
    token: str
    shard: int
    tracker: ProgressTracker
    job: str = ""

    @property
    def slot(self) -> int:
        return int(key_slot(sharded_channel(user_room(self.uid)).encode()))


async def _users(http: httpx.AsyncClient, inst: Installation) -> list[User]:
    """Register users until each master owns the channels of USERS_PER_SHARD of them."""
    masters = await asyncio.to_thread(inst.cluster.master_ports)
    by_shard: dict[int, list[User]] = {m: [] for m in masters}
    for _ in range(200):
        if all(len(u) >= USERS_PER_SHARD for u in by_shard.values()):
            break
        name = f"shard{uuid.uuid4().hex[:8]}"
        uid, token = await sign_up(http, name, "pw-" + name)
        shard = await asyncio.to_thread(inst.cluster.owner, sharded_channel(user_room(uid)))
        if len(by_shard[shard]) < USERS_PER_SHARD:
            tracker = ProgressTracker(name, inst.web.url, token=token, transport="websocket")
            by_shard[shard].append(User(uid, token, shard, tracker))
    users = [u for group in by_shard.values() for u in group]
    assert len(users) == USERS_PER_SHARD * len(masters), "users on every shard"
    return users


async def _start_job(
    http: httpx.AsyncClient, inst: Installation, user: User, videos: int = VIDEOS
) -> str:
    h = {"Authorization": f"Bearer {user.token}"}
    rows = [
        {"url": f"{inst.origin.url}/{inst.samples[0]}", "title": f"v{i}"} for i in range(videos)
    ]
    return await import_videos(http, h, "sharded", rows)


async def _history(http: httpx.AsyncClient, user: User) -> tuple[str, list[dict[str, Any]]]:
    h = {"Authorization": f"Bearer {user.token}"}
    row = (await http.get(f"/api/jobs/{user.job}", headers=h)).json()
    r = await http.get(
        f"/api/jobs/{user.job}/progress-history",
        headers=h,
        params={"after_seq": 0, "limit": 1000},
    )
    assert r.status_code == 200, r.text
    page = r.json()
    return row["status"], page["events"] if isinstance(page, dict) else page


def _spublish_calls(cluster: RedisClusterRig, port: int) -> int:
    """SPUBLISH commands the node on ``port`` executed (0 before the first)."""
    stats = cluster.ask(port, "INFO", "commandstats") or {}
    return int(stats.get("cmdstat_spublish", {}).get("calls", 0))


async def _published(http: httpx.AsyncClient) -> tuple[int, int]:
    """(events accepted by Redis, publishes failed) summed over the web and the worker."""
    text = (await http.get("/metrics")).text
    got = sample_value(text, "reeltrack_progress_events_published_total") or 0
    failed = sample_value(text, "reeltrack_progress_publish_failures_total") or 0
    return int(got), int(failed)


async def _run_all(http: httpx.AsyncClient, inst: Installation, users: list[User]) -> None:
    """Wait until every user's current job ended and its client equals its history."""

    async def all_done() -> bool:
        for u in users:
            status, _ = await _history(http, u)
            if status not in {"completed", "failed", "cancelled"}:
                return False
        return True

    await wait_for(all_done, 120, "every job to end", interval=0.3)
    histories = {u.uid: (await _history(http, u))[1] for u in users}
    await wait_for(
        lambda: all(u.tracker.history(u.job) == histories[u.uid] for u in users),
        30,
        "every client equal to its job's history",
    )


@dataclass
class FaultRow:
    fault: str
    published: int
    failed: int
    retried: int
    in_history: int
    missed: list[int]
    resynced: set[str]
    affected: set[str]
    recovered_s: float


def _retried(inst: Installation) -> int:
    return sum("went through after" in ln for ln in inst.worker.output().splitlines())


async def _count_round(
    http: httpx.AsyncClient, inst: Installation, users: list[User]
) -> list[tuple[int, str, list[User], int, int]]:
    """A fault-free round: per master (port, id, users, events of its users, SPUBLISHes)."""
    masters = await asyncio.to_thread(inst.cluster.master_ports)
    before = {m: await asyncio.to_thread(_spublish_calls, inst.cluster, m) for m in masters}
    for u in users:
        u.job = await _start_job(http, inst, u, COUNT_VIDEOS)
    await _run_all(http, inst, users)
    rows = []
    for m in masters:
        mine = [u for u in users if u.shard == m]
        events = sum(len(u.tracker.history(u.job)) for u in mine)
        calls = await asyncio.to_thread(_spublish_calls, inst.cluster, m) - before[m]
        node = await asyncio.to_thread(inst.cluster.node_id, m)
        rows.append((m, node, mine, events, calls))
    return rows


async def _fault_round(
    http: httpx.AsyncClient,
    inst: Installation,
    users: list[User],
    name: str,
    inject: Any,
) -> FaultRow:
    """Jobs for every user; once all move, ``inject()`` (returns the affected users and
    an awaitable that ends when they are served again); then every job to its end."""
    published0, failed0 = await _published(http)
    retried0 = _retried(inst)
    for u in users:
        u.job = await _start_job(http, inst, u)
    await wait_for(
        lambda: all(u.tracker.last_seq(u.job) >= 2 for u in users), 60, "every job moving"
    )
    before = {u.uid: u.tracker.resyncs for u in users}
    t0 = time.monotonic()
    affected = await inject()
    await wait_for(
        lambda: all(u.tracker.resyncs > before[u.uid] for u in affected),
        30,
        f"resync to the affected sockets ({name})",
    )
    recovered_s = time.monotonic() - t0
    await _run_all(http, inst, users)
    published1, failed1 = await _published(http)
    histories = {u.uid: await _history(http, u) for u in users}
    for u in users:
        status, history = histories[u.uid]
        assert status == "completed", (name, u.uid, status)
        assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
        assert not u.tracker.conflicts
    return FaultRow(
        fault=name,
        published=published1 - published0,
        failed=failed1 - failed0,
        retried=_retried(inst) - retried0,
        in_history=sum(len(h) for _, h in histories.values()),
        missed=[len(histories[u.uid][1]) - len(u.tracker.history(u.job)) for u in users],
        resynced={u.uid for u in users if u.tracker.resyncs > before[u.uid]},
        affected={u.uid for u in affected},
        recovered_s=recovered_s,
    )


async def test_each_shard_carries_its_users_and_faults_resync_only_theirs(
    installation: Installation,
) -> None:
    inst = installation
    faults: list[FaultRow] = []
    async with httpx.AsyncClient(base_url=inst.web.url, timeout=30) as http:
        users = await _users(http, inst)
        await asyncio.gather(*(u.tracker.start() for u in users))
        try:
            print("\nuser     slot   master")
            for u in users:
                print(f"{u.uid[:8]} {u.slot:>5}   :{u.shard}")
            shards = await _count_round(http, inst, users)

            async def migrate() -> list[User]:
                victim = users[0]
                target = next(u.shard for u in users if u.shard != victim.shard)
                await asyncio.to_thread(inst.cluster.migrate_slot, victim.slot, target)
                moved = [u for u in users if u.slot == victim.slot]
                for u in moved:
                    u.shard = target
                return moved

            async def cut_subscribers() -> list[User]:
                port = users[-1].shard
                assert await asyncio.to_thread(inst.cluster.kill_subscribers, port) > 0
                return [u for u in users if u.shard == port]

            async def kill_master() -> list[User]:
                dead = next(u.shard for u in users if u.shard != users[0].shard)
                on_dead = [u for u in users if u.shard == dead]
                await asyncio.to_thread(inst.cluster.kill_master, dead)
                promoted = await asyncio.to_thread(
                    inst.cluster.wait_owner_changed, on_dead[0].slot, dead
                )
                for u in on_dead:
                    u.shard = promoted
                return on_dead

            faults.append(await _fault_round(http, inst, users, "slot migration", migrate))
            faults.append(await _fault_round(http, inst, users, "subscribers cut", cut_subscribers))
            faults.append(await _fault_round(http, inst, users, "master killed", kill_master))
        finally:
            await asyncio.gather(*(u.tracker.stop() for u in users), return_exceptions=True)

    print("\nmaster  node id   users              events of its users  SPUBLISH executed")
    for port, node, mine, events, calls in shards:
        names = ",".join(u.uid[:8] for u in mine)
        print(f":{port}  {node[:8]}  {names:<17} {events:>20} {calls:>18}")
    print(
        "\n(published: by the worker; the API publishes each job's first event too)"
        "\nfault            published  failed  retried  in history  missed/client"
        "  resynced/affected  resync after"
    )
    for f in faults:
        print(
            f"{f.fault:<16} {f.published:>9} {f.failed:>7} {f.retried:>8} {f.in_history:>11}"
            f"  {max(f.missed):>13}  {len(f.resynced):>8}/{len(f.affected):<8}"
            f"  {f.recovered_s:>10.1f}s"
        )
    for port, _node, _mine, events, calls in shards:
        assert events > 0 and calls == events, f"master :{port} carried {calls} for {events}"
    for f in faults:
        assert f.missed == [0] * len(users), f
        assert f.resynced == f.affected, f"{f.fault}: resync beyond the affected sockets"
