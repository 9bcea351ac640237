"""The failure classes real models hit (issue 16), one fixture each, end to end through the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import FIXTURES, golden, run_cli

pytestmark = pytest.mark.tf


def _compile(capsys, tmp_path, name, *flags):
    out = tmp_path / f"{name}.engine"
    code, stdout, stderr = run_cli(capsys, FIXTURES / name, out, "--quiet", *flags)
    report = json.loads((tmp_path / f"{name}.engine.report.json").read_text())
    return code, stdout + stderr, report, out


def _matches_golden(name, out):
    from compiler.runtime import load

    ins, outs = golden(name)
    got = load(out).infer(ins)
    for k, want in outs.items():
        if want.dtype.kind in "iub":
            np.testing.assert_array_equal(got[k], want, err_msg=k)
        else:
            np.testing.assert_allclose(got[k], want, atol=1e-5, rtol=1e-4, err_msg=k)


def test_keras_argmax_compiles_without_bitcast(capsys, tmp_path):
    code, text, report, out = _compile(capsys, tmp_path, "keras_argmax")
    assert code == 0, text
    assert not {"Bitcast", "BitwiseAnd"} & set(report["graph"]["exported"]["ops"])
    _matches_golden("keras_argmax", out)


def test_small_table_draws_ids_from_the_table(capsys, tmp_path):
    code, text, report, out = _compile(capsys, tmp_path, "small_table")
    assert code == 0, text
    ranges = {i["name"]: i.get("index_range") for i in report["inputs"]}
    assert (ranges["segment_ids"]["low"], ranges["segment_ids"]["high"]) == (0, 1)
    assert ranges["token_ids"]["high"] == 15
    _matches_golden("small_table", out)
    code, text, report, _ = _compile(capsys, tmp_path, "small_table", "--val-range", "segment_ids:0,8")
    assert code == 7 and "--val-range" in text.strip().splitlines()[-1], text
    assert report["validation"][0]["run_error"]["side"] == "reference"


def test_dynamic_reshape_validates_a_second_batch(capsys, tmp_path):
    code, text, report, out = _compile(capsys, tmp_path, "dynamic_reshape")
    assert code == 0, text
    seam = report["validation"][0]
    assert seam["seam"] == "tf→onnx" and seam["shapes"]["x"] == [1, 16, 8]
    (other,) = seam["other_sizes"]
    assert other["shapes"]["x"] == [3, 16, 8] and other["passed"]
    _matches_golden("dynamic_reshape", out)


def test_tf2onnx_alone_still_merges_reshapes_wrongly(tmp_path):
    """The upstream bug frontend/tf2onnx_fixes.py works around. When this fails, tf2onnx fixed it: delete the
    guard (and this test)."""
    import onnxruntime as ort

    path = tmp_path / "alone.onnx"
    proc = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(FIXTURES / "dynamic_reshape"),
                           "--opset", "17", "--output", str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1000:]
    ins, outs = golden("dynamic_reshape")
    try:
        got = ort.InferenceSession(str(path)).run(None, ins)[0]
        wrong = got.shape != outs["y"].shape or not np.allclose(got, outs["y"], atol=1e-4)
    except Exception:  # onnxruntime refusing the Reshape is the bug too
        wrong = True
    assert wrong, "tf2onnx alone now exports dynamic_reshape correctly"


def test_shared_constant_cast_compiles_and_keeps_its_numbers(capsys, tmp_path):
    code, text, report, out = _compile(capsys, tmp_path, "shared_const_cast")
    assert code == 0, text
    _matches_golden("shared_const_cast", out)
