"""layout_io and eliminate_transposes: structure, numerics vs onnxruntime (exact where only data moves),
onnx.checker, idempotence."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper

from passes import EliminateTransposes, InferShapes, LayoutIO, PassError, PassManager, default_pipeline, fingerprint
from tests.conftest import ort_run

NCHW = (2, 3, 4, 5)
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _c(name, arr):
    return onnx.numpy_helper.from_array(np.asarray(arr), name)


def _t(inp, out, perm, name=None):
    return helper.make_node("Transpose", [inp], [out], perm=perm, name=name or out)


# Each case: (model, expected Transposes after the pass). All are x (NCHW) → NHWC work → back to NCHW.
def _cancel_pair():
    return _model([_t("x", "a", TO_NHWC), _t("a", "y", TO_NCHW)], [_vi("x", NCHW)], [_vi("y", NCHW)]), 0


def _merge_pair():
    return _model([_t("x", "a", TO_NHWC), _t("a", "y", [0, 2, 1, 3])], [_vi("x", NCHW)], [_vi("y", (2, 5, 4, 3))]), 1


def _unary_and_broadcast_const():
    bias = RNG.normal(size=(3,)).astype(np.float32)  # per channel, on the NHWC last axis
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("Add", ["b", "bias"], ["c"], name="add"),
             helper.make_node("Mul", ["c", "half"], ["d"], name="mul"), _t("d", "y", TO_NCHW)]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", NCHW)],
                  [_c("bias", bias), _c("half", np.float32(0.5))]), 0


def _binary_of_two_transposes():
    nodes = [_t("x", "a", TO_NHWC), _t("z", "b", TO_NHWC), helper.make_node("Sub", ["a", "b"], ["c"], name="sub"),
             _t("c", "y", TO_NCHW)]
    return _model(nodes, [_vi("x", NCHW), _vi("z", NCHW)], [_vi("y", NCHW)]), 0


def _concat():
    nodes = [_t("x", "a", TO_NHWC), _t("z", "b", TO_NHWC), helper.make_node("Concat", ["a", "b"], ["c"], axis=3),
             _t("c", "y", TO_NCHW)]
    return _model(nodes, [_vi("x", NCHW), _vi("z", NCHW)], [_vi("y", (2, 6, 4, 5))]), 0


def _reduce_drop_axes():
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("ReduceMean", ["a"], ["y"], axes=[1, 2], keepdims=0)]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", (2, 3))], opset=17), 0


def _reduce_keepdims_input_axes():
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("ReduceSum", ["a", "axes"], ["b"], keepdims=1),
             _t("b", "y", TO_NCHW)]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", (2, 1, 4, 1))], [_c("axes", np.array([2, 3], np.int64))]), 0


def _pad_softmax_slice():
    nodes = [_t("x", "a", TO_NHWC),
             helper.make_node("Pad", ["a", "pads", "zero"], ["b"], mode="constant"),
             helper.make_node("Softmax", ["b"], ["c"], axis=-1),
             helper.make_node("Slice", ["c", "st", "en", "ax"], ["d"]), _t("d", "y", TO_NCHW)]
    inits = [_c("pads", np.array([0, 1, 0, 0, 0, 2, 1, 0], np.int64)), _c("zero", np.float32(0)),
             _c("st", np.array([1], np.int64)), _c("en", np.array([5], np.int64)), _c("ax", np.array([1], np.int64))]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", (2, 3, 4, 6))], inits), 0


def _resize():
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("Resize", ["a", "", "scales"], ["b"], mode="nearest"),
             _t("b", "y", TO_NCHW)]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", (2, 3, 8, 10))],
                  [_c("scales", np.array([1, 2, 2, 1], np.float32))]), 0


def _split():
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("Split", ["a", "sizes"], ["b", "c"], axis=1),
             _t("b", "y1", TO_NCHW), _t("c", "y2", TO_NCHW)]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y1", (2, 3, 1, 5)), _vi("y2", (2, 3, 3, 5))],
                  [_c("sizes", np.array([1, 3], np.int64))]), 0


def _fold_constant():
    w = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)
    nodes = [_t("w", "wt", TO_NCHW), helper.make_node("Add", ["x", "wt"], ["y"])]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", NCHW)], [_c("w", w)]), 0


def _matmul_as_conv1x1():
    """A Dense on channels-last: T_p(x)·W = T_p(Conv1x1(x, Wᵀ)), and its bias Add follows."""
    w, b = RNG.normal(size=(3, 6)).astype(np.float32), RNG.normal(size=(6,)).astype(np.float32)
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("MatMul", ["a", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["c"]), _t("c", "y", TO_NCHW)]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", (2, 6, 4, 5))], [_c("w", w), _c("b", b)]), 0


def _matmul_keeps_last_axis():
    w = RNG.normal(size=(5, 2)).astype(np.float32)
    nodes = [_t("x", "a", [0, 2, 1, 3]), helper.make_node("MatMul", ["a", "w"], ["m"]), _t("m", "y", [0, 2, 1, 3])]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", (2, 3, 4, 2))], [_c("w", w)]), 0


def _layernorm_last_axis(opset=17):
    """LayerNormalization over NHWC's channels becomes the mean-variance chain over NCHW's axis 1."""
    scale, bias = RNG.normal(1, 0.2, size=(3,)).astype(np.float32), RNG.normal(size=(3,)).astype(np.float32)
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("LayerNormalization", ["a", "s", "b"], ["n"], axis=-1,
                                                      epsilon=1e-3), _t("n", "y", TO_NCHW)]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", NCHW)], [_c("s", scale), _c("b", bias)], opset=opset), 0


def _layernorm_keeps_last_axis():
    scale = RNG.normal(1, 0.2, size=(5,)).astype(np.float32)
    nodes = [_t("x", "a", [0, 2, 1, 3]), helper.make_node("LayerNormalization", ["a", "s"], ["n"], axis=-1),
             _t("n", "y", [0, 2, 1, 3])]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", NCHW)], [_c("s", scale)]), 0


def _layernorm_opset18():
    return _layernorm_last_axis(opset=18)


def _reshape_merges_axes():
    """ViT's stem: [N, C, H, W] → T → [N, H, W, C] → [N, HW, C] is [N, C, HW] → T, which meets its partner."""
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("Reshape", ["a", "shape"], ["r"]), _t("r", "y", [0, 2, 1])]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", (2, 3, 20))], [_c("shape", np.array([2, 20, 3], np.int64))]), 0


