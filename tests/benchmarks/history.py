"""History: 1M progress events in PostgreSQL (100 users x 10 jobs x 1,000 events).

Measures, against a running ``reeltrack serve``:
- ``GET /api/jobs/{id}/progress-history?after_seq=N&limit=100`` (random job, random
  cursor): p50/p99 over HTTP, and the same page as a bare SQL query;
- ``resume`` over Socket.IO for 10 jobs (each 10 events behind: 100 events back);
and, as the baseline in the same run, the naive page a seed-style implementation uses:
``ORDER BY created_at OFFSET n LIMIT 100`` (the DESC created_at index only).

``python -m tests.benchmarks.history [--events-per-job 1000] [--samples 500]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from typing import Any

import asyncpg
import httpx
import socketio

from socket_layer.protocol import SOCKETIO_PATH
from tests.benchmarks.common import BENCH_SECRET, print_table, summary_ms
from tests.benchmarks.env import BenchEnv, _asyncpg_url, bench_env

USERS = 100
JOBS_PER_USER = 10

FILL_SQL = """
INSERT INTO job_progress_events (job_id, seq, created_at, progress_data)
SELECT j.id, s.seq, t.ts,
  jsonb_build_object(
    'job_id', j.id::text, 'seq', s.seq, 'status', 'processing',
    'progress', (s.seq * 100 / $1)::int, 'current_video', s.seq, 'total_videos', $1,
    'processed_videos', s.seq, 'failed_videos', 0,
    'message', 'Processing video ' || s.seq || '/' || $1 || ': ''Clip ' || s.seq || '''',
    'video_id', NULL, 'video_title', 'Clip ' || s.seq, 'error', NULL,
    'created_at', to_char(t.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
FROM processing_jobs j
CROSS JOIN generate_series(1, $1) AS s(seq)
CROSS JOIN LATERAL (
  SELECT j.created_at + s.seq * interval '10 ms' AS ts
) t
"""


async def fill(env: BenchEnv, events_per_job: int) -> dict[str, Any]:
    """Users, lists, jobs and events_per_job events per job; returns the layout."""
    assert env.database_url is not None
    conn = await asyncpg.connect(_asyncpg_url(env.database_url))
    users: dict[str, list[str]] = {}
    try:
        now = time.time()
        user_rows, list_rows, job_rows = [], [], []
        for u in range(USERS):
            uid = uuid.UUID(int=(7 << 64) | (u + 1))
            lid = uuid.UUID(int=(8 << 64) | (u + 1))
            user_rows.append((uid, f"hist{u}", "x"))
            list_rows.append((lid, uid, "bench"))
            users[str(uid)] = []
            for k in range(JOBS_PER_USER):
                jid = uuid.UUID(int=(9 << 64) | (u * JOBS_PER_USER + k + 1))
                users[str(uid)].append(str(jid))
                job_rows.append((jid, lid, uid, events_per_job))
        await conn.executemany(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES ($1,$2,$3,now())",
            user_rows,
        )
        await conn.executemany(
            "INSERT INTO video_lists (id, owner_id, name, created_at) VALUES ($1,$2,$3,now())",
            list_rows,
        )
        await conn.executemany(
            "INSERT INTO processing_jobs (id, list_id, owner_id, status, total_videos,"
            " processed_videos, failed_videos, last_seq, cancel_requested, created_at)"
            " VALUES ($1,$2,$3,'processing',$4,$4,0,$4,false,now() - interval '1 day')",
            job_rows,
        )
        await conn.execute(
            FILL_SQL + " WHERE j.id = ANY($2::uuid[])",
            events_per_job,
            [r[0] for r in job_rows],
        )
        await conn.execute("ANALYZE job_progress_events")
        total = await conn.fetchval(
            "SELECT count(*) FROM job_progress_events WHERE job_id = ANY($1::uuid[])",
            [r[0] for r in job_rows],
        )
        return {"users": users, "events": total, "fill_s": time.time() - now}
    finally:
        await conn.close()


async def sql_pages(
    url: str, jobs: list[str], per_job: int, samples: int, rng: random.Random
) -> dict[str, list[float]]:
    """The after_seq page and the naive OFFSET page as bare SQL, same cursors."""
    conn = await asyncpg.connect(_asyncpg_url(url))
    out: dict[str, list[float]] = {"after_seq": [], "offset": []}
    try:
        for _ in range(samples):
            job = uuid.UUID(rng.choice(jobs))
            after = rng.randrange(0, max(1, per_job - 100))
            t0 = time.perf_counter()
            await conn.fetch(
                "SELECT progress_data FROM job_progress_events WHERE job_id=$1 AND seq>$2"
                " ORDER BY seq LIMIT 100",
                job,
                after,
            )
            out["after_seq"].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await conn.fetch(
                "SELECT progress_data FROM job_progress_events WHERE job_id=$1"
                " ORDER BY created_at OFFSET $2 LIMIT 100",
                job,
                after,
            )
            out["offset"].append((time.perf_counter() - t0) * 1000)
    finally:
        await conn.close()
    return out


async def run(
    events_per_job: int = 1000, samples: int = 500, shared: BenchEnv | None = None
) -> dict[str, Any]:
    rng = random.Random(7)
    async with bench_env(shared, need_db=True) as env:
        layout = await fill(env, events_per_job)
        print(
            f"  {layout['events']} events in job_progress_events "
            f"(filled in {layout['fill_s']:.0f} s)",
            flush=True,
        )
        users: dict[str, list[str]] = layout["users"]
        all_jobs = [j for js in users.values() for j in js]
        assert env.database_url is not None
        sql = await sql_pages(env.database_url, all_jobs, events_per_job, samples, rng)

        resumes = min(samples, 300) + 10
        # what one resume costs, not the limiter: its user may send every sample at once
        target = env.target("reeltrack", {"RESUME_BURST": str(resumes)})
        (server,) = target.start(count=1)
        try:
            from quart_app.core.tokens import issue_token

            tokens = {u: issue_token(BENCH_SECRET, u) for u in users}
            rest: list[float] = []
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
                for i in range(samples + 20):
                    user = rng.choice(list(users))
                    job = rng.choice(users[user])
                    after = rng.randrange(0, max(1, events_per_job - 100))
                    t0 = time.perf_counter()
                    r = await http.get(
                        f"/api/jobs/{job}/progress-history",
                        params={"after_seq": after, "limit": 100},
                        headers={"Authorization": f"Bearer {tokens[user]}"},
                    )
                    took = (time.perf_counter() - t0) * 1000
                    if r.status_code != 200:
                        raise RuntimeError(f"history page: {r.status_code} {r.text[:200]}")
                    events = r.json()["events"]
                    if len(events) != min(100, events_per_job - after):
                        raise RuntimeError(f"history page had {len(events)} events")
                    if i >= 20:  # the first requests warm the connection pools
                        rest.append(took)

            resume: list[float] = []
            user = next(iter(users))  # the socket's user; resume asks for its 10 jobs
            sio = socketio.AsyncClient(logger=False, engineio_logger=False)
            await sio.connect(
                f"http://127.0.0.1:{server.port}",
                auth={"token": tokens[user]},
                transports=["websocket"],
                socketio_path=SOCKETIO_PATH,
            )
            try:
                behind = min(10, events_per_job)
                jobs = {j: events_per_job - behind for j in users[user]}
                for i in range(resumes):
                    t0 = time.perf_counter()
                    reply = await sio.call("resume", {"jobs": jobs}, timeout=30)
                    took = (time.perf_counter() - t0) * 1000
                    if "error" in reply:
                        raise RuntimeError(f"resume refused: {reply}")
                    if len(reply["events"]) != behind * JOBS_PER_USER or reply["truncated"]:
                        raise RuntimeError(f"resume returned {len(reply['events'])} events")
                    if i >= 10:
                        resume.append(took)
            finally:
                await sio.disconnect()
        finally:
            target.stop()

    rows = [
        {"what": "REST after_seq page of 100", **summary_ms(rest), "n": len(rest)},
        {"what": "SQL after_seq page of 100", **summary_ms(sql["after_seq"]), "n": samples},
        {
            "what": "baseline: SQL OFFSET page of 100 (created_at)",
            **summary_ms(sql["offset"]),
            "n": samples,
        },
        {
            "what": f"resume 10 jobs x {min(10, events_per_job)} events (socket)",
            **summary_ms(resume),
            "n": len(resume),
        },
    ]
    print_table(f"history, {layout['events']} events in PostgreSQL (ms)", rows)
    return {"events": layout["events"], "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events-per-job", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(run(args.events_per_job, args.samples))


if __name__ == "__main__":
    main()
