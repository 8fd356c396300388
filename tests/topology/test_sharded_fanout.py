"""The fan-out on a Redis Cluster (FANOUT_REDIS_CLUSTER): a 3-master cluster with a
replica each, one web process and one worker on it (the queue on its own Redis),
dashboard clients of users whose channels land on all three shards.

While every user's job publishes, one user's slot is migrated to another master, then
a master is SIGKILLed (its replica promoted).  After each fault only the sockets of the
users whose channel was on the moved shard get ``resync``; everyone ends with exactly
the job's history, seq contiguous.
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

from quart_app.sample_video import make_video
from socket_layer.protocol import sharded_channel, user_room
from tests.conftest import live_config
from tests.faults.rig import MediaOrigin
from tests.support.live import LiveServer, sign_up
from tests.support.progress_client import ProgressTracker
from tests.support.redis_cluster import RedisClusterRig, cluster_support
from tests.support.services import RedisServer
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(cluster_support() is not None, reason=str(cluster_support())),
]

USERS_PER_SHARD = 2
VIDEOS = 12
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
    web = LiveServer(config, name="sharded-web")
    worker: WorkerProcess | None = None
    try:
        await web.astart(60)
        worker = WorkerProcess(config, name="sharded-worker")
        yield Installation(cluster, web, worker, origin, samples)
    finally:
        if worker is not None:
            await asyncio.to_thread(worker.kill_all)
            worker.close()
        await asyncio.to_thread(web.close)
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


async def _start_job(http: httpx.AsyncClient, inst: Installation, user: User) -> str:
    h = {"Authorization": f"Bearer {user.token}"}
    r = await http.post("/api/lists", json={"name": "sharded"}, headers=h)
    assert r.status_code == 201, r.text
    rows = [
        {"url": f"{inst.origin.url}/{inst.samples[0]}", "title": f"v{i}"} for i in range(VIDEOS)
    ]
    r = await http.post(
        f"/api/lists/{r.json()['id']}/videos/bulk", json={"videos": rows}, headers=h
    )
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


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


async def test_shard_moves_resync_only_the_sockets_on_that_shard(
    installation: Installation,
) -> None:
    inst = installation
    async with httpx.AsyncClient(base_url=inst.web.url, timeout=30) as http:
        users = await _users(http, inst)
        await asyncio.gather(*(u.tracker.start() for u in users))
        try:
            for u in users:
                u.job = await _start_job(http, inst, u)
            for u in users:
                print(f"user {u.uid}: slot {u.slot} on master :{u.shard}")

            def moving(n: int) -> bool:
                return all(u.tracker.last_seq(u.job) >= n for u in users)

            await wait_for(lambda: moving(2), 60, "every user's job moving")

            # fault 1: one user's slot migrated to another master while events flow
            victim = users[0]
            target = next(u.shard for u in users if u.shard != victim.shard)
            before = {u.uid: u.tracker.resyncs for u in users}
            live_before = victim.tracker.live_events
            t0 = time.monotonic()
            await asyncio.to_thread(inst.cluster.migrate_slot, victim.slot, target)
            migrated = [u for u in users if u.slot == victim.slot]
            await wait_for(
                lambda: all(u.tracker.resyncs > before[u.uid] for u in migrated),
                15,
                "resync to the migrated user's sockets",
            )
            await wait_for(
                lambda: victim.tracker.live_events > live_before, 30, "live events after the move"
            )
            migrate_s = time.monotonic() - t0
            resynced_1 = {u.uid for u in users if u.tracker.resyncs > before[u.uid]}
            for u in migrated:
                u.shard = target

            # fault 2: a master SIGKILLed, its replica promoted
            dead = next(u.shard for u in users if u.shard != target)
            on_dead = [u for u in users if u.shard == dead]
            before = {u.uid: u.tracker.resyncs for u in users}
            t0 = time.monotonic()
            await asyncio.to_thread(inst.cluster.kill_master, dead)
            promoted = await asyncio.to_thread(
                inst.cluster.wait_owner_changed, on_dead[0].slot, dead
            )
            promote_s = time.monotonic() - t0
            await wait_for(
                lambda: all(u.tracker.resyncs > before[u.uid] for u in on_dead),
                30,
                "resync to the sockets of the failed master's users",
            )
            failover_s = time.monotonic() - t0
            resynced_2 = {u.uid for u in users if u.tracker.resyncs > before[u.uid]}

            async def all_done() -> bool:
                for u in users:
                    status, _ = await _history(http, u)
                    if status not in {"completed", "failed", "cancelled"}:
                        return False
                return True

            await wait_for(all_done, 120, "every job to end", interval=0.3)
            histories = {u.uid: await _history(http, u) for u in users}
            await wait_for(
                lambda: all(u.tracker.history(u.job) == histories[u.uid][1] for u in users),
                30,
                "every client equal to its job's history",
            )
        finally:
            await asyncio.gather(*(u.tracker.stop() for u in users), return_exceptions=True)
            failed = [ln for ln in inst.worker.output().splitlines() if "publish of seq" in ln]
            print(f"worker: {len(failed)} publishes failed (clients heal from the history)")

    print(
        f"\nmigration of slot {victim.slot} -> :{target}: resynced {sorted(resynced_1)}"
        f" (affected {sorted(u.uid for u in migrated)}), live again after {migrate_s:.1f}s"
        f"\nmaster :{dead} killed: :{promoted} promoted after {promote_s:.1f}s, resynced"
        f" {sorted(resynced_2)} (affected {sorted(u.uid for u in on_dead)}) after {failover_s:.1f}s"
    )
    for u in users:
        status, history = histories[u.uid]
        print(f"user {u.uid}: {len(history)} events, {u.tracker.stats()}")
        assert status == "completed"
        assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
        assert not u.tracker.conflicts
    assert resynced_1 == {u.uid for u in migrated}, "resync beyond the migrated slot's users"
    assert resynced_2 == {u.uid for u in on_dead}, "resync beyond the failed master's users"
