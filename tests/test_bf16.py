"""bf16 at the pass level and below: to_bf16 (structure, numerics, onnx.checker), the bfloat16 storage emulation that
validates it on a CPU without bfloat16 kernels, cleanup_casts on bfloat16 Casts, the onnxruntime backend's
emulated artifact, and --auto-mixed at bf16. Small real graphs, run by the real onnxruntime; the fixtures at bf16
are in tests/test_precision.py."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.backends import onnxruntime as ort_backend
from compiler.common.fp16_emulation import has_bfloat16, storage_emulation
from compiler.config import PRECISION_TOLERANCES, PrecisionConfig
from compiler.precision import _outputs, auto_mixed, to_fp16, within
from compiler.tools.goldens import detect_precision
from compiler.validate import validation_session
from passes import PassManager
from passes.cleanup_casts import CleanupCasts, _lossless
from passes.cleanup_toposort import CleanupToposort
from passes.precision._common import node_precision, np_dtype
from passes.precision.to_bf16 import BF16_OPSET, BFLOAT16, ToBf16, admits_bfloat16

F32, BF16 = TensorProto.FLOAT, TensorProto.BFLOAT16


def _model(nodes, inputs, outputs, inits=(), opset=17):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def _cnn():
    """x[1,3,8,8] → Conv → Relu → MaxPool → Mul(1e6) → y; MaxPool → Einsum(sum over h, w) → s. Opset 17, where
    ONNX's Conv and MaxPool admit no bfloat16; 1e6 is past float16's 65504."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
    big = numpy_helper.from_array(np.array(1e6, np.float32), "big")
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Mul", ["p", "big"], ["y"], name="scale"),
             helper.make_node("Einsum", ["p"], ["s"], name="einsum", equation="nchw->nc")]
    return _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 3, 8, 8])],
                  [helper.make_tensor_value_info("y", F32, [1, 4, 4, 4]),
                   helper.make_tensor_value_info("s", F32, [1, 4])], [w, big])


def _lower(model, keep=()):
    manager = PassManager([ToBf16(keep), CleanupCasts(), CleanupToposort()], max_iterations=2)
    return manager.run(model), manager.records


