"""``HealthWatch``: /api/health polled from another process while a block runs, and
the check that it stayed fast (the live abuse tests share it)."""

from __future__ import annotations

import asyncio
import sys

#: /api/health under abuse: 9 in 10 answers within 100 ms; the slowest within 1 s, because
#: the 2-core test machine also runs the attacker, PostgreSQL, Redis and whatever else is
#: busy (a blocked event loop would show as seconds, which this still catches)
HEALTH_BUDGET_S = 0.100
HEALTH_WORST_S = 1.0

#: polls /api/health from its own process (the test's event loop is busy being the
#: attacker) until its stdin closes; prints each answer's seconds
_PROBE = """
import http.client, sys, threading, time
port = int(sys.argv[1])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
first = True
while not stop.is_set():
    began = time.perf_counter()
    conn.request("GET", "/api/health")
    response = conn.getresponse()
    response.read()
    took = time.perf_counter() - began
    if response.status != 200:
        print("status", response.status, flush=True)
    elif first:
        print("ready", flush=True)
        first = False
    else:
        print(took, flush=True)
    stop.wait(0.05)
"""


class HealthWatch:
    """Polls /api/health (from another process) while a block runs; the answers'
    seconds are in ``times``, :meth:`assert_fast` checks them against the budget."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.times: list[float] = []
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> HealthWatch:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _PROBE,
            str(self.port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 10)
        assert line.strip() == b"ready", line  # the connection and first query are warm
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        assert self._proc.stdout is not None
        # at least one answer timed from inside the block
        self.times.append(float(await asyncio.wait_for(self._proc.stdout.readline(), 10)))
        self._proc.stdin.close()
        out, _ = await asyncio.wait_for(self._proc.communicate(), 15)
        for line in out.decode().splitlines():
            assert not line.startswith("status"), line
            self.times.append(float(line))

    def quantile(self, q: float) -> float:
        """The answer time at quantile ``q`` (0.9: 9 in 10 answers were this fast or
        faster; 1.0: the slowest); raises AssertionError when nothing was polled."""
        assert self.times, "health was never polled"
        ordered = sorted(self.times)
        return ordered[int(q * (len(ordered) - 1))]

    def assert_fast(self) -> None:
        p90, worst = self.quantile(0.9), self.quantile(1.0)
        assert p90 < HEALTH_BUDGET_S and worst < HEALTH_WORST_S, sorted(self.times)[-10:]
