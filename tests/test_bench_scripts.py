"""The coverage survey is a maintained tool: a small subset of it runs here, for real."""
from __future__ import annotations

import json
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
