"""How ``connection_costs --rounds`` folds its rounds into one row per target."""

from __future__ import annotations

from tests.benchmarks.connection_costs import medians


def test_rounds_fold_into_medians_with_the_connect_cpu_range_and_the_worst_text() -> None:
    rows = [
        {"target": "node", "clients": 10, "connected": 10, "cpu_per_connect_ms": 0.3, "s": 0.5},
        {"target": "rt", "clients": 10, "connected": 10, "cpu_per_connect_ms": 1.5, "s": 1.0},
        {"target": "node", "clients": 10, "connected": 9, "cpu_per_connect_ms": 0.5, "s": 0.7},
        {"target": "rt", "clients": 10, "connected": 10, "cpu_per_connect_ms": 2.5, "s": "late"},
        {"target": "rt", "clients": 10, "connected": 8, "cpu_per_connect_ms": 1.7, "s": 2.0},
    ]
    assert medians(rows) == [
        {
            "target": "node",
            "clients": 10,
            "connected": 9,
            "cpu_per_connect_ms": 0.4,
            "cpu_per_connect_range": "0.3-0.5",
            "s": 0.6,
        },
        {
            "target": "rt",
            "clients": 10,
            "connected": 10,
            "cpu_per_connect_ms": 1.7,
            "cpu_per_connect_range": "1.5-2.5",
            "s": "late",
        },
    ]
