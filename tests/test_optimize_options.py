"""Optimize options end to end through the CLI: layout, cuts, user rules; with real exports and validation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import COMPILABLE, FIXTURES, ROOT, golden, run_cli

pytestmark = pytest.mark.tf
RULES = ROOT / "examples" / "rules" / "tanh_via_sigmoid.py"


def _report(path):
    return json.loads(path.read_text())


def test_inputs_as_nchw_engine_takes_nchw_and_reproduces_goldens(tmp_path, capsys):
    from compiler.runtime import load

    out = tmp_path / "cnn.engine"
    code, stdout, _ = run_cli(capsys, FIXTURES / "cnn_nhwc", out, "--inputs-as-nchw", "image", "--quiet")
    assert code == 0, stdout
    report = _report(tmp_path / "cnn.engine.report.json")
    assert report["interface"] == {"inputs": {"image": {"perm": [0, 3, 1, 2]}}, "outputs": {}}
    assert "Transpose" in report["graph"]["exported"]["ops"]
    assert "Transpose" not in report["graph"]["optimized"]["ops"]
    assert "input 'image': transposed by [0, 3, 1, 2]" in stdout
    assert all(s["passed"] for s in report["validation"]) and len(report["validation"]) == 3
    ins, outs = golden("cnn_nhwc")
    got = load(out).infer({"image": ins["image"].transpose(0, 3, 1, 2)})
    np.testing.assert_allclose(got["output_0"], outs["output_0"], atol=1e-5, rtol=1e-4)


def test_cut_keeps_the_core_and_validates_from_the_cut(tmp_path, capsys):
    out = tmp_path / "mio.engine"
    code, stdout, err = run_cli(capsys, FIXTURES / "multi_io", out, *COMPILABLE["multi_io"], "--quiet",
                                "--cut-inputs", "StatefulPartitionedCall/add:0",
                                "--cut-outputs", "StatefulPartitionedCall/Mean:0,label")
    assert code == 0, err
    report = _report(tmp_path / "mio.engine.report.json")
    assert set(report["graph"]["cut"]["ops"]) == {"Tanh", "ReduceMean", "Mul", "ArgMax"}
    seam = {s["seam"]: s for s in report["validation"]}["onnx→optimized"]
    assert seam["reference"] == "cut.onnx" and set(seam["outputs"]) == {"StatefulPartitionedCall/Mean:0", "label"}
    assert "cut to inputs StatefulPartitionedCall/add:0, scale" in report["stages"]["optimize"]["note"]


def test_cut_at_an_unknown_tensor_suggests_names(tmp_path, capsys):
    code, _, err = run_cli(capsys, FIXTURES / "multi_io", tmp_path / "e", *COMPILABLE["multi_io"],
                           "--cut-inputs", "StatefulPartitionedCall/ad:0")
    assert code == 2
    assert "did you mean 'StatefulPartitionedCall/add:0'" in err and "inspect MODEL.onnx --tensors" in err
    assert not (tmp_path / "e").exists()


def test_user_rules_file_runs_before_the_catalogue_and_is_validated(tmp_path, capsys):
    out = tmp_path / "mio.engine"
    code, _, err = run_cli(capsys, FIXTURES / "multi_io", out, *COMPILABLE["multi_io"], "--rules", RULES, "--quiet")
    assert code == 0, err
    report = _report(tmp_path / "mio.engine.report.json")
    applied = [p["stats"]["applied"] for p in report["passes"] if p["name"] == "user_rules" and p["changed"]]
    assert applied == [{"tanh_via_sigmoid": ["StatefulPartitionedCall/Tanh"]}]
    assert "Tanh" not in report["graph"]["optimized"]["ops"] and "Sigmoid" in report["graph"]["optimized"]["ops"]
    assert all(s["passed"] for s in report["validation"])


@pytest.mark.parametrize("text, match", [("X = 1\n", "defines no RULES list"),
                                         ("RULES = [object()]\n", "not a passes.rules.Rule"),
                                         ("import nope_not_a_module\n", "failed to import")])
def test_bad_rules_file_is_a_config_error(tmp_path, capsys, exported, text, match):
    rules = tmp_path / "rules.py"
    rules.write_text(text)
    code, _, err = run_cli(capsys, "optimize", exported["cnn_nhwc"], tmp_path / "o.onnx", "--rules", rules)
    assert code == 2 and match in err and err.count("\n") == 1
    assert not (tmp_path / "o.onnx").exists()
