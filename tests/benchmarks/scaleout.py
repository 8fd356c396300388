"""Scale-out: web processes behind nginx (deploy/nginx.conf, sticky by client address).

Fan-out at rising rates through nginx with one and with two reeltrack web processes,
and with two stock python-socketio processes; after each run every process reports how
many pub/sub messages it took from Redis.  With python-socketio's single channel every
process receives every message; with a channel per user room each receives only the
messages of the users connected to it (the counts add up to what was published).

Each web process is capped at ``--cpu-per-process`` cores (default 0.25, a cgroup CPU
quota).  On a 2-core box the clients, the emitter, Redis and nginx share the cores with
the web processes: one uncapped process delivers ~24,000 events/s, where nginx and the
load generators already fill the box, so a second process could not show anything
more (measured: 0.5 core per process gave x1 = x2 = 20,000/s, both box-bound).  With
the cap, x1 and x2 differ only in how many equal processes deliver, and both stay
below what the box can generate.

``python -m tests.benchmarks.scaleout [--clients 1000] [--duration 10] [--cpu-per-process 0.25]``
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from tests.benchmarks.common import ServerProc, print_table
from tests.benchmarks.env import BenchEnv, bench_env
from tests.benchmarks.fanout import DEFAULT_RATES, measure_rates
from tests.topology.nginx import Nginx

#: cores per web process (see the module docstring); 0 = no cap
CPU_PER_PROCESS = 0.25


async def measure(
    env: BenchEnv,
    name: str,
    processes: int,
    clients: int,
    rates: list[int],
    duration: float,
    cpu_per_process: float = CPU_PER_PROCESS,
) -> dict[str, Any]:
    target = env.target(name)
    nginx: list[Nginx] = []

    def front(servers: list[ServerProc]) -> str:
        nginx.append(Nginx([s.port for s in servers], workers=1).start())
        return f"ws://127.0.0.1:{nginx[0].port}/api/ws/progress/"

    try:
        res = await measure_rates(
            target,
            clients,
            rates,
            duration,
            procs=2,
            servers=processes,
            front=front,
            cpu_per_process=cpu_per_process or None,
        )
    finally:
        for n in nginx:
            n.stop()
    counts = [s.pubsub_received() for s in target.stopped]
    cap = f", {cpu_per_process:g} core each" if res["cpu_capped"] else ", no CPU cap"
    res["label"] = f"{name} x{processes}"
    res["cap"] = cap
    res["received_per_process"] = [(c[0] + c[1]) if c is not None else None for c in counts]
    return res


async def run(
    clients: int = 1000,
    duration: float = 10.0,
    rates: list[int] | None = None,
    setups: tuple[tuple[str, int], ...] = (("reeltrack", 1), ("reeltrack", 2), ("stock", 2)),
    shared: BenchEnv | None = None,
    cpu_per_process: float = CPU_PER_PROCESS,
) -> dict[str, Any]:
    # finer steps than fan-out's: the ratio x2/x1 is read off them
    rates = rates or sorted({*DEFAULT_RATES, 5000, 7000, 9000, 11000, 14000, 18000, 22000})
    results = []
    async with bench_env(shared, need_db=True, users=clients) as env:
        for name, processes in setups:
            res = await measure(env, name, processes, clients, rates, duration, cpu_per_process)
            results.append(res)
            print_table(
                f"scale-out behind nginx: {res['label']}{res['cap']} "
                f"(max ok rate {res['max_ok_rate']}/s)",
                res["rows"],
            )
    summary = []
    for res in results:
        per = res["received_per_process"]
        summary.append(
            {
                "setup": res["label"] + res["cap"],
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
    parser.add_argument("--cpu-per-process", type=float, default=CPU_PER_PROCESS)
    args = parser.parse_args()
    asyncio.run(run(args.clients, args.duration, args.rates, cpu_per_process=args.cpu_per_process))


if __name__ == "__main__":
    main()
