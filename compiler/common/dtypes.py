"""The narrow float types a graph is lowered to (float16, bfloat16), named once for the passes, the emulation and
the tools. A leaf: numpy and onnx only. graphsurgeon keeps a type numpy lacks (bfloat16) as ONNX's enum, so the
helpers take a numpy dtype, ml_dtypes' bfloat16 or the enum alike.
"""
from __future__ import annotations

import numpy as np
import onnx

# The narrow float types, by ONNX dtype, with the precision name the report uses.
LOW_FLOATS = {onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.BFLOAT16: "bf16"}


def onnx_dtype(dtype) -> int | None:
    """The ONNX dtype (TensorProto enum) of a graphsurgeon tensor's ``dtype``; None when unknown."""
    if dtype is None:
        return None
    if isinstance(dtype, (int, np.integer)) and not isinstance(dtype, bool):
        return int(dtype)
    try:
        return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    except (TypeError, KeyError, ValueError):
        return None


def np_dtype(dtype) -> np.dtype | None:
    """``dtype`` (as ``onnx_dtype`` takes it) as a numpy dtype (ml_dtypes' for bfloat16), or None."""
    code = onnx_dtype(dtype)
    try:
        return None if code is None else np.dtype(onnx.helper.tensor_dtype_to_np_dtype(code))
    except (TypeError, KeyError, ValueError):
        return None


def narrow_floats(model: onnx.ModelProto) -> set[int]:
    """The narrow float types (FLOAT16, BFLOAT16) ``model``'s main graph holds: initializers, typed values, Casts."""
    graph = model.graph
    found = {i.data_type for i in graph.initializer}
    found |= {v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
    found |= {a.i for n in graph.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"}
    return found & set(LOW_FLOATS)


def has_float16(model: onnx.ModelProto) -> bool:
    return onnx.TensorProto.FLOAT16 in narrow_floats(model)


def has_bfloat16(model: onnx.ModelProto) -> bool:
    return onnx.TensorProto.BFLOAT16 in narrow_floats(model)
