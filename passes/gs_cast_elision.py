"""Workaround for onnx-graphsurgeon 0.6.1's shape-tensor cast elision (``fold_constants(fold_shapes=True)``).

graphsurgeon rewrites ``Cast(int→float) → Op(·, Constant c) → Cast(→int)`` into ``Op`` on ints (TensorRT
shape tensors cannot be float) and converts ``c`` to int *in place*. Two ways that breaks a graph:

* ``c`` shared with other readers: they now read an int constant. T5's relative-position buckets share
  constants with float math, so the graph no longer loads in onnxruntime (type mismatch).
* ``c`` not integer-valued (0.5), or ``Op`` a Div: the int arithmetic computes different numbers
  (``floor(i * 0.5)`` becomes ``i * 0``).
* ``Op`` a comparison (Equal/Greater/Less): its bool output is rebound to the Cast's int tensor, which
  the full checker and onnxruntime refuse (Mistral's sliding-window mask).

``guard`` puts an Identity between the input Cast and every such node before folding, so graphsurgeon does
not see its pattern there (its check looks for a Cast producer); ``unguard`` takes the Identities out again.
Elisions that are exact (a private, integer-valued constant; no Div) still happen.
tests/passes/test_gs_cast_elision.py fails when upstream fixes this: then delete this file and its call in
``fold_constants.py``.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

# graphsurgeon 0.6.1's VALID_CAST_ELISION_OPS (onnx_graphsurgeon/ir/graph.py, run_cast_elision).
ELISION_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Equal", "Greater", "Less", "Concat"})
_INT_TYPES = (onnx.TensorProto.INT32, onnx.TensorProto.INT64)
GUARD_PREFIX = "tf2trt_cast_elision_guard"
# Ops whose int form is not the float form: Div truncates; a comparison yields bool, not the int its Cast made
# (graphsurgeon rebinds the Cast's int tensor as the comparison's output: Mistral's sliding-window mask).
_NOT_EXACT = frozenset({"Div", "Equal", "Greater", "Less"})


def _float_casts(node: gs.Node) -> list[gs.Node]:
    return [p for t in node.inputs for p in t.inputs if p.op == "Cast" and p.attrs.get("to") == onnx.TensorProto.FLOAT]


def _elided(node: gs.Node, graph: gs.Graph) -> bool:
    """graphsurgeon would elide the casts around ``node`` (its own conditions, restated)."""
    if node.op not in ELISION_OPS or not _float_casts(node):
        return False
    outs = [c for t in node.outputs for c in t.outputs]
    return bool(outs) and not any(t in graph.outputs for t in node.outputs) and \
        all(c.op == "Cast" and c.attrs.get("to") in _INT_TYPES for c in outs)


def _unsafe(node: gs.Node) -> bool:
    consts = [t for t in node.inputs if isinstance(t, gs.Constant)]
    shared = any(len(c.outputs) > 1 for c in consts)
    fractional = any(np.any(np.asarray(c.values) != np.round(np.asarray(c.values))) for c in consts
                     if np.asarray(c.values).dtype.kind == "f")
    return shared or fractional or node.op in _NOT_EXACT


def guard(graph: gs.Graph) -> list[tuple[gs.Graph, gs.Node]]:
    """Hide every unsafe elision site from graphsurgeon (Loop/If bodies too); returns the guards for
    ``unguard``."""
    guards = []
    for g in [graph, *graph.subgraphs(recursive=True)]:
        for node in list(g.nodes):
            if not (_elided(node, g) and _unsafe(node)):
                continue
            casts = _float_casts(node)
            for i, t in enumerate(list(node.inputs)):
                if any(p in casts for p in t.inputs):
                    name = f"{GUARD_PREFIX}_{len(guards)}"
                    hidden = gs.Variable(name, dtype=t.dtype, shape=t.shape)
                    identity = gs.Node("Identity", name, inputs=[t], outputs=[hidden])
                    g.nodes.append(identity)
                    node.inputs[i] = hidden
                    guards.append((g, identity))
    return guards


def unguard(guards: list[tuple[gs.Graph, gs.Node]]) -> None:
    """Take out the guards ``guard`` added (those folding did not already turn into constants)."""
    for g, identity in guards:
        if not identity.inputs or not identity.outputs or isinstance(identity.outputs[0], gs.Constant):
            continue
        src, hidden = identity.inputs[0], identity.outputs[0]
        for consumer in list(hidden.outputs):
            for i, t in enumerate(list(consumer.inputs)):
                if t is hidden:
                    consumer.inputs[i] = src
        identity.inputs.clear()
        identity.outputs.clear()
        g.nodes = [n for n in g.nodes if n is not identity]
