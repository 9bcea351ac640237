"""Dtype rules (passes/rules/dtypes.py), each three ways: structure, numerics vs onnxruntime, onnx.checker;
then a second application changes nothing and check-trt finds nothing left; then real tf2onnx exports."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper

import passes
from passes import InferShapes, fingerprint
from passes.rewrite_tensorrt import RewriteTensorRT
from passes.rules.dtypes import CumSumIntegerScan, Float64ToFloat32, Uint8InputRegion
from passes.trt_support import check_model
from tests.conftest import ort_run

U8, I32, I64, F, F16, D = (TensorProto.UINT8, TensorProto.INT32, TensorProto.INT64, TensorProto.FLOAT,
                           TensorProto.FLOAT16, TensorProto.DOUBLE)
RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset <= 17 else 10
    onnx.checker.check_model(m, full_check=True)  # valid ONNX to begin with: only TensorRT may object
    return m


def _vi(name, t, shape):
    return helper.make_tensor_value_info(name, t, None if shape is None else list(shape))


def _c(name, arr, dtype=None):
    return onnx.numpy_helper.from_array(np.asarray(arr, dtype=dtype), name)


def _rewrite(model, rules):
    """What the pipeline does before the catalogue (infer_shapes), then the rules; returns graph, stats, model."""
    graph = gs.import_onnx(model)
    InferShapes().run(graph)
    result = RewriteTensorRT(rules).run(graph)
    return graph, result, gs.export_onnx(graph)


def _unchanged_on_second_run(graph, rules):
    before = fingerprint(graph)
    again = RewriteTensorRT(rules).run(graph)
    assert not again.changed and not again.stats["applied"] and fingerprint(graph) == before


def _elem_types(model) -> dict[str, int]:
    m = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*m.graph.input, *m.graph.value_info, *m.graph.output]}
    types.update({i.name: i.data_type for i in m.graph.initializer})
    return types


def _trt_findings(model, nodes=None):
    return [f for f in check_model(model).findings if nodes is None or f.node in nodes]


# --- uint8_input_region ------------------------------------------------------------------------------------------

def _uint8_model():
    """Two uint8 images through Concat, Transpose, Pad(value 7), reverse-Slice, Resize nearest, Gather, Where;
    leaving as float (Cast), int32 (Cast), uint8 (two graph outputs) and a Shape."""
    nodes = [
        helper.make_node("Concat", ["x", "y"], ["c"], name="concat", axis=3),
        helper.make_node("Transpose", ["c"], ["ct"], name="transpose", perm=[0, 3, 1, 2]),
        helper.make_node("Pad", ["ct", "pads", "seven"], ["p"], name="pad"),
        helper.make_node("Slice", ["p", "start", "end", "ax3", "minus1"], ["r"], name="reverse"),
        helper.make_node("Resize", ["r", "", "scales"], ["rz"], name="resize", mode="nearest"),
        helper.make_node("Cast", ["rz"], ["f"], name="to_float", to=F),
        helper.make_node("Cast", ["r"], ["i"], name="to_int32", to=I32),
        helper.make_node("Gather", ["p", "idx"], ["g"], name="gather", axis=1),
        helper.make_node("Greater", ["r", "hundred"], ["gt"], name="greater"),
        helper.make_node("Where", ["gt", "r", "zero"], ["w"], name="where"),
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
    ]
    inits = [_c("pads", [0, 0, 1, 1, 0, 0, 1, 1], np.int64), _c("seven", 7, np.uint8),
             _c("start", [-1], np.int64), _c("end", [np.iinfo(np.int64).min], np.int64), _c("ax3", [3], np.int64),
             _c("minus1", [-1], np.int64), _c("scales", [1, 1, 2, 2], np.float32), _c("idx", [0, 2], np.int64),
             _c("hundred", 100, np.uint8), _c("zero", 0, np.uint8)]
    return _model(nodes, [_vi("x", U8, (1, 4, 5, 3)), _vi("y", U8, (1, 4, 5, 3))],
                  [_vi("f", F, (1, 6, 12, 14)), _vi("i", I32, (1, 6, 6, 7)), _vi("g", U8, (1, 2, 6, 7)),
                   _vi("w", U8, (1, 6, 6, 7)), _vi("s", I64, (4,))], inits)


def _u8_feed(model):
    return {v.name: RNG.integers(0, 256, [d.dim_value for d in v.type.tensor_type.shape.dim], dtype=np.uint8)
            for v in model.graph.input}


def test_uint8_region_runs_in_float32_exactly():
    model = _uint8_model()
    region = ["concat", "transpose", "pad", "reverse", "resize", "to_float", "to_int32", "gather", "greater",
              "where", "shape"]
    # flagged before (check-trt reads a node's dtype off input 0, which for Where is the bool condition)
    assert {f.node for f in _trt_findings(model)} >= set(region) - {"where"}
    graph, result, out = _rewrite(model, [Uint8InputRegion()])
    assert result.changed and result.stats["applied"] == {"uint8_input_region": ["concat"]}
    # structure: uint8 only at the graph inputs and the uint8 outputs; each input read by one Cast(to=FLOAT)
    u8 = sorted(name for name, t in _elem_types(out).items() if t == U8)
    assert u8 == ["g", "w", "x", "y"]
    for name in ("x", "y"):
        readers = [n for n in out.graph.node if name in n.input]
        assert [(n.op_type, n.attribute[0].i) for n in readers] == [("Cast", F)]
    producers = {o: n for n in out.graph.node for o in n.output}
    assert producers["f"].op_type == "Resize"  # the terminal Cast(f32→f32) disappeared
    assert producers["i"].op_type == "Cast" and producers["g"].op_type == "Cast" and producers["w"].op_type == "Cast"
    assert [(o.name, o.type.tensor_type.elem_type) for o in out.graph.output] == \
        [(o.name, o.type.tensor_type.elem_type) for o in model.graph.output]
    assert _elem_types(out)[producers["p"].input[2]] == F  # the Pad value became a float32 constant
    onnx.checker.check_model(out, full_check=True)
    feed = _u8_feed(model)
    want, got = ort_run(model, feed), ort_run(out, feed)
    for name in want:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_array_equal(got[name], want[name])
    assert _trt_findings(out) == []
    _unchanged_on_second_run(graph, [Uint8InputRegion()])


def test_uint8_input_cast_straight_to_float_keeps_working():
    """Only Casts read the input: nothing for the rule (and TensorRT accepts it)."""
    model = _model([helper.make_node("Cast", ["x"], ["f"], name="cast", to=F)], [_vi("x", U8, (2, 3))],
                   [_vi("f", F, (2, 3))])
    assert _trt_findings(model) == []
    _, result, _ = _rewrite(model, [Uint8InputRegion()])
    assert not result.changed and result.stats["refused"] == []


def test_uint8_region_to_graph_output_is_cast_back_and_trt_accepts_it():
    """x:u8 → Transpose → y (uint8 output), and two Cast(to=FLOAT) outputs of the same tensor: y gets
    Cast(f32→u8), which check-trt does not flag; one float Cast goes, the other stays (two outputs, one tensor)."""
    nodes = [helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[1, 0]),
             helper.make_node("Cast", ["y"], ["f1"], name="f1", to=F),
             helper.make_node("Cast", ["y"], ["f2"], name="f2", to=F)]
    model = _model(nodes, [_vi("x", U8, (2, 3))], [_vi("y", U8, (3, 2)), _vi("f1", F, (3, 2)), _vi("f2", F, (3, 2))])
    graph, result, out = _rewrite(model, [Uint8InputRegion()])
    assert sorted(n.op_type for n in out.graph.node) == ["Cast", "Cast", "Cast", "Transpose"]
    producers = {o: n.op_type for n in out.graph.node for o in n.output}
    assert (producers["y"], producers["f1"], producers["f2"]) == ("Cast", "Transpose", "Cast")
    assert [(o.name, o.type.tensor_type.elem_type) for o in out.graph.output] == [("y", U8), ("f1", F), ("f2", F)]
    onnx.checker.check_model(out, full_check=True)
    feed = _u8_feed(model)
    want, got = ort_run(model, feed), ort_run(out, feed)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert _trt_findings(out) == []
    _unchanged_on_second_run(graph, [Uint8InputRegion()])


def _refused_u8(node, extra_inputs=(), inits=(), before=()):
    nodes = [*before, node, helper.make_node("Cast", [node.output[0]], ["out"], name="cast", to=F)]
    return _model(nodes, [_vi("x", U8, (1, 2, 4, 4)), *extra_inputs], [_vi("out", F, ("a", "b", "c", "d"))], inits)


@pytest.mark.parametrize("model, reason", [
    (_refused_u8(helper.make_node("Add", ["x", "k"], ["a"], name="n"), inits=[_c("k", 200, np.uint8)]),
     "uint8 region of input 'x': Add 'n' is arithmetic; uint8 wraps at 256 where float32 would not"),
    (_refused_u8(helper.make_node("ReduceMax", ["x"], ["a"], name="n", keepdims=1)),
     "uint8 region of input 'x': ReduceMax 'n' is not known to be pure data movement"),
    (_refused_u8(helper.make_node("Resize", ["x", "", "sc"], ["a"], name="n", mode="linear"),
                 inits=[_c("sc", [1, 1, 2, 2], np.float32)]),
     "uint8 region of input 'x': Resize 'n' interpolates (mode 'linear'); uint8 rounds where float32 would not"),
])
def test_uint8_region_refuses_with_reason(model, reason):
    graph, result, out = _rewrite(model, [Uint8InputRegion()])
    assert not result.changed
    assert result.stats["refused"] == [{"rule": "uint8_input_region", "node": "n", "reason": reason}]


def test_uint8_region_refuses_a_read_inside_a_subgraph():
    branch = [helper.make_graph([helper.make_node("Identity", ["x"], [f"{b}_o"], name=f"{b}_id")], b, [],
                                [_vi(f"{b}_o", U8, (1, 2, 4, 4))]) for b in ("then", "else")]
    model = _refused_u8(helper.make_node("Transpose", ["x"], ["a"], name="n"),
                        extra_inputs=[_vi("c", TensorProto.BOOL, ())],
                        before=[helper.make_node("If", ["c"], ["u"], name="if", then_branch=branch[0],
                                                 else_branch=branch[1])])
    model.graph.output.append(_vi("u", U8, (1, 2, 4, 4)))
    _, result, _ = _rewrite(model, [Uint8InputRegion()])
    assert not result.changed
    assert result.stats["refused"][0]["reason"].endswith("Identity 'else_id' reads it inside a subgraph")


def test_uint8_region_refuses_uint8_made_inside_the_network():
    """Concat(x, Cast(z→u8)): the second uint8 tensor comes from a Cast, whose rounding/wrapping float32 lacks."""
    model = _refused_u8(helper.make_node("Concat", ["x", "zu"], ["a"], name="n", axis=1),
                        extra_inputs=[_vi("z", F, (1, 2, 4, 4))],
                        before=[helper.make_node("Cast", ["z"], ["zu"], name="to_u8", to=U8)])
    _, result, _ = _rewrite(model, [Uint8InputRegion()])
    assert not result.changed
    assert result.stats["refused"][0]["reason"] == (
        "uint8 region of input 'x': Concat 'n' also reads uint8 tensor 'zu' made by Cast 'to_u8', outside the region")


# --- float64_to_float32 ------------------------------------------------------------------------------------------

def _float64_model(w=None):
    """y = (x @ W + Constant) * Cast(z, DOUBLE) + ConstantOfShape(value=0.5 double); t = Cast(x, FLOAT)."""
    w = np.array([[1.5, -2.0], [0.25, 3.0], [1e-3, 7.0]]) if w is None else w
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"], name="matmul"),
        helper.make_node("Constant", [], ["b"], name="bias", value=_c("bv", [0.1, -0.2], np.float64)),
        helper.make_node("Add", ["xw", "b"], ["a"], name="add"),
        helper.make_node("Cast", ["z"], ["zd"], name="z_to_double", to=D),
        helper.make_node("Mul", ["a", "zd"], ["m"], name="mul"),
        helper.make_node("ConstantOfShape", ["shape"], ["half"], name="cos",
                         value=_c("hv", [0.5], np.float64)),
        helper.make_node("Add", ["m", "half"], ["y"], name="add_half"),
        helper.make_node("Cast", ["x"], ["t"], name="x_to_float", to=F),
    ]
    return _model(nodes, [_vi("x", D, (2, 3)), _vi("z", F, (2, 2))], [_vi("y", D, (2, 2)), _vi("t", F, (2, 3))],
                  [_c("w", w, np.float64), _c("shape", [2, 2], np.int64)])


def test_float64_becomes_float32_everywhere():
    model = _float64_model()
    assert _trt_findings(model)  # flagged before
    graph, result, out = _rewrite(model, [Float64ToFloat32()])
    assert result.stats["applied"] == {"float64_to_float32": ["matmul"]}  # one graph-wide rewrite, one anchor
    assert D not in _elem_types(out).values()
    assert all(a.i != D for n in out.graph.node for a in n.attribute if a.name == "to")
    assert all(a.t.data_type != D for n in out.graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR)
    ops = {n.name: n for n in out.graph.node}
    assert "z_to_double" not in ops and "z" in ops["mul"].input  # Cast(f32→f64) became the identity: dropped
    assert "x_to_float" in ops  # graph input → graph output: the Cast keeps the two names apart
    assert [(v.name, v.type.tensor_type.elem_type) for v in out.graph.input] == [("x", F), ("z", F)]
    assert [(v.name, v.type.tensor_type.elem_type) for v in out.graph.output] == [("y", F), ("t", F)]
    onnx.checker.check_model(out, full_check=True)
    feed = {"x": RNG.normal(size=(2, 3)), "z": RNG.normal(size=(2, 2)).astype(np.float32)}
    want = ort_run(model, feed)
    got = ort_run(out, {"x": feed["x"].astype(np.float32), "z": feed["z"]})  # callers cast the changed inputs
    for name in want:
        assert got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
    assert _trt_findings(out) == []
    _unchanged_on_second_run(graph, [Float64ToFloat32()])


def test_float64_in_if_branches():
    """Float64 constants inside If branches (subgraphs) convert with the outer graph."""
    def branch(name, v):
        return helper.make_graph([helper.make_node("Add", ["x", f"{name}_c"], [f"{name}_o"], name=f"{name}_add")],
                                 name, [], [_vi(f"{name}_o", D, (2,))], initializer=[_c(f"{name}_c", [v, v])])
    model = _model([helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch("then", 1.5),
                                     else_branch=branch("else", -2.5))],
                   [_vi("c", TensorProto.BOOL, ()), _vi("x", D, (2,))], [_vi("y", D, (2,))])
    assert {f.node for f in _trt_findings(model)} == {"if", "then_add", "else_add"}  # float64 in and out of the If
    graph, result, out = _rewrite(model, [Float64ToFloat32()])
    assert result.stats["applied"] == {"float64_to_float32": ["if"]}
    onnx.checker.check_model(out, full_check=True)
    x = RNG.normal(size=2)
    for c in (True, False):
        want = ort_run(model, {"c": np.array(c), "x": x})["y"]
        np.testing.assert_allclose(ort_run(out, {"c": np.array(c), "x": x.astype(np.float32)})["y"], want, rtol=1e-6)
    assert _trt_findings(out) == []
    _unchanged_on_second_run(graph, [Float64ToFloat32()])


def test_float64_rewrite_reports_the_interface_it_changed():
    graph = gs.import_onnx(_float64_model())
    assert Float64ToFloat32().apply_graph(graph) == {"float32_io": {"inputs": ["x"], "outputs": ["y"]}}


def test_float64_refuses_a_constant_beyond_float32_once():
    model = _float64_model(w=np.array([[1.5, -2.0], [1e300, 3.0], [np.inf, 7.0]]))
    graph, result, out = _rewrite(model, [Float64ToFloat32()])
    assert not result.changed
    assert result.stats["refused"] == [{
        "rule": "float64_to_float32", "node": "matmul",
        "reason": "float64 constant 'w' holds 1e+300, beyond float32's range (±3.403e+38): as float32 it would be inf"}]


def test_float64_keeps_infinities():
    model = _float64_model(w=np.array([[1.5, -2.0], [-np.inf, 3.0], [np.inf, 7.0]]))
    _, result, out = _rewrite(model, [Float64ToFloat32()])
    assert result.changed and D not in _elem_types(out).values()
    w = {i.name: onnx.numpy_helper.to_array(i) for i in out.graph.initializer}["w"]
    assert w.dtype == np.float32 and np.isneginf(w[1, 0]) and np.isposinf(w[2, 0])


# --- cumsum_integer_scan -----------------------------------------------------------------------------------------

def _cumsum(dtype, shape, axis, exclusive=0, reverse=0, axis_input=None):
    n = helper.make_node("CumSum", ["x", "axis"], ["y"], name="cumsum", exclusive=exclusive, reverse=reverse)
    inputs = [_vi("x", dtype, shape)] + ([axis_input] if axis_input else [])
    return _model([n], inputs, [_vi("y", dtype, shape)], [] if axis_input else [_c("axis", axis, np.int32)])


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("dtype, shape, axis", [(I64, (3, 13), 1), (I64, (5, 1, 4), -3), (I32, (2, 8), 1),
                                                (I64, (2, 1), 1)])
def test_cumsum_integer_scan_is_exact(dtype, shape, axis, exclusive, reverse):
    model = _cumsum(dtype, shape, axis, exclusive, reverse)
    assert _trt_findings(model)  # integer CumSum: flagged before
    graph, result, out = _rewrite(model, [CumSumIntegerScan()])
    assert result.changed and "CumSum" not in {n.op_type for n in out.graph.node}
    steps = int(np.ceil(np.log2(shape[axis]))) if shape[axis] > 1 else 0
    assert sum(n.op_type == "Add" for n in out.graph.node) == steps
    onnx.checker.check_model(out, full_check=True)
    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(dtype)
    big = 2 ** 40 if dtype == I64 else 2 ** 20  # far beyond float32's exact integers, for int64
    feed = {"x": RNG.integers(-big, big, shape).astype(np_dtype)}
    got, want = ort_run(out, feed)["y"], ort_run(model, feed)["y"]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert _trt_findings(out) == []
    _unchanged_on_second_run(graph, [CumSumIntegerScan()])


@pytest.mark.parametrize("model, reason", [
    (_cumsum(I64, ("N", 4), 0), "the CumSum axis 0 has no static length (it sets the number of scan steps)"),
    (_cumsum(I64, (2, 4), 0, axis_input=_vi("axis", I32, ())), "the CumSum axis is not a constant"),
])
def test_cumsum_integer_scan_refuses_with_reason(model, reason):
    _, result, _ = _rewrite(model, [CumSumIntegerScan()])
    assert not result.changed
    assert result.stats["refused"] == [{"rule": "cumsum_integer_scan", "node": "cumsum", "reason": reason}]


# --- the catalogue in the default pipeline, on what tf2onnx really emits -----------------------------------------

@pytest.fixture(scope="module")
def tf_exports(tmp_path_factory):
    """tf.reverse + cast on a uint8 image, cumsum on int64, a float64 matmul: one SavedModel, three signatures."""
    tf = pytest.importorskip("tensorflow")
    from compiler.api import export_model
    from compiler.config import ExportConfig

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4, 5, 3], tf.uint8)])
        def rev(self, x):
            return {"y": tf.cast(tf.reverse(x, axis=[2]), tf.float32) / 255.0}

        @tf.function(input_signature=[tf.TensorSpec([2, 6], tf.int64)])
        def cumsum(self, x):
            return {"y": tf.cumsum(x, axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float64)])
        def matmul(self, x):
            return {"y": tf.matmul(x, tf.constant([[1.5, -2.0], [0.25, 3.0], [1e-3, 7.0]], tf.float64))}

    d = tmp_path_factory.mktemp("dtypes")
    m = M()
    tf.saved_model.save(m, str(d / "sm"), signatures={"rev": m.rev, "cumsum": m.cumsum, "matmul": m.matmul})
    return {name: onnx.load(str(export_model(d / "sm", d / f"{name}.onnx", ExportConfig(signature=name)).path))
            for name in ("rev", "cumsum", "matmul")}


@pytest.mark.tf
@pytest.mark.parametrize("name, rule, emitted, feed", [
    ("rev", "uint8_input_region", {"Transpose", "ReverseSequence"},
     {"x": RNG.integers(0, 256, (1, 4, 5, 3), dtype=np.uint8)}),
    ("cumsum", "cumsum_integer_scan", {"CumSum"}, {"x": RNG.integers(-2 ** 40, 2 ** 40, (2, 6), dtype=np.int64)}),
    ("matmul", "float64_to_float32", {"MatMul"}, {"x": RNG.normal(size=(2, 3))}),
])
def test_default_pipeline_fixes_what_tf2onnx_emits(tf_exports, name, rule, emitted, feed):
    model = tf_exports[name]
    assert emitted <= {n.op_type for n in model.graph.node}  # the pattern the rule is written for
    assert _trt_findings(model)
    manager = passes.PassManager(passes.default_pipeline())
    out = manager.run(model)
    fired = [r.stats["applied"] for r in manager.records if r.name == "rewrite_tensorrt" and r.changed]
    assert [list(a) for a in fired] == [[rule]]
    onnx.checker.check_model(out, full_check=True)
    assert _trt_findings(out) == []
    cast = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in feed.items()}
    want, got = ort_run(model, feed), ort_run(out, cast)
    for k in want:
        if want[k].dtype == np.float64:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-6)
        else:
            assert got[k].dtype == want[k].dtype
            np.testing.assert_array_equal(got[k], want[k])
