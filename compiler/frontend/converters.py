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


class Unconvertible(Exception):
    """A converter met a use of its op that has no exact ONNX form. The message names the exact pattern;
    ``frontend/export.py`` puts it in the export error instead of a generic "no conversion" (and no --opset
    hint: no opset has a Bitcast)."""


def _const_value(ctx, name: str):
    producer = ctx.get_node_by_output(name)
    return producer.get_tensor_value(as_list=False) if producer is not None and producer.is_const() else None


def _is_sign_mask(value, int_dtype) -> bool:
    """``value`` is a scalar (or all-equal) constant holding exactly the sign bit of ``int_dtype``."""
    return value is not None and value.dtype == int_dtype and value.size >= 1 and \
        bool(np.all(value == np.iinfo(int_dtype).min))


def _sign_bit_use(ctx, consumer, bits: str, int_dtype) -> str | None:
    """None when ``consumer`` reads only the sign bit of ``bits``, else why not (for the error).

    Sign-bit reads: ``bits & MIN`` (TensorFlow's BitwiseAnd, not yet converted) and ``bits < 0`` (what
    ``convert_bitwise_and`` turns that mask into, when it ran first)."""
    inputs = list(consumer.input)
    other = [i for i in inputs if i != bits]
    value = _const_value(ctx, other[0]) if len(other) == 1 else None
    if consumer.type == "BitwiseAnd" and _is_sign_mask(value, int_dtype):
        return None
    if consumer.type == "Less" and inputs[0] == bits and value is not None and value.size >= 1 \
            and bool(np.all(value == 0)):
        return None
    return f"'{consumer.name}' ({consumer.type}) reads more than the sign bit"


def float_sign_bit(ctx, x: str, scope: str) -> str:
    """A bool tensor: the IEEE sign bit of float ``x``, without reinterpreting bits.

    signbit(x) = x < 0  or  (x == 0 and 1/x < 0): the second term keeps −0.0
    distinct from +0.0 (1/−0 = −inf). NaN reads as positive whatever its sign
    bit (TensorFlow's bitcast would see a negative NaN's bit).
    """
    def op(kind, *inputs):
        return ctx.make_node(kind, list(inputs), op_name_scope=scope).output[0]

    zero = _const_like(ctx, ctx.get_node_by_output(x), 0.0, x)
    one = _const_like(ctx, ctx.get_node_by_output(x), 1.0, x)
    negative_zero = op("And", op("Equal", x, zero), op("Less", op("Div", one, x), zero))
    return op("Or", op("Less", x, zero), negative_zero)


def convert_bitcast(ctx, node, name, args):
    """Bitcast(x: float → same-width int), every use reading only the sign bit → Where(signbit(x), MIN, 0).

    Keras 3 lowers ``ops.signbit`` (and so ``ops.argmax``/``argmin`` on
    floats, keras-hub's NonMaxSuppression) to ``bitwise_and(bitcast(x, int32),
    INT_MIN) < 0``. ONNX has no bitcast at any opset. Where each consumer is
    that mask (or ``bits < 0``), only the sign bit is observed, and
    ``Where(signbit(x), INT_MIN, 0)`` equals ``bits & INT_MIN`` exactly, so
    every consumer computes what it did. Any other use (bits read as a number,
    other masks, int→float, width changes) raises ``Unconvertible`` naming it.
    """
    from tf2onnx import utils

    x = node.input[0]
    src = utils.map_onnx_to_numpy_type(ctx.get_dtype(x))
    dst = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.output[0]))
    what = f"Bitcast {np.dtype(src).name}→{np.dtype(dst).name} (node '{node.name}')"
    if not (np.issubdtype(src, np.floating) and np.issubdtype(dst, np.signedinteger)
            and np.dtype(src).itemsize == np.dtype(dst).itemsize):
        raise Unconvertible(f"{what}: only a float→signed-int bitcast of the same width whose uses test the sign "
                            "bit has an ONNX form")
    reasons = [r for c in ctx.find_output_consumers(node.output[0])
               if (r := _sign_bit_use(ctx, c, node.output[0], dst))]
    if reasons:
        raise Unconvertible(f"{what}: {reasons[0]}; only sign-bit tests (bitwise_and with the sign mask, or < 0) "
                            "have an ONNX form")
    sign = float_sign_bit(ctx, x, node.name)
    low = ctx.make_const(utils.make_name(f"{node.name}/sign_mask"), np.array(np.iinfo(dst).min, dst)).output[0]
    zero = ctx.make_const(utils.make_name(f"{node.name}/zero"), np.array(0, dst)).output[0]
    node.type = "Where"
    ctx.replace_inputs(node, [sign, low, zero])


def convert_bitwise_and(ctx, node, name, args):
    """BitwiseAnd(a, MIN) on signed ints → Where(a < 0, MIN, 0); other masks: ONNX BitwiseAnd (opset 18+).

    In two's complement the sign bit of ``a`` is set exactly when ``a < 0``, so
    masking with the sign bit needs no bitwise op, at any opset. tf2onnx 1.17
    converts BitwiseAnd only from opset 18, where ONNX has it.
    """
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.output[0]))
    masks = [i for i, inp in enumerate(node.input) if np.issubdtype(dtype, np.signedinteger)
             and _is_sign_mask(_const_value(ctx, inp), dtype)]
    if not masks:
        if ctx.opset >= 18:
            return  # the ONNX op of the same name and inputs, as tf2onnx's own handler does
        raise Unconvertible(f"BitwiseAnd (node '{node.name}') with a mask other than the sign bit needs ONNX "
                            f"BitwiseAnd, opset 18 (this export is opset {ctx.opset})")
    a, mask = node.input[1 - masks[0]], node.input[masks[0]]
    zero = ctx.make_const(utils.make_name(f"{node.name}/zero"), np.array(0, dtype)).output[0]
    negative = ctx.make_node("Less", [a, zero], op_name_scope=node.name).output[0]
    node.type = "Where"
    ctx.replace_inputs(node, [negative, mask, zero])


# TensorFlow op type → (handler, extra args), the format tf2onnx's custom_op_handlers expects.
CONVERTERS = {
    "Erfc": (convert_erfc, []),
    "Bitcast": (convert_bitcast, []),
    "BitwiseAnd": (convert_bitwise_and, []),
}
