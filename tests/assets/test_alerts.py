"""Alert rules: promtool check/test, one canonical file, annotations, runbook, catalog names."""
import re
import subprocess

import yaml

from pxtest import (ALERTS, ALERTS_TEST, CHART, PROMETHEUS_METRICS, RUNBOOK, alert_rules,
                    metric_names)


def promtool(*args):
    proc = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=ALERTS.parent)
    return proc.returncode, proc.stdout + proc.stderr


def test_promtool_check_rules():
    rc, out = promtool("check", "rules", ALERTS.name)
    assert rc == 0, out
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


def test_promtool_unit_tests():
    rc, out = promtool("test", "rules", ALERTS_TEST.name)
    assert rc == 0, out


def test_every_alert_has_a_firing_and_a_silent_case():
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    for rule in alert_rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c.get("exp_alerts") for c in mine), f"{rule['alert']}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), \
            f"{rule['alert']}: no case where it must stay silent"


def test_chart_embeds_the_same_rules_file():
    assert ALERTS.read_bytes() == (CHART / "files" / "alerts.yaml").read_bytes(), \
        "alerts/pxbackup-sidecar.rules.yaml and charts/pxbackup-sidecar/files/alerts.yaml differ"


def github_anchor(heading):
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_labels_annotations_and_runbook_sections():
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.M)}
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in alert_rules():
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in ("critical", "warning", "info"), name
        ann = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert ann.get(key), f"{name}: annotation {key} missing"
        path, _, anchor = ann["runbook_url"].partition("#")
        assert path == "alerts/runbook.md", f"{name}: runbook_url {ann['runbook_url']}"
        assert anchor in anchors, f"{name}: no section #{anchor} in alerts/runbook.md"


def test_backup_alerts_never_see_tombstones():
    """Info series carry deleted backups (status="Deleted"); alerts on them must exclude it."""
    for rule in alert_rules():
        for sel in re.findall(r"pxbackup_backup_(?:object|volume)_info\{([^}]*)\}", rule["expr"]):
            assert re.search(r'status\s*!=\s*"Deleted"', sel), \
                f"{rule['alert']}: info selector without status!=\"Deleted\": {sel}"


def test_alert_metrics_exist_in_catalog(catalog):
    for rule in alert_rules():
        unknown = metric_names(rule["expr"]) - set(catalog) - PROMETHEUS_METRICS
        assert not unknown, f"{rule['alert']} uses metrics the sidecar does not export: {unknown}"
