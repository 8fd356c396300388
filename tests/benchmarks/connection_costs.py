"""What a connection costs, side by side with Node.js socket.io 4.8 + its Redis adapter.

For each target and size N (one websocket per user, the same load fleet for all): the
server's CPU per connect and the wall time to connect all N; memory per idle connection
(RSS delta / N); idle CPU while holding them (same ping interval for every target); the
time until the server has processed all N clients closing at once (Node: its socket
count is 0; reeltrack: every presence slot in Redis is released, failed releases from
its metrics); then SIGTERM and the time until the process has exited.

Targets: ``node`` (tests/benchmarks/node/server.js; socket.io is installed with npm into
a temporary directory, never into the repo), ``reeltrack`` (this tree) and
``reeltrack-before`` (``--before DIR``: another checkout, e.g. a ``git worktree`` of an
older commit, run from the same virtualenv against the same database).

``python -m tests.benchmarks.connection_costs [--sizes 5000,10000] [--hold 20]
[--targets node,reeltrack,reeltrack-before] [--before /tmp/rt-before] [--rounds 3]``
(``--rounds``: every target measured that many times, interleaved; the table is the
median of each figure, with the CPU per connect's range)
(``BENCH_BEFORE_DIR=/tmp/rt-before make bench`` adds the older checkout to make bench)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis as sync_redis

from tests.benchmarks import common, heap_probe
from tests.benchmarks.common import ROOT, LoadFleet, ServerProc, free_port, print_table
from tests.benchmarks.env import BenchEnv
from tests.benchmarks.targets import ReeltrackTarget, Target, bench_users

#: what the Node baseline runs on (pinned; npm installs them into NODE_DIR)
NODE_PACKAGES = ("socket.io@4.8.4", "@socket.io/redis-adapter@8.3.0", "redis@4.7.1")
NODE_DIR = Path(os.environ.get("BENCH_NODE_DIR", "/tmp/reeltrack-bench-node"))
NODE_SERVER = Path(__file__).with_name("node") / "server.js"
PING_INTERVAL = 10.0
#: presence ZSETs (socket_layer.protocol.PRESENCE_KEY_PREFIX; the same in the older
#: checkouts this compares with)
PRESENCE_PATTERN = "reeltrack:ws:conns:*"


def ensure_node() -> Path:
    """``node_modules`` with socket.io and the Redis adapter, installed once with npm."""
    modules = NODE_DIR / "node_modules"
    if not (modules / "socket.io" / "package.json").exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        if not (NODE_DIR / "package.json").exists():
            (NODE_DIR / "package.json").write_text('{"name": "bench-node", "private": true}\n')
        npm = shutil.which("npm")
        if npm is None:
            raise ModuleNotFoundError("npm is not installed: no Node baseline")
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-save", *NODE_PACKAGES],
            cwd=NODE_DIR,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return modules


class NodeTarget(Target):
    """Node.js socket.io 4.8 + @socket.io/redis-adapter on the benchmark's Redis."""

    name = "node"

    def start(self, count: int = 1, ping_interval: float = 25.0) -> list[ServerProc]:
        modules = ensure_node()
        node = shutil.which("node") or "node"
        for _ in range(count):
            port = free_port()
            argv = [node, str(NODE_SERVER), "--port", str(port), "--redis-url", self.redis_url]
            argv += ["--ping-interval", str(ping_interval)]
            proc = ServerProc(
                argv,
                port,
                env={"NODE_PATH": str(modules)},
                name="node",
                log_path=NODE_DIR / f"server-{port}.log",
            )
            self.servers.append(proc.start())
        return self.servers

    def specs(self, n: int) -> list[common.ClientSpec]:
        return [common.ClientSpec(user=u, token=u, jobs=[j]) for u, j in bench_users(n)]

    def sockets(self, server: ServerProc) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/count", timeout=5) as r:
            return int(r.read())


