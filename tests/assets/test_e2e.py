"""End to end: the sidecar's demo fleet, scraped by a real Prometheus, answers every dashboard
query and every alert expression."""
import contextlib
import os
import subprocess
import time
from types import SimpleNamespace

import helm_python as helm
import pytest
import requests

from pxtest import (alert_rules, all_rules, dashboards, panel_queries, recording_rules, substitute,
                    variable_queries)
from stack import free_port, running_stack, wait_for
from test_chart import CHART, by_kind, deployment_container, env_of, render

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


# How long a panel may wait for the demo fleet to give it data. The fleet moves every 2 s, and
# what a panel shows can depend on the random outcome of a few runs: "Schedules whose latest run
# failed" is empty while every schedule's latest run succeeded, which can happen in the seconds
# before Prometheus's first scrape. A few more runs settle it.
DEMO_SETTLE_S = 90


def test_every_panel_query_returns_data(prom):
    """Like Grafana over the dashboard's time range: data at some point since the start. (The
    demo fleet moves every 2 s, so e.g. "Backups running" is rightly empty at some instants.)
    A panel still empty is asked again while the demo moves, up to DEMO_SETTLE_S after start."""
    errors, pending = [], dict(panel_queries(BOARDS))
    while True:
        for where, expr in list(pending.items()):
            try:
                prom.query(substitute(expr))
                result = prom.query_range(substitute(expr), prom.started, time.time(), 1)
            except RuntimeError as err:
                errors.append(f"{where}: {err}")
                del pending[where]
                continue
            if result and where in EMPTY_ON_DEMO:
                errors.append(f"{where}: returns data now; remove it from EMPTY_ON_DEMO")
            if result or where in EMPTY_ON_DEMO:
                del pending[where]
        if errors or not pending or time.time() > prom.started + DEMO_SETTLE_S:
            break
        time.sleep(2)
    assert not errors, "\n".join(errors)
    assert not pending, "panels without data on the demo fleet:\n" + "\n".join(pending)


def test_allow_list_names_real_panels():
    known = {where for where, _ in panel_queries(BOARDS)}
    assert set(EMPTY_ON_DEMO) <= known, set(EMPTY_ON_DEMO) - known


def test_template_variables_have_values(prom):
    for where, selector, label in variable_queries(BOARDS):
        values = prom.label_values(label, substitute(selector))
        assert values, f"{where}: label_values({selector}, {label}) is empty"


def test_alert_expressions_execute(prom):
    for rule in all_rules():
        prom.query(rule["expr"])  # raises with Prometheus's error message


def test_prometheus_evaluates_every_rule_without_error(prom):
    rules = {r["name"]: r for g in prom.rules() for r in g["rules"]}
    assert set(rules) == {r.get("alert") or r["record"] for r in all_rules()}
    bad = {n: r.get("lastError") for n, r in rules.items() if r["health"] == "err"}
    assert not bad, bad


def test_recording_rules_record_the_demo_fleet(prom):
    for rule in recording_rules():
        assert prom.query(rule["record"]), f"{rule['record']}: nothing recorded"


def test_demo_fleet_fires_the_backup_alerts_but_not_for_tombstones(prom):
    """The demo has failed backups and Deleted tombstones: the outcome alerts cover live failed
    backups only, at most one per schedule."""
    at = time.time() - 2  # one instant for every query (the demo moves every 2 s)
    failed = prom.query("pxbackup_backup_status == 4", at)
    tombstones = prom.query('pxbackup_backup_object_info{status="Deleted", previous_status="Failed"}', at)
    assert failed and tombstones, "demo fleet lacks failed backups or failed tombstones"
    tomb_uids = {s["metric"]["uid"] for s in tombstones}
    alert_expr = next(r["expr"] for r in alert_rules() if r["alert"] == "PxBackupBackupFailed")
    fired = prom.query(alert_expr, at)
    assert not {s["metric"]["uid"] for s in fired} & tomb_uids, \
        "a Deleted tombstone matched PxBackupBackupFailed"
    schedules = [(s["metric"]["cluster_uid"], s["metric"]["schedule_name"]) for s in fired
                 if s["metric"].get("schedule_name")]
    assert len(schedules) == len(set(schedules)), f"two alerts for one schedule: {schedules}"


