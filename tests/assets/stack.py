"""A real sidecar (demo source) scraped every second by a real Prometheus, all on 127.0.0.1.

Used by test_e2e.py and render_dashboards.py. Both processes are started by us and killed by
pid at the end."""
import contextlib
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import requests
import yaml

from pxtest import ALERTS

JOB = "pxbackup-sidecar"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@contextlib.contextmanager
def running_stack(sidecar_bin, min_scrapes=5):
    prometheus_bin = shutil.which("prometheus")
    if not prometheus_bin:
        raise RuntimeError("prometheus not installed: run tests/assets/install.sh")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="pxbackup-e2e-"))
    metrics_port, ingest_port, prom_port = free_port(), free_port(), free_port()
    (tmp / "state").mkdir()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
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
            [str(sidecar_bin), "run", "--source", "demo",
             "--listen", f"127.0.0.1:{metrics_port}",
             "--ingest-listen", f"127.0.0.1:{ingest_port}", "--state-dir", str(tmp / "state")],
            stdout=logs["sidecar"], stderr=subprocess.STDOUT)
        procs["prometheus"] = subprocess.Popen(
            [prometheus_bin, f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=logs["prometheus"], stderr=subprocess.STDOUT)
        prom = Prometheus(f"http://127.0.0.1:{prom_port}", started)
        wait_for("sidecar /readyz",
                 lambda: requests.get(f"http://127.0.0.1:{metrics_port}/readyz",
                                      timeout=2).ok, 30, procs)
        # Prometheus's first scrape comes a few seconds after start (target discovery).
        wait_for("up == 1", lambda: prom.query(f'up{{job="{JOB}"}} == 1'), 60, procs)
        wait_for(f"{min_scrapes} scrapes",
                 lambda: prom.query(f'count_over_time(up{{job="{JOB}"}}[10m]) >= {min_scrapes}'),
                 60 + min_scrapes * 2, procs)
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
