"""The "no recent success" window of a weekly kube schedule, in its own promtool test
file (alerts/schedule-window.test.yaml) next to the rules' own tests: no alert on day 3 nor
half a day after the missed day-7 run, an alert on day 8."""
import subprocess

from pxtest import ALERTS

WINDOW_TEST = ALERTS.parent / "schedule-window.test.yaml"


def test_weekly_schedule_alerts_on_day_8_not_day_3():
    proc = subprocess.run(["promtool", "test", "rules", WINDOW_TEST.name],
                          capture_output=True, text=True, cwd=ALERTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
