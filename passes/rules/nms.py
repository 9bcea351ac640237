"""nms_count_cumsum: the INT64 CumSum in tf2onnx's CombinedNonMaxSuppression, run in float32 where that is exact.

What tf2onnx 1.17 emits, and what TensorRT 10.15's ONNX parser makes of it
(exports of TF 2.20 functions, after the default pipeline, checked with
``trt_support.check_model``):

- ``tf.image.non_max_suppression`` (NonMaxSuppressionV3),
  ``non_max_suppression_with_scores`` (V5) and ``tf.raw_ops.NonMaxSuppressionV4``:
  Unsqueeze → ONNX ``NonMaxSuppression`` → Slice/Squeeze/Cast (V5 adds a
  Gather of the scores, V4's padding Shape/Sub/Relu/Concat/Pad): every node
  supported; TensorRT imports NonMaxSuppression as its own NMS layer. No rule.
  (V5 with ``soft_nms_sigma > 0`` is exported as hard NMS: the export differs
  from TF, which the tf→onnx seam reports; no graph rewrite can restore it.)
- ``tf.image.non_max_suppression_padded(pad_to_max_output_size=True)`` is not an
  NMS op in TF 2.x but Python code (a ``tf.while_loop`` over tiles): Loop/If
  nodes with data-dependent conditions, all ops supported. No rule (see
  ``loop_if_fold`` for what it refuses there, and why).
- ``tf.image.combined_non_max_suppression`` (one box per anchor, ``q = 1``):
  NonMaxSuppression, then ranking per batch in plain ONNX. The one node the
  parser rejects is ``CumSum`` over INT64 data (TensorRT's CumSum takes
  FP32/FP16/BF16 only): an exclusive running count over
  ``Gather(EyeLike(…), batch_index)``, a one-hot row per selected box, which
  numbers the selections within their batch. Its length is the number of
  selections, known only at run time, so ``cumsum_integer_scan`` (which needs
  a static length) cannot take it. This rule can.

Why not replace the whole pattern with the ``EfficientNMS_TRT`` plugin:
onnxruntime cannot run it, so the rewrite could not be validated on CPU
against the export; its outputs (num_detections, boxes, scores, classes,
padded per batch) and its tie-breaking differ from the ONNX graph's; and the
export's NMS already maps onto TensorRT's own NMS layer. Only the CumSum needs
fixing.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from . import Builder, Rule, constant_value, replace_output

FLOAT32_EXACT = 2 ** 24  # every integer of magnitude ≤ 2^24 is a float32


def _producer(t: gs.Tensor, op: str | tuple[str, ...]) -> gs.Node | None:
    ops = (op,) if isinstance(op, str) else op
    return t.inputs[0] if len(t.inputs) == 1 and t.inputs[0].op in ops else None


def nms_column(t: gs.Tensor) -> tuple[gs.Node, int] | None:
    """(NonMaxSuppression node, column) when ``t`` is one column of its ``[n, 3]`` output, one entry per selection.

    Follows Cast/Identity and Squeeze of axis 1 back to
    ``Slice(selected, [c], [c+1], axes=[1])`` or ``Gather(selected, c, axis=1)``.
    """
    while True:
        n = _producer(t, ("Cast", "Identity", "Squeeze"))
        if n is None:
            break
        if n.op == "Squeeze":
            axes = n.attrs.get("axes") if len(n.inputs) < 2 else constant_value(n.inputs[1])
            if axes is None or [int(a) for a in np.asarray(axes).reshape(-1)] not in ([1], [-1]):
                return None
        t = n.inputs[0]
    n = _producer(t, ("Slice", "Gather"))
    if n is None or _producer(n.inputs[0], "NonMaxSuppression") is None:
        return None
    if n.op == "Gather":
        col = constant_value(n.inputs[1])
        if int(n.attrs.get("axis", 0)) != 1 or col is None or np.asarray(col).size != 1:
            return None
        return n.inputs[0].inputs[0], int(np.asarray(col).reshape(-1)[0]) % 3
    starts, ends = (constant_value(x) for x in n.inputs[1:3])
    axes = constant_value(n.inputs[3]) if len(n.inputs) > 3 else np.array([0])
    steps = constant_value(n.inputs[4]) if len(n.inputs) > 4 else np.array([1])
    if any(v is None or np.asarray(v).size != 1 for v in (starts, ends, axes, steps)):
        return None
    start, end = int(np.asarray(starts).reshape(-1)[0]), int(np.asarray(ends).reshape(-1)[0])
    if int(np.asarray(axes).reshape(-1)[0]) not in (1, -1) or int(np.asarray(steps).reshape(-1)[0]) != 1:
        return None
    start %= 3
    if min(end, 3) != start + 1:
        return None
    return n.inputs[0].inputs[0], start


def _one_hot_table(t: gs.Tensor) -> str | None:
    """None when ``t`` holds 0/1 with at most one 1 per column (EyeLike, or such a constant), else why not."""
    if _producer(t, "EyeLike") is not None:
        return None
    v = constant_value(t)
    if v is None:
        return f"the gathered table '{t.name}' is neither an EyeLike nor a constant"
    v = np.asarray(v)
    if v.ndim != 2 or not np.isin(v, (0, 1)).all() or (v.sum(axis=0) > 1).any():
        return f"the gathered table '{t.name}' is not 0/1 with at most one 1 per column"
    return None


class NmsCountCumSum(Rule):
    """CumSum(INT) of one-hot rows indexed by NonMaxSuppression selections → Cast(CumSum(Cast(x, FLOAT)), INT).

    Pattern (tf2onnx's CombinedNonMaxSuppression): ``x = Gather(E, sel[:, c])``
    with ``E`` an EyeLike or a 0/1 constant with at most one 1 per column, and
    ``y = CumSum(x, axis 0)`` (exclusive or not, either direction).

    Exactness: column ``j`` of ``x`` is 1 exactly on the selections whose
    column-``c`` value is the row of ``E`` holding column ``j``'s 1, so every
    partial sum in that column is an integer in ``[0, m]``, where ``m`` bounds
    how many selections share one value in column ``c``. ONNX NMS selects at
    most ``P = min(max_output_boxes_per_class, boxes)`` per (batch, class), so
    with scores ``[batches, classes, boxes]``: ``m = classes·P`` for the batch
    column, ``batches·P`` for the class column, ``batches·classes`` for the
    box column. When ``m < 2^24`` every partial sum is a float32 integer and
    float32 addition of such integers is exact, so the float CumSum cast back
    gives the same bits. The batch column's bound does not depend on the
    number of batches, so a dynamic batch keeps the rewrite exact.

    Refuses when the CumSum axis is not 0 or not constant, when the dimensions
    the bound needs are not static or max_output_boxes_per_class is not a
    constant, and when ``m ≥ 2^24``.
    """

    name = "nms_count_cumsum"
    op = "CumSum"

    def wants(self, node, graph):
        x = node.inputs[0]
        gather = _producer(x, "Gather")
        return (x.dtype in (np.int64, np.int32) and gather is not None
                and int(gather.attrs.get("axis", 0)) == 0 and nms_column(gather.inputs[1]) is not None)

    def check(self, node, graph):
        x = node.inputs[0]
        axis = constant_value(node.inputs[1])
        if axis is None:
            return "the CumSum axis is not a constant"
        axis = int(np.asarray(axis).reshape(-1)[0])
        if axis not in (0, -2) or (axis == -2 and (x.shape is None or len(x.shape) != 2)):
            return f"the CumSum runs along axis {axis}, not along the NonMaxSuppression selections (axis 0)"
        gather = x.inputs[0]
        reason = _one_hot_table(gather.inputs[0])
        if reason:
            return reason
        bound = self._bound(*nms_column(gather.inputs[1]))
        if isinstance(bound, str):
            return bound
        if bound >= FLOAT32_EXACT:
            return (f"a running count can reach {bound} ≥ 2^24, beyond the integers float32 holds exactly "
                    "(too many selections per batch)")
        return True  # nothing to plan: the rewrite is two Casts around the CumSum

    @staticmethod
    def _bound(nms: gs.Node, column: int) -> int | str:
        """Most selections that can share one value in ``column`` of the NMS output, or why it is unknown."""
        scores = nms.inputs[1]
        if scores.shape is None or len(scores.shape) != 3:
            return f"the rank of NonMaxSuppression's scores '{scores.name}' is unknown"
        if len(nms.inputs) > 2 and nms.inputs[2].name:
            per_class = constant_value(nms.inputs[2])
            if per_class is None:
                return "max_output_boxes_per_class is computed at run time, so the count has no static bound"
            per_class = int(np.asarray(per_class).reshape(-1)[0])
        else:
            per_class = 0  # absent: ONNX selects nothing
        extents = list(scores.shape)
        known = [isinstance(d, (int, np.integer)) and d >= 0 for d in extents]
        needed = [i for i in range(3) if i != column]
        unknown = [name for i, name in enumerate(("batch", "class")) if i in needed and not known[i]]
        if unknown:
            return (f"NonMaxSuppression's scores {list(scores.shape)} have a dynamic {'/'.join(unknown)} "
                    "dimension, which bounds the count; freeze it with --input-shapes")
        per_class = max(per_class, 0)
        extents[2] = min(per_class, int(extents[2])) if known[2] else per_class  # selections per (batch, class)
        return int(np.prod([int(extents[i]) for i in needed], dtype=np.int64))

    def apply(self, node, graph, plan):
        x, y = node.inputs[0], node.outputs[0]
        b = Builder(graph, node, self.name)
        to = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(x.dtype))
        xf = b.op("Cast", [x], {"to": onnx.TensorProto.FLOAT}, dtype=np.float32, shape=x.shape)
        yf = b.op("CumSum", [xf, node.inputs[1]], dict(node.attrs), dtype=np.float32, shape=x.shape)
        out = b.op("Cast", [yf], {"to": to}, dtype=x.dtype, shape=y.shape)
        replace_output(graph, y, out)

