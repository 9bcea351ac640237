"""Workarounds for tf2onnx 1.17 bugs, each in one place, each with a test that fails when upstream fixes it.

Back-to-back Reshape merge (tests/test_dynamic_dims.py::test_tf2onnx_alone_still_merges_reshapes_wrongly).
tf2onnx's ``remove_back_to_back`` optimizer rewrites ``Reshape(Reshape(x, s1), s2)`` into
``Reshape(x, s2)``. That is only right when ``s2`` holds no ``0``: ONNX reads a 0 as "copy
this dimension of the input", and the input is now ``x``, not the first Reshape's output.
tf2onnx's own ``reshape_optimizer`` writes such 0s for a dynamic batch: Keras' ``Dense`` on a
rank-3 tensor (a Tensordot: Reshape to [-1, C], MatMul, Reshape back) followed by a reshape to
``[batch, -1, heads, dim]`` (keras-hub's MiT/SegFormer attention) becomes one Reshape of the
2-D MatMul output to ``[0, 1, -1, 8]``: wrong at every batch size, and failing at most.
``guard_reshape_merge`` keeps such pairs unmerged; every other merge tf2onnx makes is kept.

A copy of every weight per optimizer run (tests/test_memory.py::test_tf2onnx_optimizer_still_copies_weights).
Each of tf2onnx's optimizers ends with ``graph.update_proto()``, which clears and refills every node's
attributes, a Const's whole tensor included. With protobuf's upb backend a cleared field's memory stays in its
message's arena until the node itself is freed, so each of the 24 optimizer runs (12 optimizers, twice) leaves
one more copy of all the weights: ResNet50's 98 MB of weights grow the export by 2.3 GB. No optimizer reads
the protos (they work on tf2onnx's own node objects), and ``make_model`` updates them once at the end, so
``optimize_without_proto_updates`` runs each optimizer without that update; the exported model is byte-identical.
"""
from __future__ import annotations

_GUARD = "_tf2trt_guarded"


def _copies_a_dim(g, reshape) -> bool:
    """True when ``reshape``'s target shape is a constant holding a 0 (copy that dim of the input). A shape
    computed at run time holds real sizes, so merging over it is safe."""
    if len(reshape.input) < 2 or not g.is_const(reshape.input[1]):
        return False
    if reshape.get_attr_value("allowzero", 0):
        return False  # 0 means a zero-size dim there, not a copy
    return 0 in list(g.get_tensor_value(reshape.input[1], as_list=True))


def guard_reshape_merge() -> None:
    """Install the guard in tf2onnx's back-to-back optimizer (idempotent; this process only)."""
    from tf2onnx.optimizer import back_to_back_optimizer as b2b

    merge = b2b._func_map.get(("Reshape",))
    if merge is None or getattr(merge, _GUARD, False):
        return

    def guarded(g, node, consumer_nodes):
        if len(consumer_nodes) == 1 and consumer_nodes[0].type == "Reshape" and _copies_a_dim(g, consumer_nodes[0]):
            return []
        return merge(g, node, consumer_nodes)

    setattr(guarded, _GUARD, True)
    b2b._func_map[("Reshape",)] = guarded


def optimize_without_proto_updates() -> None:
    """Run tf2onnx's optimizers without ``update_proto`` after each (idempotent; this process only)."""
    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    if getattr(GraphOptimizerBase.optimize, _GUARD, False):
        return

    def optimize(self, graph, iteration):  # GraphOptimizerBase.optimize of tf2onnx 1.17, less update_proto
        before = graph.dump_node_statistics()
        self.opt_iteration = iteration
        graph = self._optimize(graph)
        graph.delete_unused_nodes(graph.outputs)
        self._print_stat_diff(before, graph.dump_node_statistics())
        return graph

    setattr(optimize, _GUARD, True)
    optimize.__wrapped__ = GraphOptimizerBase.optimize  # tf2onnx's own, for the test that shows its bug
    GraphOptimizerBase.optimize = optimize
