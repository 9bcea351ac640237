"""Small ONNX models for the fault corpus, built with onnx.helper (no TensorFlow): good ones to break, and bad ones.

Each builder returns a ``ModelProto``; ``save(model, path)`` writes it without the checks ``onnx.save`` would
not do anyway, so a deliberately broken model reaches the CLI as it is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
FLOAT = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset=OPSET, domains=()) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "case", list(inputs), list(outputs), list(initializers))
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=imports, producer_name="corpus")
    model.ir_version = 8
    return model


def vector(name="x", n=4, dtype=FLOAT):
    return helper.make_tensor_value_info(name, dtype, [1, n])


def relu(opset=OPSET) -> onnx.ModelProto:
    """y = Relu(x), x: float32 [1, 4]: a model every command accepts."""
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [vector("x")], [vector("y")], opset=opset)


def dynamic_relu() -> onnx.ModelProto:
    """y = Relu(x), x: float32 [N, C, 8] with dynamic N and C (for --input-shapes and --batch cases)."""
    x = helper.make_tensor_value_info("x", FLOAT, ["N", "C", 8])
    y = helper.make_tensor_value_info("y", FLOAT, ["N", "C", 8])
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y])


def batch_relu() -> onnx.ModelProto:
    """y = Relu(x), x: float32 [N, 4] with a dynamic batch only."""
    x = helper.make_tensor_value_info("x", FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", FLOAT, ["N", 4])
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y])


def endless_loop(trip_count: int = 2 ** 62, foldable: bool = False) -> onnx.ModelProto:
    """A Loop that adds 1 to its state ``trip_count`` times, then a MatMul: y = (x + trip_count) @ I, in effect
    forever.

    ``foldable``: the state starts from a constant, so constant folding would evaluate the Loop.
    """
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", FLOAT, [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", FLOAT, [1, 4])],
        [numpy_helper.from_array(np.ones((1, 4), np.float32), "one")])
    inits = [numpy_helper.from_array(np.array(trip_count, np.int64), "trips"),
             numpy_helper.from_array(np.array(True), "cond")]
    start = "x"
    nodes = []
    if foldable:
        inits.append(numpy_helper.from_array(np.zeros((1, 4), np.float32), "zeros"))
        start = "zeros"
    nodes.append(helper.make_node("Loop", ["trips", "cond", start], ["loop_out"], name="endless", body=body))
    nodes.append(helper.make_node("Add", ["loop_out", "x"], ["sum"], name="add"))
    nodes.append(helper.make_node("MatMul", ["sum", "w"], ["y"], name="matmul"))  # something to calibrate
    inits.append(numpy_helper.from_array(np.eye(4, dtype=np.float32), "w"))
    return _model(nodes, [vector("x")], [vector("y")], inits)


def huge_constant_of_shape(elements: int = 1_600_000_000) -> onnx.ModelProto:
    """y = x + ReduceSum(ConstantOfShape([elements])): folding would materialize ``elements`` floats (6.4 GB)."""
    inits = [numpy_helper.from_array(np.array([elements], np.int64), "shape")]
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"], name="big",
                              value=numpy_helper.from_array(np.ones(1, np.float32))),
             helper.make_node("ReduceSum", ["big"], ["total"], name="total", keepdims=0),
             helper.make_node("Add", ["x", "total"], ["y"], name="add")]
    return _model(nodes, [vector("x")], [vector("y")], inits)


def huge_expand() -> onnx.ModelProto:
    """y = ReduceMax(Expand(x, [200000, 100000, 4])): running it would allocate 320 GB."""
    inits = [numpy_helper.from_array(np.array([200_000, 100_000, 4], np.int64), "shape")]
    nodes = [helper.make_node("Expand", ["x", "shape"], ["wide"], name="expand"),
             helper.make_node("ReduceMax", ["wide"], ["y"], name="reduce", keepdims=0)]
    return _model(nodes, [vector("x")], [helper.make_tensor_value_info("y", FLOAT, [])], inits)


def unknown_op() -> onnx.ModelProto:
    return _model([helper.make_node("FrobnicateTensor", ["x"], ["y"], name="frob")], [vector("x")], [vector("y")])


def custom_domain_op() -> onnx.ModelProto:
    return _model([helper.make_node("MyPlugin", ["x"], ["y"], name="plugin", domain="com.example")],
                  [vector("x")], [vector("y")], domains=("com.example",))


def no_outputs() -> onnx.ModelProto:
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [vector("x")], [])


def duplicate_tensor() -> onnx.ModelProto:
    """Two nodes write tensor 't'."""
    nodes = [helper.make_node("Relu", ["x"], ["t"], name="a"), helper.make_node("Neg", ["x"], ["t"], name="b"),
             helper.make_node("Identity", ["t"], ["y"], name="c")]
    return _model(nodes, [vector("x")], [vector("y")])


def duplicate_input() -> onnx.ModelProto:
    nodes = [helper.make_node("Add", ["x", "x"], ["y"], name="add")]
    return _model(nodes, [vector("x"), vector("x")], [vector("y")])


def cycle() -> onnx.ModelProto:
    """a reads b's output and b reads a's: not a DAG."""
    nodes = [helper.make_node("Add", ["x", "b_out"], ["a_out"], name="a"),
             helper.make_node("Relu", ["a_out"], ["b_out"], name="b"),
             helper.make_node("Identity", ["a_out"], ["y"], name="c")]
    return _model(nodes, [vector("x")], [vector("y")])


def undefined_input() -> onnx.ModelProto:
    """A node reads a tensor nothing produces: onnx.checker rejects it."""
    return _model([helper.make_node("Add", ["x", "ghost"], ["y"], name="add")], [vector("x")], [vector("y")])


def wrong_attribute() -> onnx.ModelProto:
    """Softmax with an attribute its schema lacks: the full checker rejects it."""
    return _model([helper.make_node("Softmax", ["x"], ["y"], name="soft", color=3)], [vector("x")], [vector("y")])


def save(model: onnx.ModelProto, path: Path) -> Path:
    Path(path).write_bytes(model.SerializeToString())
    return Path(path)
