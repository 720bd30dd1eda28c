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


@pytest.fixture()
def chart_configured_sidecar(sidecar_bin, tmp_path):
    """The real binary started with the environment the chart gives the container, and the
    chart's telemetry ConfigMap mounted as a directory the way kubelet does. Only addresses and
    paths change: loopback ports and temp dirs instead of the pod's."""
    import subprocess

    import helm_python as helm
    import requests

    from stack import free_port, wait_for
    from test_chart import CHART, by_kind, deployment_container, env_of, render

    values = {"sources": ["demo", "ingest"], "pxbackup": {"federated": True},
              "telemetry": {"source": "file"}, "logFormat": "json"}
    with helm.Chart.load(CHART) as chart:
        docs = render(chart, values)
    _, container = deployment_container(docs)
    env = env_of(container)
    (cm,) = [d for d in by_kind(docs, "ConfigMap")
             if d["metadata"]["name"] == "px-backup-telemetry-config"]
    mount = tmp_path / "telemetry"
    kubelet_configmap_write(mount, cm["data"])
    (tmp_path / "state").mkdir()
    port = free_port()
    assert env["PXBACKUP_LISTEN"] == "0.0.0.0:9977" and env["PXBACKUP_TELEMETRY_CONFIG_FILE"]
    env.update(PXBACKUP_LISTEN=f"127.0.0.1:{port}",
               PXBACKUP_INGEST_LISTEN=f"127.0.0.1:{free_port()}",
               PXBACKUP_STATE_DIR=str(tmp_path / "state"),
               PXBACKUP_TELEMETRY_CONFIG_FILE=str(mount))
    proc = subprocess.Popen([str(sidecar_bin), *container["args"]],
                            env={"PATH": "/usr/bin:/bin", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def metrics():
        return "\n" + requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    def wait(what, check, timeout=30):
        return wait_for(what, check, timeout, {"sidecar": proc})

    try:
        wait("readyz", lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).ok)
        yield {"metrics": metrics, "wait": wait, "mount": mount, "data": cm["data"]}
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode != 64, f"exit 64 (bad configuration):\n{out}"


def test_binary_accepts_the_chart_configuration(chart_configured_sidecar):
    metrics = chart_configured_sidecar["metrics"]()
    assert "\npxbackup_telemetry_config_valid 1" in metrics
    assert "\npxbackup_telemetry_enabled 0" in metrics
    assert 'pxbackup_sidecar_source_up{source="ingest"} 1' in metrics


def test_binary_reads_the_mounted_telemetry_configmap(chart_configured_sidecar):
    """A bad value written into the mounted ConfigMap must drop config_valid to 0."""
    s = chart_configured_sidecar
    kubelet_configmap_write(s["mount"], {**s["data"], "enabled": "maybe"})
    s["wait"]("config_valid 0 after enabled=maybe in the mounted ConfigMap",
              lambda: "\npxbackup_telemetry_config_valid 0" in s["metrics"](), timeout=45)


def kubelet_configmap_write(mount, data):
    """Writes a ConfigMap volume the way kubelet does: files in a timestamped directory,
    `..data` pointing at it, and each key a symlink through `..data`; an update swaps `..data`
    atomically (rename of a new symlink), so watchers of the key files see no write."""
    import os
    import time as _time

    mount.mkdir(exist_ok=True)
    version = mount / f"..{_time.time_ns()}"
    version.mkdir()
    for key, value in data.items():
        (version / key).write_text(value)
    tmp_link = mount / "..data_tmp"
    tmp_link.symlink_to(version.name)
    os.replace(tmp_link, mount / "..data")
    for key in data:
        if not (mount / key).is_symlink():
            (mount / key).symlink_to(f"..data/{key}")
