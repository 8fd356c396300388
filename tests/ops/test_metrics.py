"""Multiprocess metrics: files of several processes merge, dead processes' counters are
kept (folded into the archive) while their gauges go; the worker-side module stays
Quart-free."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quart_app.core.metrics import sample_value
from tests.support.live import ROOT

PRELUDE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from quart_app.core.config import Config
    from quart_app.core import metrics, metrics_multiprocess
    metrics_multiprocess.setup_process_metrics(Config(var_dir=Path(sys.argv[1])))
    """
)


def run(var_dir: Path, body: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body), str(var_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_processes_merge_and_dead_ones_are_compacted(tmp_path: Path) -> None:
    # a process that ends: two sockets it still "held", three published events
    run(
        tmp_path,
        """
        metrics.connection_opened("a", "websocket")
        metrics.connection_opened("b", "polling")
        for _ in range(3):
            metrics.event_published()
        metrics.observe_persist(0.004)
        """,
    )
    # a process that stays alive while another one scrapes
    alive = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PRELUDE
            + textwrap.dedent(
                """
                metrics.connection_opened("c", "websocket")
                metrics.event_published()
                metrics.observe_persist(0.02)
                print("ready", flush=True)
                sys.stdin.readline()
                """
            ),
            str(tmp_path),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert alive.stdout is not None and alive.stdout.readline().strip() == "ready"
        files_before = sorted(p.name for p in (tmp_path / "metrics").glob("*.db"))
        text = run(tmp_path, "print(metrics.generate()[0].decode())")
        files_after = sorted(p.name for p in (tmp_path / "metrics").glob("*.db"))
    finally:
        assert alive.stdin is not None
        alive.stdin.write("\n")
        alive.stdin.flush()
        alive.wait(10)

    def v(name: str, **labels: str) -> float | None:
        return sample_value(text, name, labels)

    assert v("reeltrack_progress_events_published_total") == 4  # dead + live, summed
    assert v("reeltrack_progress_persist_seconds_count") == 2
    assert v("reeltrack_progress_persist_seconds_bucket", le="0.005") == 1
    # the dead process's sockets no longer count; the live one's does
    assert v("reeltrack_socketio_connections", transport="websocket") == 1
    assert v("reeltrack_socketio_connections", transport="polling") == 0
    # connects are a counter: the dead process's stay
    assert v("reeltrack_socketio_connects_total", transport="polling") == 1
    # the dead process's files were folded into one archive per type (by the next
    # process that started): only the live process's own files are left beside them
    assert {"counter_archive.db", "histogram_archive.db"} <= set(files_before)
    others = [n for n in files_before if "archive" not in n]
    assert others and all(n.endswith(f"-{alive.pid}.db") for n in others), files_before
    assert len(files_after) > len(files_before)  # the scraper's own files

    # after the live one ended too, the totals still hold, and no live gauge is left
    text = run(tmp_path, "print(metrics.generate()[0].decode())")
    assert sample_value(text, "reeltrack_progress_events_published_total") == 4
    assert sample_value(text, "reeltrack_socketio_connections", {"transport": "websocket"}) == 0
    remaining = sorted(p.name for p in (tmp_path / "metrics").glob("*.db"))
    # only the archives and the files of the scraping process itself
    assert all("archive" in n or n.endswith(f"-{_last_pid(remaining)}.db") for n in remaining)


def _last_pid(names: list[str]) -> str:
    pids = {n[:-3].rsplit("-", 1)[1] for n in names if "archive" not in n}
    assert len(pids) <= 1, names
    return pids.pop() if pids else "none"


def test_setup_after_metrics_were_created_refuses(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from quart_app.core.config import Config;"
            " from quart_app.core import metrics, metrics_multiprocess; metrics.event_published();"
            " metrics_multiprocess.setup_process_metrics(Config(var_dir=Path(sys.argv[1])))",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "before setup_process_metrics" in done.stderr


@pytest.mark.parametrize(
    "module",
    [
        "quart_app.core.metrics",
        "quart_app.core.metrics_multiprocess",
        "tasks.publisher",
        "tasks.retention",
    ],
)
def test_worker_side_modules_do_not_import_quart(module: str) -> None:
    code = f"import sys, {module}; print('quart' in sys.modules, 'quart_schema' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_a_restarted_process_with_the_same_pid_starts_its_gauges_from_zero(
    tmp_path: Path,
) -> None:
    """In a container the pid repeats after a restart: the files of the previous
    incarnation are folded in, so its live gauge does not carry over."""
    code = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        os.getpid = lambda: 1  # a pid that is alive, as a restarted container's would be
        from quart_app.core.config import Config
        from quart_app.core import metrics, metrics_multiprocess
        metrics_multiprocess.setup_process_metrics(Config(var_dir=Path(sys.argv[1])))
        metrics.connection_opened(sys.argv[2], "websocket")
        metrics.event_published()
        print(metrics.generate()[0].decode())
        """
    )
    texts = []
    for sid in ("a", "b"):
        done = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path), sid],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        texts.append(done.stdout)
    for text in texts:
        assert sample_value(text, "reeltrack_socketio_connections", {"transport": "websocket"}) == 1
    assert sample_value(texts[1], "reeltrack_progress_events_published_total") == 2


def test_upgraded_sockets_move_to_the_websocket_count_and_leave_once() -> None:
    from quart_app.core import metrics

    def gauge(transport: str) -> float:
        return metrics.m().connections.labels(transport)._value.get()

    before = {t: gauge(t) for t in ("polling", "websocket")}
    metrics.connection_opened("up-1", "polling")
    metrics.connection_opened("up-1", "polling")  # counted once
    metrics.connection_opened("up-2", "polling")
    assert gauge("polling") == before["polling"] + 2
    transports = {"up-1": "websocket", "up-2": "polling"}
    metrics.refresh_transports(transports.get)
    assert gauge("polling") == before["polling"] + 1
    assert gauge("websocket") == before["websocket"] + 1
    metrics.refresh_transports(transports.get)  # idempotent
    assert gauge("websocket") == before["websocket"] + 1
    metrics.connection_closed("up-1", "transport close")
    metrics.connection_closed("up-1", "transport close")  # only once
    metrics.connection_closed("up-2", "ping timeout")
    assert gauge("polling") == before["polling"] and gauge("websocket") == before["websocket"]


def test_the_operations_doc_lists_every_metric(redis_url: str) -> None:
    """docs/operations.md's metrics table names every family ``/metrics`` serves
    (reeltrack's catalogue, the scrape-time queue and process figures), and nothing else."""
    import re

    from quart_app.core import metrics
    from quart_app.core.metrics_scrape import ProcessesCollector, QueueCollector
    from tasks.queue import WORKER_QUEUES

    queues = QueueCollector(redis_url, WORKER_QUEUES)
    processes = ProcessesCollector(lambda: {os.getpid(): "web"})
    try:
        text = metrics.generate([queues, processes])[0].decode()
    finally:
        queues.close()
    process_names = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in processes.collect()
    }
    served = {
        name
        for name in re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE)
        if name.startswith("reeltrack_") or name in process_names
    }
    doc = (ROOT / "docs" / "operations.md").read_text()
    table = doc[doc.index("### What they are") : doc.index("## 2. Alerts")]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    documented = {
        name for cell in rows for name in re.findall(r"`((?:reeltrack|process)_[a-z_]+)", cell)
    }
    assert len(served) > 30, served
    assert served - documented == set(), "served but not in docs/operations.md"
    assert documented - served == set(), "in docs/operations.md but not served"
