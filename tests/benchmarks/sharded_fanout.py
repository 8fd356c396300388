"""Sharded fan-out: the same two web processes on a Redis Cluster of 1, 2 and 3 masters
(FANOUT_REDIS_CLUSTER), the external emitter SPUBLISHing each user's events on the
master owning the user's channel.  Per shard count: the highest rate with p99 < 100 ms
and no loss (the fan-out method of :mod:`tests.benchmarks.fanout`), the CPU the
masters used, and whether the masters or the web processes ran out first.

The web processes are capped at ``--cpu-per-process`` cores each and every master at
``--cpu-per-master`` (cgroup CPU quotas, as in the scale-out benchmark): on a 2-core
box an uncapped Redis is never the ceiling of anything the clients can take, so the
master cap stands for a Redis that is busy with more than this box can generate.
With the same web processes, a rising max rate from 1 to 3 masters means the Redis
side was the ceiling and sharding lifts it; a flat one means the web processes are.

``python -m tests.benchmarks.sharded_fanout [--clients 500] [--duration 5]
[--cpu-per-process 0.5] [--cpu-per-master 0.1]``
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from tests.benchmarks.common import CpuQuota, print_table
from tests.benchmarks.env import BenchEnv, bench_env
from tests.benchmarks.fanout import DEFAULT_RATES, measure_rates
from tests.support.redis_cluster import RedisClusterRig

CPU_PER_PROCESS = 0.5
CPU_PER_MASTER = 0.1
WEB_PROCESSES = 2


async def measure(
    env: BenchEnv,
    masters: int,
    clients: int,
    rates: list[int],
    duration: float,
    cpu_per_process: float,
    cpu_per_master: float,
) -> dict[str, Any]:
    rig = await asyncio.to_thread(RedisClusterRig(masters=masters, replicas=0).start)
    quotas: list[CpuQuota] = []
    try:
        pids = [s.proc.pid for s in rig.servers if s.proc is not None]
        if cpu_per_master:
            quotas = [q for p in pids if (q := CpuQuota.apply(p, cpu_per_master)) is not None]
        target = env.target("reeltrack", {"FANOUT_REDIS_CLUSTER": rig.nodes})
        res = await measure_rates(
            target,
            clients,
            rates,
            duration,
            procs=2,
            servers=WEB_PROCESSES,
            cpu_per_process=cpu_per_process or None,
            cluster=rig.nodes,
            redis_pids=pids,
        )
    finally:
        for quota in quotas:
            quota.remove()
        await asyncio.to_thread(rig.stop)
    res["masters"] = masters
    res["masters_capped"] = bool(quotas) and len(quotas) == masters
    return res


async def run(
    clients: int = 500,
    duration: float = 5.0,
    rates: list[int] | None = None,
    shards: tuple[int, ...] = (1, 2, 3),
    cpu_per_process: float = CPU_PER_PROCESS,
    cpu_per_master: float = CPU_PER_MASTER,
    shared: BenchEnv | None = None,
) -> dict[str, Any]:
    rates = rates or DEFAULT_RATES
    results = []
    async with bench_env(shared, need_db=True, users=clients) as env:
        for n in shards:
            res = await measure(env, n, clients, rates, duration, cpu_per_process, cpu_per_master)
            results.append(res)
            print_table(
                f"sharded fan-out: {n} master(s), {WEB_PROCESSES} web processes "
                f"(max ok rate {res['max_ok_rate']}/s)",
                res["rows"],
            )
    summary = []
    for res in results:
        top = next((r for r in res["rows"] if r["rate"] == res["max_ok_rate"]), None)
        first_bad = next((r for r in res["rows"] if r["ok"] != "yes"), None)
        summary.append(
            {
                "masters": res["masters"],
                "max_ok_rate": res["max_ok_rate"],
                "p99_ms_at_max": top["p99_ms"] if top else None,
                "web_cpu_s_at_max": top["cpu_s"] if top else None,
                "clients/emitter/redis_cpu_s_at_max": top["others_cpu_s"] if top else None,
                "first_failing": (
                    f"{first_bad['rate']}/s p99 {first_bad['p99_ms']} ms, "
                    f"{first_bad['delivered']}/{first_bad['sent']}"
                    if first_bad
                    else None
                ),
                "caps": (
                    f"web {cpu_per_process:g}x{WEB_PROCESSES}"
                    f"{'' if res['cpu_capped'] else ' (not applied)'}, "
                    f"master {cpu_per_master:g}"
                    f"{'' if res['masters_capped'] else ' (not applied)'}"
                ),
            }
        )
    print_table(
        f"sharded fan-out summary, {clients} clients, {duration:g} s per rate",
        summary,
    )
    return {"results": results, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--shards", type=lambda s: tuple(int(x) for x in s.split(",")))
    parser.add_argument("--cpu-per-process", type=float, default=CPU_PER_PROCESS)
    parser.add_argument("--cpu-per-master", type=float, default=CPU_PER_MASTER)
    args = parser.parse_args()
    asyncio.run(
        run(
            args.clients,
            args.duration,
            args.rates,
            args.shards or (1, 2, 3),
            args.cpu_per_process,
            args.cpu_per_master,
        )
    )


if __name__ == "__main__":
    main()
