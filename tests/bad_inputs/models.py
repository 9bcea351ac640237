"""Tiny ONNX models for the fault corpus, built with onnx.helper (no TensorFlow): import with
``from models import ...``.

``add_model`` is ``y = x + w`` on float32 [1, 4]; the variants move ``w`` (or a constant like it) into every place
a tensor can keep its bytes in an external file, so the sandbox cases can point that file outside the model's
directory.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# 16 bytes that are four finite float32 values; no output of a refused case may hold them.
SECRET = b"TOPSECRETpayload"
SECRET_VALUES = np.frombuffer(SECRET, dtype=np.float32)


def _io():
    return (helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]))


def _model(graph: onnx.GraphProto, functions=()) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                              functions=list(functions))
    model.ir_version = 8
    return model


def external(tensor: onnx.TensorProto, location: str) -> onnx.TensorProto:
    """``tensor`` with its bytes moved to ``location`` (relative to the model's directory, or absolute)."""
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(SECRET)))):
        tensor.external_data.add(key=key, value=value)
    return tensor


def weight(name: str = "w", values=None) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values if values is not None else np.ones(4), np.float32), name)


def add_model(w: np.ndarray | None = None) -> onnx.ModelProto:
    x, y = _io()
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "add", [x], [y], [weight("w", w)])
    return _model(graph)


def unary_model(op: str, **attrs) -> onnx.ModelProto:
    """``y = op(x)`` on float32 [1, 4] (e.g. Sqrt: NaN for negative inputs)."""
    x, y = _io()
    return _model(helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], op.lower(), [x], [y]))


def scaled_model(scale: float) -> onnx.ModelProto:
    """``y = x * scale``: with scale nan every output is NaN, with inf every nonzero output is infinite."""
    x, y = _io()
    s = numpy_helper.from_array(np.full(4, scale, np.float32), "s")
    return _model(helper.make_graph([helper.make_node("Mul", ["x", "s"], ["y"])], "mul", [x], [y], [s]))


def initializer_outside(location: str) -> onnx.ModelProto:
    """The initializer ``w`` stored at ``location``."""
    model = add_model()
    external(model.graph.initializer[0], location)
    return model


def constant_outside(location: str) -> onnx.ModelProto:
    """A Constant node whose ``value`` attribute is stored at ``location``."""
    x, y = _io()
    const = helper.make_node("Constant", [], ["w"], value=external(weight("c"), location))
    return _model(helper.make_graph([const, helper.make_node("Add", ["x", "w"], ["y"])], "const", [x], [y]))


def subgraph_outside(location: str) -> onnx.ModelProto:
    """An If whose then-branch holds a Constant stored at ``location``."""
    x, y = _io()
    out = helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])
    then = helper.make_graph([helper.make_node("Constant", [], ["b"], value=external(weight("t"), location))],
                             "then", [], [out])
    other = helper.make_graph([helper.make_node("Constant", [], ["b"], value=weight("e"))], "else", [], [out])
    cond = numpy_helper.from_array(np.array(True), "cond")
    nodes = [helper.make_node("If", ["cond"], ["w"], then_branch=then, else_branch=other),
             helper.make_node("Add", ["x", "w"], ["y"])]
    return _model(helper.make_graph(nodes, "if", [x], [y], [cond]))


def sparse_outside(location: str) -> onnx.ModelProto:
    """A sparse initializer whose values are stored at ``location``."""
    x, y = _io()
    values = external(weight("w"), location)
    indices = numpy_helper.from_array(np.arange(4, dtype=np.int64), "w_indices")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "sparse", [x], [y])
    graph.sparse_initializer.append(sparse)
    return _model(graph)


def function_outside(location: str) -> onnx.ModelProto:
    """A model-local function whose body holds a Constant stored at ``location``."""
    x, y = _io()
    body = [helper.make_node("Constant", [], ["c"], value=external(weight("f"), location)),
            helper.make_node("Add", ["a", "c"], ["b"])]
    fn = helper.make_function("local", "AddSecret", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    graph = helper.make_graph([helper.make_node("AddSecret", ["x"], ["y"], domain="local")], "fn", [x], [y])
    return _model(graph, [fn])


def save(model: onnx.ModelProto, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path
