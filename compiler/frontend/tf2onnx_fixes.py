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

``np.product`` in the large-model path (tests/test_big_models.py::test_tf2onnx_large_model_still_calls_np_product).
tf2onnx's ``Node.get_value_attr`` moves a constant into its external tensor storage after testing
``np.product(dims)``, which NumPy 2 removed: every ``large_model=True`` conversion fails with AttributeError.
``numpy_product`` gives ``tf2onnx.graph`` (only that module) a NumPy that still has it.

The same copy on every other proto update (tests/test_big_models.py::test_tf2onnx_still_rewrites_attributes_in_place).
``Node.update_proto`` does ``del node.attribute[:]`` then ``extend`` on the same NodeProto, so wherever tf2onnx
calls it (its large-model path and rewriters too, not only the optimizer loop above) a Const's value is copied
into it again and, under upb, kept: a 100 MB model grew by 90 MB per call and a 2.2 GB one ran out of memory.
``fresh_node_protos`` makes ``update_proto`` fill a new NodeProto instead (the old one, and its copy, are then
freed), and skips a Const whose proto is already current. With both fixes the optimizer loop does no proto work.
"""
from __future__ import annotations

import types

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

class _NumpyWithProduct(types.ModuleType):
    """NumPy as tf2onnx.graph sees it: every attribute of numpy, plus ``product`` (``numpy.prod``)."""

    def __init__(self, numpy):
        super().__init__("numpy")
        self._numpy, self.product = numpy, numpy.prod

    def __getattr__(self, name):
        return getattr(self._numpy, name)


def numpy_product() -> None:
    """Give ``tf2onnx.graph`` a NumPy with ``product`` when the installed one lacks it (idempotent; this process)."""
    from tf2onnx import graph

    if not hasattr(graph.np, "product"):
        graph.np = _NumpyWithProduct(graph.np)


_FRESH = "_tf2trt_fresh_proto"
_SYNCED = "_tf2trt_synced"  # on a Node: what its proto was last written from


def fresh_node_protos() -> None:
    """Make tf2onnx's ``Node.update_proto`` write into a new NodeProto each time (idempotent; this process)."""
    from onnx import NodeProto
    from tf2onnx import graph

    update = graph.Node.update_proto
    if getattr(update, _FRESH, False):
        return

    def update_proto(self, external_tensor_storage=None):
        # A Const's proto already up to date is left alone: copying its value again is the optimizer loop's
        # whole cost on a big model (tf2onnx's make_graph reads a Const's value from its attributes anyway).
        synced = (self.name, tuple(self.input), tuple(self.output), tuple((k, id(v)) for k, v in self._attr.items()))
        if self.type == "Const" and external_tensor_storage is None and getattr(self, _SYNCED, None) == synced:
            return None
        old = self._op
        self._op = NodeProto(name=old.name, op_type=old.op_type, domain=old.domain, doc_string=old.doc_string)
        del old
        result = update(self, external_tensor_storage)
        setattr(self, _SYNCED, synced if external_tensor_storage is None else None)
        return result

    setattr(update_proto, _FRESH, True)
    update_proto.__wrapped__ = update
    graph.Node.update_proto = update_proto
