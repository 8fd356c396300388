"""Fan-out: N websocket clients (one user each) on one web process, an external emitter
publishing progress to random users at rising rates.  Per rate: delivered/sent,
p50/p95/p99 latency (send -> client receive), server CPU per 1,000 deliveries; the
highest rate with p99 < 100 ms and no loss.  Stock python-socketio first, then reeltrack.

``python -m tests.benchmarks.fanout [--clients 1000] [--duration 10] [--rates ...]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from tests.benchmarks import common
from tests.benchmarks.common import (
    CpuQuota,
    LoadFleet,
    ServerProc,
    cpu_seconds,
    print_table,
    run_emitter,
    summary_ms,
)
from tests.benchmarks.env import BenchEnv, bench_env
from tests.benchmarks.targets import Target

P99_LIMIT_MS = 100.0
#: rising until two rates in a row fail: the top is where this 2-core box (web process,
#: clients, emitter and Redis together) runs out, not a cap on the result
DEFAULT_RATES = [
    200,
    1000,
    2000,
    3000,
    4500,
    6000,
    8000,
    10000,
    12000,
    16000,
    20000,
    24000,
    28000,
    32000,
    36000,
    40000,
    48000,
]


def redis_cpu(target: Target) -> float:
    """CPU seconds of the private redis-server."""
    return cpu_seconds(target.redis_pid) if target.redis_pid else 0.0


def _redis_cpu(target: Target, pids: list[int] | None) -> float:
    return redis_cpu(target) if pids is None else sum(cpu_seconds(p) for p in pids)


async def drain(fleet: LoadFleet, expected: int, wait_s: float = 3.0) -> dict[str, Any]:
    """Wait until the clients received ``expected`` events (or ``wait_s``); no reset."""
    deadline = time.monotonic() + wait_s
    while True:
        st = await fleet.stats(reset=False)
        if st["received"] >= expected or time.monotonic() > deadline:
            return st
        await asyncio.sleep(0.1)


async def measure_rates(
    target: Target,
    clients: int,
    rates: list[int],
    duration: float,
    procs: int,
    stop_after_failures: int = 2,
    servers: int = 1,
    front: Callable[[list[ServerProc]], str] | None = None,
    cpu_per_process: float | None = None,
    cluster: str = "",
    redis_pids: list[int] | None = None,
) -> dict[str, Any]:
    """Start ``target`` (``servers`` processes), connect the clients, walk the rates.

    ``front(servers)`` returns the URL of what stands in front of them (nginx); without
    it the clients go straight to the processes, round-robin.  ``cpu_per_process`` caps
    each process at that many cores (:class:`CpuQuota`; ``cpu_capped`` in the result
    says whether the cap could be applied).  ``cluster``: the emitter SPUBLISHes on that
    Redis Cluster; ``redis_pids``: the Redis processes whose CPU is reported (default the
    target's one)."""
    started = target.start(count=servers)
    quotas: list[CpuQuota] = []
    if cpu_per_process is not None:
        for server in started:
            quota = CpuQuota.apply(server.pid, cpu_per_process)
            if quota is not None:
                quotas.append(quota)
    try:
        specs = target.specs(clients)
        if front is None:
            urls = [f"ws://127.0.0.1:{s.port}/api/ws/progress/" for s in started]
        else:
            urls = [front(started)]
        fleets = [LoadFleet(u, max(1, procs // len(urls))) for u in urls]
        for f in fleets:
            await f.__aenter__()
        try:
            conn: dict[str, Any] = {"connected": 0, "failed": 0}
            for i, f in enumerate(fleets):
                r = await f.connect(specs[i :: len(fleets)], concurrency=50)
                conn["connected"] += r["connected"]
                conn["failed"] += r["failed"]
            if conn["failed"]:
                raise RuntimeError(f"{target.name}: {conn['failed']} clients failed to connect")
            await asyncio.sleep(common.SETTLE_S)  # let connect-time work settle
            rows: list[dict[str, Any]] = []
            failures = 0
            best = 0
            for rate in rates:
                for f in fleets:
                    await f.stats(reset=True)
                cpu0 = [s.cpu() for s in started]
                client_cpu0 = sum(f.cpu() for f in fleets)
                redis_cpu0 = _redis_cpu(target, redis_pids)
                t0 = time.monotonic()
                sent = await run_emitter(
                    target.redis_url, specs, rate, duration, target.wire, rate, cluster
                )
                per_fleet = [
                    await drain(f, sent["sent"] if len(fleets) == 1 else 0, 3.0) for f in fleets
                ]
                if len(fleets) > 1:
                    deadline = time.monotonic() + 3.0
                    while (
                        sum(p["received"] for p in per_fleet) < sent["sent"]
                        and time.monotonic() < deadline
                    ):
                        await asyncio.sleep(0.1)
                        per_fleet = [await f.stats() for f in fleets]
                wall = time.monotonic() - t0
                cpu = [s.cpu() - c for s, c in zip(started, cpu0, strict=True)]
                client_cpu = sum(f.cpu() for f in fleets) - client_cpu0
                rcpu = _redis_cpu(target, redis_pids) - redis_cpu0
                received = sum(p["received"] for p in per_fleet)
                foreign = sum(p["foreign"] for p in per_fleet)
                lat = [x for p in per_fleet for x in p["lat_ms"]]
                per_user: dict[str, int] = {}
                for p in per_fleet:
                    for u, c in p["per_user"].items():
                        per_user[u] = per_user.get(u, 0) + c
                mismatched = sum(1 for u, c in sent["per_user"].items() if per_user.get(u, 0) != c)
                s = summary_ms(lat)
                # a rate the emitter could not produce in time is not a rate that was met
                emitted = (sent["sent"] - sent.get("behind", 0)) / duration
                ok = (
                    received == sent["sent"]
                    and foreign == 0
                    and s["p99"] < P99_LIMIT_MS
                    and emitted >= 0.95 * rate
                )
                row = {
                    "rate": rate,
                    "emitted_per_s": round(emitted),
                    "sent": sent["sent"],
                    "delivered": received,
                    "foreign": foreign,
                    "users_wrong": mismatched,
                    "p50_ms": s["p50"],
                    "p95_ms": s["p95"],
                    "p99_ms": s["p99"],
                    "max_ms": s["max"],
                    "cpu_s": round(sum(cpu), 2),
                    "cpu_ms_per_1k": round(sum(cpu) / max(received, 1) * 1e6, 1),
                    "others_cpu_s": f"{client_cpu:.1f}/{sent['cpu_s']:.1f}/{rcpu:.1f}",
                    "ok": "yes" if ok else "NO",
                }
                if len(started) > 1:
                    row["cpu_per_proc"] = "/".join(f"{c:.1f}" for c in cpu)
                rows.append(row)
                print(f"  [{target.name}] {row}  ({wall:.1f}s)", flush=True)
                if ok:
                    best = rate
                    failures = 0
                else:
                    failures += 1
                    if failures >= stop_after_failures:
                        break
            return {
                "target": target.name,
                "rows": rows,
                "max_ok_rate": best,
                "connect": conn,
                "total_sent": sum(r["sent"] for r in rows),
                "cpu_capped": bool(quotas) and len(quotas) == len(started),
            }
        finally:
            for f in fleets:
                await f.__aexit__(None, None, None)
    finally:
        target.stop()
        for quota in quotas:
            quota.remove()


async def run(
    clients: int = 1000,
    duration: float = 10.0,
    rates: list[int] | None = None,
    procs: int = 2,
    targets: tuple[str, ...] = ("stock", "reeltrack"),
    shared: BenchEnv | None = None,
) -> dict[str, Any]:
    rates = rates or DEFAULT_RATES
    results: dict[str, Any] = {}
    async with bench_env(
        shared, need_db=any(t.startswith("reeltrack") for t in targets), users=clients
    ) as env:
        for name in targets:
            target = env.target(name)
            res = await measure_rates(target, clients, rates, duration, procs)
            results[name] = res
            print_table(
                f"fan-out, {clients} clients, one web process: {name} "
                f"(max ok rate {res['max_ok_rate']}/s)",
                res["rows"],
            )
    if "stock" in results and "reeltrack" in results:
        a, b = results["stock"]["max_ok_rate"], results["reeltrack"]["max_ok_rate"]
        print(
            f"\nfan-out max rate with p99 < {P99_LIMIT_MS:.0f} ms and 0 loss: "
            f"stock {a}/s, reeltrack {b}/s ({b / max(a, 1):.1f}x)"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--targets", default="stock,reeltrack")
    args = parser.parse_args()
    asyncio.run(
        run(args.clients, args.duration, args.rates, args.procs, tuple(args.targets.split(",")))
    )


if __name__ == "__main__":
    main()
