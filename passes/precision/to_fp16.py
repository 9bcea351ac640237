"""to_fp16: run the graph in float16, except the nodes that must stay float32.

TensorRT 11 builds strongly typed networks, so FP16 is the dtype of the ONNX
tensors, decided here. The conversion itself is onnxruntime's maintained
converter (``onnxruntime.transformers.float16``): float32 initializers and
value types become float16, and a Cast is inserted wherever a float16 region
meets a node kept in float32 or a graph input/output. This pass chooses what
stays float32 and records it; ``cleanup_casts`` then removes the Cast pairs
the converter leaves between two float32 nodes.

Kept in float32 (``KEEP_FP32``, on top of the converter's own block list of
ML-domain ops and NonMaxSuppression, TopK, RoiAlign, Range, CumSum, Min,
Max, Upsample):

* exponentials and logarithms (Exp, Log, Pow, Softplus): float16 overflows
  above 65504 (exp(11.1)) and loses everything below 6e-8;
* Softmax, LogSoftmax: an exponential followed by a sum over a whole axis;
* accumulating reductions (ReduceSum, ReduceSumSquare, ReduceL1, ReduceL2,
  ReduceLogSum, ReduceLogSumExp, ReduceProd, LpNormalization): a sum of many
  terms exceeds float16's range or drops the small terms (11-bit mantissa);
* normalisations (LayerNormalization, InstanceNormalization,
  GroupNormalization): the variance of large activations overflows, and
  the result feeds every later layer.

Graph inputs and outputs stay float32 (a Cast at the edge) unless
``fp16_io``. Runs once (``once``): the converter would treat its own
output as a new float32 graph. ``to_bf16`` is this pass with four hooks
overridden (``prepare``, ``blocked_ops``, ``exact_constants``, ``retarget``).
"""
from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs

from ..infra import Pass, PassResult
from ._common import export, node_precision, replace_graph, split_keep  # noqa: F401 (re-exported)

KEEP_FP32 = ("Exp", "Log", "Pow", "Softplus", "Softmax", "LogSoftmax", "ReduceSum", "ReduceSumSquare", "ReduceL1",
             "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceProd", "LpNormalization", "LayerNormalization",
             "InstanceNormalization", "GroupNormalization")


def converter_block_list() -> tuple[str, ...]:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    return tuple(DEFAULT_OP_BLOCK_LIST)


def default_keep_ops() -> tuple[str, ...]:
    return tuple(dict.fromkeys(converter_block_list() + KEEP_FP32))


# Ops that only move or select values: run in float16 they round nothing new, but they would round a value
# that is merely on its way from a float32 input to a float32 node.
DATA_MOVEMENT = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Split", "Slice",
                           "Gather", "GatherElements", "GatherND", "ScatterND", "ScatterElements", "Identity",
                           "Expand", "Tile", "Pad", "DepthToSpace", "SpaceToDepth"})
_SHAPE_ONLY = frozenset({"Shape", "Size"})  # read no values, so they accept either dtype


def _fp32_feeders(graph: gs.Graph, blocked: set[str], outputs_fp32: bool) -> set[str]:
    """Data-movement nodes all of whose readers are float32 (blocked nodes, other such feeders, or float32 graph
    outputs): keeping them float32 too means a value moving between float32 ends is never rounded to float16
    (e.g. boxes and scores gathered for NonMaxSuppression and TopK, where rounding changes which box wins)."""
    fp32 = set(blocked)
    graph_outputs = {t.name for t in graph.outputs}
    feeders: set[str] = set()
    for node in reversed(list(graph.nodes)):  # readers first: the pipeline leaves the graph sorted
        if node.op not in DATA_MOVEMENT or not node.outputs:
            continue
        readers_fp32 = all(
            (all(r.name in fp32 or r.op in _SHAPE_ONLY for r in t.outputs) and (t.outputs or t.name in graph_outputs))
            and (t.name not in graph_outputs or outputs_fp32)
            for t in node.outputs)
        if readers_fp32:
            feeders.add(node.name)
            fp32.add(node.name)
    # A Shape of a float32 tensor must not make the converter round that tensor to float16 just to measure it.
    feeders |= {n.name for n in graph.nodes if n.op in _SHAPE_ONLY and n.inputs and n.inputs[0].inputs
                and n.inputs[0].inputs[0].name in fp32}
    return feeders


class ToFp16(Pass):
    name = "to_fp16"
    once = True
    narrow = "float16"  # the dtype the graph is lowered to
    def __init__(self, keep_fp32: tuple[str, ...] = (), fp16_io: bool = False):
        self.keep_fp32 = tuple(keep_fp32)  # op types or node names kept in float32 (--keep-fp32)
        self.fp16_io = fp16_io  # float16 graph inputs and outputs (--fp16-io)

    def prepare(self, graph: gs.Graph) -> dict:
        """Hook before the conversion (to_bf16 raises the opset here); returns stats to record."""
        return {}

    def blocked_ops(self, graph: gs.Graph) -> dict[str, str]:
        """Op types kept in float32 by default → the reason the report gives."""
        return {op: "default block list" for op in default_keep_ops()}

    def exact_constants(self, graph: gs.Graph) -> dict:
        """Hook before the conversion: what ``retarget`` needs of the float32 graph (to_bf16: its constants)."""
        return {}

    def retarget(self, graph: gs.Graph, exact: dict) -> None:
        """Hook after the conversion, which writes float16: to_bf16 retypes it to bfloat16."""

    def run(self, graph: gs.Graph) -> PassResult:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        stats = self.prepare(graph)
        keep_ops, keep_nodes = split_keep(graph, self.keep_fp32)
        defaults = self.blocked_ops(graph)
        blocked_ops = set(defaults) | keep_ops
        feeders = _fp32_feeders(graph, {n.name for n in graph.nodes if n.op in blocked_ops} | keep_nodes,
                                outputs_fp32=not self.fp16_io)
        exact = self.exact_constants(graph)
        model = export(graph)
        converted = convert_float_to_float16(model, keep_io_types=not self.fp16_io, op_block_list=sorted(blocked_ops),
                                             node_block_list=sorted(keep_nodes | feeders), disable_shape_infer=True)
        casts_before = sum(n.op == "Cast" for n in graph.nodes)
        replace_graph(graph, onnx.shape_inference.infer_shapes(converted))
        self.retarget(graph, exact)

        def reason(n):
            if n.op in keep_ops or n.name in keep_nodes:
                return "--keep-fp32"
            return defaults[n.op] if n.op in defaults else "moves or measures data for float32 nodes"

        kept = [{"node": n.name, "op": n.op, "reason": reason(n)} for n in graph.nodes
                if n.op in blocked_ops or n.name in keep_nodes or n.name in feeders]
        return PassResult(True, {"kept_fp32": kept, "casts_added": sum(n.op == "Cast" for n in graph.nodes)
                                 - casts_before, "io": self.narrow if self.fp16_io else "float32", **stats})
