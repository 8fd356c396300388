"""The Prometheus alert rules (deploy/prometheus/alerts.yml): promtool's unit tests pass
(the drop-rate alert fires at 20 % and not at 5 %; HTTP error rate and p99, queue
backlog, queues without workers and no workers at all each fire and stay quiet where
they should), and every metric the rules use is one reeltrack exports (a renamed metric
would silently disable an alert)."""

from __future__ import annotations

import re
import shutil
import subprocess

from quart_app.core import metrics
from quart_app.core.metrics_scrape import QueueCollector
from tasks.queue import WORKER_QUEUES
from tests.support.live import ROOT

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool missing: `make system-deps` installs Debian's prometheus package"
    return found


def test_rules_are_valid() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 10 rules found" in done.stdout


def test_rule_unit_tests_pass_drop_rate_alert_fires() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    tests = RULE_TESTS.read_text()
    assert "alertname: ReeltrackWebSocketDropRateHigh" in tests
    assert "drop rate above 10 % fires" in tests
    # every alert has a case in which it fires
    for alert in re.findall(r"- alert: (\w+)", RULES.read_text()):
        assert f"alertname: {alert}\n        exp_alerts:\n          - exp_labels" in tests, alert


def test_every_metric_in_the_rules_is_exported(redis_url: str) -> None:
    used = set(re.findall(r"\breeltrack_[a-z_]+", RULES.read_text()))
    assert used, "no reeltrack metric in the rules?"
    queues = QueueCollector(redis_url, WORKER_QUEUES)  # what /metrics reads at scrape time
    try:
        text = metrics.generate([queues])[0].decode()
    finally:
        queues.close()
    exported = set(re.findall(r"^(reeltrack_[a-z_]+)", text, re.MULTILINE))
    # labelled families with no series yet (one per route: none before a request)
    for name, kind in re.findall(r"^# TYPE (reeltrack_[a-z_]+) (\w+)", text, re.MULTILINE):
        suffixes = ("_bucket", "_count", "_sum") if kind == "histogram" else ("",)
        exported.update(name + suffix for suffix in suffixes)
    assert used <= exported, f"rules use metrics nobody exports: {sorted(used - exported)}"
