"""Converters for TensorFlow ops that tf2onnx 1.17 lacks, registered through its custom-op-handler API.

tf2onnx calls each handler as ``handler(ctx, node, name, args)`` with its own
graph ``ctx``; the handler rewrites ``node`` in place into standard ONNX ops.
Each one states its algebra and is tested op by op against TensorFlow
(tests/test_converters.py). ``frontend/export.py`` passes ``CONVERTERS`` to tf2onnx.

Gaps are found by measurement: ``scripts/bench/keras_coverage.py`` compiles
every keras.applications family and common Keras layers.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto


def _const_like(ctx, node, value: float, like: str):
    """A scalar constant of ``like``'s dtype, broadcastable against it."""
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(like))
    return ctx.make_const(utils.make_name(f"{node.name}/const"), np.array(value, dtype=dtype)).output[0]


def convert_erfc(ctx, node, name, args):
    """Erfc(x) → Sub(1, Erf(x)).

    ONNX has Erf (opset 9+) and no Erfc. Keras' exact GELU,
    ``0.5·x·erfc(-x/√2)``, lowers to Erfc in TensorFlow 2.20. The absolute
    error stays at float epsilon; relative error grows where erfc(x) is tiny
    (x > ~4), which GELU multiplies by ~0.

    float64: Cast(x, float32) → Erf → Cast(float64), because onnxruntime has
    no float64 Erf kernel and TensorRT computes DOUBLE in float32 anyway; the
    result has float32 precision (documented, tested at atol 1e-6).
    """
    x = node.input[0]
    dtype = ctx.get_dtype(x)
    if dtype == TensorProto.DOUBLE:
        x32 = ctx.make_node("Cast", [x], attr={"to": TensorProto.FLOAT}, op_name_scope=node.name).output[0]
        erf32 = ctx.make_node("Erf", [x32], op_name_scope=node.name).output[0]
        erf = ctx.make_node("Cast", [erf32], attr={"to": TensorProto.DOUBLE}, op_name_scope=node.name).output[0]
    else:
        erf = ctx.make_node("Erf", [x], op_name_scope=node.name).output[0]
    node.type = "Sub"
    ctx.replace_inputs(node, [_const_like(ctx, node, 1.0, x), erf])


# TensorFlow op type → (handler, extra args), the format tf2onnx's custom_op_handlers expects.
CONVERTERS = {
    "Erfc": (convert_erfc, []),
}
