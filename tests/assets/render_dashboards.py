#!/usr/bin/env python3
"""Draws the dashboards from real data: starts the sidecar with the demo fleet (which moves) and a
synthetic service-provider fleet pushed through ingest (fleet.py, --backups), and Prometheus
with the real rules (stack.py); lets history build up, runs every panel's query (query_range for
time series, instant otherwise), draws the panels on Grafana's 24-column grid as HTML/SVG and
screenshots the page with headless Chromium into dashboards/img/<dashboard>.png.

    PXBACKUP_SIDECAR_BIN=target/release/pxbackup-sidecar python3 tests/assets/render_dashboards.py [--seconds 90] [--backups 4000]

It is a picture of what the queries return, in Grafana's layout, not Grafana's own renderer.
"""
import argparse
import datetime
import html
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from pxtest import ROOT, dashboards, panels, substitute  # noqa: E402
from fleet import Fleet  # noqa: E402
from stack import running_stack  # noqa: E402

ROW_PX, WIDTH_PX = 34, 1680
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
           "#705da0", "#37872d", "#fade2a", "#c4162a", "#1f60c4"]
COLORS = {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830", "blue": "#5794f2",
          "yellow": "#fade2a", "dark-red": "#c4162a", "purple": "#b877d9",
          "light-blue": "#8ab8ff"}


def fmt(value, unit):
    v = float(value)
    if unit == "s":
        for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
            if abs(v) >= size:
                return f"{v / size:.1f} {name}"
        return f"{v:.1f} s" if abs(v) >= 1 or v == 0 else f"{v * 1000:.1f} ms"
    if unit == "bytes":
        for size, name in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(v) >= size:
                return f"{v / size:.1f} {name}"
        return f"{v:.0f} B"
    if unit == "dateTimeAsIso":
        return datetime.datetime.fromtimestamp(v / 1000).strftime("%Y-%m-%d %H:%M:%S")
    if unit == "ops":
        return f"{v:.2f}/s"
    return f"{v:.0f}" if v == int(v) else f"{v:.3g}"


def legend(fmt_str, metric):
    if fmt_str in ("", "__auto"):
        return ", ".join(f"{k}={v}" for k, v in metric.items() if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt_str)


def mapped(value, mappings):
    for m in mappings:
        try:
            key = str(int(float(value)))
        except ValueError:
            return None, None
        opt = m["options"].get(key) if m["type"] == "value" else None
        if opt:
            return opt["text"], COLORS.get(opt.get("color"), "#ccc")
    return None, None


def mapped_text(value, mappings):
    """Text mappings of a label column (status names)."""
    for m in mappings:
        opt = m["options"].get(value) if m["type"] == "value" else None
        if opt:
            return opt["text"], COLORS.get(opt.get("color"), "#ccc")
    return None, None


def threshold_color(value, defaults):
    color = "green"
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is None or float(value) >= step["value"]:
            color = step["color"]
    return COLORS.get(color, color)


def draw_timeseries(panel, prom, start, end):
    unit = panel["fieldConfig"]["defaults"].get("unit", "none")
    series = []
    for t in panel["targets"]:
        for s in prom.query_range(substitute(t["expr"]), start, end, 2):
            series.append((legend(t["legendFormat"], s["metric"]),
                           [(float(ts), float(v)) for ts, v in s["values"]]))
    if not series:
        return "<div class=empty>No data</div>"
    stacked = panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    if stacked:  # cumulative sums per timestamp, drawn as bands
        totals, drawn = {}, []
        for name, pts in series:
            new = [(ts, totals.get(ts, 0) + v) for ts, v in pts]
            drawn.append((name, new, [(ts, totals.get(ts, 0)) for ts, _ in pts]))
            totals.update(dict(new))
    else:
        drawn = [(n, p, None) for n, p in series]
    ymax = max(v for _, pts, _ in drawn for _, v in pts) or 1
    w, h, pad = 1000, 300, 40

    def xy(ts, v):
        return pad + (ts - start) / (end - start) * (w - pad - 10), h - 20 - v / ymax * (h - 40)
    svg = [f'<svg viewBox="0 0 {w} {h}" preserveAspectRatio="none">']
    for i in range(5):
        y = h - 20 - i / 4 * (h - 40)
        svg.append(f'<line x1="{pad}" x2="{w}" y1="{y}" y2="{y}" stroke="#333"/>'
                   f'<text x="2" y="{y + 4}" class=axis>{html.escape(fmt(ymax * i / 4, unit))}</text>')
    def color_of(i, name):
        for o in panel["fieldConfig"]["overrides"]:
            if o["matcher"]["id"] == "byRegexp" and re.search(o["matcher"]["options"], name):
                return COLORS.get(o["properties"][0]["value"]["fixedColor"], "#888")
        return PALETTE[i % len(PALETTE)]
    for i, (name, pts, base) in enumerate(drawn):
        color = color_of(i, name)
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(ts, v) for ts, v in pts))
        if base is not None:
            back = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(ts, v) for ts, v in reversed(base)))
            svg.append(f'<polygon points="{line} {back}" fill="{color}" fill-opacity="0.55" stroke="{color}"/>')
        else:
            svg.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>')
    svg.append("</svg>")
    items = "".join(f'<span><i style="background:{color_of(i, n)}"></i>{html.escape(n)}</span>'
                    for i, (n, _, _) in enumerate(drawn[:16]))
    more = f"<span>+{len(drawn) - 16} more</span>" if len(drawn) > 16 else ""
    return "".join(svg) + f"<div class=legend>{items}{more}</div>"


