"""Connections: 1k, 5k, 10k websocket clients held by one web process.  Per step:
connect time (wall clock for all, and per client p50/p99), memory per connection (RSS
delta / N), idle CPU while holding them, and whether every client stayed connected and
had its pings answered (ping interval shortened so each client is pinged during the
hold).  Stock python-socketio first, then reeltrack.

``python -m tests.benchmarks.connections [--steps 1000,5000,10000] [--hold 12]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from tests.benchmarks import common
from tests.benchmarks.common import LoadFleet, print_table
from tests.benchmarks.env import BenchEnv, bench_env
from tests.benchmarks.targets import Target

PING_INTERVAL = 10.0


async def measure(
    target: Target, n: int, hold: float, procs: int, ping_interval: float = PING_INTERVAL
) -> dict[str, Any]:
    (server,) = target.start(count=1, ping_interval=ping_interval)
    try:
        await asyncio.sleep(common.SETTLE_S)
        rss0 = server.rss()
        url = f"ws://127.0.0.1:{server.port}/api/ws/progress/"
        async with LoadFleet(url, procs) as fleet:
            conn = await fleet.connect(target.specs(n), concurrency=100)
            if conn["failed"]:
                print(f"  [{target.name}] {conn['failed']} failed, e.g. {conn['errors'][:3]}")
            await asyncio.sleep(common.SETTLE_S)
            rss1 = server.rss()
            st0 = await fleet.stats()
            cpu0 = server.cpu()
            t0 = time.monotonic()
            await asyncio.sleep(hold)
            idle_cpu = (server.cpu() - cpu0) / (time.monotonic() - t0)
            st1 = await fleet.stats()
            pings = st1["pings"] - st0["pings"]
            row = {
                "clients": n,
                "connected": conn["connected"],
                "failed": conn["failed"],
                "connect_wall_s": round(conn["wall_s"], 1),
                "connect_p50_ms": conn["connect_ms"]["p50"],
                "connect_p99_ms": conn["connect_ms"]["p99"],
                "rss_base_mb": round(rss0 / 2**20, 1),
                "kb_per_conn": round((rss1 - rss0) / max(conn["connected"], 1) / 1024, 1),
                "idle_cpu_pct": round(idle_cpu * 100, 1),
                "still_connected": st1["connected"],
                "pings_answered": pings,
                "pings_ok": "yes"
                if pings >= conn["connected"] * max(1, int(hold // ping_interval - 1))
                and st1["connected"] == n
                else "NO",
            }
            print(f"  [{target.name}] {row}", flush=True)
            return row
    finally:
        target.stop()


async def run(
    steps: list[int] | None = None,
    hold: float = 22.0,
    procs: int = 4,
    targets: tuple[str, ...] = ("stock", "reeltrack"),
    ping_interval: float = PING_INTERVAL,
    shared: BenchEnv | None = None,
) -> dict[str, Any]:
    steps = steps or [1000, 5000, 10000]
    results: dict[str, list[dict[str, Any]]] = {}
    async with bench_env(
        shared, need_db=any(t.startswith("reeltrack") for t in targets), users=max(steps)
    ) as env:
        for name in targets:
            rows = []
            for n in steps:
                rows.append(await measure(env.target(name), n, hold, procs, ping_interval))
            results[name] = rows
            print_table(f"connections held by one web process: {name}", rows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--hold", type=float, default=22.0)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--targets", default="stock,reeltrack")
    args = parser.parse_args()
    asyncio.run(run(args.steps, args.hold, args.procs, tuple(args.targets.split(","))))


if __name__ == "__main__":
    main()
