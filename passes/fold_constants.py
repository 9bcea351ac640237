"""fold_constants: evaluate every subgraph whose inputs are all constant, and drop what it leaves.

Rewrite: ``Add(Const a, Const b) → Const(a + b)``; with static shapes,
``Shape(x) → Const(x.shape)`` and the Gather/Concat/Reshape arithmetic on it.
onnx-graphsurgeon's ``fold_constants`` evaluates with onnxruntime; a subgraph
it cannot evaluate is left as it was (not folding is always safe), and the
nodes whose outputs became constants are removed by ``cleanup``.
"""
from __future__ import annotations

import onnx_graphsurgeon as gs

from . import gs_cast_elision
from .infra import Pass, PassContext, PassResult, structure


# Ops whose values are sequences or optionals: a constant can only hold a tensor, and graphsurgeon
# would treat onnxruntime's list result as an array.
NON_TENSOR_OPS = frozenset({"SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceErase",
                            "SplitToSequence", "SequenceMap", "Optional"})


class FoldConstants(Pass):
    name = "fold_constants"

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        before = structure(graph)
        for sub in graph.subgraphs(recursive=True):
            # Subgraphs carry no IR version of their own; graphsurgeon would export them at its newest,
            # which onnxruntime refuses, and nothing inside Loop/If bodies would fold.
            sub.ir_version = sub.ir_version or graph.ir_version
        guards = gs_cast_elision.guard(graph)  # graphsurgeon 0.6.1 bug: see passes/gs_cast_elision.py
        graph.fold_constants(fold_shapes=True, flatten_subgraphs=True,
                             should_exclude_node=lambda n: n.op in NON_TENSOR_OPS)
        gs_cast_elision.unguard(guards)
        graph.cleanup(remove_unused_graph_inputs=False)
        after = structure(graph)
        folded = sum(len(n) for n, _ in before) - sum(len(n) for n, _ in after)
        return PassResult(changed=after != before, stats={"folded_nodes": folded})