@contextlib.contextmanager
def chart_configured_sidecar(sidecar_bin, tmp_path, values):
    """The real binary started with the environment the chart gives its container, with the
    chart's ConfigMap and Secret mounted the way kubelet does. Only addresses and paths change:
    loopback ports and temp dirs instead of the pod's."""
    with helm.Chart.load(CHART) as chart:
        docs = render(chart, values)
    _, container = deployment_container(docs)
    env = env_of(container)
    assert env["PXBACKUP_LISTEN"] == "0.0.0.0:9977"
    port = free_port()
    env.update(PXBACKUP_LISTEN=f"127.0.0.1:{port}",
               PXBACKUP_INGEST_LISTEN=f"127.0.0.1:{free_port()}",
               PXBACKUP_STATE_DIR=str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    mounts = {}
    if "PXBACKUP_TELEMETRY_CONFIG_FILE" in env:
        (cm,) = [d for d in by_kind(docs, "ConfigMap")
                 if d["metadata"]["name"] == "px-backup-telemetry-config"]
        mounts["telemetry"] = (tmp_path / "telemetry", cm["data"])
        env["PXBACKUP_TELEMETRY_CONFIG_FILE"] = str(tmp_path / "telemetry")
    if "PXBACKUP_INGEST_TOKEN_FILE" in env:
        (secret,) = by_kind(docs, "Secret")
        mounts["ingest"] = (tmp_path / "ingest", secret["stringData"])
        key = env["PXBACKUP_INGEST_TOKEN_FILE"].rsplit("/", 1)[1]
        env["PXBACKUP_INGEST_TOKEN_FILE"] = str(tmp_path / "ingest" / key)
    for mount, data in mounts.values():
        kubelet_configmap_write(mount, data)
    proc = subprocess.Popen([str(sidecar_bin), *container["args"]],
                            env={"PATH": "/usr/bin:/bin", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def metrics():
        return "\n" + requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    def wait(what, check, timeout=30):
        return wait_for(what, check, timeout, {"sidecar": proc})

    try:
        wait("readyz", lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).ok)
        yield SimpleNamespace(metrics=metrics, wait=wait, mounts=mounts,
                              ingest_url=f"http://{env['PXBACKUP_INGEST_LISTEN']}/v1/events")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode != 64, f"exit 64 (bad configuration):\n{out}"


TELEMETRY_FILE = {"sources": ["demo", "ingest"], "pxbackup": {"federated": True},
                  "telemetry": {"source": "file"}, "logFormat": "json"}


def test_binary_accepts_the_chart_configuration(sidecar_bin, tmp_path):
    with chart_configured_sidecar(sidecar_bin, tmp_path, TELEMETRY_FILE) as s:
        metrics = s.metrics()
        assert "\npxbackup_telemetry_config_valid 1" in metrics
        assert "\npxbackup_telemetry_enabled 0" in metrics
        assert 'pxbackup_sidecar_source_up{source="ingest"} 1' in metrics


def test_binary_reads_the_mounted_telemetry_configmap(sidecar_bin, tmp_path):
    """A bad value written into the mounted ConfigMap must drop config_valid to 0."""
    with chart_configured_sidecar(sidecar_bin, tmp_path, TELEMETRY_FILE) as s:
        mount, data = s.mounts["telemetry"]
        kubelet_configmap_write(mount, {**data, "enabled": "maybe"})
        s.wait("config_valid 0 after enabled=maybe in the mounted ConfigMap",
               lambda: "\npxbackup_telemetry_config_valid 0" in s.metrics(), timeout=45)


def test_ingest_token_from_the_chart_secret(sidecar_bin, tmp_path):
    values = {"sources": ["ingest"], "telemetry": {"source": "none"},
              "ingest": {"token": {"value": "s3cr3t"}}}
    event = ('{"type":"cluster","op":"upsert","uid":"c-e2e","org_id":"default",'
             '"name":"chart-e2e","status":"Online"}\n')
    with chart_configured_sidecar(sidecar_bin, tmp_path, values) as s:
        denied = requests.post(s.ingest_url, data=event, timeout=5)
        assert denied.status_code == 401, denied.text
        wrong = requests.post(s.ingest_url, data=event, timeout=5,
                              headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, wrong.text
        ok = requests.post(s.ingest_url, data=event, timeout=5,
                           headers={"Authorization": "Bearer s3cr3t"})
        assert ok.status_code in (200, 202, 204), ok.text
        s.wait("the pushed cluster in /metrics",
               lambda: 'pxbackup_cluster_status{org_id="default",name="chart-e2e"' in s.metrics())


def kubelet_configmap_write(mount, data):
    """Writes a ConfigMap or Secret volume the way kubelet does: files in a timestamped
    directory, `..data` pointing at it, and each key a symlink through `..data`; an update swaps
    `..data` atomically (rename of a new symlink), so watchers of the key files see no write."""
    mount.mkdir(exist_ok=True)
    version = mount / f"..{time.time_ns()}"
    version.mkdir()
    for key, value in data.items():
        (version / key).write_text(value)
    tmp_link = mount / "..data_tmp"
    tmp_link.symlink_to(version.name)
    os.replace(tmp_link, mount / "..data")
    for key in data:
        if not (mount / key).is_symlink():
            (mount / key).symlink_to(f"..data/{key}")
