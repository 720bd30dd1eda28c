#!/usr/bin/env python3
"""Dashboards and alert rules at fleet scale: not a test, a measurement.

    nice cargo build --release --locked --bin pxbackup-sidecar
    bash tests/assets/install.sh
    python3 benches/dashboards.py [--backups 100000] [--runs 3] [--markdown]

Loads a synthetic fleet (tests/assets/fleet.py: by default 100,000 backups, half of them deleted
and kept as tombstones, half of the live ones Failed or PartialSuccess, two volumes each) into
the release binary through `--source ingest`, lets Debian's Prometheus scrape it every 15 s and
evaluate the real rules (alerts/pxbackup-sidecar.rules.yaml) every 15 s, then:

- reads each rule group's evaluation time from Prometheus's own
  prometheus_rule_group_last_duration_seconds, sampled at every evaluation while it waits
  (the table gives the largest seen);
- runs every panel query of both dashboards as Grafana's first load sends it (every variable
  "All", the dashboards' 24 h range, time series as range queries with Grafana's step for the
  panel's width, aligned on the step), one after the other, `--runs` times, and reports each
  panel's time (its queries added up; the median of the runs) and the series it returns;
- runs the time series queries a second way, "24 h of history": the same number of steps
  squeezed into the minutes this Prometheus has recorded, so that every step has data, as it
  would after a day of scraping (a fresh Prometheus has data in the last few steps only).

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
from pxtest import ROOT, dashboards, grafana_requests  # noqa: E402
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
    ap.add_argument("--markdown", action="store_true", help="print the README tables")
    args = ap.parse_args()
    binary = pathlib.Path(os.environ.get("PXBACKUP_SIDECAR_BIN",
                                         ROOT / "target/release/pxbackup-sidecar"))
    # A SIGTERM must stop Prometheus and the sidecar too (running_stack's finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

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
        dense = {}
        for where, panel, kind, params in requests_:
            if kind != "range":
                continue
            steps = (params["end"] - params["start"]) / params["step"]
            squeezed = dict(params, start=history_start, end=time.time(),
                            step=(time.time() - history_start) / steps)
            dense[where] = statistics.median(timed(prom, kind, squeezed)[0]
                                             for _ in range(args.runs))

    panels = {}
    for where, panel, kind, _ in requests_:
        board, title, _ = where.split(" / ")
        key = (board, title)
        p = panels.setdefault(key, {"queries": 0, "time": 0.0, "dense": 0.0, "series": 0})
        p["queries"] += 1
        p["time"] += statistics.median(t for t, _ in times[where])
        p["dense"] += dense.get(where, statistics.median(t for t, _ in times[where]))
        p["series"] += max(n for _, n in times[where])
        p["type"] = panel["type"]

    rows = [(b.removesuffix(".json"), t, p) for (b, t), p in panels.items()]
    print()
    print("| dashboard | panel | type | series | first load | with 24 h of history |")
    print("|---|---|---|---:|---:|---:|")
    for b, t, p in rows:
        print(f"| {b} | {t} | {p['type']} | {p['series']} | {p['time'] * 1000:.0f} ms | "
              f"{p['dense'] * 1000:.0f} ms |")
    for board in sorted({b for b, _, _ in rows}):
        mine = [p for b, _, p in rows if b == board]
        slow = max(mine, key=lambda p: p["dense"])
        print(f"\n{board}: {len(mine)} panels, {sum(p['queries'] for p in mine)} queries, "
              f"first load {sum(p['time'] for p in mine):.2f} s in all (one after the other), "
              f"{sum(p['dense'] for p in mine):.2f} s with 24 h of history; slowest panel "
              f"{max(p['time'] for p in mine) * 1000:.0f} ms / {slow['dense'] * 1000:.0f} ms")
    print("\n| rule group | evaluations seen | largest evaluation time | median |")
    print("|---|---:|---:|---:|")
    for g, ds in sorted(worst.items(), key=lambda kv: -max(kv[1])):
        print(f"| {g} | {len(ds)} | {max(ds) * 1000:.0f} ms | {statistics.median(ds) * 1000:.0f} ms |")
    print("\nfiring alerts:", {a["metric"]["alertname"]: a["value"][1] for a in alerts})


if __name__ == "__main__":
    main()
