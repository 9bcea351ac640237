"""The TensorRT backend, for real: these run only where TensorRT and an NVIDIA GPU are present."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import FIXTURES, golden, run_cli, tensorrt_available

_OK, _WHY = tensorrt_available()
pytestmark = [pytest.mark.tensorrt, pytest.mark.tf,
              pytest.mark.skipif(not _OK, reason=f"TensorRT backend unavailable: {_WHY}")]


def test_compile_builds_and_validates_a_tensorrt_plan(tmp_path, capsys):
    out = tmp_path / "cnn.engine"
    code, stdout, stderr = run_cli(capsys, FIXTURES / "cnn_nhwc", out, "--backend", "tensorrt")
    assert code == 0, stderr
    assert out.read_bytes()[:4] == b"ftrt"
    report = json.loads((tmp_path / "cnn.engine.report.json").read_text())
    assert report["backend"] == "tensorrt" and report["status"] == "ok"
    from compiler.runtime import load

    ins, outs = golden("cnn_nhwc")
    got = load(out).infer({"image": ins["image"][:1]})
    np.testing.assert_allclose(got["output_0"], outs["output_0"][:1], atol=1e-3, rtol=1e-2)


def test_auto_picks_tensorrt_when_available(tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, FIXTURES / "cnn_nhwc", tmp_path / "a.engine")
    assert code == 0 and "NOT a TensorRT engine" not in stdout
