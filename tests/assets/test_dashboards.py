"""Dashboards: generated JSON in sync, Grafana conventions, PromQL parsed by promtool, metric
names from the sidecar's catalog, and Grafana's own TypeScript schema types."""
import importlib.util
import json
import pathlib
import re
import subprocess

import pytest

import promql_parser
from pxtest import (CHART, DASHBOARD_DIR, PROMETHEUS_METRICS, dashboards, metric_names,
                    panel_queries, panels, promtool_check_exprs, recorded_metrics, selectors,
                    substitute, variable_queries)

GRAFANA_DIR = pathlib.Path(__file__).resolve().parent / "grafana"
BOARDS = dashboards()


def test_two_dashboards_exist():
    assert set(BOARDS) == {"pxbackup-backups.json", "pxbackup-sidecar.json"}


def test_committed_json_is_the_generator_output():
    spec = importlib.util.spec_from_file_location("generate", DASHBOARD_DIR / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    rendered = gen.render()
    assert set(rendered) == set(BOARDS)
    for name, text in rendered.items():
        assert (DASHBOARD_DIR / name).read_text() == text, \
            f"dashboards/{name} differs from dashboards/generate.py output: run it"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_chart_ships_identical_dashboard(name):
    assert (DASHBOARD_DIR / name).read_bytes() == \
        (CHART / "files" / "dashboards" / name).read_bytes()


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_grafana_conventions(name):
    d = BOARDS[name]
    assert d["schemaVersion"] >= 39
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    # Titles name panels in the tests, the allow-lists and benches/dashboards.py.
    titles = [p["title"] for p in panels(d) if p["type"] != "row"]
    assert len(titles) == len(set(titles)), "duplicate panel titles"
    for p in panels(d):
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"{p['title']} overflows the grid"
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], f"{p['title']} has no query"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}"
            assert v["includeAll"] and v["allValue"] == ".*", v["name"]


def test_backups_dashboard_filters_by_org_cluster_schedule():
    d = BOARDS["pxbackup-backups.json"]
    names = [v["name"] for v in d["templating"]["list"]]
    assert names == ["datasource", "org", "cluster", "schedule"]
    for where, expr in panel_queries({"b": d}):
        assert "$org" in expr, f"{where} ignores the org variable"


def test_every_query_parses_with_promtool():
    named = [(w, substitute(e)) for w, e in panel_queries(BOARDS)]
    named += [(w, sel) for w, sel, _ in variable_queries(BOARDS)]
    assert len(named) > 30
    err = promtool_check_exprs(named)
    assert not err, err


def test_promtool_parse_check_is_live():
    assert promtool_check_exprs([("broken", "sum(rate(x[5m])")]), \
        "promtool accepted a broken expression: the parse check proves nothing"


def test_every_metric_is_in_the_catalog(catalog):
    used = {}
    for where, expr in panel_queries(BOARDS):
        for m in metric_names(substitute(expr)):
            used.setdefault(m, where)
    for where, sel, _ in variable_queries(BOARDS):
        for m in metric_names(sel):
            used.setdefault(m, where)
    known = set(catalog) | PROMETHEUS_METRICS | recorded_metrics()
    unknown = {m: w for m, w in used.items() if m not in known}
    assert not unknown, f"metrics not in `pxbackup-sidecar catalog` nor recorded: {unknown}"


# ------------------------------------------------------------------ fleet scale
ROWS = 100


def per_backup_families(catalog):
    """Families with one series per backup, or per volume, VM, namespace or resource type of a
    backup."""
    heavy = {n for n, e in catalog.items() if {"uid", "schedule_name"} <= set(e["labels"])}
    assert {"pxbackup_backup_object_info", "pxbackup_virtual_machine_info",
            "pxbackup_namespace_resource_type_failed_resources"} <= heavy, heavy
    return heavy


def test_every_table_is_a_bounded_slice_with_its_total_beside_it():
    """At most 100 rows: every query of a table is cut by topk/bottomk (most recent or worst
    first), and a stat in the same grid row gives the total it was cut from."""
    for name, d in BOARDS.items():
        stats = [p for p in panels(d) if p["type"] == "stat"]
        for p in panels(d):
            if p["type"] != "table":
                continue
            for t in p["targets"]:
                ks = [int(k) for k in re.findall(r"\b(?:topk|bottomk)\s*\(\s*(\d+)", t["expr"])]
                assert ks and max(ks) <= ROWS, f"{name} / {p['title']}: unbounded: {t['expr']}"
            row = p["gridPos"]["y"]
            assert any(s["gridPos"]["y"] == row and s["description"].startswith("Total")
                       or s["gridPos"]["y"] == row and f"at most {ROWS}" in s["description"]
                       for s in stats), f"{name} / {p['title']}: no total count beside it"


