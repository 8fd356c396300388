"""``reeltrack run``'s supervisor: the restart/give-up policy, and the supervisor itself
on real child processes that crash."""

from __future__ import annotations

import os
import signal
import sys
import time

from quart_app.devserver import (
    GaveUp,
    RestartPolicy,
    Supervised,
    Supervisor,
    describe_exit,
)


def test_backoff_doubles_from_1s_to_30s_for_spread_out_crashes() -> None:
    policy = RestartPolicy()
    delays = []
    now = 0.0
    for _ in range(8):
        now += 25.0  # at most 3 crashes in any 60 s: never gives up
        delays.append(policy.on_crash(now, ran_for=5.0))
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_fifth_crash_within_60s_gives_up() -> None:
    policy = RestartPolicy()
    answers = [policy.on_crash(t, ran_for=0.5) for t in (0.0, 2.0, 5.0, 10.0)]
    assert answers == [1, 2, 4, 8]
    assert policy.on_crash(19.0, ran_for=0.5) is None


def test_crashes_older_than_the_window_do_not_count_and_a_long_run_resets_backoff() -> None:
    policy = RestartPolicy()
    for t in (0.0, 1.0, 2.0, 3.0):
        assert policy.on_crash(t, ran_for=0.5) is not None
    # 70 s later, after a run of 60 s: the old crashes are out of the window, the
    # backoff starts again at 1 s
    assert policy.on_crash(73.0, ran_for=60.0) == 1


def test_describe_exit_names_code_or_signal() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "killed by signal SIGKILL"


def _fast_policy() -> RestartPolicy:
    return RestartPolicy(first=0.05, cap=0.2, limit=5, window=60.0)


def test_supervisor_restarts_a_crashing_child_then_gives_up_naming_it() -> None:
    lines: list[str] = []
    sup = Supervisor(dict(os.environ), stop_grace=2.0, log=lines.append)
    starts: list[int] = []

    def argv(generation: int) -> list[str]:
        starts.append(generation)
        return [sys.executable, "-c", "import sys; sys.exit(3)"]

    sup.add(Supervised("worker-1", argv, policy=_fast_policy()))
    stable = sup.add(
        Supervised("web", lambda _g: [sys.executable, "-c", "import time; time.sleep(60)"])
    )
    web_pid = stable.proc.pid if stable.proc else None
    deadline = time.monotonic() + 20
    message = ""
    try:
        while time.monotonic() < deadline:
            try:
                sup.tick()
            except GaveUp as exc:
                message = str(exc)
                break
            time.sleep(0.02)
    finally:
        sup.stop_all()
    assert message == "giving up on worker-1: exited with code 3 (its 5th crash within 60s)"
    assert starts == [1, 2, 3, 4, 5]
    assert sum("worker-1 exited with code 3; restarting it in" in line for line in lines) == 4
    # the other process was left alone while worker-1 restarted, and stopped at the end
    assert stable.generation == 1 and stable.proc is not None
    assert stable.proc.pid == web_pid and stable.proc.returncode == -signal.SIGTERM


def test_a_supervisor_that_does_not_own_its_process_leaves_other_children_alone() -> None:
    """Only ``reeltrack run`` (the subreaper) reaps children it did not start: a supervisor
    inside another program (this test runner, with its Redis) must not kill them."""
    import subprocess

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    sup = Supervisor(dict(os.environ), stop_grace=1.0, log=lambda _l: None)
    sup.add(Supervised("worker-1", lambda _g: [sys.executable, "-c", "import sys; sys.exit(3)"]))
    try:
        deadline = time.monotonic() + 10
        while sup.procs[0].restart_at is None and time.monotonic() < deadline:
            sup.tick()  # notices the crash: the moment a dead child's orphans are reaped
            time.sleep(0.02)
        assert sup.procs[0].restart_at is not None, "the crash was not noticed"
        sup.stop_all()
        assert bystander.poll() is None, "the supervisor killed a process it did not start"
    finally:
        bystander.kill()
        bystander.wait()


#: run in a process of its own: becoming a subreaper is for the rest of a process's life
_STUBBORN_SCENARIO = """
import json, os, signal, sys, time
from quart_app.devserver import Supervised, Supervisor, become_subreaper, child_pids
assert become_subreaper()
sup = Supervisor(dict(os.environ), stop_grace=1.5, log=lambda _l: None, reap_orphans=True)
code = (
    "import signal, subprocess, sys, time\\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], process_group=0)\\n"
    "time.sleep(60)\\n"
)
stubborn = sup.add(Supervised("worker-1", lambda _g: [sys.executable, "-c", code]))
deadline = time.monotonic() + 10
while not child_pids(stubborn.proc.pid) and time.monotonic() < deadline:
    time.sleep(0.05)
(grandchild,) = child_pids(stubborn.proc.pid)
started = time.monotonic()
sup.stop_all()
print(json.dumps({
    "took": time.monotonic() - started,
    "returncode": stubborn.proc.returncode,
    "grandchild_left": os.path.exists(f"/proc/{grandchild}"),
}))
"""


def test_stop_all_kills_a_child_that_ignores_sigterm_and_the_orphan_it_left() -> None:
    """A process that ignores SIGTERM is SIGKILLed at the end of the grace; a process it
    started in a process group of its own (as RQ's work-horse is) does not outlive it."""
    import json
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _STUBBORN_SCENARIO], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["returncode"] == -signal.SIGKILL
    assert 1.4 <= result["took"] < 3.0, result
    assert not result["grandchild_left"], "the orphan outlived the stop"
