"""Profile a web process's fan-out path with py-spy (``pip install py-spy``).

Starts the target, connects the clients, runs the emitter at ``--rate`` and samples the
server with ``py-spy record --format raw`` meanwhile; prints the top functions by own
time and by inclusive time (share of all samples of the event-loop thread).

``python -m tests.benchmarks.profile --target stock --rate 1000``
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from tests.benchmarks.common import LoadFleet, run_emitter
from tests.benchmarks.env import BenchEnv
from tests.support.waiting import wait_until


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def summarise(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [f.split(" (", 1)[0] + " (" + f.rsplit("/", 1)[-1] for f in stack.split(";")]
        frames = [f.rstrip(")") for f in frames]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    roots: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        roots[";".join(stack.split(";")[:2])[:160]] += int(count)
    out = [f"samples: {total}", "", "stack roots:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in roots.most_common(8)]
    out += ["", "own time:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(top)]
    return "\n".join(out)


async def _record(pid: int, seconds: float, raw: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        _py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "250",
        "--format",
        "raw",
        "--nonblocking",
        "-o",
        str(raw),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def run(
    target_name: str, rate: int, clients: int, seconds: float, top: int, phase: str = "fanout"
) -> None:
    """``phase``: ``fanout`` (the emitter at ``rate``), ``connect`` (while the clients
    connect) or ``idle`` (while they are held, pings only)."""
    async with BenchEnv(need_db=target_name.startswith("reeltrack"), users=clients) as env:
        target = env.target(target_name)
        (server,) = target.start(count=1, ping_interval=10.0)
        raw = env.tmp / "profile.txt"
        try:
            specs = target.specs(clients)
            url = f"ws://127.0.0.1:{server.port}/api/ws/progress/"
            async with LoadFleet(url, 4, extra=["--no-deflate"]) as fleet:
                if phase == "connect":
                    spy = await _record(server.pid, 600, raw)
                    cpu0 = server.cpu()
                    conn = await fleet.connect(specs, concurrency=100)
                    spy.send_signal(signal.SIGINT)
                    await spy.wait()
                    used = server.cpu() - cpu0
                    print(
                        f"{target_name}: {conn['connected']} connected in {conn['wall_s']:.1f} s, "
                        f"cpu {used / max(conn['connected'], 1) * 1e3:.3f} ms per connect"
                    )
                    print(summarise(raw, top))
                    return
                fds0 = len(os.listdir(f"/proc/{server.pid}/fd"))
                await fleet.connect(specs, concurrency=50)
                await asyncio.sleep(1)
                if phase == "disconnect":
                    spy = await _record(server.pid, 600, raw)
                    cpu0, t0 = server.cpu(), time.monotonic()
                    await fleet.broadcast({"cmd": "exit"}, wait_s=60)
                    # every connection closed: the process's descriptors back to before
                    # (give or take the Redis and database connections opened meanwhile)
                    await wait_until(
                        lambda: len(os.listdir(f"/proc/{server.pid}/fd")) <= fds0 + 20, 60, 0.1
                    )
                    took = time.monotonic() - t0
                    spy.send_signal(signal.SIGINT)
                    await spy.wait()
                    print(
                        f"{target_name}: all closed after {took:.2f} s, "
                        f"cpu {(server.cpu() - cpu0) / clients * 1e3:.3f} ms per disconnect"
                    )
                    print(summarise(raw, top))
                    return
                spy = await _record(server.pid, seconds, raw)
                cpu0 = server.cpu()
                if phase == "idle":
                    await spy.wait()
                    print(f"{target_name}: idle cpu {(server.cpu() - cpu0) / seconds * 100:.1f} %")
                    print(summarise(raw, top))
                    return
                sent = await run_emitter(target.redis_url, specs, rate, seconds, target.wire)
                await spy.wait()
                st = await fleet.stats()
                print(
                    f"{target_name}: sent {sent['sent']}, delivered {st['received']}, "
                    f"cpu {(server.cpu() - cpu0) / max(st['received'], 1) * 1e6:.0f} ms/1k"
                )
                print(summarise(raw, top))
        finally:
            target.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="stock")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument(
        "--phase", choices=("fanout", "connect", "idle", "disconnect"), default="fanout"
    )
    args = parser.parse_args()
    asyncio.run(run(args.target, args.rate, args.clients, args.seconds, args.top, args.phase))


if __name__ == "__main__":
    main()
