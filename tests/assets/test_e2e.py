"""End to end: the sidecar's demo fleet, scraped by a real Prometheus, answers every dashboard
query and every alert expression."""
import pytest

from pxtest import alert_rules, dashboards, panel_queries, substitute, variable_queries
from stack import running_stack

# Panels that legitimately stay empty on the demo fleet, with the reason. Each entry must stay
# empty (a test fails otherwise), so the list cannot silently hide a broken panel.
EMPTY_ON_DEMO = {
    "pxbackup-sidecar.json / Time since last successful upload / A":
        "pxbackup_telemetry_last_success_timestamp_seconds exists only after a successful "
        "Pure1 upload; the demo runs with telemetry disabled",
}

BOARDS = dashboards()


@pytest.fixture(scope="module")
def prom(sidecar_bin):
    with running_stack(sidecar_bin) as p:
        yield p


def test_every_panel_query_returns_data(prom):
    empty, errors = [], []
    for where, expr in panel_queries(BOARDS):
        try:
            result = prom.query(substitute(expr))
        except RuntimeError as err:
            errors.append(f"{where}: {err}")
            continue
        if not result and where not in EMPTY_ON_DEMO:
            empty.append(where)
        if result and where in EMPTY_ON_DEMO:
            errors.append(f"{where}: returns data now; remove it from EMPTY_ON_DEMO")
    assert not errors, "\n".join(errors)
    assert not empty, "panels without data on the demo fleet:\n" + "\n".join(empty)


def test_allow_list_names_real_panels():
    known = {where for where, _ in panel_queries(BOARDS)}
    assert set(EMPTY_ON_DEMO) <= known, set(EMPTY_ON_DEMO) - known


def test_template_variables_have_values(prom):
    for where, selector, label in variable_queries(BOARDS):
        values = prom.label_values(label, substitute(selector))
        assert values, f"{where}: label_values({selector}, {label}) is empty"


def test_alert_expressions_execute(prom):
    for rule in alert_rules():
        prom.query(rule["expr"])  # raises with Prometheus's error message


def test_prometheus_evaluates_every_rule_without_error(prom):
    rules = {r["name"]: r for g in prom.rules() for r in g["rules"]}
    assert set(rules) == {r["alert"] for r in alert_rules()}
    bad = {n: r.get("lastError") for n, r in rules.items() if r["health"] == "err"}
    assert not bad, bad


def test_demo_fleet_fires_the_backup_alerts_but_not_for_tombstones(prom):
    """The demo has failed backups and Deleted tombstones: the numeric status alert must cover
    live failed backups only (its series are absent for tombstones)."""
    failed = prom.query("pxbackup_backup_status == 4")
    tombstones = prom.query('pxbackup_backup_object_info{status="Deleted", previous_status="Failed"}')
    assert failed and tombstones, "demo fleet lacks failed backups or failed tombstones"
    tomb_uids = {s["metric"]["uid"] for s in tombstones}
    alert_expr = next(r["expr"] for r in alert_rules() if r["alert"] == "PxBackupBackupFailed")
    fired = {s["metric"]["uid"] for s in prom.query(alert_expr)}
    assert not fired & tomb_uids, "a Deleted tombstone matched PxBackupBackupFailed"
    assert fired <= {s["metric"]["uid"] for s in failed}
