"""topk_split: a TopK with K > 3840 (TensorRT's limit) as rounds of TopK(≤ 3840) that mask what they picked."""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ..analysis.trt_support import TOPK_MAX
from . import Builder, Refusal, Rule, constant_value, replace_output


def _k(node: gs.Node) -> int | None:
    k = constant_value(node.inputs[1])
    return None if k is None else int(np.asarray(k).reshape(-1)[0])


def _axis_length(node: gs.Node) -> tuple[int, int | None]:
    """(normalised axis, its static length or None); axis is -1 when the rank is unknown."""
    x, axis = node.inputs[0], int(node.attrs.get("axis", -1))
    if x.shape is None:
        return -1, None
    axis %= len(x.shape)
    n = x.shape[axis]
    return axis, int(n) if isinstance(n, (int, np.integer)) and n >= 0 else None


def _mask_value(dtype) -> tuple[float, float] | None:
    """(fill for largest=1, fill for largest=0): ∓inf for floats, the integer extremes for ints."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return -np.inf, np.inf
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return info.min, info.max
    return None


class TopKSplit(Rule):
    """TopK(X, K) with constant K > 3840 → ⌈K/3840⌉ rounds of TopK(≤ 3840), masking the picks between rounds.

    Round r takes ``V_r, I_r = TopK(X_r, k_r)`` with ``k_r = min(3840, K − Σ k_<r)``
    (same axis and ``largest``, ``sorted=1``), then masks what it picked:
    ``X_{r+1} = ScatterElements(X_r, I_r, fill, axis)`` where fill is −inf for
    ``largest=1`` and +inf for ``largest=0`` (the integer minimum / maximum for
    integer data), so no later round can pick those slots while an unpicked
    element ranks above the fill. ``Values = Concat(V_1…V_R)`` and
    ``Indices = Concat(I_1…I_R)`` along the axis. Exact: TopK orders equal
    values by lower index, so TopK(k) is a prefix of TopK(K) and each round
    continues the same order where the previous one stopped; a TopK with
    ``sorted=0`` may return any order, so the sorted result serves it too.

    Ties with the fill: when the input itself holds the fill value (−inf for
    ``largest=1``) and a round after the first reaches those elements, the
    masked slots tie with them and the lower index wins, so a masked slot can
    be picked again. Values stay exact (both are −inf) but such Indices may
    repeat an index already returned and omit a genuine −inf element. Whether
    that happens depends on the data, so it cannot be refused statically.
    NaN ordering is unspecified by ONNX, before and after the rewrite.

    Refuses when K is not a constant or the axis length is not static (the
    number of rounds must be known when the engine is built), and when K is
    larger than the axis (the original TopK fails at run time).
    """

    name = "topk_split"
    op = "TopK"

    def wants(self, node, graph):
        k = _k(node)
        if k is not None:
            return k > TOPK_MAX
        n = _axis_length(node)[1]
        return n is None or n > TOPK_MAX  # a run-time K here may exceed the limit

    def check(self, node, graph) -> tuple[int, int] | Refusal:
        """The plan (K, the normalised axis), or why not."""
        k, (axis, n) = _k(node), _axis_length(node)
        if k is None:
            return Refusal("K is not a constant: the number of TopK rounds must be known when the engine is built")
        if n is None:
            return Refusal(f"the length of the TopK axis is not static: cannot check K = {k} against it")
        if k > n:
            return Refusal(f"K = {k} exceeds the axis length {n}")
        if node.inputs[0].dtype is None or _mask_value(node.inputs[0].dtype) is None:
            return Refusal(f"data type {node.inputs[0].dtype} has no value to mask picked elements with")
        return k, axis

    def apply(self, node, graph, plan):
        b = Builder(graph, node, self.name)
        (k, axis), x = plan, node.inputs[0]
        dtype = np.dtype(x.dtype)
        fill = b.const(np.array(_mask_value(dtype)[0 if node.attrs.get("largest", 1) else 1], dtype))
        attrs = {"axis": axis, "largest": int(node.attrs.get("largest", 1)), "sorted": 1}
        values, indices, done, cur = [], [], 0, x
        while done < k:
            kr = min(TOPK_MAX, k - done)
            shape = [kr if a == axis else d for a, d in enumerate(x.shape)]
            v, i = b.op("TopK", [cur, b.const([kr], np.int64)], attrs, dtype=dtype, shape=shape, outputs=2)
            i.dtype = np.int64
            values.append(v)
            indices.append(i)
            done += kr
            if done < k:
                mask = b.op("Expand", [fill, b.op("Shape", [i], dtype=np.int64, shape=[len(x.shape)])], dtype=dtype,
                            shape=shape)
                cur = b.op("ScatterElements", [cur, i, mask], {"axis": axis}, dtype=dtype, shape=x.shape)
        for old, parts in zip(node.outputs, (values, indices)):
            if old.outputs or old in graph.outputs:
                shape = None if old.shape is None else list(old.shape)
                replace_output(graph, old, b.op("Concat", parts, {"axis": axis}, dtype=parts[0].dtype, shape=shape))
