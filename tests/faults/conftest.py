"""Prints the fault-matrix table after the run (also when pytest captures output)."""

from __future__ import annotations

from typing import Any

from tests.faults.matrix import ROWS, render


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ROWS:
        terminalreporter.section("fault matrix")
        terminalreporter.write_line(render(ROWS))
