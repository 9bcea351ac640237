"""collapse_tensordot: structure, exact numerics vs onnxruntime, onnx.checker, idempotence, refusals."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper

from passes import CollapseTensordot, fingerprint
from tests.conftest import ort_run

RNG = np.random.default_rng(0)
X = (2, 4, 5, 3)


def _tensordot(flat=(40, 3), unflat=(2, 4, 5, 6), extra_reader=False):
    """x [2, 4, 5, 3] → Reshape [40, 3] → MatMul W [3, 6] → Reshape [2, 4, 5, 6], as tf2onnx writes a Dense."""
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["a"]), helper.make_node("MatMul", ["a", "w"], ["m"]),
             helper.make_node("Reshape", ["m", "unflat"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["a"], ["r"]))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    inits = [onnx.numpy_helper.from_array(np.array(flat, np.int64), "flat"),
             onnx.numpy_helper.from_array(RNG.normal(size=(3, 6)).astype(np.float32), "w"),
             onnx.numpy_helper.from_array(np.array(unflat, np.int64), "unflat")]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, X)], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def test_collapses_to_one_broadcasting_matmul():
    model = _tensordot()
    graph = gs.import_onnx(model)
    result = CollapseTensordot().run(graph)
    out = gs.export_onnx(graph)
    assert result.changed and result.stats == {"collapsed": 1}
    assert [n.op_type for n in out.graph.node] == ["MatMul"]
    onnx.checker.check_model(out, full_check=True)
    feed = {"x": RNG.normal(size=X).astype(np.float32)}
    np.testing.assert_array_equal(ort_run(out, feed)["y"], ort_run(model, feed)["y"])
    before = fingerprint(graph)
    assert not CollapseTensordot().run(graph).changed and fingerprint(graph) == before


@pytest.mark.parametrize("kwargs, why", [
    ({"unflat": (8, 5, 6)}, "the unflatten does not restore x's leading axes"),
    ({"extra_reader": True}, "the flattened tensor has another reader"),
])
def test_leaves_other_reshapes_alone(kwargs, why):
    graph = gs.import_onnx(_tensordot(**kwargs))
    assert not CollapseTensordot().run(graph).changed, why
