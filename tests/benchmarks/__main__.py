"""``make bench``: every benchmark at full size, each against the stock baseline.

``python -m tests.benchmarks [name ...]`` runs the named ones only.  The machine has 2
cores shared with other work: the load average is printed with every table; re-run a
benchmark whose figures look noisy.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time

from tests.benchmarks.common import load_average

#: name -> (module, coroutine function called without arguments: full-size defaults)
BENCHMARKS = {
    "connections": ("tests.benchmarks.connections", "run"),
    "connection-costs": ("tests.benchmarks.connection_costs", "run"),
    "fanout": ("tests.benchmarks.fanout", "run"),
    "scaleout": ("tests.benchmarks.scaleout", "run"),
    "sharded-fanout": ("tests.benchmarks.sharded_fanout", "run"),
    "publisher": ("tests.benchmarks.publisher", "main_async"),
    "history": ("tests.benchmarks.history", "run"),
    "reconnect": ("tests.benchmarks.reconnect", "run"),
    "latency": ("tests.benchmarks.latency", "run"),
    "fairness": ("tests.benchmarks.fairness", "run"),
    "fairness-waiters": ("tests.benchmarks.fairness", "run_waiters"),
}
#: arguments for functions that have no defaults
ARGS: dict[str, tuple[object, ...]] = {"publisher": (2000,)}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    failed = []
    for name in names:
        print(f"\n######## {name}  (load average {load_average()})", flush=True)
        module_name, func = BENCHMARKS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            print(f"skipped: {exc}")
            continue
        t0 = time.monotonic()
        try:
            asyncio.run(getattr(module, func)(*ARGS.get(name, ())))
        except Exception as exc:  # one failing benchmark must not hide the others
            failed.append(name)
            print(f"FAILED: {type(exc).__name__}: {exc}")
        print(f"({name}: {time.monotonic() - t0:.0f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
