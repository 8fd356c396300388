"""Run a module under tracemalloc and write a heap snapshot on each SIGUSR2.

``python tests/benchmarks/heap_probe.py DIR MODULE [ARGS...]`` (or ``-m``) runs ``MODULE`` as
``__main__`` with ``tracemalloc`` tracing one frame per allocation; every SIGUSR2 writes
``DIR/heap-<n>.snap`` (n = 0, 1, ...) and then ``DIR/heap-<n>.done``.  The benchmark
(:mod:`tests.benchmarks.connection_costs` ``--heap``) takes one before the clients
connect and one after, and prints what the difference is made of, per socket.

Benchmark-only: tracing makes the process several times slower, so the figures of a
probed run are not the connection-cost figures.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType


def _snapshot_writer(out: Path) -> object:
    taken = Counter[str]()

    def write(signum: int, frame: FrameType | None) -> None:
        n = taken["n"]
        taken["n"] += 1
        snap = tracemalloc.take_snapshot().filter_traces(
            (tracemalloc.Filter(False, tracemalloc.__file__),)
        )
        snap.dump(str(out / f"heap-{n}.snap"))
        (out / f"heap-{n}.done").write_text("ok\n")

    return write


def breakdown(
    before: Path, after: Path, per: int, top: int = 25, key: str = "lineno"
) -> list[dict[str, object]]:
    """The growth from ``before`` to ``after`` by allocation site (``key``: ``lineno``
    or ``filename``), in bytes per ``per`` (sockets), biggest first; the last rows sum
    the rest and the whole."""
    a = tracemalloc.Snapshot.load(str(before))
    b = tracemalloc.Snapshot.load(str(after))
    diffs = sorted(b.compare_to(a, key), key=lambda d: d.size_diff, reverse=True)
    total = sum(d.size_diff for d in diffs)
    rows: list[dict[str, object]] = []
    for d in diffs[:top]:
        frame = d.traceback[0]
        where = "/".join(Path(frame.filename).parts[-2:])
        rows.append(
            {
                "site": f"{where}:{frame.lineno}" if key == "lineno" else where,
                "bytes_per_socket": round(d.size_diff / per),
                "blocks_per_socket": round(d.count_diff / per, 2),
            }
        )
    rest = total - sum(d.size_diff for d in diffs[:top])
    rows.append(
        {"site": "(the rest)", "bytes_per_socket": round(rest / per), "blocks_per_socket": "-"}
    )
    rows.append(
        {"site": "(all traced)", "bytes_per_socket": round(total / per), "blocks_per_socket": "-"}
    )
    return rows


def main() -> None:
    out, module, *args = sys.argv[1:]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(1)
    signal.signal(signal.SIGUSR2, _snapshot_writer(out_dir))  # type: ignore[arg-type]
    sys.argv = [module, *args]
    sys.path.insert(0, os.getcwd())  # the server's checkout, as ``python -m`` would
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
