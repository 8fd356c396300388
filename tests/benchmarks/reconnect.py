"""Reconnect storm: N websocket clients (one user and one job each, 20 events seen) on
one web process; the process is killed (SIGKILL) and restarted on the same port while
5 more events per job are written to the database.  Measured: time from the restart
until every client has reconnected (socket.io-client's backoff: 1 s doubling to 5 s,
+-50 %) and until every client has resumed completely (its last seq = the job's), and
the database statements per reconnect (connect + snapshot + resume), from PostgreSQL's
own transaction counters.  The stock baseline only reconnects (it has no resume).

``python -m tests.benchmarks.reconnect [--clients 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from tests.benchmarks.common import LoadFleet, print_table
from tests.benchmarks.env import BenchEnv, bench_env
from tests.benchmarks.history import FILL_SQL
from tests.benchmarks.targets import Target, bench_users

SEEN = 20
MISSED = 5
#: PostgreSQL backends flush their statistics within 10 s of going idle
PG_STATS_SETTLE_S = 11.0


async def xacts(env: BenchEnv) -> int:
    assert env.database_url is not None
    name = env.database_url.rsplit("/", 1)[1]
    rows = await env.sql(
        "SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = $1", name
    )
    return int(rows[0]["n"])


async def wait_until(fleet: LoadFleet, key: str, n: int, limit: float) -> float | None:
    """Seconds until ``stats()[key] >= n`` (None after ``limit`` seconds)."""
    got = await wait_all(fleet, {key: n}, limit, time.monotonic())
    return got[key]


async def wait_all(
    fleet: LoadFleet, goals: dict[str, int], limit: float, since: float
) -> dict[str, float | None]:
    """For each ``stats()[key] >= n``: seconds from ``since`` until it first held."""
    reached: dict[str, float | None] = dict.fromkeys(goals)
    while time.monotonic() - since < limit and any(v is None for v in reached.values()):
        st = await fleet.stats()
        for key, n in goals.items():
            if reached[key] is None and st[key] >= n:
                reached[key] = time.monotonic() - since
        await asyncio.sleep(0.05)
    return reached


async def storm(
    env: BenchEnv, target: Target, clients: int, count_queries: bool, limit: float = 60.0
) -> dict[str, Any]:
    resumes = target.name != "stock"
    specs = target.specs(clients)
    (server,) = target.start(count=1)
    try:
        url = f"ws://127.0.0.1:{server.port}/api/ws/progress/"
        async with LoadFleet(url, 2, extra=["--reconnect"]) as fleet:
            conn = await fleet.connect(specs, concurrency=50)
            if conn["failed"]:
                raise RuntimeError(f"{conn['failed']} clients failed to connect")
            if resumes:  # catch up on the 20 events first
                seqs = {s.jobs[0]: SEEN for s in specs}
                await fleet.broadcast({"cmd": "expect", "seqs": seqs, "resume_on_connect": True})
                await fleet.broadcast({"cmd": "resume"})
                if await wait_until(fleet, "complete", clients, 60) is None:
                    raise RuntimeError("clients did not catch up before the storm")
            q0 = 0
            if count_queries and resumes:
                await asyncio.sleep(PG_STATS_SETTLE_S)
                q0 = await xacts(env)
            server.kill()
            if resumes:
                assert env.database_url is not None
                jobs = [uuid.UUID(s.jobs[0]) for s in specs]
                await env.sql(
                    FILL_SQL.replace("generate_series(1, $1)", f"generate_series({SEEN + 1}, $1)")
                    + " WHERE j.id = ANY($2::uuid[])",
                    SEEN + MISSED,
                    jobs,
                )
                await env.sql(
                    "UPDATE processing_jobs SET last_seq = $1 WHERE id = ANY($2)",
                    SEEN + MISSED,
                    jobs,
                )
                seqs = {s.jobs[0]: SEEN + MISSED for s in specs}
                await fleet.broadcast({"cmd": "expect", "seqs": seqs, "resume_on_connect": True})
            before = (await fleet.stats())["reconnects"]
            t0 = time.monotonic()
            server.start(timeout=60)
            started = time.monotonic() - t0
            goals = {"reconnects": before + clients}
            if resumes:
                goals["complete"] = clients
            reached = await wait_all(fleet, goals, limit, t0)
            t_reconnected, t_resumed = reached["reconnects"], reached.get("complete")
            elapsed = time.monotonic() - t0
            queries = None
            if count_queries and resumes:
                await asyncio.sleep(PG_STATS_SETTLE_S)
                queries = (await xacts(env) - q0) / clients
            st = await fleet.stats()
            return {
                "target": target.name,
                "clients": clients,
                "listening_s": round(started, 1),
                "all_reconnected_s": round(t_reconnected, 1) if t_reconnected else "NO",
                "all_resumed_s": (round(t_resumed, 1) if t_resumed else "NO") if resumes else "-",
                "complete": st["complete"] if resumes else "-",
                "db_statements_per_reconnect": round(queries, 1) if queries else "-",
                "wall_s": round(elapsed, 1),
            }
    finally:
        target.stop()


async def run(
    clients: int = 1000,
    targets: tuple[str, ...] = ("stock", "reeltrack"),
    count_queries: bool = True,
    shared: BenchEnv | None = None,
) -> dict[str, Any]:
    rows = []
    async with bench_env(shared, need_db=True, users=clients) as env:
        assert env.database_url is not None
        jobs = [uuid.UUID(j) for _, j in bench_users(clients)]
        await env.sql(FILL_SQL + " WHERE j.id = ANY($2::uuid[])", SEEN, jobs)
        await env.sql("UPDATE processing_jobs SET last_seq = $1 WHERE id = ANY($2)", SEEN, jobs)
        for name in targets:
            rows.append(await storm(env, env.target(name), clients, count_queries))
            print(f"  {rows[-1]}", flush=True)
    print_table(
        f"reconnect storm: {clients} clients, web process killed and restarted "
        f"({MISSED} events per job written meanwhile); seconds from the restart "
        "(process start included)",
        rows,
    )
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--targets", default="stock,reeltrack")
    parser.add_argument("--no-queries", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.clients, tuple(args.targets.split(",")), not args.no_queries))


if __name__ == "__main__":
    main()
