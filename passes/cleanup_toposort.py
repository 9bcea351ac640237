"""cleanup_toposort: remove dead nodes and unused initializers, then sort nodes topologically.

Rewrite: nodes whose outputs reach no graph output are deleted; the node list
is reordered so every producer precedes its consumers, which TensorRT's ONNX
parser requires. Graph inputs are kept even when unused, so the model's
interface never changes.
"""
from __future__ import annotations

import onnx_graphsurgeon as gs

from .infra import Pass, PassResult, structure


class CleanupToposort(Pass):
    name = "cleanup_toposort"

    def run(self, graph: gs.Graph) -> PassResult:
        before = structure(graph)
        nodes_before = sum(len(nodes) for nodes, _ in before)
        graph.cleanup(remove_unused_graph_inputs=False).toposort()  # both recurse into Loop/If bodies
        after = structure(graph)
        return PassResult(changed=after != before,
                          stats={"removed_nodes": nodes_before - sum(len(nodes) for nodes, _ in after)})
