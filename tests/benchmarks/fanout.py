"""Fan-out: N websocket clients (one user each) on one web process, an external emitter
publishing progress to random users at rising rates.  Per rate: delivered/sent,
p50/p95/p99 latency (send -> client receive), server CPU per 1,000 deliveries; the
highest rate with p99 < 100 ms and no loss.

Targets: ``stock`` (python-socketio + its AsyncRedisManager), ``node`` (Node.js
socket.io 4.8 + @socket.io/redis-adapter 8.3, tests/benchmarks/node/server.js, fed with
what @socket.io/redis-emitter publishes: :mod:`tests.benchmarks.node_fanout`) and
``reeltrack``; each gets the same load fleet and the same emitter process at the same
rates, and each event carries its send time (``created_at``) from which the clients
measure latency.  The run ends with reeltrack / Node ratios.

``python -m tests.benchmarks.fanout [--clients 1000] [--duration 10] [--rates ...]
[--targets stock,node,reeltrack]``
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
#: what ``make bench`` runs (the smoke tests, which share one environment under
#: ``make test``, leave out Node: it needs an npm install)
DEFAULT_TARGETS = ("stock", "node", "reeltrack")
SMOKE_TARGETS = ("stock", "reeltrack")
#: the rate at which reeltrack's CPU and p99 are compared with Node's
RATIO_RATE = 1000
#: before the first measured rate every target gets WARMUP_S s at WARMUP_RATE ev/s, not
#: reported: Node's JIT compiles its hot paths during its first thousands of events, and
#: a warm server is what serves real traffic (the same for every target)
WARMUP_RATE = 2000
WARMUP_S = 3.0
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
    warmup_s: float = 0.0,
) -> dict[str, Any]:
    """Start ``target`` (``servers`` processes), connect the clients, walk the rates.

    ``front(servers)`` returns the URL of what stands in front of them (nginx); without
    it the clients go straight to the processes, round-robin.  ``cpu_per_process`` caps
    each process at that many cores (:class:`CpuQuota`; ``cpu_capped`` in the result
    says whether the cap could be applied).  ``cluster``: the emitter SPUBLISHes on that
    Redis Cluster; ``redis_pids``: the Redis processes whose CPU is reported (default the
    target's one); ``warmup_s``: first that long at WARMUP_RATE, not reported."""
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
            if warmup_s > 0:
                warm = await run_emitter(
                    target.redis_url, specs, WARMUP_RATE, warmup_s, target.wire, 0, cluster
                )
                # every warm-up event is in before the first rate's counts start
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline:
                    got = [await f.stats(reset=False) for f in fleets]
                    if sum(g["received"] for g in got) >= warm["sent"]:
                        break
                    await asyncio.sleep(0.1)
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


def make_target(env: BenchEnv, name: str) -> Target:
    """``env.target(name)``, and ``node`` (which the environment does not know)."""
    if name != "node":
        return env.target(name)
    from tests.benchmarks.node_fanout import NodeFanoutTarget

    target = NodeFanoutTarget(env.redis_url)
    assert env.redis is not None and env.redis.proc is not None
    target.redis_pid = env.redis.proc.pid
    return target


def _at_rate(res: dict[str, Any], rate: int, key: str) -> float | None:
    for row in res["rows"]:
        if row["rate"] == rate:
            value = row[key]
            return float(value) if isinstance(value, int | float) else None
    return None


def node_ratios(ours: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """reeltrack's figures against Node's (ratio = reeltrack / Node): the max ok rate
    (higher is better), CPU per 1,000 deliveries and p99 at RATIO_RATE (lower is better)."""
    figures: list[tuple[str, float | None, float | None]] = [
        ("max ok rate (ev/s)", ours["max_ok_rate"], node["max_ok_rate"]),
        (
            f"server CPU ms per 1k deliveries at {RATIO_RATE} ev/s",
            _at_rate(ours, RATIO_RATE, "cpu_ms_per_1k"),
            _at_rate(node, RATIO_RATE, "cpu_ms_per_1k"),
        ),
        (
            f"p99 ms at {RATIO_RATE} ev/s",
            _at_rate(ours, RATIO_RATE, "p99_ms"),
            _at_rate(node, RATIO_RATE, "p99_ms"),
        ),
    ]
    rows = []
    for figure, a, b in figures:
        ratio = round(a / b, 2) if a is not None and b else "-"
        rows.append(
            {
                "figure": figure,
                "reeltrack": "-" if a is None else a,
                "node": "-" if b is None else b,
                "reeltrack/node": ratio,
            }
        )
    return rows


async def run(
    clients: int = 1000,
    duration: float = 10.0,
    rates: list[int] | None = None,
    procs: int = 2,
    targets: tuple[str, ...] | None = None,
    shared: BenchEnv | None = None,
    warmup_s: float | None = None,
) -> dict[str, Any]:
    """``targets`` defaults to DEFAULT_TARGETS and ``warmup_s`` to WARMUP_S (at most half
    ``duration``); in a ``shared`` environment (the smoke tests, kept as short as they
    were) to SMOKE_TARGETS and no warm-up."""
    rates = rates or DEFAULT_RATES
    if targets is None:
        targets = SMOKE_TARGETS if shared is not None else DEFAULT_TARGETS
    if warmup_s is None:
        warmup_s = 0.0 if shared is not None else min(WARMUP_S, duration / 2)
    results: dict[str, Any] = {}
    async with bench_env(
        shared, need_db=any(t.startswith("reeltrack") for t in targets), users=clients
    ) as env:
        for name in targets:
            target = make_target(env, name)
            try:
                res = await measure_rates(
                    target, clients, rates, duration, procs, warmup_s=warmup_s
                )
            except ModuleNotFoundError as exc:  # no npm here: the others still run
                if name != "node":
                    raise
                print(f"\nfan-out: {name} skipped: {exc}")
                continue
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
    if "node" in results and "reeltrack" in results:
        print_table(
            f"fan-out, {clients} clients, one web process: reeltrack / Node.js socket.io "
            "(same fleet, same emitter, same run)",
            node_ratios(results["reeltrack"], results["node"]),
        )
        capped = [n for n in ("reeltrack", "node") if results[n]["max_ok_rate"] == max(rates)]
        if capped:
            print(
                f"  ({' and '.join(capped)} passed the top rate given, {max(rates)}/s: "
                "the max ok rate is at least that, the ratio only a bound)"
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS))
    parser.add_argument(
        "--warmup", type=float, default=None, help=f"seconds at {WARMUP_RATE} ev/s first"
    )
    args = parser.parse_args()
    targets = tuple(args.targets.split(","))
    asyncio.run(
        run(args.clients, args.duration, args.rates, args.procs, targets, warmup_s=args.warmup)
    )


if __name__ == "__main__":
    main()