def _feed(shape=(1, 3, 8, 8), seed=1):
    return {"x": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


def test_to_bf16_structure_and_checker(tmp_path):
    low, records = _lower(_cnn())
    onnx.checker.check_model(low, full_check=True)
    assert {o.domain: o.version for o in low.opset_import}[""] == BF16_OPSET
    assert node_precision(gs.import_onnx(low)) == {"conv": "bf16", "relu": "bf16", "pool": "bf16", "scale": "bf16",
                                                   "einsum": "fp32"}
    stats = records[0].stats
    assert stats["opset"] == [17, BF16_OPSET] and stats["io"] == "float32"
    assert stats["kept_fp32"] == [{"node": "einsum", "op": "Einsum", "reason": "no bfloat16 Einsum in ONNX opset 22"}]
    inits = {i.name: i for i in low.graph.initializer}
    # Constants are rounded from float32, to nearest even, not through float16 (which would clip 1e6 to 65504).
    assert inits["big"].data_type == BF16 and float(numpy_helper.to_array(inits["big"]).astype(np.float32)) == 999424.0
    w32 = numpy_helper.to_array(_cnn().graph.initializer[0])
    assert np.array_equal(numpy_helper.to_array(inits["W"]).astype(np.float32), w32.astype(BFLOAT16).astype(np.float32))
    # float32 IO: one Cast into bfloat16 after x, one out of it before each output and before the float32 Einsum.
    casts = sorted((n.input[0], n.attribute[0].i) for n in low.graph.node if n.op_type == "Cast")
    assert [to for _, to in casts].count(BF16) == 1 and [to for _, to in casts].count(F32) == 2
    onnx.save(low, str(tmp_path / "m.onnx"))
    assert has_bfloat16(low) and detect_precision(tmp_path / "m.onnx") == "bf16"  # goldens take bf16 tolerances


def test_schema_rule():
    assert not admits_bfloat16("Conv", "", 17) and admits_bfloat16("Conv", "", 22)
    assert admits_bfloat16("MatMul", "", 17) and not admits_bfloat16("Einsum", "", 22)
    assert not admits_bfloat16("TopK", "", 22) and not admits_bfloat16("Anything", "com.microsoft", 1)


def test_onnxruntime_cpu_has_no_bfloat16_kernels():
    """Why bf16 graphs are validated (and built by the onnxruntime backend) through the storage emulation. When this
    fails, onnxruntime's CPU provider runs bfloat16 graphs natively: revisit compiler/common/fp16_emulation.py and
    the onnxruntime backend's _buildable."""
    import onnxruntime

    low, _ = _lower(_cnn())
    with pytest.raises(Exception, match="NOT_IMPLEMENTED|Could not find an implementation"):
        onnxruntime.InferenceSession(low.SerializeToString(), providers=["CPUExecutionProvider"])


def test_emulation_rounds_each_stored_tensor_to_bfloat16():
    """x → bf16 → Mul(c) → Add(d) → fp32: the emulation gives exactly numpy's bf16(bf16(bf16(x)·c)+d)."""
    rng = np.random.default_rng(2)
    c = (rng.standard_normal(64) * 3).astype(np.float32).astype(BFLOAT16)
    d = (rng.standard_normal(64) * 100).astype(np.float32).astype(BFLOAT16)
    nodes = [helper.make_node("Cast", ["x"], ["xb"], to=BF16), helper.make_node("Mul", ["xb", "c"], ["m"]),
             helper.make_node("Add", ["m", "d"], ["a"]), helper.make_node("Cast", ["a"], ["y"], to=F32)]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [64])], [helper.make_tensor_value_info("y", F32, [64])],
                   [numpy_helper.from_array(c, "c"), numpy_helper.from_array(d, "d")])
    x = rng.standard_normal(64).astype(np.float32)

    def bf(v):
        return np.asarray(v, np.float32).astype(BFLOAT16).astype(np.float32)

    expected = bf(bf(bf(x) * c.astype(np.float32)) + d.astype(np.float32))
    (y,) = validation_session(model).run(None, {"x": x})
    assert np.array_equal(y, expected)
    assert not np.array_equal(y, x * c.astype(np.float32) + d.astype(np.float32))  # the rounding is really there
    # Only Casts touch bfloat16 in the emulation: every other node computes in float32.
    emulated = storage_emulation(model)
    assert not [i.name for i in emulated.graph.initializer if i.data_type == BF16]
    assert [n.op_type for n in emulated.graph.node].count("Cast") == 2 + 2 * 3  # the IO pair + a round trip per tensor


def test_bf16_numerics_against_float32():
    """The lowered graph, run through the emulation, is within bf16's tolerance of float32 and measurably not within
    a tolerance bfloat16 cannot meet."""
    model = _cnn()
    low, _ = _lower(model)
    feed = _feed()
    ref = [validation_session(model).run(None, feed)]
    got = [validation_session(low).run(None, feed)]
    assert within(ref, got, *PRECISION_TOLERANCES["bf16"], scaled=True)
    assert not within(ref, got, 1e-4, 1e-4, scaled=True)


def test_cleanup_casts_knows_bfloat16():
    f16, bf16, f32 = np.dtype(np.float16), np_dtype(BF16), np.dtype(np.float32)
    assert _lossless(bf16, f32) and not _lossless(f16, bf16) and not _lossless(bf16, f16)
    assert _lossless(np.dtype(np.int8), bf16) and not _lossless(np.dtype(np.int16), bf16)
    # x → bf16 → fp32 → Exp: a detour between float32 ends, dropped; x → bf16 → Neg stays.
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=BF16, name="down"),
             helper.make_node("Cast", ["h"], ["f"], to=F32, name="up"), helper.make_node("Exp", ["f"], ["y"]),
             helper.make_node("Cast", ["x"], ["b"], to=BF16, name="keep"), helper.make_node("Neg", ["b"], ["z"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [4])],
                   [helper.make_tensor_value_info("y", F32, [4]), helper.make_tensor_value_info("z", BF16, [4])])
    manager = PassManager([CleanupCasts()])
    out = manager.run(model)
    onnx.checker.check_model(out, full_check=True)
    assert manager.records[0].stats == {"float32_kept": 1, "merged": 1}
    assert [n.op_type for n in out.graph.node].count("Cast") == 1


