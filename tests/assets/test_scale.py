"""Fleet scale: 20,000 backups (half of them deleted and kept as tombstones, half of the live ones
Failed or PartialSuccess) pushed through `--source ingest`, scraped by a real Prometheus that
evaluates the real rules. Every panel query runs as Grafana's first load sends it and none
returns more than 500 series; tables keep to 100 rows; the outcome alerts fire once per schedule
at most plus once per failed backup taken by hand, never for a tombstone.

benches/dashboards.py measures the same at 100,000 backups (query and rule evaluation times).
"""
import collections
import time

import pytest

from fleet import Fleet
from pxtest import dashboards, grafana_requests, variable_queries, substitute
from stack import running_stack

BACKUPS = 20_000
MAX_SERIES = 500
MAX_ROWS = 100
BOARDS = dashboards()
# Panels of the sidecar's own dashboard that a fleet without telemetry leaves empty.
EMPTY_WITHOUT_TELEMETRY = {"Time since last successful upload", "Invalid source objects",
                           "Events ignored", "Telemetry uploads"}


@pytest.fixture(scope="module")
def fleet():
    return Fleet(BACKUPS, tombstone_share=0.5, bad_share=0.5)


@pytest.fixture(scope="module")
def prom(sidecar_bin, fleet):
    with running_stack(sidecar_bin, min_scrapes=1, fleet=fleet, interval="5s") as p:
        p.wait_for_recordings(120, p.procs)
        yield p


@pytest.fixture(scope="module")
def results(prom):
    """{where: (kind, panel, result)} of every panel query, as Grafana's first load sends it."""
    out = {}
    started = time.monotonic()
    # Not aligned on the step: this Prometheus has only a minute of history.
    for where, panel, kind, params in grafana_requests(BOARDS, int(time.time()), scrape_s=5,
                                                        align=False):
        if kind == "instant":
            result = prom.query(params["query"], params["time"])
        else:
            result = prom.query_range(params["query"], params["start"], params["end"],
                                      params["step"])
        out[where] = (kind, panel, result)
    print(f"{len(out)} panel queries in {time.monotonic() - started:.1f} s")
    return out


def test_the_fleet_is_what_the_scale_check_claims(prom, fleet):
    live = prom.query('count(pxbackup_backup_object_info{status!="Deleted"})')
    dead = prom.query('count(pxbackup_backup_object_info{status="Deleted"})')
    live, dead = int(live[0]["value"][1]), int(dead[0]["value"][1])
    assert live + dead == BACKUPS and abs(dead - BACKUPS / 2) < BACKUPS * 0.02, (live, dead)
    bad = prom.query('count(pxbackup_backup_object_info{status=~"Failed|PartialSuccess"})')
    assert abs(int(bad[0]["value"][1]) - live / 2) < live * 0.05


def test_no_panel_query_returns_more_than_500_series(results):
    big = {w: len(r) for w, (_, _, r) in results.items() if len(r) > MAX_SERIES}
    assert not big, big


def test_tables_keep_to_100_rows(results):
    big = {w: len(r) for w, (_, p, r) in results.items()
           if p["type"] == "table" and len(r) > MAX_ROWS}
    assert not big, big
    cut = [w for w, (_, p, r) in results.items() if p["type"] == "table" and len(r) == MAX_ROWS]
    assert len(cut) >= 4, f"the fleet should fill several tables to the limit: {cut}"


def test_every_backup_panel_has_data(results):
    empty = [w for w, (_, p, r) in results.items()
             if not r and not (w.startswith("pxbackup-sidecar.json")
                               and p["title"] in EMPTY_WITHOUT_TELEMETRY)]
    assert not empty, empty


def test_template_variables_have_values(prom):
    for where, selector, label in variable_queries(BOARDS):
        assert prom.label_values(label, substitute(selector)), where


def test_rules_evaluate_without_error(prom):
    bad = {r["name"]: r.get("lastError") for g in prom.rules() for r in g["rules"]
           if r["health"] != "ok"}
    assert not bad, bad


def firing(prom, alertname):
    return [s["metric"] for s in
            prom.query(f'ALERTS{{alertname="{alertname}", alertstate="firing"}}')]


@pytest.mark.parametrize("alertname", ["PxBackupBackupFailed", "PxBackupBackupPartialSuccess",
                                       "PxBackupCloudBackupMissing"])
def test_outcome_alerts_once_per_schedule_and_never_for_tombstones(prom, fleet, alertname):
    alerts = firing(prom, alertname)
    assert alerts, f"{alertname} never fired on a fleet with half its backups failing"
    per_schedule = collections.Counter((a["cluster_uid"], a["schedule_name"]) for a in alerts
                                       if a.get("schedule_name"))
    assert per_schedule and max(per_schedule.values()) == 1, per_schedule.most_common(3)
    assert len(per_schedule) <= len(fleet.schedules)
    tombstones = {s["metric"]["uid"] for s in
                  prom.query('pxbackup_backup_object_info{status="Deleted"}')}
    assert not {a.get("uid") for a in alerts} & tombstones
    if alertname == "PxBackupBackupFailed":
        by_hand = [a for a in alerts if not a.get("schedule_name")]
        assert len(by_hand) == fleet.failed_adhoc
