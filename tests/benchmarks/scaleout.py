"""Scale-out: web processes behind nginx (deploy/nginx.conf, sticky by client address).

Fan-out at rising rates through nginx with one and with two reeltrack web processes,
and with two stock python-socketio processes; after each run every process reports how
many pub/sub messages it took from Redis.  With python-socketio's single channel every
process receives every message; with a channel per user room each receives only the
messages of the users connected to it (the counts add up to what was published).

``python -m tests.benchmarks.scaleout [--clients 1000] [--duration 10]``
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from tests.benchmarks.common import ServerProc, print_table
from tests.benchmarks.env import BenchEnv, bench_env
from tests.benchmarks.fanout import DEFAULT_RATES, measure_rates
from tests.topology.nginx import Nginx


async def measure(
    env: BenchEnv, name: str, processes: int, clients: int, rates: list[int], duration: float
) -> dict[str, Any]:
    target = env.target(name)
    nginx: list[Nginx] = []

    def front(servers: list[ServerProc]) -> str:
        nginx.append(Nginx([s.port for s in servers], workers=1).start())
        return f"ws://127.0.0.1:{nginx[0].port}/api/ws/progress/"

    try:
        res = await measure_rates(
            target, clients, rates, duration, procs=2, servers=processes, front=front
        )
    finally:
        for n in nginx:
            n.stop()
    counts = [s.pubsub_received() for s in target.stopped]
    res["label"] = f"{name} x{processes}"
    res["received_per_process"] = [(c[0] + c[1]) if c is not None else None for c in counts]
    return res


async def run(
    clients: int = 1000,
    duration: float = 10.0,
    rates: list[int] | None = None,
    setups: tuple[tuple[str, int], ...] = (("reeltrack", 1), ("reeltrack", 2), ("stock", 2)),
    shared: BenchEnv | None = None,
) -> dict[str, Any]:
    rates = rates or DEFAULT_RATES + [14000, 16000]
    results = []
    async with bench_env(shared, need_db=True, users=clients) as env:
        for name, processes in setups:
            res = await measure(env, name, processes, clients, rates, duration)
            results.append(res)
            print_table(
                f"scale-out behind nginx: {res['label']} (max ok rate {res['max_ok_rate']}/s)",
                res["rows"],
            )
    summary = []
    for res in results:
        per = res["received_per_process"]
        summary.append(
            {
                "setup": res["label"],
                "max_ok_rate": res["max_ok_rate"],
                "published": res["total_sent"],
                "received_per_process": "/".join(str(x) for x in per),
                "received_total": sum(x or 0 for x in per),
            }
        )
    print_table("scale-out summary (pub/sub messages each web process took from Redis)", summary)
    one = next((r for r in results if r["label"] == "reeltrack x1"), None)
    two = next((r for r in results if r["label"] == "reeltrack x2"), None)
    if one and two:
        print(
            f"two reeltrack processes / one: {two['max_ok_rate']}/{one['max_ok_rate']} = "
            f"{two['max_ok_rate'] / max(one['max_ok_rate'], 1):.2f}x"
        )
    return {"results": results, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=None)
    args = parser.parse_args()
    asyncio.run(run(args.clients, args.duration, args.rates))


if __name__ == "__main__":
    main()
