"""Alert and recording rules: promtool check/test, one canonical file, annotations, runbook,
catalog names, and the shapes that keep them cheap and quiet at fleet scale."""
import re
import subprocess

import yaml

from pxtest import (ALERTS, ALERTS_TEST, CHART, PROMETHEUS_METRICS, RUNBOOK, alert_rules,
                    all_rules, dashboards, matches, metric_names, panel_queries,
                    recorded_metrics, recording_rules, selectors, substitute)


def promtool(*args):
    proc = subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=ALERTS.parent)
    return proc.returncode, proc.stdout + proc.stderr


def test_promtool_check_rules():
    rc, out = promtool("check", "rules", ALERTS.name)
    assert rc == 0, out
    assert f"SUCCESS: {len(all_rules())} rules found" in out


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


# Recording rules that count tombstones on purpose (the audit panels); no alert may read them.
TOMBSTONE_RECORDS = {"pxbackup_schedule:deleted_backups:count",
                     "pxbackup_schedule:deleted_virtual_machine_backups:count"}


def info_families(catalog):
    """The six backup information families: they keep a deleted backup's series as a tombstone
    (status="Deleted", previous_status)."""
    return {n for n, e in catalog.items() if {"status", "previous_status"} <= set(e["labels"])}


def test_backup_alerts_never_see_tombstones(catalog):
    """Info series carry deleted backups (status="Deleted"); every selector of them in an alert
    or in a recording rule an alert reads must reject that status."""
    info = info_families(catalog)
    assert len(info) == 6 and "pxbackup_virtual_machine_info" in info, info
    for rule in all_rules():
        if rule.get("record") in TOMBSTONE_RECORDS:
            continue
        for name, matchers in selectors(rule["expr"]):
            assert name not in TOMBSTONE_RECORDS, f"{rule.get('alert')} reads {name}"
            if name not in info:
                continue
            status = [(op, v) for label, op, v in matchers if label == "status"]
            assert status and not all(matches(op, v, "Deleted") for op, v in status), \
                f"{rule.get('alert') or rule['record']}: {name} selector accepts " \
                f"status=\"Deleted\": {matchers}"


def test_tombstone_check_is_live():
    assert matches("!=", "Deleted", "Failed") and not matches("!=", "Deleted", "Deleted")
    assert matches("=~", "Failed|Deleted", "Deleted") and not matches("!~", ".+", "Deleted")
    assert selectors('a{status!~"Deleted|x"} and b') == [("a", [("status", "!~", "Deleted|x")]),
                                                         ("b", [])]


def per_backup_families(catalog):
    """Families with one series per backup (or per volume, VM, namespace... of a backup)."""
    return {n for n, e in catalog.items() if {"uid", "schedule_name"} <= set(e["labels"])}


def test_alerts_select_backups_by_status(catalog):
    """At 100,000 backups an alert must not walk every backup at each evaluation: per-backup
    families are read by the recording rules, and by alerts only through an equality or regex
    matcher on the status label (an index lookup of the few backups in that status)."""
    heavy = per_backup_families(catalog)
    assert "pxbackup_backup_object_info" in heavy and "pxbackup_backup_status" in heavy
    for rule in alert_rules():
        for name, matchers in selectors(rule["expr"]):
            if name in heavy:
                assert any(label == "status" and op in ("=", "=~") for label, op, _ in matchers), \
                    f"{rule['alert']} reads every series of {name}: {matchers}"


def test_recording_rules():
    """Names follow Prometheus's level:metric:operations convention; recording rules carry no
    alert fields; every recorded name is read by an alert or a dashboard (tested there)."""
    names = [r["record"] for r in recording_rules()]
    assert names and len(names) == len(set(names)), names
    for r in recording_rules():
        assert re.fullmatch(r"pxbackup_\w+:\w+:\w+", r["record"]), r["record"]
        assert set(r) <= {"record", "expr", "labels"}, r["record"]
    used = set().union(*(metric_names(r["expr"]) for r in all_rules()))
    used |= set().union(*(metric_names(substitute(e)) for _, e in panel_queries(dashboards())))
    assert recorded_metrics() <= used, recorded_metrics() - used


def test_every_recording_rule_has_a_promtool_case():
    """Each recorded name is the expression (or the selector) of a promql_expr_test."""
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    tested = set()
    for t in tests:
        for case in t.get("promql_expr_test", []):
            tested |= metric_names(case["expr"])
    assert recorded_metrics() <= tested, recorded_metrics() - tested


def test_alert_metrics_exist_in_catalog(catalog):
    known = set(catalog) | PROMETHEUS_METRICS | recorded_metrics()
    for rule in all_rules():
        unknown = metric_names(rule["expr"]) - known
        name = rule.get("alert") or rule["record"]
        assert not unknown, f"{name} uses metrics the sidecar does not export: {unknown}"
    for rule in recording_rules():
        assert not metric_names(rule["expr"]) & PROMETHEUS_METRICS, rule["record"]
