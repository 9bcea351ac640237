"""The TensorRT backend, for real: these run only where TensorRT and an NVIDIA GPU are present.

Each test builds a plan through the same code path users get (the CLI or compile_model) and checks it
against onnxruntime on the same ONNX graph, so a wrong profile, option or runner shows as a failure.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import FIXTURES, golden, ort_run, run_cli, tensorrt_available

_OK, _WHY = tensorrt_available()
pytestmark = [pytest.mark.tensorrt, pytest.mark.tf,
              pytest.mark.skipif(not _OK, reason=f"TensorRT backend unavailable: {_WHY}")]


def _report(out):
    return json.loads(out.with_name(out.name + ".report.json").read_text())


def test_compile_builds_and_validates_a_tensorrt_plan(tmp_path, capsys):
    out = tmp_path / "cnn.engine"
    code, stdout, stderr = run_cli(capsys, FIXTURES / "cnn_nhwc", out, "--backend", "tensorrt")
    assert code == 0, stderr
    assert out.read_bytes()[:4] == b"ftrt"
    report = _report(out)
    assert report["backend"] == "tensorrt" and report["status"] == "ok"
    engine = report["engine"]
    assert engine["strongly_typed"] and engine["layers"] > 0 and engine["layer_types"]
    assert {t["mode"] for t in engine["io"]} == {"input", "output"}
    from compiler.runtime import load

    ins, outs = golden("cnn_nhwc")
    got = load(out).infer({"image": ins["image"][:1]})
    np.testing.assert_allclose(got["output_0"], outs["output_0"][:1], atol=1e-3, rtol=1e-2)


def test_auto_picks_tensorrt_when_available(tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, FIXTURES / "cnn_nhwc", tmp_path / "a.engine")
    assert code == 0 and "NOT a TensorRT engine" not in stdout


def test_explicit_profiles_run_every_shape_in_range(tmp_path, capsys):
    out = tmp_path / "m.engine"
    code, _, stderr = run_cli(capsys, FIXTURES / "multi_io", out, "--backend", "tensorrt",
                              "--min-shapes", "x:1x5x8,scale:1x1", "--opt-shapes", "x:4x5x8,scale:4x1",
                              "--max-shapes", "x:8x9x8,scale:8x1", "--keep-intermediates", tmp_path / "work")
    assert code == 0, stderr
    engine = _report(out)["engine"]
    assert engine["num_optimization_profiles"] == 1
    assert engine["profiles"][0]["x"] == {"min": [1, 5, 8], "opt": [4, 5, 8], "max": [8, 9, 8]}
    from compiler.runtime import load

    runner = load(out)
    rng = np.random.default_rng(0)
    for b, t in ((1, 5), (3, 7), (8, 9)):  # x's sequence axis stayed dynamic: the profile varies it
        feed = {"x": rng.standard_normal((b, t, 8)).astype(np.float32),
                "scale": rng.standard_normal((b, 1)).astype(np.float32)}
        want = ort_run(tmp_path / "work" / "model.opt.onnx", feed)
        got = runner.infer(feed)
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=1e-3)


def test_range_optimal_profiles_from_samples_and_the_runner_picks_the_first_that_fits(tmp_path, capsys):
    data = tmp_path / "samples"
    data.mkdir()
    for i, b in enumerate((1, 4, 2)):
        np.savez(data / f"s{i}.npz", x=np.ones((b, 5, 8), np.float32), scale=np.ones((b, 1), np.float32))
    out = tmp_path / "m.engine"
    code, _, stderr = run_cli(capsys, FIXTURES / "multi_io", out, "--backend", "tensorrt",
                              "--profile-strategy", "range+optimal", "--profile-data", data)
    assert code == 0, stderr
    assert _report(out)["engine"]["num_optimization_profiles"] == 4
    from compiler.runtime import load

    runner = load(out)
    assert [p.min["x"][0] for p in runner.profiles] == [1, 4, 2, 1]
    runner.infer({"x": np.ones((4, 5, 8), np.float32), "scale": np.ones((4, 1), np.float32)})
    assert runner._profile == 1  # the pinned profile for batch 4
    runner.infer({"x": np.ones((3, 5, 8), np.float32), "scale": np.ones((3, 1), np.float32)})
    assert runner._profile == 3  # batch 3 was never seen: the range profile
    from compiler.errors import RunError

    with pytest.raises(RunError, match="no optimization profile"):
        runner.infer({"x": np.ones((5, 5, 8), np.float32), "scale": np.ones((5, 1), np.float32)})


def test_timing_cache_is_saved_then_reused(tmp_path, capsys):
    cache = tmp_path / "tc.bin"
    first, second = tmp_path / "a.engine", tmp_path / "b.engine"
    assert run_cli(capsys, FIXTURES / "cnn_nhwc", first, "--backend", "tensorrt", "--timing-cache", cache,
                   "--builder-opt-level", "1")[0] == 0
    assert cache.stat().st_size > 0
    assert _report(first)["engine"]["timing_cache"] == {"path": str(cache), "loaded": False, "saved": True}
    assert run_cli(capsys, FIXTURES / "cnn_nhwc", second, "--backend", "tensorrt", "--timing-cache", cache)[0] == 0
    assert _report(second)["engine"]["timing_cache"]["loaded"] is True
    assert _report(first)["engine"]["options"]["builder_optimization_level"] == 1


def test_fp16_graph_builds_fp16_layers(tmp_path, capsys):
    out = tmp_path / "h.engine"
    code, _, stderr = run_cli(capsys, FIXTURES / "cnn_nhwc", out, "--backend", "tensorrt", "--precision", "fp16")
    assert code == 0, stderr
    assert _report(out)["engine"]["layer_precisions"].get("fp16", 0) > 0


def test_version_compatible_plan_builds_and_runs(tmp_path, capsys):
    out = tmp_path / "v.engine"
    code, _, stderr = run_cli(capsys, FIXTURES / "cnn_nhwc", out, "--backend", "tensorrt", "--version-compatible")
    assert code == 0, stderr
    assert _report(out)["engine"]["options"]["version_compatible"] is True


def test_parser_errors_name_every_rejected_node(tmp_path, capsys):
    """A node TensorRT has no importer for: the build fails with exit 6, the one line names it, and the report
    lists every parser error with node, op and origin."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("NoSuchOp", ["x"], ["y"], name="mystery", domain="com.example")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "m.engine"
    code, _, stderr = run_cli(capsys, "build", path, out, "--backend", "tensorrt")
    assert code == 6 and "mystery (NoSuchOp, from export)" in stderr and not out.exists()


def test_run_and_bench_a_plan(tmp_path, capsys):
    out = tmp_path / "cnn.engine"
    assert run_cli(capsys, FIXTURES / "cnn_nhwc", out, "--backend", "tensorrt")[0] == 0
    ins, outs = golden("cnn_nhwc")
    np.savez(tmp_path / "in.npz", image=ins["image"][:1])
    code, _, stderr = run_cli(capsys, "run", out, "--inputs", tmp_path / "in.npz", "--outputs", tmp_path / "o.npz")
    assert code == 0, stderr
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["output_0"], outs["output_0"][:1], atol=1e-3, rtol=1e-2)
    code, stdout, stderr = run_cli(capsys, "bench", out, "--iterations", "20", "--warmup", "2", "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["latency_ms"]["p50"] > 0 and result["throughput_samples_per_s"] > 0
