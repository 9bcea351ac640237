"""cleanup_casts: keep a Cast only where precision really changes.

Rewrites, with ``x`` of dtype A:

* ``Cast(x, to=A)`` → ``x`` (a no-op Cast);
* ``Cast(Cast(x, to=B), to=C)`` → ``Cast(x, to=C)`` (or ``x`` if C == A) when
  B holds every value of A exactly (float16 → float32, bfloat16 → float32,
  int8 → int32, ...; float16 and bfloat16 hold each other's values only in
  part): the inner Cast loses nothing, so skipping it gives the same numbers;
* ``Cast(Cast(x, to=float16), to=float32)`` with ``x`` float32 → ``x`` when the
  float16 tensor feeds only Casts: the value passes between two float32
  nodes (two nodes of the FP16 block list in a row) and stays float32 instead
  of being rounded on the way; likewise through bfloat16, and
  ``Cast(Cast(i, to=float16), to=float32)`` of an integer becomes one Cast to
  float32, and ``Cast(Cast(x, to=bfloat16), to=int64)`` one Cast to int64 (a
  count summed in float32 is not rounded to bfloat16's 256 exact integers on
  its way back). These are the rewrites that change numbers, towards float32's;
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
from .precision._common import np_dtype

# Float types by name: (exponent bits, significand bits including the implicit one).
_FLOATS = {"float16": (5, 11), "bfloat16": (8, 8), "float32": (8, 24), "float64": (11, 53)}


def _lossless(a: np.dtype, b: np.dtype) -> bool:
    """True when every value of dtype ``a`` is exactly representable in ``b``."""
    if a == b:
        return True
    if a.name in _FLOATS and b.name in _FLOATS:
        return all(x <= y for x, y in zip(_FLOATS[a.name], _FLOATS[b.name]))
    if a.kind in "iu" and b.kind in "iu":
        return np.can_cast(a, b, casting="safe")
    if a.kind in "iu" and b.name in _FLOATS:
        return a.itemsize * 8 <= _FLOATS[b.name][1]  # the significand holds every integer of a
    return a.kind == "b"


def _dtype(t) -> np.dtype | None:
    return np_dtype(t.dtype)  # graphsurgeon keeps bfloat16 as ONNX's enum


def _to(node) -> np.dtype | None:
    return np_dtype(node.attrs.get("to"))


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
            # A value narrowed to a float only to be widened again, or cast to an integer, by every reader: skip it.
            detour = (a.name in _FLOATS and (to.name in _FLOATS and _lossless(a, to) and a != to or to.kind in "iub")
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
