"""End to end through the CLI and the Python API, on every fixture, with real TF, tf2onnx, onnxruntime."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from compiler import CompileConfig, OptimizeConfig, compile_model, parse_shapes
from compiler.runtime import ORT_FORMAT, detect_format, load
from tests.conftest import COMPILABLE, FIXTURES, ROOT, golden, run_cli

pytestmark = pytest.mark.tf

REPORT_KEYS = {"status", "error", "backend", "stages", "graph", "passes", "validation", "versions"}


@pytest.mark.parametrize("name", sorted(COMPILABLE))
def test_cli_compile_every_fixture(tmp_path, capsys, name):
    out = tmp_path / f"{name}.engine"
    code, stdout, stderr = run_cli(capsys, FIXTURES / name, out, "--backend", "onnxruntime", *COMPILABLE[name])
    assert code == 0, stderr
    assert f"engine: {out}" in stdout and f"report: {out}.report.json" in stdout
    for stage in ("inspect", "export", "optimize", "build", "validate"):
        assert stage in stdout and stage in stderr  # summary table and progress
    report = json.loads((tmp_path / f"{name}.engine.report.json").read_text())
    assert REPORT_KEYS <= set(report) and report["status"] == "ok" and report["error"] is None
    assert report["backend"] == "onnxruntime" and report["versions"]["tf2onnx"].startswith("1.17")
    stages = dict(report["stages"])
    assert stages.pop("precision") == {"status": "skipped", "seconds": 0.0, "note": "fp32: nothing to lower",
                                       "peak_rss_mb": None}
    assert all(s["status"] == "ok" for s in stages.values())
    # TensorFlow alone takes hundreds of MiB; no stage of a fixture needs 8 GiB
    assert all(100 < s["peak_rss_mb"] < 8192 for s in stages.values()), stages
    assert "peak RSS MiB" in stdout and f"{stages['export']['peak_rss_mb']:.0f}" in stdout
    assert [v["seam"] for v in report["validation"]] == ["tf→onnx", "onnx→optimized", "optimized→engine"]
    for seam in report["validation"]:
        assert seam["passed"] and set(seam["outputs"]) == set(golden(name)[1])
        for o in seam["outputs"].values():
            assert o["max_abs"] <= o["atol"] or o["max_rel"] <= o["rtol"]
    assert report["graph"]["exported"]["nodes"] == sum(report["graph"]["exported"]["ops"].values())
    assert {p["name"] for p in report["passes"]} >= {"infer_shapes", "fold_constants", "cleanup_toposort"}
    # The engine reproduces TensorFlow's recorded outputs.
    assert detect_format(out) == ORT_FORMAT
    ins, outs = golden(name)
    runner = load(out)  # float64 inputs become float32 (TensorRT has no DOUBLE): feed what the engine takes
    got = runner.infer({t.name: ins[t.name].astype(t.dtype) for t in runner.inputs})
    for k, v in outs.items():
        np.testing.assert_allclose(got[k], v, atol=1e-5, rtol=1e-4)


def test_api_compile_with_report_and_intermediates(tmp_path):
    cfg = CompileConfig(optimize=OptimizeConfig(input_shapes=parse_shapes("x:2x5x8,scale:2x1"), check_each_pass=True),
                        keep_intermediates=tmp_path / "inter", report_path=tmp_path / "r.json")
    report = compile_model(FIXTURES / "multi_io", tmp_path / "m.engine", cfg)
    assert report.status == "ok" and (tmp_path / "r.json").is_file()
    assert sorted(p.name for p in (tmp_path / "inter").iterdir()) == ["model.onnx", "model.opt.onnx"]
    assert report.passes[0]["name"] == "freeze_input_shapes" and report.passes[0]["changed"]
    label = load(tmp_path / "m.engine").infer(golden("multi_io")[0])["label"]
    assert label.dtype == np.int64 and np.array_equal(label, golden("multi_io")[1]["label"])


def test_onnx_input_skips_export(tmp_path, capsys, exported):
    out = tmp_path / "from_onnx.engine"
    code, stdout, stderr = run_cli(capsys, exported["cnn_nhwc"], out)
    assert code == 0, stderr
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["stages"]["export"]["status"] == "skipped"
    assert [v["seam"] for v in report["validation"]] == ["onnx→optimized", "optimized→engine"]


def test_subcommands_chain_through_files(tmp_path, capsys):
    onnx_path, opt, eng = tmp_path / "m.onnx", tmp_path / "m.opt.onnx", tmp_path / "m.engine"
    assert run_cli(capsys, "export", FIXTURES / "cnn_nhwc", onnx_path)[0] == 0
    code, stdout, _ = run_cli(capsys, "optimize", onnx_path, opt, "--input-shapes", "image:3x32x32x3",
                              "--check-each-pass", "--dump-passes", tmp_path / "dumps")
    assert code == 0 and "freeze_input_shapes" in stdout
    assert (tmp_path / "dumps" / "000_input.onnx").is_file()
    assert run_cli(capsys, "build", opt, eng, "--backend", "onnxruntime")[0] == 0
    code, stdout, _ = run_cli(capsys, "validate", FIXTURES / "cnn_nhwc", eng)
    assert code == 0 and "validation: passed" in stdout
    code, stdout, _ = run_cli(capsys, "validate", onnx_path, eng, "--json")
    assert code == 0 and json.loads(stdout[:stdout.rindex("}") + 1])["shapes"] == {"image": [3, 32, 32, 3]}


def test_inspect_json(capsys):
    code, stdout, _ = run_cli(capsys, "inspect", FIXTURES / "multi_io", "--json")
    info = json.loads(stdout)
    assert code == 0 and info["signature"] == "serving_default"
    assert {i["name"]: i["shape"] for i in info["inputs"]} == {"x": [None, None, 8], "scale": [None, 1]}
    assert {o["name"]: o["dtype"] for o in info["outputs"]} == {"logits": "float32", "label": "int64"}
    assert info["ops"]["Einsum"] == 1


def test_validate_detects_a_real_difference(tmp_path, capsys, exported):
    """A perturbed weight must fail validation: the comparison is not a rubber stamp."""
    import onnx

    model = onnx.load(str(exported["cnn_nhwc"]))
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    arr = onnx.numpy_helper.to_array(init).copy()
    arr.flat[0] += 0.5
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    code, _, stderr = run_cli(capsys, "validate", exported["cnn_nhwc"], bad, "--atol", "1e-6", "--rtol", "1e-6")
    assert code == 7 and "validate: seam validate: bad.onnx differs from" in stderr


def test_python_m_compiler_entry_point(tmp_path):
    """The real process entry point, as users type it."""
    out = tmp_path / "cnn.engine"
    proc = subprocess.run([sys.executable, "-m", "compiler", str(FIXTURES / "cnn_nhwc"), str(out), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "engine:" in proc.stdout  # quiet means quiet: no TF or grappler noise


def test_constant_reference_output_is_flagged(tmp_path, capsys):
    """A model whose output ignores its input validates trivially; the tool must say so, not stay silent."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Mul", ["x", "zero"], ["z"]), helper.make_node("Add", ["z", "c"], ["y"])]
    graph = helper.make_graph(nodes, "const", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [onnx.numpy_helper.from_array(np.zeros(4, np.float32), "zero"),
                               onnx.numpy_helper.from_array(np.full(4, 0.25, np.float32), "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "const.onnx"
    onnx.save(model, str(path))
    code, stdout, _ = run_cli(capsys, "validate", path, path)
    assert code == 0 and "WARNING: output 'y' of const.onnx is the same value everywhere" in stdout
