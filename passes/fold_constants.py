"""fold_constants: evaluate every subgraph whose inputs are all constant, and drop what it leaves.

Rewrite: ``Add(Const a, Const b) → Const(a + b)``; with static shapes,
``Shape(x) → Const(x.shape)`` and the Gather/Concat/Reshape arithmetic on it.
onnx-graphsurgeon's ``fold_constants`` evaluates with onnxruntime; a subgraph
it cannot evaluate is left as it was (not folding is always safe), and the
nodes whose outputs became constants are removed by ``cleanup``.

Bounded (compiler/limits.py): a node whose output would exceed ``max_bytes``
(a 6 GB ConstantOfShape in a 200-byte model) is not evaluated, and an
evaluation past the time budget is stopped; both stay in the graph, computed
at run time, and the stats list them under ``not_folded``. After a timeout the
later rounds of the same run do not evaluate again.
"""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from compiler.limits import FOLD_CAP_BYTES, bounded_sessions, budget, human, tensor_bytes

from . import gs_cast_elision
from .infra import Pass, PassResult, structure

# Ops whose values are sequences or optionals: a constant can only hold a tensor, and graphsurgeon
# would treat onnxruntime's list result as an array.
NON_TENSOR_OPS = frozenset({"SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceErase",
                            "SplitToSequence", "SequenceMap", "Optional"})


class FoldConstants(Pass):
    name = "fold_constants"

    def __init__(self, max_bytes: int = FOLD_CAP_BYTES):
        self.max_bytes = max_bytes
        self.timed_out: str | None = None  # set when an evaluation ran past the budget (a pipeline is built per run)

    def run(self, graph: gs.Graph) -> PassResult:
        if self.timed_out:
            return PassResult(changed=False, stats={"folded_nodes": 0, "skipped": self.timed_out})
        before = structure(graph)
        for sub in graph.subgraphs(recursive=True):
            # Subgraphs carry no IR version of their own; graphsurgeon would export them at its newest,
            # which onnxruntime refuses, and nothing inside Loop/If bodies would fold.
            sub.ir_version = sub.ir_version or graph.ir_version
        oversized = {n.name: size for g in [graph, *graph.subgraphs(recursive=True)] for n in g.nodes
                     if (size := output_bytes(n)) is not None and size > self.max_bytes}
        guards = gs_cast_elision.guard(graph)  # graphsurgeon 0.6.1 bug: see passes/gs_cast_elision.py
        with bounded_sessions("constant folding") as stopped:
            graph.fold_constants(fold_shapes=True, flatten_subgraphs=True, size_threshold=self.max_bytes,
                                 should_exclude_node=lambda n: n.op in NON_TENSOR_OPS or n.name in oversized)
        gs_cast_elision.unguard(guards)
        graph.cleanup(remove_unused_graph_inputs=False)
        after = structure(graph)
        folded = sum(len(n) for n, _ in before) - sum(len(n) for n, _ in after)
        stats = {"folded_nodes": folded}
        not_folded = [{"node": name, "bytes": size, "reason": f"its output ({human(size)}) exceeds the folding cap "
                                                               f"({human(self.max_bytes)})"}
                      for name, size in sorted(oversized.items())]
        if stopped:
            reason = f"evaluation ran longer than {budget():g} s (--validate-timeout) and was stopped"
            self.timed_out = f"an earlier round's {reason}"
            not_folded.append({"node": None, "reason": reason})
        if not_folded:
            stats["not_folded"] = not_folded
        return PassResult(changed=after != before, stats=stats)


def output_bytes(node: gs.Node) -> int | None:
    """The bytes ``node``'s outputs would take, from their inferred shapes or, for the ops that make large
    tensors from small constants (ConstantOfShape, Expand, Tile), from those constants; None if unknown."""
    sizes = [_bytes(t.shape, t.dtype) for t in node.outputs]
    if sizes and all(s is not None for s in sizes):
        return sum(sizes)
    if node.op not in ("ConstantOfShape", "Expand", "Tile") or not node.inputs \
            or not isinstance(node.inputs[-1], gs.Constant):
        return None
    values = tuple(int(v) for v in np.asarray(node.inputs[-1].values).reshape(-1))
    if node.op == "ConstantOfShape":
        value = node.attrs.get("value")
        return _bytes(values, value.values.dtype if isinstance(value, gs.Constant) else np.float32)
    source = node.inputs[0]
    if source.shape is None or _bytes(source.shape, source.dtype) is None:
        return None
    try:
        shape = tuple(a * b for a, b in zip(source.shape, values)) if node.op == "Tile" else \
            np.broadcast_shapes(tuple(source.shape), values)
    except ValueError:  # not broadcastable: onnxruntime will say so
        return None
    return _bytes(shape, source.dtype)


def _bytes(shape, dtype) -> int | None:
    if shape is None or dtype is None:
        return None
    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:  # an ONNX type numpy lacks (bfloat16, float8)
        return None
    return tensor_bytes(tuple(int(d) if isinstance(d, (int, np.integer)) else -1 for d in shape), itemsize)
