"""A real sidecar scraped by a real Prometheus that evaluates the real rules, all on 127.0.0.1.

The demo source scraped every second (test_e2e.py, render_dashboards.py), or a synthetic fleet
(fleet.py) pushed through the ingest source before Prometheus starts (test_scale.py,
benches/dashboards.py). Both processes are started by us and killed by pid at the end."""
import contextlib
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import requests
import yaml

from pxtest import ALERTS, recorded_metrics

# tests/ports.py is shared with tests/image.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from ports import free_port  # noqa: E402

JOB = "pxbackup-sidecar"


def wait_for(what, check, timeout, procs):
    """Polls check() until it returns a truthy value; fails early if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p in procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode} while waiting for {what}")
        try:
            result = check()
            if result:
                return result
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Prometheus:
    def __init__(self, url, started):
        self.url = url
        self.started = started  # unix time the stack was launched

    def query(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = at
        r = requests.get(f"{self.url}/api/v1/query", params=params, timeout=30)
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{body.get('errorType')}: {body.get('error')} in: {expr}")
        return body["data"]["result"]

    def query_range(self, expr, start, end, step):
        r = requests.get(f"{self.url}/api/v1/query_range",
                         params={"query": expr, "start": start, "end": end, "step": step},
                         timeout=30)
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{body.get('errorType')}: {body.get('error')} in: {expr}")
        return body["data"]["result"]

    def label_values(self, label, selector):
        r = requests.get(f"{self.url}/api/v1/label/{label}/values",
                         params={"match[]": selector}, timeout=30)
        return r.json()["data"]

    def rules(self):
        return requests.get(f"{self.url}/api/v1/rules", timeout=30).json()["data"]["groups"]

    def own_metrics(self, name):
        """{rule_group or "": value} of one of Prometheus's own metrics, read from its /metrics
        (the test Prometheus does not scrape itself)."""
        out = {}
        for line in requests.get(f"{self.url}/metrics", timeout=30).text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                labels, _, value = line.rpartition(" ")
                group = re.search(r'rule_group="[^"]*;([^"]*)"', labels)
                out[group.group(1) if group else ""] = float(value)
        return out

    def wait_for_rule_evaluations(self, count, timeout, procs=None):
        """Until every rule group has been evaluated `count` more times."""
        start = self.own_metrics("prometheus_rule_group_iterations_total")

        def done():
            n = self.own_metrics("prometheus_rule_group_iterations_total")
            return n and start and min(n[g] - start.get(g, 0) for g in n) >= count
        wait_for(f"{count} rule evaluations", done, timeout, procs or {})

    def wait_for_recordings(self, timeout, procs=None):
        """Until every recording rule has recorded from the scraped data, then two more
        evaluations of every group (so that the alerts have read the recordings)."""
        for name in recorded_metrics():
            wait_for(f"{name} recorded", lambda: self.query(name), timeout, procs or {})
        self.wait_for_rule_evaluations(2, timeout, procs)


@contextlib.contextmanager
def running_stack(sidecar_bin, min_scrapes=5, fleet=None, interval="1s", prometheus_args=(),
                  demo=None):
    """fleet: a fleet.Fleet pushed through `--source ingest` before Prometheus starts, so that
    its first scrape holds all of it; demo: run the demo source too (the default without a
    fleet). interval: scrape and rule evaluation interval."""
    sources = ",".join((["demo"] if demo or (demo is None and not fleet) else [])
                       + (["ingest"] if fleet else []))
    prometheus_bin = shutil.which("prometheus")
    if not prometheus_bin:
        raise RuntimeError("prometheus not installed: run tests/assets/install.sh")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="pxbackup-e2e-"))
    metrics_port, ingest_port, prom_port = free_port(), free_port(), free_port()
    (tmp / "state").mkdir()
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        # The real rules file, so that Prometheus evaluates every alert against the demo data.
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": JOB,
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    procs = {}
    started = time.time()
    logs = {name: open(tmp / f"{name}.log", "w") for name in ("sidecar", "prometheus")}
    try:
        procs["sidecar"] = subprocess.Popen(
            [str(sidecar_bin), "run", "--source", sources,
             "--listen", f"127.0.0.1:{metrics_port}",
             "--ingest-listen", f"127.0.0.1:{ingest_port}", "--state-dir", str(tmp / "state")],
            stdout=logs["sidecar"], stderr=subprocess.STDOUT)
        wait_for("sidecar /readyz",
                 lambda: requests.get(f"http://127.0.0.1:{metrics_port}/readyz",
                                      timeout=2).ok, 30, procs)
        if fleet:
            fleet.push(f"http://127.0.0.1:{ingest_port}/v1/events")
        procs["prometheus"] = subprocess.Popen(
            [prometheus_bin, f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", *prometheus_args],
            stdout=logs["prometheus"], stderr=subprocess.STDOUT)
        prom = Prometheus(f"http://127.0.0.1:{prom_port}", started)
        prom.procs = procs
        # Prometheus's first scrape comes a few seconds after start (target discovery).
        wait_for("up == 1", lambda: prom.query(f'up{{job="{JOB}"}} == 1'), 60, procs)
        wait_for(f"{min_scrapes} scrapes",
                 lambda: prom.query(f'count_over_time(up{{job="{JOB}"}}[10m]) >= {min_scrapes}'),
                 60 + min_scrapes * 2 * int(interval.rstrip("s")), procs)
        yield prom
    except Exception:
        for name in logs:
            logs[name].flush()
            print(f"--- {name} log (tail) ---\n" + (tmp / f"{name}.log").read_text()[-3000:])
        raise
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in logs.values():
            f.close()
        shutil.rmtree(tmp, ignore_errors=True)