def _global_average_pool():
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("GlobalAveragePool", ["a"], ["g"]), _t("g", "y", TO_NCHW)]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", (2, 1, 4, 1))]), 0


def _fork_that_joins():
    """GELU's shape: T(x) read by two branches that meet again; only the branch sweep can push it."""
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("Mul", ["a", "half"], ["m"]), helper.make_node("Neg", ["a"], ["n"]),
             helper.make_node("Erf", ["n"], ["e"]), helper.make_node("Mul", ["m", "e"], ["g"]), _t("g", "y", TO_NCHW)]
    return _model(nodes, [_vi("x", NCHW)], [_vi("y", NCHW)], [_c("half", np.float32(0.5))]), 0


def _unit_axes_reshape():
    """tf2onnx's Transpose of a [N, 1, 1, C] map written as a Reshape, then a Dense and a Transpose back."""
    w = RNG.normal(size=(3, 6)).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["x", "nhwc"], ["a"]), helper.make_node("MatMul", ["a", "w"], ["m"]),
             _t("m", "t", TO_NCHW), helper.make_node("Add", ["t", "t"], ["y"])]
    return _model(nodes, [_vi("x", (2, 3, 1, 1))], [_vi("y", (2, 6, 1, 1))],
                  [_c("nhwc", np.array([2, 1, 1, 3], np.int64)), _c("w", w)]), 0


CASES = {f.__name__.strip("_"): f for f in (_cancel_pair, _merge_pair, _unary_and_broadcast_const,
                                            _binary_of_two_transposes, _concat, _reduce_drop_axes,
                                            _reduce_keepdims_input_axes, _pad_softmax_slice, _resize, _split,
                                            _fold_constant, _matmul_as_conv1x1, _matmul_keeps_last_axis,
                                            _layernorm_last_axis, _layernorm_keeps_last_axis, _layernorm_opset18, _reshape_merges_axes,
                                            _global_average_pool, _fork_that_joins, _unit_axes_reshape)}
# Rewrites that sum or round in another order (1×1 Conv for MatMul, ReduceMean for GlobalAveragePool,
# LayerNormalization decomposed); the others only move data and must be bit-identical.
INEXACT = {"matmul_as_conv1x1", "layernorm_last_axis", "layernorm_opset18", "unit_axes_reshape",
           "global_average_pool"}


