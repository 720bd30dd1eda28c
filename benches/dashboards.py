#!/usr/bin/env python3
"""Dashboards and alert rules at fleet scale: not a test, a measurement.

    nice cargo build --release --locked --bin pxbackup-sidecar
    bash tests/assets/install.sh
    python3 benches/dashboards.py [--backups 100000] [--runs 3] [--evaluations 8]

Loads a synthetic fleet (tests/assets/fleet.py: by default 100,000 backups, half of them deleted
and kept as tombstones, half of the live ones Failed or PartialSuccess, two volumes each; one
schedule per cluster backs up two VMs, the other backups carry their namespace's resource counts
in two resource types) into
the release binary through `--source ingest`, lets Debian's Prometheus scrape it every 15 s and
evaluate the real rules (alerts/pxbackup-sidecar.rules.yaml) every 15 s, then:

- reads each rule group's evaluation time from Prometheus's own
  prometheus_rule_group_last_duration_seconds, sampled at every evaluation while it waits
  (the table gives the largest seen);
- runs every panel query of both dashboards as Grafana's first load sends it (every variable
  "All", the dashboards' 24 h range, time series as range queries with Grafana's step for the
  panel's width, aligned on the step), one after the other, `--runs` times, and reports each
  panel's time (its queries added up; the best and the median of the runs: the machine is
  shared, as for `cargo bench --bench targets`) and the series it returns;
- runs the time series queries a second way, "24 h of history": the same number of steps
  squeezed into the minutes this Prometheus has recorded, so that every step has data, as it
  would after a day of scraping (a fresh Prometheus has data in the last few steps only);
- runs the panels of the collapsed per-backup row (not part of the first load) once more as
  they are after drilling down to one schedule (org, cluster and schedule set).

The tables (panels, rule groups) are printed as Markdown, as docs/performance.md shows them.
Everything listens on 127.0.0.1; both processes are ours and stopped at the end.
"""
import argparse
import os
import pathlib
import signal
import statistics
import sys
import time

import requests

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "assets"))

from fleet import Fleet  # noqa: E402
from pxtest import ROOT, collapsed, dashboards, grafana_requests  # noqa: E402
from stack import running_stack  # noqa: E402

INTERVAL = 15