def draw_stat(panel, prom):
    d = panel["fieldConfig"]["defaults"]
    cells = []
    for t in panel["targets"]:
        result = prom.query(substitute(t["expr"]))
        for s in result or [None]:
            if s is None:
                text, color, name = d.get("noValue", "No data"), "#444", ""
            else:
                value = s["value"][1]
                text, color = mapped(value, d.get("mappings", []))
                text = text or fmt(value, d.get("unit", "none"))
                color = color or threshold_color(value, d)
                name = legend(t["legendFormat"], s["metric"])
            label = f"<small>{html.escape(name)}</small>" if len(panel["targets"]) > 1 or \
                panel["options"]["textMode"] in ("name", "value_and_name") else ""
            if panel["options"]["textMode"] == "name":
                text, label = name, ""
            if panel["options"]["colorMode"] == "none":
                color = "#22252b"
            cells.append(f'<div class=stat style="background:{color}">{html.escape(str(text))}{label}</div>')
    return "<div class=stats>" + "".join(cells) + "</div>"


def draw_bargauge(panel, prom):
    d = panel["fieldConfig"]["defaults"]
    t = panel["targets"][0]
    rows = sorted(((legend(t["legendFormat"], s["metric"]), float(s["value"][1]))
                   for s in prom.query(substitute(t["expr"]))), key=lambda r: -r[1])
    if not rows:
        return "<div class=empty>No data</div>"
    top = max(v for _, v in rows) or 1
    return "".join(
        f'<div class=bar><span class=bname>{html.escape(n)}</span><span class=btrack>'
        f'<span style="width:{v / top * 100:.1f}%;background:{threshold_color(v, d)}"></span></span>'
        f'<span class=bval>{fmt(v, d["unit"])}</span></div>' for n, v in rows[:14])


def draw_table(panel, prom):
    """Rows as Grafana's merge transformation makes them; the first 12 of them drawn."""
    organize = next(t["options"] for t in panel["transformations"] if t["id"] == "organize")
    hidden, renames = organize["excludeByName"], organize["renameByName"]
    overrides = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                 for o in panel["fieldConfig"]["overrides"]}
    rows, label_cols = {}, []
    value_cols = [renames.get("Value" if len(panel["targets"]) == 1 else f"Value #{t['refId']}")
                  for t in panel["targets"]]
    for t, col in zip(panel["targets"], value_cols):
        for s in prom.query(substitute(t["expr"])):
            labels = {k: v for k, v in s["metric"].items() if not hidden.get(k)}
            for k in labels:
                if k not in label_cols:
                    label_cols.append(k)
            rows.setdefault(tuple(sorted(labels.items())), dict(labels))[col] = s["value"][1]
    if not rows:
        return "<div class=empty>No data</div>"
    index = organize.get("indexByName", {})
    names = {v: k for k, v in renames.items()}
    label_cols.sort(key=lambda c: index.get(c, len(index)))
    value_cols.sort(key=lambda c: index.get(names.get(c, c), len(index)))
    if index:  # values right after the ordered labels, then the other labels
        first = [c for c in label_cols if c in index]
        label_cols, rest = first, [c for c in label_cols if c not in index]
    else:
        rest = []
    sort_by = panel["options"].get("sortBy", [{}])[0]
    sort = sort_by.get("displayName")

    def sort_key(r):  # numbers as numbers, text (a status) as text
        try:
            return (0, float(r.get(sort, 0)), "")
        except ValueError:
            return (1, 0.0, r[sort])
    body = sorted(rows.values(), key=sort_key, reverse=sort_by.get("desc", True)) if sort \
        else list(rows.values())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in label_cols + value_cols + rest)
    out = []
    for r in body[:12]:
        cells = []
        for c in label_cols:
            text, color = mapped_text(r.get(c, ""), overrides.get(c, {}).get("mappings", []))
            style = f' style="background:{color};color:#111"' if color else \
                ' class=link' if overrides.get(c, {}).get("links") else ""
            cells.append(f"<td{style}>{html.escape(text or r.get(c, ''))}</td>")
        for c in value_cols:
            v, props = r.get(c), overrides.get(c, {})
            if v is None:
                cells.append("<td></td>")
                continue
            text, color = mapped(v, props.get("mappings", []))
            style = f' style="background:{color};color:#111"' if color else ""
            cells.append(f"<td{style}>{html.escape(text or fmt(v, props.get('unit', 'none')))}</td>")
        cells += [f"<td>{html.escape(r.get(c, ''))}</td>" for c in rest]
        out.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<div class=more>{len(body) - 12} more rows</div>" if len(body) > 12 else ""
    return f"<table><tr>{head}</tr>{''.join(out)}</table>{more}"


