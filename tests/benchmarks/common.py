"""Shared machinery of the benchmarks: processes under test, /proc readings, the load
fleet (lean websocket clients in a few child processes) and the emitter process.

Everything runs on loopback with private services (a redis-server started here, a
PostgreSQL database created here); nothing shared is touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.services import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
BENCH_SECRET = "bench-secret-key-0123456789abcdef"
#: pause after start-up / connecting before measuring (the smoke tests shorten it)
SETTLE_S = 1.0


def raise_nofile() -> None:
    """Lift the soft open-file limit to the hard one (10,000 sockets need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------- /proc readings


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (hypercorn may fork a worker child)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def cpu_seconds(pid: int) -> float:
    """User+system CPU of ``pid`` and its live descendants, seconds."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, bytes."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


def load_average() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2) if values else float("nan"),
    }


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Print rows (dicts with the same keys) as an aligned table."""
    print(f"\n== {title}  (load average {load_average()})")
    if not rows:
        print("  (no rows)")
        return
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
    print("  " + "  ".join(k.rjust(widths[k]) for k in keys))
    for r in rows:
        print("  " + "  ".join(_fmt(r.get(k)).rjust(widths[k]) for k in keys))
    sys.stdout.flush()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


# ---------------------------------------------------------------- processes


class ServerProc:
    """A web process under test (a child process), with its CPU and memory readings."""

    def __init__(
        self,
        argv: list[str],
        port: int,
        env: dict[str, str] | None = None,
        name: str = "server",
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = argv
        self.cwd = cwd or ROOT
        self.port = port
        self.env = {**os.environ, **(env or {})}
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServerProc:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(self.port, timeout=timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"{self.name} did not start: {' '.join(self.argv)}\n{self.log_tail()}"
            ) from None
        return self

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process's output ("" when it is not kept)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def pubsub_received(self) -> tuple[int, int] | None:
        """(user-channel, common-channel) messages this process took from Redis, from
        the line it logs at shutdown; None when it did not log one."""
        if self.log_path is None or not self.log_path.exists():
            return None
        found = None
        for line in self.log_path.read_text(errors="replace").splitlines():
            m = re.search(r"pub/sub messages received: (\d+) on user channels, (\d+) on", line)
            if m:
                found = (int(m.group(1)), int(m.group(2)))
        return found

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def kill(self) -> None:
        """SIGKILL the whole process tree (a crash)."""
        if self.proc is None:
            return
        for p in reversed(process_tree(self.proc.pid)):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            tree = process_tree(self.proc.pid)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
                return
            for p in tree[1:]:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc = None


#: cgroup (v1 or v2) directories where a benchmark may cap a process's CPU
CGROUP_CPU_ROOTS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/unified"))


class CpuQuota:
    """A CPU cap for one process (a cgroup of its own with a CFS quota), so that "one web
    process" means the same amount of CPU in every setup, however many cores the box has
    and whatever the load generators on it use.

    ``CpuQuota.apply(pid, 0.5)`` -> the quota, or None when no writable cgroup CPU
    controller exists here (the caller then measures without a cap, and says so).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def apply(cls, pid: int, cores: float) -> CpuQuota | None:
        # a short CFS period: with the default 100 ms a capped process that spends its
        # quota early stalls for the rest of the period (tens of ms of added latency)
        period = 10_000
        quota = max(1000, int(cores * period))
        for root in CGROUP_CPU_ROOTS:
            path = root / f"reeltrack-bench-{pid}"
            try:
                path.mkdir(exist_ok=True)
                if (path / "cpu.max").exists():  # cgroup v2
                    (path / "cpu.max").write_text(f"{quota} {period}")
                else:
                    (path / "cpu.cfs_period_us").write_text(str(period))
                    (path / "cpu.cfs_quota_us").write_text(str(quota))
                (path / "cgroup.procs").write_text(str(pid))
                return cls(path)
            except OSError:
                try:
                    path.rmdir()
                except OSError:
                    pass
        return None

    def remove(self) -> None:
        """Remove the cgroup (only once its processes are gone; errors are ignored)."""
        try:
            self.path.rmdir()
        except OSError:
            pass


def py_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def stock_server(
    redis_url: str,
    port: int,
    ping_interval: float = 25.0,
    extra: Sequence[str] = (),
    log_path: Path | None = None,
) -> ServerProc:
    """The baseline: python-socketio AsyncServer + stock AsyncRedisManager, hypercorn
    (``extra`` switches the tiny app to reeltrack's manager/tuning, for profiling)."""
    return ServerProc(
        py_argv(
            "tests.benchmarks.stock_app",
            "--port",
            str(port),
            "--redis-url",
            redis_url,
            "--ping-interval",
            str(ping_interval),
            *extra,
        ),
        port,
        name="stock",
        log_path=log_path,
    )


# ---------------------------------------------------------------- load fleet


@dataclass
class ClientSpec:
    """One simulated browser: its user, token and the job ids it may legitimately see."""

    user: str
    token: str
    jobs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "token": self.token, "jobs": self.jobs}


class LoadProc:
    """One child process running many lean websocket clients, driven by JSON lines."""

    def __init__(self, url: str, source_ip: str, extra: Sequence[str] = ()) -> None:
        self.url = url
        self.source_ip = source_ip
        self.extra = list(extra)
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *py_argv(
                "tests.benchmarks.wsclient",
                "--url",
                self.url,
                "--source-ip",
                self.source_ip,
                *self.extra,
            ),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=256 * 1024 * 1024,
        )

    async def call(self, cmd: dict[str, Any], wait_s: float = 300.0) -> dict[str, Any]:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), wait_s)
        if not line:
            raise RuntimeError(f"load process died during {cmd.get('cmd')}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def stop(self) -> None:
        if self.proc is None:
            return
        try:
            await self.call({"cmd": "exit"}, wait_s=20)
        except Exception:
            pass
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None


class LoadFleet:
    """Clients spread over ``procs`` processes (each with its own loopback source IP)."""

    def __init__(self, url: str, procs: int, extra: Sequence[str] = ()) -> None:
        # process i's clients use source addresses 127.<20+i>.x.y (one per client)
        self.loads = [LoadProc(url, f"127.{20 + i}.0.1", extra) for i in range(procs)]

    async def __aenter__(self) -> LoadFleet:
        await asyncio.gather(*(lp.start() for lp in self.loads))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(lp.stop() for lp in self.loads), return_exceptions=True)

    def cpu(self) -> float:
        """CPU seconds used so far by the load processes (the clients' side)."""
        return sum(cpu_seconds(lp.proc.pid) for lp in self.loads if lp.proc is not None)

    async def broadcast(self, cmd: dict[str, Any], wait_s: float = 300.0) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(lp.call(cmd, wait_s) for lp in self.loads)))

    async def connect(
        self, specs: Sequence[ClientSpec], concurrency: int = 50, wait_s: float = 300.0
    ) -> dict[str, Any]:
        """Connect every client; returns totals and connect-time figures (ms)."""
        n = len(self.loads)
        t0 = time.monotonic()
        replies = await asyncio.gather(
            *(
                lp.call(
                    {
                        "cmd": "connect",
                        "clients": [s.to_json() for s in specs[i::n]],
                        "concurrency": concurrency,
                    },
                    wait_s,
                )
                for i, lp in enumerate(self.loads)
            )
        )
        wall = time.monotonic() - t0
        times = [t for r in replies for t in r["connect_ms"]]
        return {
            "connected": sum(r["connected"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "errors": [e for r in replies for e in r.get("errors", [])][:5],
            "wall_s": wall,
            "connect_ms": summary_ms(times),
        }

    async def stats(self, reset: bool = False) -> dict[str, Any]:
        replies = await self.broadcast({"cmd": "stats", "reset": reset})
        per_user: dict[str, int] = {}
        for r in replies:
            for u, c in r["per_user"].items():
                per_user[u] = per_user.get(u, 0) + c
        return {
            "received": sum(r["received"] for r in replies),
            "foreign": sum(r["foreign"] for r in replies),
            "lat_ms": [x for r in replies for x in r["lat_ms"]],
            "per_user": per_user,
            "open": sum(r["open"] for r in replies),
            "connected": sum(r["connected"] for r in replies),
            "pings": sum(r["pings"] for r in replies),
            "resyncs": sum(r["resyncs"] for r in replies),
            "reconnects": sum(r["reconnects"] for r in replies),
            "resumed": sum(r["resumed"] for r in replies),
            "complete": sum(r["complete"] for r in replies),
            "last_resume_at": max((r["last_resume_at"] or 0.0) for r in replies),
        }


# ---------------------------------------------------------------- emitter


def _write_users(users: Sequence[ClientSpec], seed: int) -> str:
    path = f"/tmp/rt-bench-users-{os.getpid()}-{seed}.json"
    with open(path, "w") as fh:
        json.dump([{"user": u.user, "jobs": u.jobs} for u in users], fh)
    return path


async def run_emitter(
    redis_url: str,
    users: Sequence[ClientSpec],
    rate: float,
    duration: float,
    wire: str,
    seed: int = 1,
    cluster: str = "",
) -> dict[str, Any]:
    """Run the external emitter process for ``duration`` s at ``rate`` events/s
    (``cluster``: SPUBLISH on that Redis Cluster's masters instead)."""
    spec_path = _write_users(users, seed)
    try:
        proc = await asyncio.create_subprocess_exec(
            *py_argv(
                "tests.benchmarks.emitter",
                "--redis-url",
                redis_url,
                "--users",
                spec_path,
                "--rate",
                str(rate),
                "--duration",
                str(duration),
                "--wire",
                wire,
                "--seed",
                str(seed),
                *(("--cluster", cluster) if cluster else ()),
            ),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"emitter failed ({proc.returncode})")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return result
    finally:
        os.unlink(spec_path)


__all__ = [
    "BENCH_SECRET",
    "ClientSpec",
    "LoadFleet",
    "ServerProc",
    "free_port",
    "print_table",
    "run_emitter",
    "stock_server",
]