def timed(prom, kind, params):
    started = time.perf_counter()
    if kind == "instant":
        r = requests.get(f"{prom.url}/api/v1/query", params=params, timeout=300)
    else:
        r = requests.get(f"{prom.url}/api/v1/query_range", params=params, timeout=300)
    body = r.json()
    elapsed = time.perf_counter() - started
    if body.get("status") != "success":
        raise RuntimeError(f"{body.get('error')} in {params['query']}")
    return elapsed, len(body["data"]["result"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backups", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3, help="runs of every panel query (median)")
    ap.add_argument("--evaluations", type=int, default=8,
                    help="rule evaluations to watch before querying")
    args = ap.parse_args()
    binary = pathlib.Path(os.environ.get("PXBACKUP_SIDECAR_BIN",
                                         ROOT / "target/release/pxbackup-sidecar"))
    # A SIGTERM must stop Prometheus and the sidecar too (running_stack's finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    print(f"load average at the start: {os.getloadavg()}", flush=True)
    t0 = time.monotonic()
    fleet = Fleet(args.backups, tombstone_share=0.5, bad_share=0.5)
    print(f"fleet: {args.backups} backups ({len(fleet.deletes)} deleted), "
          f"{len(fleet.schedules)} schedules, built in {time.monotonic() - t0:.1f} s", flush=True)
    with running_stack(binary, min_scrapes=1, fleet=fleet, interval=f"{INTERVAL}s") as prom:
        print(f"pushed and scraped once after {time.monotonic() - t0:.0f} s", flush=True)
        prom.wait_for_recordings(600, prom.procs)
        samples = prom.query("scrape_samples_scraped")
        print(f"samples per scrape: {samples[0]['value'][1]}", flush=True)

        # Rule group evaluation times: the largest over several evaluations.
        worst, last_iter = {}, {}
        deadline = time.monotonic() + args.evaluations * INTERVAL + 5
        while time.monotonic() < deadline:
            it = prom.own_metrics("prometheus_rule_group_iterations_total")
            dur = prom.own_metrics("prometheus_rule_group_last_duration_seconds")
            for g, n in it.items():
                if last_iter.get(g) != n:
                    last_iter[g] = n
                    worst.setdefault(g, []).append(dur.get(g, 0.0))
            time.sleep(1)
        alerts = prom.query('count by (alertname) (ALERTS{alertstate="firing"})')

        now = int(time.time())
        history_start = prom.started + 60  # after the recordings began
        requests_ = grafana_requests(dashboards(), now, scrape_s=INTERVAL)
        times = {}
        for _ in range(args.runs):
            for where, panel, kind, params in requests_:
                elapsed, n = timed(prom, kind, params)
                times.setdefault(where, []).append((elapsed, n))
        boards = dashboards()
        hidden = {(name.removesuffix(".json"), c["title"]) for name, d in boards.items()
                  for p in d["panels"] for c in p.get("panels", []) if c["id"] in collapsed(d)}
        org, cluster, schedule, _ = fleet.schedules[0]
        drill = {}
        for where, panel, kind, params in grafana_requests(
                boards, now, scrape_s=INTERVAL,
                variables={"org": org, "cluster": cluster, "schedule": schedule}):
            board, title, _ = where.split(" / ")
            if (board.removesuffix(".json"), title) in hidden:
                drill[where] = [timed(prom, kind, params) for _ in range(args.runs)]
        dense = {}
        for where, panel, kind, params in requests_:
            if kind != "range":
                continue
            steps = (params["end"] - params["start"]) / params["step"]
            squeezed = dict(params, start=history_start, end=time.time(),
                            step=(time.time() - history_start) / steps)
            dense[where] = [timed(prom, kind, squeezed)[0] for _ in range(args.runs)]

    panels = {}
    for where, panel, kind, _ in requests_:
        board, title, _ = where.split(" / ")
        key = (board.removesuffix(".json"), title)
        p = panels.setdefault(key, {"type": panel["type"], "queries": 0, "series": 0,
                                    "best": 0.0, "median": 0.0, "dense": None, "drill": None,
                                    "drill_series": 0, "hidden": key in hidden})
        runs = [t for t, _ in times[where]]
        p["queries"] += 1
        p["series"] += max(n for _, n in times[where])
        p["best"] += min(runs)
        p["median"] += statistics.median(runs)
        if where in dense:
            p["dense"] = (p["dense"] or 0.0) + min(dense[where])
        if where in drill:
            p["drill"] = (p["drill"] or 0.0) + min(t for t, _ in drill[where])
            p["drill_series"] += max(n for _, n in drill[where])

    def ms(v):
        return "" if v is None else f"{v * 1000:,.0f} ms"

    print(f"\n{args.backups:,} backups, {samples[0]['value'][1]} samples per scrape, scrape and "
          f"rule evaluation every {INTERVAL} s; panel times: best / median of {args.runs} runs; "
          f"drill-down: org {org}, cluster {cluster}, schedule {schedule}")
    print("\n| dashboard | panel | type | series | first load, best | median | "
          "with 24 h of history | one schedule (series) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for (board, title), p in panels.items():
        name = f"{title} (collapsed row)" if p["hidden"] else title
        drilled = f"{ms(p['drill'])} ({p['drill_series']})" if p["drill"] is not None else ""
        print(f"| {board} | {name} | {p['type']} | {p['series']} | {ms(p['best'])} | "
              f"{ms(p['median'])} | {ms(p['dense'])} | {drilled} |")
    for board in sorted({b for b, _ in panels}):
        mine = [p for (b, _), p in panels.items() if b == board and not p["hidden"]]
        print(f"\n{board} first load: {len(mine)} panels, {sum(p['queries'] for p in mine)} "
              f"queries, {sum(p['best'] for p in mine):.2f} s in all (best, one after the "
              f"other), median {sum(p['median'] for p in mine):.2f} s; slowest panel "
              f"{max(p['best'] for p in mine) * 1000:,.0f} ms best, "
              f"{max(p['median'] for p in mine) * 1000:,.0f} ms median, "
              f"{max(p['dense'] or 0 for p in mine) * 1000:,.0f} ms with 24 h of history")
        rest = [p for (b, _), p in panels.items() if b == board and p["hidden"]]
        if rest:
            print(f"{board} collapsed row: slowest panel {max(p['best'] for p in rest) * 1000:,.0f}"
                  f" ms best, {max(p['median'] for p in rest) * 1000:,.0f} ms median with every "
                  f"variable All; {max(p['drill'] for p in rest) * 1000:,.0f} ms for one schedule")
    print("\n| rule group | evaluations | median | largest |")
    print("|---|---:|---:|---:|")
    for g, ds in sorted(worst.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"| {g} | {len(ds)} | {ms(statistics.median(ds))} | {ms(max(ds))} |")
    print("\nfiring alerts:", {a["metric"]["alertname"]: a["value"][1] for a in alerts})
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
