"""Shared fixtures: repository paths, the sidecar binary and its metric catalog."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pxtest  # noqa: E402  (needs the path above)


@pytest.fixture(scope="session")
def sidecar_bin():
    path = pathlib.Path(os.environ.get("PXBACKUP_SIDECAR_BIN",
                                       pxtest.ROOT / "target/release/pxbackup-sidecar"))
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"pxbackup-sidecar binary not found at {path}: build it "
                    "(cargo build --release) or set PXBACKUP_SIDECAR_BIN", pytrace=False)
    return path


@pytest.fixture(scope="session")
def catalog(sidecar_bin):
    """{metric name: entry} from `pxbackup-sidecar catalog`, the one source of metric names."""
    proc = subprocess.run([str(sidecar_bin), "catalog"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, f"`catalog` exited {proc.returncode}: {proc.stderr}"
    try:
        entries = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        pytest.fail(f"`catalog` did not print JSON ({err}): {proc.stdout[:300]!r}", pytrace=False)
    assert isinstance(entries, list) and entries, "catalog is not a non-empty JSON list"
    out = {}
    for e in entries:
        assert set(e) >= {"name", "type", "help", "labels"}, f"catalog entry lacks keys: {e}"
        assert e["type"] in ("gauge", "counter"), e
        if e["type"] == "counter":
            assert e["name"].endswith("_total"), f"counter not named *_total: {e['name']}"
        out[e["name"]] = e
    return out