class CheckoutTarget(ReeltrackTarget):
    """``reeltrack serve`` from another checkout of the repository (``root``)."""

    def __init__(self, root: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.root = root

    def start(self, count: int = 1, ping_interval: float = 25.0) -> list[ServerProc]:
        for i in range(count):
            port = free_port()
            env = {**self.server_env(port, ping_interval), "PYTHONPATH": str(self.root)}
            proc = ServerProc(
                [sys.executable, *self.entry],
                port,
                env=env,
                name=f"{self.name}-{i}",
                log_path=self.var_dir / f"web-{port}.log",
                cwd=self.root,
            )
            self.servers.append(proc.start(timeout=60))
        return self.servers


def _presence_members(r: sync_redis.Redis) -> int:
    keys = list(r.scan_iter(match=PRESENCE_PATTERN, count=5000))
    if not keys:
        return 0
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.zcard(k)
    return int(sum(pipe.execute()))


def _metric(server: ServerProc, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            m = re.search(r"\s([0-9.eE+-]+)$", line)
            if m:
                total += float(m.group(1))
                found = True
    return total if found else None


async def _wait_for(check: Any, within: float) -> float | None:
    """Seconds until ``check()`` is true (polled), None after ``within`` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if await asyncio.to_thread(check):
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    return None


async def measure(
    target: Target, n: int, hold: float, procs: int, redis_url: str
) -> dict[str, Any]:
    (server,) = target.start(count=1, ping_interval=PING_INTERVAL)
    r = sync_redis.Redis.from_url(redis_url)
    row: dict[str, Any] = {"target": target.name, "clients": n}
    try:
        await asyncio.sleep(common.SETTLE_S)
        rss0 = server.rss()
        url = f"ws://127.0.0.1:{server.port}/api/ws/progress/"
        fleet = LoadFleet(url, procs, extra=["--no-deflate"])
        await fleet.__aenter__()
        try:
            cpu0 = server.cpu()
            conn = await fleet.connect(target.specs(n), concurrency=100)
            cpu_connect = server.cpu() - cpu0
            if conn["failed"]:
                print(f"  [{target.name}] {conn['failed']} failed, e.g. {conn['errors'][:3]}")
            await asyncio.sleep(common.SETTLE_S)
            rss1 = server.rss()
            st0 = await fleet.stats()
            cpu1, t1 = server.cpu(), time.monotonic()
            await asyncio.sleep(hold)
            idle = (server.cpu() - cpu1) / (time.monotonic() - t1)
            st1 = await fleet.stats()
            connected = max(conn["connected"], 1)
            row.update(
                connected=conn["connected"],
                connect_all_s=round(conn["wall_s"], 1),
                cpu_per_connect_ms=round(cpu_connect / connected * 1000, 3),
                kb_per_conn=round((rss1 - rss0) / connected / 1024, 1),
                idle_cpu_pct=round(idle * 100, 1),
                pings=st1["pings"] - st0["pings"],
                held=st1["connected"],
            )
            # every client closes at once (the load processes close all, then exit)
            is_node = isinstance(target, NodeTarget)
            if not is_node:
                row["slots_before"] = await asyncio.to_thread(_presence_members, r)
            t_close = time.monotonic()
            await fleet.broadcast({"cmd": "exit"}, wait_s=60)
        finally:
            await fleet.__aexit__(None, None, None)
        if is_node:
            done = await _wait_for(lambda: target.sockets(server) == 0, 60)  # type: ignore[attr-defined]
        else:
            done = await _wait_for(lambda: _presence_members(r) == 0, 60)
        took = None if done is None else time.monotonic() - t_close
        row["disconnect_all_s"] = "not in 60 s" if took is None else round(took, 2)
        if not is_node:
            failed = _metric(server, "reeltrack_ws_slot_release_failures_total")
            row["failed_releases"] = "?" if failed is None else int(failed)
        # SIGTERM after the mass disconnect: how long until the process is gone
        assert server.proc is not None
        t_term = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            rc = server.proc.wait(30)
            row["sigterm_exit_s"] = round(time.monotonic() - t_term, 2)
            row["exit_code"] = rc
        except subprocess.TimeoutExpired:
            row["sigterm_exit_s"] = "> 30 (killed)"
            row["exit_code"] = "-"
        print(f"  {row}", flush=True)
        return row
    finally:
        target.stop()
        r.close()


async def heap_breakdown(target: ReeltrackTarget, n: int, procs: int, out: Path) -> None:
    """Print where the memory of ``n`` idle sockets goes: the server runs under
    :mod:`tests.benchmarks.heap_probe`, which snapshots its heap before and after the
    clients connect (tracemalloc, one frame per allocation, grouped by the line that
    allocated)."""
    # the probe of this tree, run as a file: it also wraps an older checkout's server
    target.entry = (heap_probe.__file__, str(out), "quart_app.cli", "serve")
    (server,) = target.start(count=1, ping_interval=PING_INTERVAL)

    async def snapshot(i: int) -> Path:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGUSR2)
        done = out / f"heap-{i}.done"
        if await _wait_for(done.exists, 300) is None:
            raise RuntimeError("the heap probe wrote no snapshot")
        return out / f"heap-{i}.snap"

    try:
        await asyncio.sleep(common.SETTLE_S)
        before = await snapshot(0)
        rss0 = server.rss()
        fleet = LoadFleet(
            f"ws://127.0.0.1:{server.port}/api/ws/progress/", procs, extra=["--no-deflate"]
        )
        async with fleet:
            conn = await fleet.connect(target.specs(n), concurrency=50)
            await asyncio.sleep(common.SETTLE_S)
            rss1 = server.rss()
            after = await snapshot(1)
            connected = max(conn["connected"], 1)
            rss = (rss1 - rss0) / connected / 1024
            for key in ("filename", "lineno"):
                print_table(
                    f"heap per idle socket by allocating {key}, {connected} sockets "
                    f"(RSS {rss:.1f} KB per socket under tracing)",
                    heap_probe.breakdown(before, after, connected, top=30, key=key),
                )
            await fleet.broadcast({"cmd": "exit"}, wait_s=60)
    finally:
        target.stop()
        target.entry = ("-m", "quart_app.cli", "serve")


def medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (target, clients): the median of each numeric figure over its rounds
    (a text figure, e.g. "not in 60 s", wins over numbers: it is the worst case), with
    the CPU per connect's range across the rounds beside it."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["target"], row["clients"]), []).append(row)
    out = []
    for (target, clients), group in groups.items():
        merged: dict[str, Any] = {"target": target, "clients": clients}
        for key in group[0]:
            if key in merged:
                continue
            values = [r[key] for r in group]
            texts = [v for v in values if not isinstance(v, int | float)]
            if texts:
                merged[key] = texts[0]
            elif all(isinstance(v, int) for v in values):  # counts stay counts
                merged[key] = statistics.median_low(values)
            else:
                merged[key] = round(statistics.median(values), 3)
            if key == "cpu_per_connect_ms" and not texts:
                merged["cpu_per_connect_range"] = f"{min(values):g}-{max(values):g}"
        out.append(merged)
    return out


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each non-Node row's figures divided by Node's at the same size."""
    keys = ("cpu_per_connect_ms", "connect_all_s", "kb_per_conn", "idle_cpu_pct")
    node = {r["clients"]: r for r in rows if r["target"] == "node"}
    out = []
    for row in rows:
        base = node.get(row["clients"])
        if row["target"] == "node" or base is None:
            continue
        ratio: dict[str, Any] = {"target": row["target"], "clients": row["clients"]}
        for k in keys:
            a, b = row.get(k), base.get(k)
            numbers = isinstance(a, int | float) and isinstance(b, int | float) and b
            ratio[k] = round(a / b, 2) if numbers else "-"  # type: ignore[operator]
        out.append(ratio)
    return out


async def run(
    sizes: list[int] | None = None,
    hold: float = 20.0,
    procs: int = 4,
    targets: tuple[str, ...] | None = None,
    before: Path | None = None,
    heap: bool = False,
    rounds: int = 1,
) -> list[dict[str, Any]]:
    """``make bench`` runs it with the defaults: Node and this tree, and the checkout
    ``BENCH_BEFORE_DIR`` names too when it is set."""
    sizes = sizes or [5000, 10000]
    if before is None and os.environ.get("BENCH_BEFORE_DIR"):
        before = Path(os.environ["BENCH_BEFORE_DIR"])
    if targets is None:
        targets = ("node", "reeltrack", "reeltrack-before") if before else ("node", "reeltrack")
    common.raise_nofile()
    rows: list[dict[str, Any]] = []
    heaps_taken: set[str] = set()
    async with BenchEnv(need_db=True, users=max(sizes)) as env:
        assert env.database_url is not None
        # rounds interleave the targets, so a slow spell of the machine (seen: +-25 %
        # on the CPU per connect between two runs of one tree) falls on all of them
        for name in [t for _ in range(rounds) for t in targets]:
            if name == "node":
                target: Target = NodeTarget(env.redis_url)
            elif name == "reeltrack-before":
                if before is None:
                    print("reeltrack-before needs --before DIR: skipped")
                    continue
                target = CheckoutTarget(
                    before,
                    env.redis_url,
                    env.database_url,
                    env.tmp / name,
                    name=name,
                )
            else:
                target = env.target(name)
            for n in sizes:
                rows.append(await measure(target, n, hold, procs, env.redis_url))
            if heap and isinstance(target, ReeltrackTarget) and name not in heaps_taken:
                heaps_taken.add(name)  # once per target, not once per round
                await heap_breakdown(target, max(sizes), procs, env.tmp / f"heap-{name}")
    keys = list(dict.fromkeys(k for row in rows for k in row))
    rows = [{k: row.get(k, "-") for k in keys} for row in rows]
    title = (
        f"connection costs, one server process, ping every {PING_INTERVAL:g} s, "
        f"idle held {hold:g} s (root {ROOT.name})"
    )
    if rounds > 1:
        print_table(f"{title}, every round", rows)
        rows = medians(rows)
        title += f", median of {rounds} rounds"
    print_table(title, rows)
    print_table("ratio to Node (same size, same run)", ratios(rows))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[5000, 10000]
    )
    parser.add_argument("--hold", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--targets", default=None)
    parser.add_argument("--before", type=Path, default=None)
    parser.add_argument(
        "--heap", action="store_true", help="also print the heap breakdown per socket"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every target this many times, interleaved"
    )
    args = parser.parse_args()
    targets = tuple(args.targets.split(",")) if args.targets else None
    asyncio.run(
        run(args.sizes, args.hold, args.procs, targets, args.before, args.heap, args.rounds)
    )


if __name__ == "__main__":
    main()
