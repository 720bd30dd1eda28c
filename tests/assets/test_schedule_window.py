"""The "no recent success" window of a weekly kube schedule (issue 11), in its own promtool test
file (alerts/schedule-window.test.yaml) next to the rules' own tests."""
import subprocess

import pytest

from pxtest import ALERTS

WINDOW_TEST = ALERTS.parent / "schedule-window.test.yaml"


@pytest.mark.xfail(
    strict=True,
    reason="the rule's window is twice the interval (day 14 for a weekly schedule); issue 11 "
           "wants the alert on day 8, so the window must become the interval plus a grace. "
           "Drop this mark (and update the expected description) with that change.")
def test_weekly_schedule_alerts_on_day_8_not_day_3():
    proc = subprocess.run(["promtool", "test", "rules", WINDOW_TEST.name],
                          capture_output=True, text=True, cwd=ALERTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
