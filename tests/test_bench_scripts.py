"""The benchmark and survey scripts are maintained tools: a small subset of each runs here, for real."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def test_keras_coverage_subset(tmp_path):
    """Exact GELU needs the Erfc converter; GRU exercises Loop bodies in the passes."""
    out = tmp_path / "cov.json"
    proc = subprocess.run([sys.executable, "scripts/bench/keras_coverage.py", "--only", "gelu_exact,GRU",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2/2 compiled and validated" in proc.stdout
    data = json.loads(out.read_text())
    rows = data["results"] if isinstance(data, dict) else data
    assert {r["name"] if "name" in r else r["model"] for r in rows} == {"gelu_exact", "GRU"}


def test_passes_benchmark_on_one_fixture(tmp_path):
    """All three tools run, the ratios are printed, and each tool's output matches the unoptimized model."""
    out = tmp_path / "passes.json"
    proc = subprocess.run([sys.executable, "scripts/bench/passes.py", "--fixtures", "cnn_nhwc", "--runs", "1",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = proc.stdout[proc.stdout.index("\ncnn_nhwc  ("):]
    for tool in ("ours", "onnxslim", "polygraphy"):
        # tool, nodes, Transpose, median s, min s, max abs err, outputs
        row = re.search(rf"^{tool}\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)\s+(\S+)$", table, re.M)
        assert row, f"no table row for {tool}:\n{table}"
        assert float(row[5]) < 1e-5 and row[6] == "ok", row[0]
    for peer in ("onnxslim", "polygraphy"):
        ratio = re.search(rf"^ours/{peer}\s+nodes\s+([\d.]+)x\s+time\s+([\d.]+)x$", table, re.M)
        assert ratio and float(ratio[1]) > 0 and float(ratio[2]) > 0, f"no ratios against {peer}:\n{table}"

    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["model"] == "cnn_nhwc" and row["input_shapes"] == {"image": [2, 32, 32, 3]}
    assert set(row["tools"]) == {"ours", "onnxslim", "polygraphy"}
    for tool, r in row["tools"].items():
        assert r["error"] is None and r["outputs_ok"] and len(r["seconds"]) == 1, (tool, r)
        assert r["max_abs_err"] < 1e-5 and r["nodes"] > 0, (tool, r)
    assert data["versions"]["onnxslim"] != "not installed" and data["versions"]["polygraphy"] != "not installed"
