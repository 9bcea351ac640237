"""The precision stage: fp16, bf16, automatic mixed precision and int8 (Q/DQ with calibration), on CPU.

Every graph here is real: fixtures exported with tf2onnx, lowered by the passes, run by onnxruntime and
compared with the float32 graph under the documented tolerances (compiler.config.PRECISION_TOLERANCES).
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper

from compiler.api import lower_precision, optimize_model
from compiler.artifacts import TensorSpec
from compiler.config import PRECISION_TOLERANCES, OptimizeConfig, PrecisionConfig, ValidateConfig, parse_shapes
from compiler.data import load_samples
from compiler.errors import ConfigError, PrecisionError
from compiler.interface import read as interface_of
from compiler.onnxutil import io_specs
from compiler.precision import auto_mixed, within
from compiler.validate import resolve_shapes
from passes import PassManager
from passes.cleanup_casts import CleanupCasts
from passes.quantize_int8 import quantizable
from passes.to_fp16 import default_keep_ops, node_precision
from passes.trt_support import check_model
from compiler.index_ranges import index_ranges, merged_ranges
from tests.conftest import COMPILABLE, FIXTURES, run_cli

pytestmark = pytest.mark.tf  # the fixtures are exported with tf2onnx


def _sub(tmp_path, name):
    path = tmp_path / name
    path.mkdir()
    return path


def _shapes(name):
    flags = COMPILABLE[name]
    return parse_shapes(flags[1]) if flags else {}


def _lower(exported, name, tmp_path, pcfg, vcfg=ValidateConfig()):
    ocfg = OptimizeConfig(input_shapes=_shapes(name))
    fp32, _ = optimize_model(exported[name], tmp_path / f"{name}.fp32.onnx", ocfg)
    art, _, result = lower_precision(exported[name], tmp_path / f"{name}.{pcfg.mode}.onnx", ocfg, pcfg, vcfg)
    return fp32, art, result


def _run_both(fp32_path, low_path, name, n=16):
    """Outputs of both graphs on the same seeded random samples (the precision seam's data)."""
    from compiler.precision import _fp16_io_change, _outputs

    fp32, low = onnx.load(str(fp32_path)), onnx.load(str(low_path))
    inputs, _ = io_specs(fp32)
    ranges = merged_ranges(index_ranges(fp32), {})  # integer inputs that index a table: its range, as compile
    samples = load_samples(None, inputs, resolve_shapes(inputs, {}, 1), random_count=n, ranges=ranges)
    return _outputs(fp32, samples), _outputs(low, samples, _fp16_io_change(fp32, low))


@pytest.mark.parametrize("name", sorted(COMPILABLE))
@pytest.mark.parametrize("mode", ["fp16", "bf16", "int8"])
def test_each_precision_on_each_fixture(exported, tmp_path, name, mode):
    """Valid ONNX, runs on onnxruntime, within the documented tolerance of fp32, TensorRT-parseable."""
    fp32, art, result = _lower(exported, name, tmp_path, PrecisionConfig(mode=mode))
    model = onnx.load(str(art.path))
    onnx.checker.check_model(model, full_check=True)
    ref, low = _run_both(fp32.path, art.path, name)
    assert within(ref, low, *PRECISION_TOLERANCES[mode], scaled=True)
    assert check_model(model).supported, check_model(model).findings
    precisions = node_precision(gs.import_onnx(model))
    # The interface is unchanged: float32 in, float32 out, same names.
    assert [(t.name, t.dtype) for t in io_specs(model)[0]] == [(t.name, t.dtype) for t in fp32.inputs]
    assert [(t.name, t.dtype) for t in io_specs(model)[1]] == [(t.name, t.dtype) for t in fp32.outputs]
    if mode in ("fp16", "bf16"):
        graph = gs.import_onnx(model)
        for node in graph.nodes:  # the block list is respected
            if node.op in default_keep_ops() and node.name in precisions:
                assert precisions[node.name] == "fp32", node.name
        # Detection post-processing (NMS, TopK, their gathers) holds no arithmetic to run in float16/bfloat16.
        assert bool(result.ops.get(mode)) == (name not in ("nms", "combined_nms", "topk_large")), result.ops
        assert set(precisions.values()) <= {mode, "fp32"}
        # bf16: ONNX admits bfloat16 Conv and pooling from opset 22, so the graph is raised to it
        assert {o.domain: o.version for o in model.opset_import}[""] == (22 if mode == "bf16" else 17)
    else:
        has_weighted = bool(quantizable(gs.import_onnx(onnx.load(str(fp32.path)))))
        assert has_weighted == (name in ("cnn_nhwc", "multi_io", "uint8_image", "depth_to_space", "resize_modes",
                                         "dtypes", "keras_argmax", "small_table", "dynamic_reshape", "digits")), name
        assert bool(result.ops.get("int8")) == has_weighted, result.ops
        if not has_weighted:
            assert result.calibration is None and "no Conv" in result.notices[0]


def test_fp16_casts_only_at_precision_boundaries(exported, tmp_path):
    """cnn_nhwc: one Cast after the graph input, one into the float32 Softmax (which is the output); no other."""
    _, art, result = _lower(exported, "cnn_nhwc", tmp_path, PrecisionConfig(mode="fp16"))
    graph = gs.import_onnx(onnx.load(str(art.path)))
    casts = [n for n in graph.nodes if n.op == "Cast"]
    for cast in casts:
        src, dst = cast.inputs[0].dtype, cast.outputs[0].dtype
        assert src != dst
        producer = cast.inputs[0].inputs[0] if cast.inputs[0].inputs else None
        assert producer is None or producer.op != "Cast", "a Cast chain survived cleanup_casts"
    assert len(casts) == 2, [(c.name, c.inputs[0].dtype, c.outputs[0].dtype) for c in casts]
    assert [k["op"] for k in result.kept_fp32] == ["Softmax"]
    assert result.ops["fp32"] == {"Softmax": 1}


def test_keep_fp32_by_op_and_by_node(exported, tmp_path):
    fp32, art, result = _lower(exported, "cnn_nhwc", tmp_path, PrecisionConfig(mode="fp16", keep_fp32=("MatMul",)))
    assert result.ops["fp32"] == {"MatMul": 1, "Softmax": 1, "Squeeze": 1}  # Squeeze only feeds the MatMul
    assert {k["reason"] for k in result.kept_fp32 if k["op"] == "MatMul"} == {"--keep-fp32"}
    conv = next(n.name for n in onnx.load(str(fp32.path)).graph.node if n.op_type == "Conv")
    _, _, result = _lower(exported, "cnn_nhwc", tmp_path, PrecisionConfig(mode="fp16", keep_fp32=(conv,)))
    assert [k["node"] for k in result.kept_fp32 if k["reason"] == "--keep-fp32"] == [conv]
    assert result.ops["fp32"]["Conv"] == 1 and result.ops["fp16"]["Conv"] == 1
    with pytest.raises(PrecisionError, match=r"'Softmaks' is neither an op type nor a node name.*nearest: Softmax"):
        _lower(exported, "cnn_nhwc", tmp_path, PrecisionConfig(mode="fp16", keep_fp32=("Softmaks",)))


def test_fp16_io_records_the_interface(exported, tmp_path):
    fp32, art, _ = _lower(exported, "cnn_nhwc", tmp_path, PrecisionConfig(mode="fp16", fp16_io=True))
    model = onnx.load(str(art.path))
    assert {t.dtype for t in io_specs(model)[0] + io_specs(model)[1]} == {"float16"}
    change = interface_of(model)
    assert change.inputs["image"] == {"dtype": "float16", "from_dtype": "float32"}
    ref, low = _run_both(fp32.path, art.path, "cnn_nhwc")
    assert within(ref, low, *PRECISION_TOLERANCES["fp16"], scaled=True)


# ---------------------------------------------------------------- cleanup_casts

def _cast_model():
    """x(f32) → Cast f16 → Cast f32 → Exp → y ; x → Cast f32 (no-op) → Neg → z ; x → Cast f16 twice → w1, w2."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16, name="down"),
             helper.make_node("Cast", ["h"], ["f"], to=TensorProto.FLOAT, name="up"),
             helper.make_node("Exp", ["f"], ["y"], name="exp"),
             helper.make_node("Cast", ["x"], ["same"], to=TensorProto.FLOAT, name="noop"),
             helper.make_node("Neg", ["same"], ["z"], name="neg"),
             helper.make_node("Cast", ["x"], ["a"], to=TensorProto.FLOAT16, name="c1"),
             helper.make_node("Cast", ["x"], ["b"], to=TensorProto.FLOAT16, name="c2"),
             helper.make_node("Neg", ["a"], ["w1"], name="n1"), helper.make_node("Neg", ["b"], ["w2"], name="n2")]
    outs = [helper.make_tensor_value_info(n, t, [2, 3]) for n, t in
            (("y", TensorProto.FLOAT), ("z", TensorProto.FLOAT), ("w1", TensorProto.FLOAT16),
             ("w2", TensorProto.FLOAT16))]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def test_cleanup_casts_structure_numerics_idempotence():
    from tests.conftest import ort_run

    model = _cast_model()
    manager = PassManager([CleanupCasts()])
    out = manager.run(model)
    onnx.checker.check_model(out, full_check=True)
    # c1 and c2 both merge into "down", whose float16 output the round trip no longer uses otherwise
    assert manager.records[0].stats == {"noop": 1, "float32_kept": 1, "merged": 2}
    ops = [n.op_type for n in out.graph.node]
    assert ops.count("Cast") == 1  # the one real float32 → float16 Cast, shared by both readers
    feed = {"x": np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)}
    before, after = ort_run(model, feed), ort_run(out, feed)
    assert np.array_equal(before["z"], after["z"]) and np.array_equal(before["w1"], after["w1"])
    # the round trip through float16 is gone: y is exp of the float32 input (onnxruntime's exp, to 1 ulp of numpy's)
    np.testing.assert_allclose(after["y"], np.exp(feed["x"]), rtol=3e-7)
    assert not np.allclose(before["y"], after["y"], rtol=1e-5, atol=0)
    again = PassManager([CleanupCasts()])
    again.run(out)
    assert not again.records[0].changed


# ---------------------------------------------------------------- automatic mixed precision

def _overflow_model():
    """y = (x @ W) * 1e-3 with |x @ W| up to ~1.6e5 (float16 overflows past 65504); z = tanh(x) + 1."""
    rng = np.random.default_rng(1)
    w = onnx.numpy_helper.from_array((rng.uniform(0.5, 1.0, (64, 8)) * 2500).astype(np.float32), "W")
    scale = onnx.numpy_helper.from_array(np.array(1e-3, np.float32), "s")
    one = onnx.numpy_helper.from_array(np.array(1.0, np.float32), "one")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["big"], name="big_matmul"),
             helper.make_node("Mul", ["big", "s"], ["y"], name="rescale"),
             helper.make_node("Tanh", ["x"], ["t"], name="tanh"),
             helper.make_node("Add", ["t", "one"], ["z"], name="add_one")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 64])], [w, scale, one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_auto_mixed_keeps_exactly_the_overflowing_nodes(tmp_path):
    model = _overflow_model()
    inputs, _ = io_specs(model)
    samples = load_samples(None, inputs, {"x": (1, 64)}, random_count=8)
    samples = type(samples)(tuple({"x": np.abs(f["x"]) + 0.5} for f in samples), "positive", False, "d")
    from compiler.precision import _outputs, to_fp16

    plain, _ = to_fp16(model, PrecisionConfig(mode="fp16"))
    assert not within(_outputs(model, samples), _outputs(plain, samples), *PRECISION_TOLERANCES["fp16"], scaled=True)
    fp16, records, kept, entry = auto_mixed(model, PrecisionConfig(mode="fp16", auto_mixed=True), samples,
                                            PRECISION_TOLERANCES["fp16"])
    assert sorted(kept) == ["big_matmul", "rescale"]
    assert within(_outputs(model, samples), _outputs(fp16, samples), *PRECISION_TOLERANCES["fp16"], scaled=True)
    precisions = node_precision(gs.import_onnx(fp16))
    assert precisions == {"big_matmul": "fp32", "rescale": "fp32", "tanh": "fp16", "add_one": "fp16"}
    # The float32 value between the two kept nodes is not rounded through float16 on the way.
    (big,) = [n.output[0] for n in fp16.graph.node if n.name == "big_matmul"]
    assert [n.op_type for n in fp16.graph.node if big in n.input] == ["Mul"]
    assert entry["trials"] <= 12 and not entry["budget_exhausted"]


def test_auto_mixed_refuses_an_impossible_tolerance(tmp_path):
    model = _overflow_model()
    inputs, _ = io_specs(model)
    samples = load_samples(None, inputs, {"x": (1, 64)}, random_count=4)
    with pytest.raises(PrecisionError, match="even with every float node in float32"):
        auto_mixed(model, PrecisionConfig(mode="fp16", auto_mixed=True, fp16_io=True), samples, (0.0, 0.0))


# ---------------------------------------------------------------- INT8 calibration and its cache

def _scales(path):
    model = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.name: inits[n.input[1]].tolist() for n in model.graph.node if n.op_type == "QuantizeLinear"}


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_calibration_methods_and_cache_reuse(exported, tmp_path, method):
    cache = tmp_path / "calib.json"
    pcfg = PrecisionConfig(mode="int8", calib_method=method, calib_cache=cache)
    fp32, first, r1 = _lower(exported, "cnn_nhwc", _sub(tmp_path, "a"), pcfg)
    assert not r1.calibration["reused_cache"] and r1.calibration["seconds"] > 0
    assert r1.calibration["random_data"] and "RANDOM" in r1.notices[0]
    data = json.loads(cache.read_text())
    assert data["key"] == r1.calibration["key"] and data["method"] == method and data["ranges"]
    _, second, r2 = _lower(exported, "cnn_nhwc", _sub(tmp_path, "b"), pcfg)
    assert r2.calibration["reused_cache"] and r2.calibration["seconds"] == 0.0
    assert _scales(first.path) == _scales(second.path) and _scales(first.path)
    ref, low = _run_both(fp32.path, second.path, "cnn_nhwc")
    assert within(ref, low, *PRECISION_TOLERANCES["int8"], scaled=True)
    # Other data (fewer samples) is another key: calibrated again, and the cache rewritten.
    _, _, r3 = _lower(exported, "cnn_nhwc", _sub(tmp_path, "c"), PrecisionConfig(mode="int8", calib_method=method,
                                                                            calib_cache=cache, calib_samples=8))
    assert not r3.calibration["reused_cache"] and r3.calibration["key"] != r1.calibration["key"]
    assert json.loads(cache.read_text())["key"] == r3.calibration["key"]


def test_int8_weights_are_per_channel_symmetric(exported, tmp_path):
    """The Q/DQ form TensorRT consumes: int8 weights per output channel, zero points 0, float biases."""
    _, art, _ = _lower(exported, "cnn_nhwc", tmp_path, PrecisionConfig(mode="int8"))
    model = onnx.load(str(art.path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for w in conv_weights:
        node = dq[w]
        assert inits[node.input[0]].dtype == np.int8
        assert inits[node.input[1]].size == inits[node.input[0]].shape[0]  # one scale per output channel
        assert not np.any(inits[node.input[2]])
    assert not any(i.dtype == np.int32 for i in inits.values())  # no int32 bias quantization
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            assert not np.any(inits[n.input[2]]), n.name


def test_int8_skip(exported, tmp_path):
    _, _, result = _lower(exported, "cnn_nhwc", tmp_path, PrecisionConfig(mode="int8", int8_skip=("MatMul",)))
    assert result.ops["int8"] == {"Conv": 2} and result.ops["fp32"]["MatMul"] == 1


# ---------------------------------------------------------------- end to end, from each kind of calibration data

def _calib_arrays(n=6):
    rng = np.random.default_rng(7)
    return rng.uniform(-1, 1, (n, 1, 32, 32, 3)).astype(np.float32)


def _calibration_sources(tmp_path):
    arrays = _calib_arrays()
    directory = tmp_path / "calib_dir"
    directory.mkdir()
    for i, a in enumerate(arrays):
        np.save(directory / f"{i:03d}.npy", a)
    batched = tmp_path / "calib.npz"
    np.savez(batched, image=arrays[:, 0])
    gen = tmp_path / "calib_fn.py"
    gen.write_text("import numpy as np\n\n\ndef calibration_input_fn():\n"
                   "    rng = np.random.default_rng(7)\n"
                   "    for _ in range(6):\n"
                   "        yield (rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32),)\n")
    return {"dir": str(directory), "npz": str(batched), "generator": f"{gen}:calibration_input_fn"}


@pytest.mark.parametrize("kind", ["dir", "npz", "generator"])
def test_compile_int8_from_each_kind_of_calibration_data(capsys, tmp_path, kind):
    spec = _calibration_sources(tmp_path)[kind]
    out = tmp_path / "cnn.engine"
    code, stdout, stderr = run_cli(capsys, "compile", FIXTURES / "cnn_nhwc", out, "--precision", "int8",
                                   "--calib-data", spec, "--quiet")
    assert code == 0, stderr
    assert "RANDOM" not in stdout
    report = json.loads((tmp_path / "cnn.engine.report.json").read_text())
    calib = report["precision"]["calibration"]
    assert calib["samples"] == 6 and not calib["random_data"] and not calib["reused_cache"]
    seams = {s["seam"]: s for s in report["validation"]}
    assert seams["fp32→int8"]["passed"] and seams["optimized→engine"]["passed"]
    assert seams["fp32→int8"]["outputs"]["output_0"]["top1_rows"] == 16
    assert report["precision"]["ops"]["int8"] == {"Conv": 2, "MatMul": 1}
    assert list(report["precision"]["nodes"].values()).count("int8") == 3
    assert (tmp_path / "cnn.engine.calib.json").is_file()
    # The three sources hold the same samples: one data digest, whichever form carried it.
    digest = json.loads((tmp_path / "cnn.engine.calib.json").read_text())["data_digest"]
    npz = _calibration_sources(_sub(tmp_path, "again"))["npz"]
    image = TensorSpec("image", "float32", (None, 32, 32, 3))
    assert digest == load_samples(npz, (image,), {"image": (1, 32, 32, 3)}).digest


def test_compile_fp16_auto_mixed_and_random_int8_warning(capsys, tmp_path):
    code, stdout, stderr = run_cli(capsys, "compile", FIXTURES / "cnn_nhwc", tmp_path / "a.engine",
                                   "--precision", "fp16", "--auto-mixed", "--quiet")
    assert code == 0, stderr
    report = json.loads((tmp_path / "a.engine.report.json").read_text())
    assert report["precision"]["mode"] == "fp16" and report["precision"]["auto_mixed"]["kept_fp32"] == []
    assert report["precision"]["tolerances"] == {"atol": 0.01, "rtol": 0.01}
    seam = next(s for s in report["validation"] if s["seam"] == "fp32→fp16")
    assert seam["outputs"]["output_0"]["top1_agreement"] == 1.0 and seam["atol_scaled_by_peak"]
    assert report["stages"]["precision"]["status"] == "ok"

    code, stdout, stderr = run_cli(capsys, "compile", FIXTURES / "cnn_nhwc", tmp_path / "b.engine",
                                   "--precision", "int8", "--quiet")
    assert code == 0, stderr
    assert "WARNING: precision: INT8 calibrated on RANDOM data" in stdout
    report = json.loads((tmp_path / "b.engine.report.json").read_text())
    assert report["precision"]["calibration"]["random_data"]
    assert any("RANDOM" in n for n in report["notices"])


# ---------------------------------------------------------------- bad calibration inputs

@pytest.mark.parametrize("case,match", [
    ("shape", r"has shape \[1, 28, 28, 3\] but input 'image' needs \[\?, 32, 32, 3\]"),
    ("dtype", r"dtype int64 but input 'image' is float32"),
    ("name", r"names 'pixels', which is not an input; inputs are: image"),
    ("empty", r"holds no \.npy or \.npz files"),
])
def test_bad_calibration_data_is_one_clear_line(capsys, exported, tmp_path, case, match):
    import re

    directory = tmp_path / "calib"
    directory.mkdir()
    if case == "shape":
        np.save(directory / "0.npy", np.zeros((1, 28, 28, 3), np.float32))
    elif case == "dtype":
        np.save(directory / "0.npy", np.zeros((1, 32, 32, 3), np.int64))
    elif case == "name":
        np.savez(directory / "0.npz", pixels=np.zeros((1, 32, 32, 3), np.float32))
    out = tmp_path / "cnn.int8.onnx"
    code, stdout, stderr = run_cli(capsys, "optimize", exported["cnn_nhwc"], out, "--precision", "int8",
                                   "--calib-data", directory)
    assert code == PrecisionError.exit_code == 10
    line = stderr.strip()
    assert "\n" not in line and line.startswith("error: precision: calibration") and "fix:" in line, line
    assert re.search(match, line), line
    assert "Traceback" not in stderr and not out.exists()


def test_bad_calibration_data_leaves_no_engine(capsys, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 1, 32, 32, 1), np.float32))
    out = tmp_path / "cnn.engine"
    code, _, stderr = run_cli(capsys, "compile", FIXTURES / "cnn_nhwc", out, "--precision", "int8",
                              "--calib-data", bad, "--quiet")
    assert code == 10 and "error: precision:" in stderr and not out.exists()
    report = json.loads((tmp_path / "cnn.engine.report.json").read_text())
    assert report["error"]["stage"] == "precision" and report["stages"]["precision"]["status"] == "failed"


@pytest.mark.parametrize("flags,match", [
    (["--auto-mixed"], r"--auto-mixed only applies to --precision fp16"),
    (["--precision", "fp16", "--calib-data", "x"], r"--calib-data only applies to --precision int8"),
    (["--precision", "int8", "--keep-fp32", "Softmax"], r"--keep-fp32 only applies to --precision fp16/bf16"),
    (["--precision", "bf16", "--fp16-io"], r"--fp16-io only applies to --precision fp16, not bf16"),
])
def test_precision_flags_that_do_not_apply(capsys, exported, tmp_path, flags, match):
    import re

    code, _, stderr = run_cli(capsys, "optimize", exported["cnn_nhwc"], tmp_path / "o.onnx", *flags)
    assert code == ConfigError.exit_code and re.search(match, stderr), stderr


def test_validation_data_flag_drives_every_seam(capsys, tmp_path):
    """--data: the seams whose reference takes the model's inputs run on those samples, not random ones."""
    data = tmp_path / "val.npz"
    np.savez(data, image=_calib_arrays(5)[:, 0])
    code, _, stderr = run_cli(capsys, "compile", FIXTURES / "cnn_nhwc", tmp_path / "v.engine", "--precision", "fp16",
                              "--data", data, "--quiet")
    assert code == 0, stderr
    report = json.loads((tmp_path / "v.engine.report.json").read_text())
    for seam in report["validation"]:
        assert seam["data"].startswith("5 samples from"), seam
        assert seam["iterations"] == 5


@pytest.mark.parametrize("mode", ["fp16", "bf16", "int8"])
@pytest.mark.parametrize("name", sorted(COMPILABLE))
def test_compile_every_fixture_at_each_precision(capsys, tmp_path, name, mode):
    """End to end: the onnxruntime backend builds the lowered graph (its optimizer fuses Q/DQ into int8 kernels,
    which the seam from the lowered graph checks), and all four seams pass."""
    out = tmp_path / f"{name}.engine"
    code, stdout, stderr = run_cli(capsys, "compile", FIXTURES / name, out, "--precision", mode, "--quiet",
                                   "--backend", "onnxruntime", *COMPILABLE[name])
    assert code == 0, stderr
    report = json.loads((tmp_path / f"{name}.engine.report.json").read_text())
    assert [s["seam"] for s in report["validation"]] == ["tf→onnx", "onnx→optimized", f"fp32→{mode}",
                                                         "optimized→engine"]
    assert all(s["passed"] for s in report["validation"]) and out.is_file()
    assert report["precision"]["mode"] == mode and report["stages"]["precision"]["status"] == "ok"
    atol, rtol = PRECISION_TOLERANCES[mode]
    assert report["precision"]["tolerances"] == {"atol": atol, "rtol": rtol}
    if mode == "bf16":  # onnxruntime has no bfloat16 kernels: its artifact is the storage emulation, and says so
        assert ("bfloat16" in report["engine"]) == bool(report["precision"]["ops"].get("bf16")), report["engine"]
    # int8 on onnxruntime does not pay off (compiler/backends/onnxruntime.py): where the graph has Q/DQ nodes (a
    # fixture without Conv/MatMul/Gemm gets none), the report, the summary and the printed warning say so
    quantized = mode == "int8" and "QuantizeLinear" in report["graph"][mode]["ops"]
    said = [n for n in report["notices"] if "int8 on the onnxruntime backend is for checking accuracy" in n]
    assert len(said) == quantized and ("WARNING: " + said[0] in stdout if said else True)
    assert ("precision_notice" in report["engine"]) == quantized



# ---------------------------------------------------------------- bf16 on the fixtures (pass level: tests/test_bf16.py)

def test_bf16_casts_only_at_precision_boundaries_and_exact_weights(exported, tmp_path):
    """cnn_nhwc at bf16: Conv and pooling in bfloat16 (opset 22), a BFLOAT16 Cast after the input and one out of it
    into the float32 Softmax; weights rounded from float32 to the nearest bfloat16."""
    from passes.precision.to_bf16 import BFLOAT16

    fp32, art, result = _lower(exported, "cnn_nhwc", tmp_path, PrecisionConfig(mode="bf16"))
    model = onnx.load(str(art.path))
    casts = [(n.input[0], n.attribute[0].i) for n in model.graph.node if n.op_type == "Cast"]
    assert sorted(to for _, to in casts) == [TensorProto.FLOAT, TensorProto.BFLOAT16], casts
    assert casts[[to for _, to in casts].index(TensorProto.BFLOAT16)][0] == "image"
    assert result.ops["fp32"] == {"Softmax": 1} and {"Conv", "MaxPool", "MatMul"} <= set(result.ops["bf16"])
    assert result.kept_fp32 == [{"node": result.kept_fp32[0]["node"], "op": "Softmax",
                                 "reason": "default block list (8-bit mantissa)"}]
    float_weights = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(fp32.path)).graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    inits = {i.name: i for i in model.graph.initializer}
    for conv in convs:
        w = inits[conv.input[1]]
        assert w.data_type == TensorProto.BFLOAT16
        expected = float_weights[conv.input[1]].astype(BFLOAT16).astype(np.float32)
        assert np.array_equal(onnx.numpy_helper.to_array(w).astype(np.float32), expected)
    _, _, kept = _lower(exported, "cnn_nhwc", _sub(tmp_path, "k"), PrecisionConfig(mode="bf16", keep_fp32=("MatMul",)))
    assert kept.ops["fp32"] == {"MatMul": 1, "Softmax": 1, "Squeeze": 1}