def test_onnxruntime_backend_builds_the_emulation(tmp_path):
    low, _ = _lower(_cnn())
    path = tmp_path / "m.bf16.onnx"
    onnx.save(low, str(path))
    art = ort_backend.build(path, tmp_path / "m.engine")
    assert art.summary["bfloat16"].startswith("emulated")
    runner = ort_backend.OrtRunner(art.path, art.format)
    feed = _feed()
    got = runner.infer(feed)
    ref = validation_session(low).run(None, feed)
    assert np.array_equal(got["y"], ref[0]) and np.array_equal(got["s"], ref[1])
    plain = ort_backend.OrtRunner(path, "onnx").infer(feed)  # the ONNX model itself runs, emulated, too
    assert np.array_equal(plain["y"], ref[0])


def _cancellation_model():
    """y = (x @ W) - 1000 with x @ W ≈ 1000 (bfloat16's step there is 4: the difference loses everything);
    z = tanh(u) + 1, which bfloat16 holds fine."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(np.full((16, 4), 1000 / 16, np.float32) + rng.uniform(0, 0.01, (16, 4)).astype(np.float32),
                                "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["big"], name="matmul"),
             helper.make_node("Sub", ["big", "k"], ["y"], name="sub"),
             helper.make_node("Tanh", ["u"], ["t"], name="tanh"), helper.make_node("Add", ["t", "one"], ["z"], name="add")]
    inits = [w, numpy_helper.from_array(np.array(1000.0, np.float32), "k"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    return _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 16]), helper.make_tensor_value_info("u", F32, [1, 16])],
                  [helper.make_tensor_value_info("y", F32, [1, 4]), helper.make_tensor_value_info("z", F32, [1, 16])],
                  inits)


def test_auto_mixed_at_bf16_keeps_the_cancelling_nodes():
    from compiler.common.samples import Samples

    model = _cancellation_model()
    rng = np.random.default_rng(4)
    samples = Samples(tuple({"x": (1 + rng.uniform(-1e-3, 1e-3, (1, 16))).astype(np.float32),
                             "u": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(8)),
                      "near one", False, "d")
    cfg = PrecisionConfig(mode="bf16", auto_mixed=True)
    plain, _ = to_fp16(model, PrecisionConfig(mode="bf16"))
    assert not within(_outputs(model, samples), _outputs(plain, samples), *PRECISION_TOLERANCES["bf16"], scaled=True)
    low, records, kept, entry = auto_mixed(model, cfg, samples, PRECISION_TOLERANCES["bf16"])
    assert sorted(kept) == ["matmul", "sub"] and records[0].name == "to_bf16"
    assert node_precision(gs.import_onnx(low)) == {"matmul": "fp32", "sub": "fp32", "tanh": "bf16", "add": "bf16"}
    assert within(_outputs(model, samples), _outputs(low, samples), *PRECISION_TOLERANCES["bf16"], scaled=True)
    assert not entry["budget_exhausted"]


def test_control_flow_bodies_stay_float32():
    """An If whose branches compute: kept float32 with its bodies, so the bf16 graph still runs (emulated) on CPU."""
    def branch(name, factor):
        k = numpy_helper.from_array(np.array(factor, np.float32), f"{name}_k")
        return helper.make_graph([helper.make_node("Mul", ["r", f"{name}_k"], [f"{name}_y"])], name, [],
                                 [helper.make_tensor_value_info(f"{name}_y", F32, [4])], [k])

    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("ReduceMax", ["x"], ["m"], name="max", keepdims=0),
             helper.make_node("Greater", ["m", "zero"], ["c"], name="positive"),
             helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch("then", 2.0),
                              else_branch=branch("else", 3.0))]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [4])], [helper.make_tensor_value_info("y", F32, [4])],
                   [numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    low, records = _lower(model)
    onnx.checker.check_model(low, full_check=True)
    kept = {k["op"]: k["reason"] for k in records[0].stats["kept_fp32"]}
    assert "body stays float32" in kept["If"]
    body = next(n for n in low.graph.node if n.op_type == "If").attribute[0].g
    assert {i.data_type for i in body.initializer} == {F32}
    x = np.array([-1.0, 0.3, 2.0, 7.1], np.float32)
    (y,) = validation_session(low).run(None, {"x": x})
    np.testing.assert_allclose(y, 2 * np.maximum(x, 0), rtol=2 ** -8)  # Relu in bfloat16, the branch in float32

