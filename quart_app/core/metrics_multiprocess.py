"""The plumbing that lets every reeltrack process share one set of Prometheus metrics.

Multiprocess mode (prometheus-client's): every process that calls
:func:`setup_process_metrics` writes its samples into mmap files under
``VAR_DIR/metrics`` (the web processes, the worker, each RQ work-horse it forks, the
cron child), and ``GET /metrics`` on any web process of the same ``VAR_DIR`` merges
them all (:func:`exposition`).  Web and worker already share ``VAR_DIR`` (media,
thumbnails), so they share this directory too.  Files of dead processes are folded into
one archive file per metric type (counters and histograms keep their totals; gauges of
dead processes are dropped) whenever a web process serves ``/metrics`` and when a
process starts, so the directory does not grow with every work-horse RQ forks.

Without :func:`setup_process_metrics` (tests in one interpreter) the metrics live in
this process only and the exposition is the default registry's.  The metrics themselves
are in :mod:`quart_app.core.metrics`.  Like it, this module never imports Quart.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import re
import socket
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prometheus_client is imported only after the set-up below
    from quart_app.core.config import Config

log = logging.getLogger(__name__)

METRICS_SUBDIR = "metrics"
ENV_NAME = "PROMETHEUS_MULTIPROC_DIR"
ARCHIVE_ID = "archive"
LOCK_NAME = ".lock"
#: every metric of reeltrack's catalogue is named with this prefix
METRIC_PREFIX = "reeltrack_"
#: ``<host>-<pid>.process`` files: the kind (web, worker) of each live process, for the
#: ``process_*`` figures read at scrape time (quart_app.core.metrics_scrape)
MARKER_SUFFIX = ".process"
#: the CLI command -> the kind of process it is
COMMAND_KINDS = {"serve": "web", "worker": "worker"}

_multiproc_dir: Path | None = None
_host_tag = ""


# --- process set-up -------------------------------------------------------------------


def metrics_dir(config: Config) -> Path:
    """The directory every process of one installation (one ``VAR_DIR``) writes into."""
    return Path(config.var_dir) / METRICS_SUBDIR


def _tag(text: str) -> str:
    # the collector splits file names on "_": keep the identifier free of it
    return re.sub(r"[^A-Za-z0-9.-]", "-", text)[:40] or "host"


def _process_identifier() -> str:
    """``<host>-<pid>``: unique per live process even when containers share the dir."""
    return f"{_host_tag}-{os.getpid()}"


def _metrics_created() -> bool:
    """Whether reeltrack's metrics are already registered in this process."""
    from prometheus_client import REGISTRY

    return any(family.name.startswith(METRIC_PREFIX) for family in REGISTRY.collect())


def _kind_from_argv(argv: list[str]) -> str:
    for arg in argv[1:]:
        if arg in COMMAND_KINDS:
            return COMMAND_KINDS[arg]
    return "other"


def setup_process_metrics(config: Config, kind: str | None = None) -> Path:
    """Switch this process to multiprocess metrics in ``VAR_DIR/metrics``; returns it.

    Call once per process before any metric is touched (``reeltrack serve`` and
    ``reeltrack worker`` do, right after reading the config); children forked later
    (RQ work-horses) inherit it and write files of their own.  Also folds the files
    of dead processes into the archive.  Raises RuntimeError if reeltrack's metrics
    were already created in single-process mode (set-up came too late).  ``kind``
    (default: from the CLI command in ``sys.argv``: ``web`` for serve, ``worker``) is
    recorded in a marker file so a scrape can report this process's ``process_*``.
    """
    global _multiproc_dir, _host_tag
    directory = metrics_dir(config)
    directory.mkdir(parents=True, exist_ok=True)
    _host_tag = _tag(socket.gethostname())
    # prometheus_client reads the variable when its values module is imported and
    # again when a metric value is created: set it for both (and for children)
    os.environ[ENV_NAME] = str(directory)
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False) and _metrics_created():
        raise RuntimeError("metrics were created before setup_process_metrics()")
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)
    _multiproc_dir = directory
    try:
        # files under OUR identifier are a previous incarnation's (in a container the
        # pid repeats after a restart): fold them in before we open our own, or a
        # gauge would continue from the dead process's value
        compact(directory, also_dead=_process_identifier())
    except OSError:  # a read-only or racing directory must not stop the process
        log.exception("compacting metrics files failed")
    try:
        marker = directory / f"{_process_identifier()}{MARKER_SUFFIX}"
        marker.write_text(kind or _kind_from_argv(sys.argv))
    except OSError:
        log.exception("writing the process marker failed")
    return directory


