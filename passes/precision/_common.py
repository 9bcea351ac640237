"""What the precision passes share: the nodes they act on (``--keep-fp32``/``--int8-skip`` entries), handing a
graph to a ModelProto converter and back, and the precision each node runs in. A leaf: the passes import it,
it imports neither of them.
"""
from __future__ import annotations

import difflib

import onnx
import onnx_graphsurgeon as gs

from compiler.common.dtypes import LOW_FLOATS, np_dtype, onnx_dtype  # noqa: F401 (the passes' names for them)

from ..infra import PassError

# The layers TensorRT runs in INT8 when their inputs come through DequantizeLinear (quantize_int8 quantizes them).
INT8_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")

_PRECISION_OF = {**LOW_FLOATS, onnx.TensorProto.FLOAT: "fp32"}


def split_keep(graph: gs.Graph, entries: tuple[str, ...]) -> tuple[set[str], set[str]]:
    """``--keep-fp32`` entries → (op types, node names). An entry is an op type if any node has that op,
    else a node name; one that is neither raises with the nearest names."""
    ops = {n.op for n in graph.nodes}
    names = {n.name for n in graph.nodes}
    keep_ops, keep_nodes = set(), set()
    for e in entries:
        if e in ops:
            keep_ops.add(e)
        elif e in names:
            keep_nodes.add(e)
        else:
            near = difflib.get_close_matches(e, sorted(ops | names), n=3)
            hint = f" (nearest: {', '.join(near)})" if near else ""
            raise PassError(f"'{e}' is neither an op type nor a node name in the graph{hint}")
    return keep_ops, keep_nodes


def replace_graph(graph: gs.Graph, model: onnx.ModelProto) -> None:
    """Make ``graph`` hold ``model``'s graph, in place (for passes that delegate to a ModelProto converter)."""
    new = gs.import_onnx(model)
    graph.nodes, graph.inputs, graph.outputs = new.nodes, new.inputs, new.outputs
    graph.opset, graph.import_domains = new.opset, new.import_domains


def export(graph: gs.Graph) -> onnx.ModelProto:
    model = gs.export_onnx(graph, do_type_check=False)
    model.ir_version = max(model.ir_version, 8)
    return onnx.shape_inference.infer_shapes(model, data_prop=True)


def node_precision(graph: gs.Graph) -> dict[str, str]:
    """Each float node's precision: 'fp16', 'bf16', 'fp32' or 'int8' (a Conv/MatMul/Gemm whose inputs come
    through DequantizeLinear: TensorRT fuses the Q/DQ into an INT8 kernel); a narrow float tensor makes the node
    that narrow precision. Casts, Q/DQ nodes and nodes with no float tensor are left out.
    """
    out = {}
    for n in graph.nodes:
        if n.op in ("Cast", "QuantizeLinear", "DequantizeLinear"):
            continue
        found = {_PRECISION_OF.get(onnx_dtype(getattr(t, "dtype", None))) for t in list(n.inputs) + list(n.outputs)
                 if t is not None}
        if n.op in INT8_OPS and any(isinstance(t, gs.Variable) and t.inputs and t.inputs[0].op == "DequantizeLinear"
                                    for t in n.inputs):
            out[n.name] = "int8"
        else:
            prec = next((p for p in ("fp16", "bf16", "fp32") if p in found), None)
            if prec is not None:
                out[n.name] = prec
    return out
