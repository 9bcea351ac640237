"""cleanup_casts: keep a Cast only where precision really changes.

Rewrites, with ``x`` of dtype A:

* ``Cast(x, to=A)`` → ``x`` (a no-op Cast);
* ``Cast(Cast(x, to=B), to=C)`` → ``Cast(x, to=C)`` (or ``x`` if C == A) when
  B holds every value of A exactly (float16 → float32, int8 → int32, ...): the
  inner Cast loses nothing, so skipping it gives the same numbers;
* ``Cast(Cast(x, to=float16), to=float32)`` with ``x`` float32 → ``x`` when the
  float16 tensor feeds only Casts: the value passes between two float32
  nodes (two nodes of the FP16 block list in a row) and stays float32 instead
  of being rounded on the way; likewise ``Cast(Cast(i, to=float16),
  to=float32)`` of an integer becomes one Cast to float32. These are the
  rewrites that change numbers, towards float32's;
* two Casts of the same tensor to the same dtype → one.

Graph outputs keep their names: where the Cast to drop writes one, its
source's producer writes it instead (or, for a graph input, an Identity).

Casts whose input dtype is unknown are left alone.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .infra import Pass, PassResult, reconnect

_FLOATS = ("float16", "float32", "float64")


def _lossless(a: np.dtype, b: np.dtype) -> bool:
    """True when every value of dtype ``a`` is exactly representable in ``b``."""
    if a == b:
        return True
    if a.kind == "f" and b.kind == "f":
        return b.itemsize >= a.itemsize
    if a.kind in "iu" and b.kind in "iu":
        return np.can_cast(a, b, casting="safe")
    if a.kind in "iu" and b.kind == "f":
        return a.itemsize * 8 <= {2: 11, 4: 24, 8: 53}[b.itemsize]  # the mantissa holds every integer of a
    return a.kind == "b"


def _dtype(t) -> np.dtype | None:
    try:
        return None if t.dtype is None else np.dtype(t.dtype)
    except TypeError:
        return None


def _to(node) -> np.dtype | None:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(node.attrs["to"]))
    except (KeyError, TypeError):
        return None


def _bypass(graph: gs.Graph, node: gs.Node, source: gs.Tensor) -> bool:
    """Make ``node``'s readers read ``source`` instead. A graph output keeps its name: the Cast becomes an
    Identity of ``source`` (free in TensorRT); False when it already is one."""
    out = node.outputs[0]
    if out in graph.outputs:
        producer = source.inputs[0] if isinstance(source, gs.Variable) and source.inputs else None
        if producer is not None and source not in graph.outputs:
            # The producer writes the graph output itself; its other readers follow the rename.
            reconnect([r for r in source.outputs if r is not node], "inputs", source, out)
            reconnect([producer], "outputs", source, out)
            node.inputs.clear()
            node.outputs.clear()
            return True
        if node.op == "Identity" and node.inputs[0] is source:
            return False
        node.op, node.attrs, node.inputs = "Identity", {}, [source]
        return True
    reconnect(out.outputs, "inputs", out, source)
    node.outputs.clear()
    return True


class CleanupCasts(Pass):
    name = "cleanup_casts"

    def run(self, graph: gs.Graph) -> PassResult:
        stats = {"noop": 0, "chains": 0, "float32_kept": 0, "merged": 0}
        for node in list(graph.nodes):
            if node.op != "Cast" or not node.outputs or not node.inputs:
                continue
            x, to = node.inputs[0], _to(node)
            a = _dtype(x)
            if a is None or to is None:
                continue
            if a == to:
                stats["noop"] += _bypass(graph, node, x)
                continue
            producer = x.inputs[0] if isinstance(x, gs.Variable) and x.inputs else None
            if producer is None or producer.op != "Cast" or not producer.inputs:
                continue
            source = producer.inputs[0]
            src = _dtype(source)
            if src is None:
                continue
            # A float value narrowed only to be widened again by every reader: skip the narrowing.
            detour = (str(a) in _FLOATS and str(to) in _FLOATS and a.itemsize < to.itemsize
                      and all(r.op == "Cast" for r in x.outputs) and x not in graph.outputs)
            if _lossless(src, a) or detour:
                stats["float32_kept" if detour and not _lossless(src, a) else "chains"] += 1
                if src == to:
                    _bypass(graph, node, source)
                else:
                    node.inputs[0] = source
        seen: dict[tuple, gs.Node] = {}
        for node in list(graph.nodes):
            if node.op != "Cast" or not node.outputs or not node.inputs:
                continue
            if not node.outputs[0].outputs and node.outputs[0] not in graph.outputs:
                continue  # left dangling above; graph.cleanup() removes it
            key = (node.inputs[0].name, node.attrs.get("to"))
            first = seen.setdefault(key, node)
            if first is not node and _bypass(graph, node, first.outputs[0]):
                stats["merged"] += 1
        changed = any(stats.values())
        if changed:
            graph.cleanup()
        return PassResult(changed, {k: v for k, v in stats.items() if v})