def test_bf16_seam_measures_bf16_rounding(exported, tmp_path):
    """depth_to_space: the fp16 graph meets 3e-3, the bf16 graph (4x coarser rounding) does not, and meets bf16's
    tolerance: the emulation really rounds to bfloat16 where the graph stores it."""
    fp32, bf16, _ = _lower(exported, "depth_to_space", tmp_path, PrecisionConfig(mode="bf16"))
    _, fp16, _ = _lower(exported, "depth_to_space", _sub(tmp_path, "h"), PrecisionConfig(mode="fp16"))
    ref, low = _run_both(fp32.path, bf16.path, "depth_to_space")
    _, half = _run_both(fp32.path, fp16.path, "depth_to_space")
    assert within(ref, half, 3e-3, 3e-3, scaled=True) and not within(ref, low, 3e-3, 3e-3, scaled=True)
    assert within(ref, low, *PRECISION_TOLERANCES["bf16"], scaled=True)


def test_compile_bf16_fails_a_tolerance_too_tight_for_bf16(capsys, tmp_path):
    from compiler.errors import ValidationError

    out = tmp_path / "d.engine"
    code, _, stderr = run_cli(capsys, "compile", FIXTURES / "depth_to_space", out, "--precision", "bf16",
                              "--atol", "3e-3", "--rtol", "3e-3", "--quiet")
    assert code == ValidationError.exit_code and "fp32→bf16" in stderr, stderr
    report = json.loads((tmp_path / "d.engine.report.json").read_text())
    seams = {s["seam"]: s for s in report["validation"]}
    assert not seams["fp32→bf16"]["passed"] and seams["onnx→optimized"]["passed"] and not out.exists()

