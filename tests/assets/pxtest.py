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


def substitute(expr, **values):
    """Replace Grafana variables ($name, ${name}); label_replace's $1 is left alone. values
    override GRAFANA_VARS (e.g. __interval="2m")."""
    variables = {**GRAFANA_VARS, **values}

    def repl(m):
        name = m.group(1) or m.group(2)
        if name.isdigit():
            return m.group(0)
        if name not in variables:
            raise KeyError(f"unknown Grafana variable ${name} in: {expr}")
        return variables[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


# ------------------------------------------------------- what Grafana's first load asks
# Grafana's round_interval steps (ms), from @grafana/data rangeutil.roundInterval.
_ROUND = [(15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
          (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
          (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000),
          (750000, 600000), (1050000, 900000), (1500000, 1200000), (2700000, 1800000),
          (5400000, 3600000), (9000000, 7200000), (16200000, 10800000), (32400000, 21600000)]


def grafana_step(range_s, grid_w, min_interval_s=15, screen_px=1920):
    """The step Grafana gives a time series panel `grid_w` columns wide: the time range over
    the panel's width in pixels (its max data points), at least the data source's scrape
    interval, rounded as Grafana rounds it."""
    ms = max(range_s * 1000 / (screen_px * grid_w / 24), min_interval_s * 1000)
    step = next((r for limit, r in _ROUND if ms < limit), 43200000)
    return step / 1000


def collapsed(dashboard):
    """Ids of the panels inside collapsed rows: Grafana queries them when the row is opened."""
    return {c["id"] for p in dashboard["panels"] if p["type"] == "row" and p.get("collapsed")
            for c in p.get("panels", [])}


def grafana_requests(dashboards_by_file, now, range_s=86400, scrape_s=15, align=True,
                     variables=None):
    """[(where, panel, kind, params)] for every query of every panel, as Grafana's first load of
    the dashboards sends them with every variable on "All" and the dashboard's time range:
    time series as range queries (start and end aligned on the step unless align is False),
    the rest instant. variables: values instead of "All", e.g. {"schedule": "nightly"}."""
    variables = variables or {}
    out = []
    for fname, d in dashboards_by_file.items():
        for p in panels(d):
            for t in p.get("targets", []):
                where = f"{fname} / {p['title']} / {t['refId']}"
                if t.get("instant") or not t.get("range", True):
                    expr = substitute(t["expr"], __range=f"{range_s}s", **variables)
                    out.append((where, p, "instant", {"query": expr, "time": now}))
                    continue
                step = grafana_step(range_s, p["gridPos"]["w"], scrape_s)
                rate = max(step + scrape_s, 4 * scrape_s)
                expr = substitute(t["expr"], __interval=f"{step:g}s",
                                  __rate_interval=f"{rate:g}s", __range=f"{range_s}s",
                                  **variables)
                end = now // step * step if align else now
                out.append((where, p, "range", {"query": expr, "start": end - range_s // step * step,
                                                 "end": end, "step": step}))
    return out


def all_rules():
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def alert_rules():
    return [r for r in all_rules() if "alert" in r]


def recording_rules():
    return [r for r in all_rules() if "record" in r]


def recorded_metrics():
    """Names the recording rules of the rules file write (dashboards and alerts read them)."""
    return {r["record"] for r in recording_rules()}


def selectors(expr):
    """[(metric name, [(label, op, value)])] of every vector selector of a PromQL expression,
    from a real parse tree; op is one of = != =~ !~."""
    ops = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~",
           "MatchOp.NotRe": "!~"}
    out = []

    def walk(node):
        if node is None:
            return
        if isinstance(node, promql_parser.VectorSelector):
            matchers = [(m.name, ops[str(m.op)], m.value) for m in node.matchers.matchers]
            name = node.name or next((v for n, _, v in matchers if n == "__name__"), None)
            assert name, f"selector without a metric name in: {expr}"
            out.append((name, [m for m in matchers if m[0] != "__name__"]))
            return
        if isinstance(node, promql_parser.MatrixSelector):
            return walk(node.vector_selector)
        for attr in ("lhs", "rhs", "expr", "param"):
            walk(getattr(node, attr, None))
        for arg in getattr(node, "args", None) or []:
            walk(arg)

    walk(promql_parser.parse(expr))
    return out


def metric_names(expr):
    """Metric names selected by a PromQL expression."""
    return {name for name, _ in selectors(expr)}


def matches(op, pattern, value):
    """Whether a label matcher accepts a label value (regexes are fully anchored)."""
    if op in ("=", "!="):
        return (value == pattern) == (op == "=")
    return bool(re.fullmatch(pattern, value)) == (op == "=~")


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
