"""cleanup_toposort: remove dead nodes and unused initializers, then sort nodes topologically.

Rewrite: nodes whose outputs reach no graph output are deleted; the node list
is reordered so every producer precedes its consumers, which TensorRT's ONNX
parser requires. Graph inputs are kept even when unused, so the model's
interface never changes.
"""
from __future__ import annotations

import onnx_graphsurgeon as gs

from .infra import Pass, PassContext, PassResult


class CleanupToposort(Pass):
    name = "cleanup_toposort"

    def run(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        nodes_before = [id(n) for n in graph.nodes]
        tensors_before = set(graph.tensors())
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
        nodes_after = [id(n) for n in graph.nodes]
        removed_tensors = len(tensors_before - set(graph.tensors()))
        changed = nodes_after != nodes_before or removed_tensors > 0
        return PassResult(changed=changed, stats={"removed_nodes": len(nodes_before) - len(nodes_after),
                                                  "removed_tensors": removed_tensors})
