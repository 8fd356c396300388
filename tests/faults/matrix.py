"""One row of the fault matrix per fault, and the table printed at the end of the run."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    fault: str
    jobs: int
    published: int  # reeltrack_progress_events_published delta (web + workers)
    persisted: int  # reeltrack_progress_events_persisted delta (incl. replays)
    publish_failures: int
    persist_failures: int
    history: int  # events in the DB history of the fault's jobs
    missed: dict[str, int] = field(default_factory=dict)  # client -> events missed at end
    reconnects: int = 0  # client reconnections during the fault, all clients
    recovery_s: float = 0.0  # fault injected -> every client equal to the history
    statuses: str = ""
    ok: bool = False


ROWS: list[Row] = []


def render(rows: list[Row]) -> str:
    """The table (a fixed-width text block)."""
    header = (
        f"{'fault':<28} {'jobs':>4} {'sent pub/pers':>14} {'fail pub/pers':>14} "
        f"{'history':>7} {'reconn':>6} {'recover':>7}  {'missed per client (end)':<40} result"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        missed = " ".join(f"{name}={n}" for name, n in sorted(r.missed.items()))
        lines.append(
            f"{r.fault:<28} {r.jobs:>4} {f'{r.published}/{r.persisted}':>14} "
            f"{f'{r.publish_failures}/{r.persist_failures}':>14} {r.history:>7} "
            f"{r.reconnects:>6} {r.recovery_s:>6.1f}s  {missed:<40} "
            f"{'ok' if r.ok else 'FAILED'} {r.statuses}"
        )
    return "\n".join(lines)