CSS = """
body{margin:0;background:#111217;color:#ccccdc;font:13px DejaVu Sans,sans-serif}
h1{font-size:18px;margin:10px 12px}
.grid{position:relative;margin:0 8px}
.panel{position:absolute;box-sizing:border-box;background:#181b1f;border:1px solid #2c3235;
 border-radius:3px;padding:4px 8px;overflow:hidden}
.panel h2{font-size:13px;margin:2px 0 4px;color:#d8d9da}
.row{position:absolute;font-size:15px;font-weight:bold;color:#d8d9da;padding-top:6px}
svg{width:100%;height:calc(100% - 60px)}
.axis{fill:#8e8e8e;font-size:11px}
.legend{font-size:11px;line-height:15px;max-height:38px;overflow:hidden}
.legend span{margin-right:10px;white-space:nowrap}.legend i{display:inline-block;width:10px;height:4px;margin-right:3px;vertical-align:middle}
.stats{display:flex;gap:4px;height:calc(100% - 26px)}
.stat{flex:1;display:flex;flex-direction:column;align-items:center;justify-content:center;
 font-size:30px;font-weight:bold;color:#fff;border-radius:3px;text-align:center}
.stat small{font-size:12px;font-weight:normal}
table{border-collapse:collapse;width:100%;font-size:11px}.link{color:#6e9fff;text-decoration:underline}th{text-align:left;color:#6e9fff;border-bottom:1px solid #333}
td,th{padding:2px 4px;white-space:nowrap;max-width:220px;overflow:hidden;text-overflow:ellipsis}
.bar{display:flex;align-items:center;font-size:11px;margin:2px 0}.bname{width:38%;overflow:hidden;white-space:nowrap}
.btrack{flex:1;background:#222;height:12px;margin:0 6px}.btrack span{display:block;height:12px}
.bval{width:60px;text-align:right}.empty{color:#777;padding:20px;text-align:center}.more{font-size:11px;color:#888}
"""


def page(board, prom, start, end, backups):
    unit = WIDTH_PX / 24
    out = []
    for p in panels(board):
        g = p["gridPos"]
        box = (f"left:{g['x'] * unit:.0f}px;top:{g['y'] * ROW_PX}px;"
               f"width:{g['w'] * unit - 6:.0f}px;height:{g['h'] * ROW_PX - 6}px")
        if p["type"] == "row":
            note = " (collapsed: its panels load when it is opened)" if p["collapsed"] else ""
            out.append(f'<div class=row style="{box}">{html.escape(p["title"] + note)}</div>')
            continue
        body = {"timeseries": lambda: draw_timeseries(p, prom, start, end),
                "stat": lambda: draw_stat(p, prom), "bargauge": lambda: draw_bargauge(p, prom),
                "table": lambda: draw_table(p, prom)}[p["type"]]()
        out.append(f'<div class=panel style="{box}"><h2>{html.escape(p["title"])}</h2>{body}</div>')
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels(board)) * ROW_PX + 60
    title = (f"{board['title']} (demo fleet and {backups:,} pushed backups, every variable All, "
             f"last {int(end - start)} s)")
    doc = (f"<!doctype html><meta charset=utf-8><style>{CSS}</style><h1>{html.escape(title)}</h1>"
           f'<div class=grid style="height:{height}px">{"".join(out)}</div>')
    return doc, height + 50


def screenshot(html_file, png, height):
    chromium = next((c for c in ("chromium", "chromium-browser") if
                     subprocess.run(["which", c], capture_output=True).returncode == 0), None)
    if not chromium:
        sys.exit("chromium not installed: run tests/assets/install.sh")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={WIDTH_PX + 16},{height}",
                        f"--screenshot={png}", html_file.as_uri()],
                       check=True, capture_output=True, timeout=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=90, help="history to collect before drawing")
    ap.add_argument("--backups", type=int, default=4000,
                    help="backups of the pushed fleet (a third deleted, a quarter failing)")
    ap.add_argument("--out", default=str(ROOT / "dashboards" / "img"))
    args = ap.parse_args()
    binary = pathlib.Path(os.environ.get("PXBACKUP_SIDECAR_BIN",
                                         ROOT / "target/release/pxbackup-sidecar"))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(args.backups, tombstone_share=0.3, bad_share=0.25)
    with running_stack(binary, fleet=fleet, demo=True) as prom:
        start = time.time()
        time.sleep(args.seconds)
        end = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            for name, board in dashboards().items():
                doc, height = page(board, prom, start, end, args.backups)
                html_file = pathlib.Path(tmp) / f"{name}.html"
                html_file.write_text(doc)
                png = out / (pathlib.Path(name).stem + ".png")
                screenshot(html_file, png, height)
                print(f"wrote {png}")


if __name__ == "__main__":
    main()
