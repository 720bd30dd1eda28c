"""Helpers shared by the tests and render_dashboards.py: where things are, what the dashboards
and alert rules query, and how Grafana's variables are filled in for a plain Prometheus."""
import json
import pathlib
import re
import subprocess
import tempfile

import promql_parser
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "pxbackup-sidecar"
ALERTS = ROOT / "alerts" / "pxbackup-sidecar.rules.yaml"
ALERTS_TEST = ROOT / "alerts" / "pxbackup-sidecar.rules.test.yaml"
RUNBOOK = ROOT / "alerts" / "runbook.md"
DASHBOARD_DIR = ROOT / "dashboards"

# What Grafana substitutes. The dashboard variables are multi-value with allValue ".*", which is
# also what "All" sends; the intervals suit the 1 s scrape of the end-to-end Prometheus.
GRAFANA_VARS = {"org": ".*", "cluster": ".*", "schedule": ".*", "instance": ".*",
                "__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
# The metric Prometheus itself adds per target; not from the sidecar's catalog.
PROMETHEUS_METRICS = {"up"}


def dashboards():
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard):
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


def panel_queries(dashboards_by_file):
    """[(where, expr)] for every query target, `where` naming dashboard, panel and refId."""
    out = []
    for fname, d in dashboards_by_file.items():
        for p in panels(d):
            for t in p.get("targets", []):
                out.append((f"{fname} / {p['title']} / {t['refId']}", t["expr"]))
    return out


def variable_queries(dashboards_by_file):
    """[(where, selector, label)] for every label_values() template variable."""
    out = []
    for fname, d in dashboards_by_file.items():
        for v in d["templating"]["list"]:
            if v["type"] != "query":
                continue
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
            assert m, f"{fname} variable {v['name']}: not a label_values() query: {q}"
            out.append((f"{fname} / variable {v['name']}", m.group(1), m.group(2)))
    return out


def substitute(expr):
    """Replace Grafana variables ($name, ${name}); label_replace's $1 is left alone."""
    def repl(m):
        name = m.group(1) or m.group(2)
        if name.isdigit():
            return m.group(0)
        if name not in GRAFANA_VARS:
            raise KeyError(f"unknown Grafana variable ${name} in: {expr}")
        return GRAFANA_VARS[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def alert_rules():
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def metric_names(expr):
    """Metric names selected by a PromQL expression, from a real parse tree."""
    names = set()

    def walk(node):
        if node is None:
            return
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or next((m.value for m in node.matchers.matchers
                                      if m.name == "__name__"), None)
            assert name, f"selector without a metric name in: {expr}"
            names.add(name)
            return
        if isinstance(node, promql_parser.MatrixSelector):
            return walk(node.vector_selector)
        for attr in ("lhs", "rhs", "expr", "param"):
            walk(getattr(node, attr, None))
        for arg in getattr(node, "args", None) or []:
            walk(arg)

    walk(promql_parser.parse(expr))
    return names


def promtool_check_exprs(named_exprs):
    """Parses each expression with promtool by wrapping it in an alerting rule.

    Returns promtool's error output ("" when every expression parses)."""
    rules = [{"alert": f"Q{i}", "expr": e} for i, (_, e) in enumerate(named_exprs)]
    with tempfile.TemporaryDirectory() as tmp:
        f = pathlib.Path(tmp) / "exprs.rules.yaml"
        f.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
        proc = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True,
                              text=True)
    if proc.returncode == 0:
        return ""
    msg = proc.stdout + proc.stderr
    for i, (where, _) in enumerate(named_exprs):
        msg = re.sub(rf"\bQ{i}\b", where, msg)
    return msg or f"promtool exited {proc.returncode}"