def _feed(model):
    return {i.name: RNG.normal(size=[d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in model.graph.input}


@pytest.mark.parametrize("case", sorted(CASES))
def test_eliminate_transposes_cases(case):
    model, expected = CASES[case]()
    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(model))
    result = EliminateTransposes().run(graph)
    out = gs.export_onnx(graph)
    ops = [n.op_type for n in out.graph.node]
    assert result.changed
    assert ops.count("Transpose") == expected, ops  # (x → T → T⁻¹ → y keeps an Identity: y is an output)
    assert result.stats["transposes_after"] == expected
    onnx.checker.check_model(out, full_check=True)
    feed = _feed(model)
    want, got = ort_run(model, feed), ort_run(out, feed)
    for name in want:
        if case in INEXACT:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(got[name], want[name])
    before = fingerprint(graph)
    assert not EliminateTransposes().run(graph).changed
    assert fingerprint(graph) == before


def test_eliminate_transposes_keeps_a_fork_that_never_joins():
    """Pushing T(x) into two branches that end as graph outputs would leave two Transposes for one: the
    branch sweep's result is thrown away and the pass says it changed nothing."""
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Neg", ["a"], ["n"])]
    model = _model(nodes, [_vi("x", NCHW)], [_vi("r", (2, 4, 5, 3)), _vi("n", (2, 4, 5, 3))])
    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(model))
    before = fingerprint(graph)
    result = EliminateTransposes().run(graph)
    assert not result.changed and fingerprint(graph) == before
    assert result.stats["transposes_after"] == 1


@pytest.mark.parametrize("node, why", [
    (helper.make_node("MatMul", ["a", "wide"], ["m"]), "weight not rank 2"),
    (helper.make_node("LayerNormalization", ["a", "s4"], ["m"], axis=-2), "normalises two axes"),
    (helper.make_node("Reshape", ["a", "mix"], ["m"]), "merges H with C, not neighbours in NCHW"),
])
def test_eliminate_transposes_refuses_what_does_not_commute(node, why):
    inits = [_c("wide", RNG.normal(size=(4, 3, 6)).astype(np.float32)), _c("s4", np.ones((5, 3), np.float32)),
             _c("mix", np.array([2, 4, 15], np.int64))]
    model = _model([_t("x", "a", TO_NHWC), node], [_vi("x", NCHW)], [_vi("m", None)], inits)
    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(model))
    assert not EliminateTransposes().run(graph).changed, why


def test_eliminate_transposes_leaves_what_it_must():
    """A Transpose feeding a graph output stays; one with two consumers is not duplicated."""
    nodes = [_t("x", "a", TO_NHWC), helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Neg", ["a"], ["n"])]
    model = _model(nodes, [_vi("x", NCHW)], [_vi("a", (2, 4, 5, 3)), _vi("r", (2, 4, 5, 3)),
                                              _vi("n", (2, 4, 5, 3))])
    graph = gs.import_onnx(model)
    assert not EliminateTransposes().run(graph).changed


def test_layout_io_inputs_and_outputs_as_nchw():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    model = _model(nodes, [_vi("x", (2, 4, 5, 3))], [_vi("y", (2, 4, 5, 3))])
    manager = PassManager([LayoutIO(("x",), ("y",)), InferShapes(), EliminateTransposes()])
    out = manager.run(model)
    onnx.checker.check_model(out, full_check=True)
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in (out.graph.input[0], out.graph.output[0])]
    assert dims == [[2, 3, 4, 5], [2, 3, 4, 5]]
    assert [n.op_type for n in out.graph.node] == ["Relu"]  # both compensating Transposes cancelled
    x = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(ort_run(out, {"x": x.transpose(TO_NCHW)})["y"],
                                  np.maximum(x, 0).transpose(TO_NCHW))
    layout = next(r for r in manager.records if r.name == "layout_io")
    assert layout.stats["perms"] == {"inputs": {"x": TO_NCHW}, "outputs": {"y": TO_NCHW}}
    assert not any(r.changed for r in manager.records if r.iteration > 1)  # acts once per run


@pytest.mark.parametrize("layout, match", [(LayoutIO(nchw_in=("nope",)), "not a graph input"),
                                           (LayoutIO(nchw_out=("v",)), "rank is 2")])
def test_layout_io_refuses_with_reason(layout, match):
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Reshape", ["y", "two"], ["v"])]
    model = _model(nodes, [_vi("x", (2, 4, 5, 3))], [_vi("y", (2, 4, 5, 3)), _vi("v", (2, 60))],
                   [_c("two", np.array([2, -1], np.int64))])
    with pytest.raises(PassError, match=match):
        layout.run(gs.import_onnx(model))


def test_default_pipeline_makes_keras_cnn_transpose_free(exported):
    """The issue's goal: an NHWC CNN with its input made NCHW ends with zero Transposes."""
    model = onnx.load(str(exported["cnn_nhwc"]))
    assert sum(n.op_type == "Transpose" for n in model.graph.node) >= 1
    out = PassManager(default_pipeline(input_shapes={"image": (2, 32, 32, 3)}, inputs_as_nchw=("image",))).run(model)
    assert sum(n.op_type == "Transpose" for n in out.graph.node) == 0
    x = RNG.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(ort_run(out, {"image": x.transpose(TO_NCHW)})["output_0"],
                               ort_run(model, {"image": x})["output_0"], rtol=0, atol=1e-6)
