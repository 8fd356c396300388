"""The Prometheus alert rules (deploy/prometheus/alerts.yml): promtool's unit tests pass
(the drop-rate alert fires at 20 % and not at 5 %), and every metric the rules use is
one reeltrack exports (a renamed metric would silently disable an alert)."""

from __future__ import annotations

import re
import shutil
import subprocess

from quart_app.core import metrics
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
    assert "SUCCESS: 4 rules found" in done.stdout


def test_rule_unit_tests_pass_drop_rate_alert_fires() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    tests = RULE_TESTS.read_text()
    assert "alertname: ReeltrackWebSocketDropRateHigh" in tests
    assert "drop rate above 10 % fires" in tests


def test_every_metric_in_the_rules_is_exported() -> None:
    used = set(re.findall(r"\breeltrack_[a-z_]+", RULES.read_text()))
    assert used, "no reeltrack metric in the rules?"
    text = metrics.generate()[0].decode()
    exported = set(re.findall(r"^(reeltrack_[a-z_]+)", text, re.MULTILINE))
    assert used <= exported, f"rules use metrics nobody exports: {sorted(used - exported)}"