def marked_processes() -> dict[int, str]:
    """pid -> kind of the live processes of THIS host that set up multiprocess metrics
    in the same directory (empty in single-process mode)."""
    directory = _multiproc_dir
    found: dict[int, str] = {}
    if directory is None:
        return found
    for path in directory.glob(f"*{MARKER_SUFFIX}"):
        identifier = path.name[: -len(MARKER_SUFFIX)]
        host, _, pid = identifier.rpartition("-")
        if host != _host_tag or not pid.isdigit() or not _pid_alive(int(pid)):
            continue
        try:
            found[int(pid)] = path.read_text().strip() or "other"
        except OSError:
            continue
    return found


def compact_now() -> None:
    """Fold dead processes' files into the archive (multiprocess mode only; never
    raises).  Web processes do it on every scrape; workers at each job start, since
    each RQ work-horse leaves files behind."""
    if _multiproc_dir is None:
        return
    try:
        compact(_multiproc_dir)
    except Exception:  # metrics must never break the code path they serve
        log.debug("compacting metrics files failed", exc_info=True)


def multiprocess_dir() -> Path | None:
    """The directory of multiprocess mode, None in single-process mode."""
    return _multiproc_dir


# --- dead processes' files ----------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _dead_identifier(identifier: str) -> bool:
    """True for ``<host>-<pid>`` of THIS host whose pid is gone (other hosts' files are
    left to their own processes)."""
    host, _, pid = identifier.rpartition("-")
    if host != (_host_tag or _tag(socket.gethostname())) or not pid.isdigit():
        return False
    return not _pid_alive(int(pid))


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    with open(directory / LOCK_NAME, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def compact(directory: Path, also_dead: str | None = None) -> int:
    """Fold the files of dead processes of this host into the archive; returns how many
    files were removed.

    Counters and histograms are added into ``<type>_archive.db`` (totals survive the
    process); gauges of dead processes are dropped.  Runs under an exclusive lock on
    the directory, which :func:`exposition` also takes, so a scrape never sees a value
    both in a dead process's file and in the archive.  ``also_dead``: an identifier to
    treat as dead although its pid is alive (our own, before we wrote anything).
    """
    from prometheus_client.mmap_dict import MmapedDict

    removed = 0
    with _dir_lock(directory):
        for path in sorted(glob.glob(str(directory / "*.db"))):
            name = os.path.basename(path)[: -len(".db")]
            typ, _, rest = name.partition("_")
            identifier = rest.rpartition("_")[2] if typ == "gauge" else rest
            if identifier == ARCHIVE_ID:
                continue
            if identifier != also_dead and not _dead_identifier(identifier):
                continue
            if typ in ("counter", "histogram", "summary"):
                values = MmapedDict.read_all_values_from_file(path)
                archive = MmapedDict(str(directory / f"{typ}_{ARCHIVE_ID}.db"))
                try:
                    for key, value, _timestamp, _pos in values:
                        current, _ts = archive.read_value(key)
                        archive.write_value(key, current + value, 0.0)
                finally:
                    archive.close()
            os.remove(path)
            removed += 1
        for path in glob.glob(str(directory / f"*{MARKER_SUFFIX}")):
            identifier = os.path.basename(path)[: -len(MARKER_SUFFIX)]
            if _dead_identifier(identifier):
                with contextlib.suppress(OSError):
                    os.remove(path)
    return removed


# --- exposition ---------------------------------------------------------------------------


def exposition(collectors: Iterable[object] = ()) -> tuple[bytes, str]:
    """The exposition text of every process (multiprocess) or this one, followed by
    what ``collectors`` (objects with ``collect()``, read at scrape time) yield; and its
    content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry
    from prometheus_client import generate_latest as _generate
    from prometheus_client.multiprocess import MultiProcessCollector

    extra = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        extra.register(collector)  # type: ignore[arg-type]
    directory = _multiproc_dir
    if directory is None:
        return _generate(REGISTRY) + _generate(extra), CONTENT_TYPE_LATEST
    try:
        compact(directory)
    except OSError:
        log.exception("compacting metrics files failed")
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    with _dir_lock(directory):
        merged = _generate(registry)
    return merged + _generate(extra), CONTENT_TYPE_LATEST
