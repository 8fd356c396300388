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
    resyncs: int = 0  # resync messages the clients received
    gaps: int = 0  # events the clients received ahead of a hole (then resumed)
    recovery_s: float = 0.0  # fault injected -> every client equal to the history
    statuses: str = ""
    seq_at_fault: int = 0  # lowest seq every client had applied when the fault began
    seq_after_fault: int = 0  # ... when the injection was over (services back)
    live_during_fault: int = 0  # progress events delivered live while it was injected
    ok: bool = False


ROWS: list[Row] = []


def render(rows: list[Row]) -> str:
    """The table (a fixed-width text block); the columns:

    sent pub/pers: progress events the workers published / committed (metrics deltas;
    the API's first ``pending`` event of each job is in the history only, and a SIGKILLed
    work-horse may take its last increments with it); fail pub/pers:
    publishes Redis refused / event writes that failed and were buffered; seq@fault: the
    lowest seq all clients had when the fault began -> when it was over; live: events
    delivered live to clients while the fault was being injected; reconn / resync / gaps:
    client reconnections, ``resync`` messages and holes seen (each led to a resume);
    missed: per client, history events it did not hold at the end.
    """
    header = (
        f"{'fault':<27} {'jobs':>4} {'seq@fault':>9} {'live':>5} {'sent pub/pers':>13} "
        f"{'fail pub/pers':>13} {'history':>7} {'reconn':>6} {'resync':>6} {'gaps':>4} "
        f"{'recover':>7}  "
        f"{'missed per client (end)':<40} result"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        missed = " ".join(f"{name}={n}" for name, n in sorted(r.missed.items()))
        lines.append(
            f"{r.fault:<27} {r.jobs:>4} {f'{r.seq_at_fault}->{r.seq_after_fault}':>9} "
            f"{r.live_during_fault:>5} {f'{r.published}/{r.persisted}':>13} "
            f"{f'{r.publish_failures}/{r.persist_failures}':>13} {r.history:>7} "
            f"{r.reconnects:>6} {r.resyncs:>6} {r.gaps:>4} {r.recovery_s:>6.1f}s  {missed:<40} "
            f"{'ok' if r.ok else 'FAILED'} {r.statuses}"
        )
    return "\n".join(lines)
