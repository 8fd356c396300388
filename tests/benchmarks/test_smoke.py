"""A seconds-long run of every benchmark with tiny parameters (``make bench`` runs them at
full size): the harness works end to end and its figures are sane.  One environment
(private Redis, one PostgreSQL database with the users) is shared by all of them."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.benchmarks import common, connections, fanout, history, reconnect, scaleout
from tests.benchmarks.env import BenchEnv
from tests.topology.nginx import nginx_binary

pytestmark = pytest.mark.slow

CLIENTS = 40


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[BenchEnv]:
    settle = common.SETTLE_S
    common.SETTLE_S = 0.2
    try:
        async with BenchEnv(need_db=True, users=CLIENTS) as e:
            yield e
    finally:
        common.SETTLE_S = settle


def _finite(*values: Any) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


async def test_fanout_delivers_everything_to_the_right_clients(env: BenchEnv) -> None:
    res = await fanout.run(clients=CLIENTS, duration=1.5, rates=[200], procs=1, shared=env)
    for name in ("stock", "reeltrack"):
        (row,) = res[name]["rows"]
        assert row["sent"] == 300 and row["delivered"] == 300, row
        assert row["foreign"] == 0 and row["users_wrong"] == 0, row
        assert _finite(row["p50_ms"], row["p99_ms"], row["cpu_ms_per_1k"]), row
        assert 0 < row["p50_ms"] <= row["p99_ms"] < 5000, row
        assert row["cpu_ms_per_1k"] > 0, row


async def test_connections_measures_memory_and_pings(env: BenchEnv) -> None:
    res = await connections.run(steps=[CLIENTS], hold=1.6, procs=1, ping_interval=0.5, shared=env)
    for name in ("stock", "reeltrack"):
        (row,) = res[name]
        assert row["connected"] == CLIENTS and row["failed"] == 0, row
        assert row["still_connected"] == CLIENTS and row["pings_ok"] == "yes", row
        assert _finite(row["kb_per_conn"], row["connect_p50_ms"]), row
        assert row["connect_p50_ms"] > 0, row


@pytest.mark.skipif(nginx_binary() is None, reason="nginx not installed (make system-deps)")
async def test_scaleout_counts_what_each_process_receives(env: BenchEnv) -> None:
    res = await scaleout.run(
        clients=CLIENTS,
        duration=1.5,
        rates=[200],
        setups=(("reeltrack", 2), ("stock", 2)),
        shared=env,
    )
    ours, stock = res["results"]
    assert ours["rows"][0]["delivered"] == ours["rows"][0]["sent"] == 300
    # a channel per user: the two processes together took each message once
    assert sum(ours["received_per_process"]) == 300, ours["received_per_process"]
    # python-socketio's one channel: each process took every message
    assert stock["received_per_process"] == [300, 300], stock["received_per_process"]


async def test_history_pages_and_resume(env: BenchEnv) -> None:
    res = await history.run(events_per_job=30, samples=20, shared=env)
    assert res["events"] == history.USERS * history.JOBS_PER_USER * 30
    for row in res["rows"]:
        assert row["n"] > 0 and _finite(row["p50"], row["p99"]) and row["p50"] > 0, row


async def test_reconnect_storm_resumes_every_client(env: BenchEnv) -> None:
    # reeltrack only here: the stock row (a plain reconnect) adds nothing to a smoke test
    res = await reconnect.run(
        clients=CLIENTS, targets=("reeltrack",), count_queries=False, shared=env
    )
    (ours,) = res["rows"]
    assert isinstance(ours["all_reconnected_s"], float), ours
    assert isinstance(ours["all_resumed_s"], float) and ours["complete"] == CLIENTS, ours


async def test_fairness_times_both_modes_for_every_user() -> None:
    from tests.benchmarks import fairness

    plan = {"big": [6], "small": [1]}
    res = await fairness.run(delay=0.1, workers=1, slice_seconds=0.2, plan=plan)
    for mode in ("sliced", "one-at-a-time"):
        assert set(res[mode]) == {"big", "small"}
        for r in res[mode].values():
            assert 0 < r.first_event_s <= r.done_s < 60, r
    # one worker: one at a time the small job waits for the whole big one, sliced it does not
    assert res["sliced"]["small"].done_s < res["sliced"]["big"].done_s
    assert res["one-at-a-time"]["small"].first_event_s > res["one-at-a-time"]["big"].done_s - 0.5