def first_load_panels(d):
    """The panels Grafana queries when the dashboard opens: not those of collapsed rows."""
    return [p for p in d["panels"] if p["type"] != "row"]


def test_first_load_never_walks_every_backup(catalog):
    """Stats and time series (evaluated at every step of the range) and every panel of the first
    load read the recording rules and small families, never a per-backup family; the per-backup
    tables sit in a collapsed row, opened after drilling down."""
    heavy = per_backup_families(catalog)
    for name, d in BOARDS.items():
        for p in panels(d):
            if p["type"] in ("timeseries", "stat", "bargauge") or p in first_load_panels(d):
                for t in p["targets"]:
                    used = metric_names(substitute(t["expr"])) & heavy
                    assert not used, f"{name} / {p['title']} reads {used}: use a recording rule"
    collapsed = [r for r in BOARDS["pxbackup-backups.json"]["panels"]
                 if r["type"] == "row" and r["collapsed"]]
    assert collapsed and sum(p["type"] == "table" for r in collapsed for p in r["panels"]) >= 4


def test_per_backup_tables_drill_down_from_a_schedule(catalog):
    """Tables of backups or schedules link each row's schedule to this dashboard filtered on
    it (org, cluster, schedule): from the fleet to one schedule's backups."""
    keyed = per_backup_families(catalog) | recorded_metrics()
    linked = 0
    for p in panels(BOARDS["pxbackup-backups.json"]):
        if p["type"] != "table" or not any(metric_names(substitute(t["expr"])) & keyed
                                           for t in p["targets"]):
            continue
        links = {o["matcher"]["options"]: prop["value"] for o in p["fieldConfig"]["overrides"]
                 for prop in o["properties"] if prop["id"] == "links"}
        assert "schedule_name" in links, f"{p['title']}: no drill-down link on schedule_name"
        url = links["schedule_name"][0]["url"]
        assert url.startswith("/d/pxbackup-backups/"), url
        for var, field in (("org", "org_id"), ("cluster", "cluster"), ("schedule", "schedule_name")):
            assert f"var-{var}=${{__data.fields.{field}}}" in url, url
        linked += 1
    assert linked >= 5, linked


def test_metric_name_extraction_sees_every_selector():
    expr = ('max(time() - a_seconds{x=~".*"} and on (o) label_replace(b == 0, "s", "$1", "n",'
            ' "(.*)")) or absent(up{job=~"x"}) or sum(rate(c_total[1m]))')
    assert metric_names(expr) == {"a_seconds", "b", "up", "c_total"}
    with pytest.raises(Exception):
        promql_parser.parse("sum(")


def run_tsc(generated):
    """Type-checks {file stem: dashboard JSON} against Grafana's schema; returns (rc, output)."""
    tsc = GRAFANA_DIR / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "typescript missing: run tests/assets/install.sh (npm ci)"
    out_dir = GRAFANA_DIR / "generated"
    out_dir.mkdir(exist_ok=True)
    for old in out_dir.glob("*.ts"):
        old.unlink()
    for stem, board in generated.items():
        # An object literal (not a JSON import) so TypeScript checks literal types and
        # rejects unknown keys.
        (out_dir / f"{stem}.ts").write_text(
            "import type { CheckedDashboard } from '../types';\n"
            f"export const dashboard: CheckedDashboard = {json.dumps(board, indent=1)};\n")
    proc = subprocess.run([str(tsc), "-p", str(GRAFANA_DIR / "tsconfig.json")],
                          capture_output=True, text=True, cwd=GRAFANA_DIR)
    return proc.returncode, proc.stdout + proc.stderr


def test_dashboards_match_grafana_schema_types():
    rc, out = run_tsc({pathlib.Path(n).stem: d for n, d in BOARDS.items()})
    assert rc == 0, out


def test_grafana_type_check_rejects_mistakes():
    board = json.loads(json.dumps(BOARDS["pxbackup-backups.json"]))
    stat = next(p for p in board["panels"] if p["type"] == "stat")
    stat["options"]["colorMode"] = "rainbow"
    table = next(p for p in board["panels"] if p["type"] == "table")
    table["options"]["showHeaders"] = True
    rc, out = run_tsc({"broken": board})
    assert rc != 0
    assert '"rainbow"' in out and "showHeaders" in out, out
