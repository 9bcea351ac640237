"""fuse_into_conv: structure, numerics vs onnxruntime, onnx.checker, a second run, and what it must leave alone."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper

from passes import FuseIntoConv
from tests.conftest import ort_run

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 3, 8, 8)).astype(np.float32)


def _c(name, arr):
    return onnx.numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _model(nodes, inits, out_shape=(2, 4, 8, 8), outputs=("y",)):
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, X.shape)],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, out_shape) for o in outputs],
                          initializer=[_c("W", RNG.normal(size=(4, 3, 3, 3))), _c("B", RNG.normal(size=(4,))), *inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _conv(inp="x", out="c", bias=True):
    return helper.make_node("Conv", [inp, "W", "B"] if bias else [inp, "W"], [out], pads=[1, 1, 1, 1], name="conv")


def _run(model):
    graph = gs.import_onnx(model)
    result = FuseIntoConv().run(graph)
    return graph, result, gs.export_onnx(graph)


@pytest.mark.parametrize("bias", [True, False])
def test_batchnorm_as_mul_add_sub_folds_into_the_conv(bias):
    nodes = [_conv(bias=bias), helper.make_node("Mul", ["c", "s"], ["m"]), helper.make_node("Add", ["t", "m"], ["a"]),
             helper.make_node("Sub", ["a", "u"], ["y"])]
    model = _model(nodes, [_c("s", RNG.uniform(0.5, 2, (4, 1, 1))), _c("t", RNG.normal(size=(1, 4, 1, 1))),
                           _c("u", np.float32(0.25))])
    graph, result, out = _run(model)
    assert result.changed and result.stats == {"affine": 3, "pad": 0}
    assert [n.op_type for n in out.graph.node] == ["Conv"] and out.graph.node[0].output == ["y"]
    onnx.checker.check_model(out, full_check=True)
    np.testing.assert_allclose(ort_run(out, {"x": X})["y"], ort_run(model, {"x": X})["y"], rtol=1e-5, atol=1e-5)
    assert not FuseIntoConv().run(graph).changed


def test_zero_pad_folds_into_conv_pads():
    nodes = [helper.make_node("Pad", ["x", "p"], ["px"], mode="constant"), _conv("px", "y")]
    model = _model(nodes, [onnx.numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 0, 1], np.int64), "p")],
                   out_shape=(2, 4, 9, 11))
    graph, result, out = _run(model)
    assert result.stats == {"affine": 0, "pad": 1}
    conv = out.graph.node[0]
    assert [n.op_type for n in out.graph.node] == ["Conv"]
    assert list(next(a for a in conv.attribute if a.name == "pads").ints) == [2, 3, 1, 2]
    onnx.checker.check_model(out, full_check=True)
    np.testing.assert_array_equal(ort_run(out, {"x": X})["y"], ort_run(model, {"x": X})["y"])


@pytest.mark.parametrize("case", ["spatial_scale", "two_readers", "reflect_pad", "t_minus_conv"])
def test_leaves_what_is_not_a_per_channel_affine(case):
    if case == "spatial_scale":  # a scale that varies over H is not per channel
        nodes, inits, outs = [_conv(), helper.make_node("Mul", ["c", "s"], ["y"])], \
            [_c("s", RNG.normal(size=(1, 1, 8, 1)))], ("y",)
    elif case == "two_readers":
        nodes, inits, outs = [_conv(), helper.make_node("Mul", ["c", "s"], ["y"]),
                              helper.make_node("Relu", ["c"], ["r"])], [_c("s", RNG.normal(size=(4, 1, 1)))], ("y", "r")
    elif case == "reflect_pad":
        nodes, inits, outs = [helper.make_node("Pad", ["x", "p"], ["px"], mode="reflect"), _conv("px", "y")], \
            [onnx.numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p")], ("y",)
    else:
        nodes, inits, outs = [_conv(), helper.make_node("Sub", ["t", "c"], ["y"])], [_c("t", np.float32(1))], ("y",)
    _, result, _ = _run(_model(nodes, inits, outputs=outs))
    assert not result.changed
