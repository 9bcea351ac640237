"""to_bf16: run the graph in bfloat16, except the nodes that must stay float32.

The same lowering as ``to_fp16`` (its subclass: the same converter, block
list, float32 feeders and ``--keep-fp32``), with three differences:

* bfloat16 has float32's 8 exponent bits and 8 bits of mantissa (float16: 5
  and 11), so nothing overflows that float32 holds, but each rounding is 4×
  coarser (unit roundoff 2^-9 = 2.0e-3). The default block list is kept for
  that reason rather than for range: an exponential or logarithm multiplies its
  input's relative error by ``|x|`` (exp(20) of a bfloat16 input is off by
  4%), a sum over an axis or a variance loses the small terms, and Softmax and
  the normalisations do both.
* ONNX admits bfloat16 in Conv, ConvTranspose, the pooling ops,
  InstanceNormalization and a few others only from opset 22, so a graph at a
  lower opset is first raised to ``BF16_OPSET`` with ONNX's version converter
  (TensorRT 11 parses up to opset 25, onnxruntime 1.23 up to 23). An op whose
  ONNX schema at the graph's opset still admits no bfloat16 (Einsum,
  NonMaxSuppression, TopK, ops of other domains) stays float32, and so do
  If, Loop and Scan with their bodies: the emulation below covers the main
  graph only.
* onnxruntime's converter writes float16 only: its output is retyped to
  bfloat16, constants rounded from their float32 values (round to nearest
  even), never through float16, which would clip them at 65504.

Graph inputs and outputs stay float32, with a Cast at the edge.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ._common import np_dtype, onnx_dtype, replace_graph
from .to_fp16 import ToFp16, default_keep_ops, export

BF16_OPSET = 22  # the first opset whose Conv, pooling and InstanceNormalization admit bfloat16
# Ops with graph bodies: kept float32 (the converter then leaves their bodies alone), because the storage emulation
# that validates bfloat16 on CPU rewrites the main graph only, and onnxruntime cannot run bfloat16 arithmetic.
CONTROL_FLOW = ("If", "Loop", "Scan")
F16, BF16 = onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16
BFLOAT16 = np_dtype(BF16)  # ml_dtypes' bfloat16, as onnx maps it
_DEFAULT_DOMAINS = ("", "ai.onnx")


def admits_bfloat16(op: str, domain: str, opset: int) -> bool:
    """True when ONNX's schema of ``op`` at ``opset`` allows tensor(bfloat16) in some type constraint."""
    if domain not in _DEFAULT_DOMAINS:
        return False
    try:
        schema = onnx.defs.get_schema(op, opset, "")
    except onnx.defs.SchemaError:
        return False
    return any("tensor(bfloat16)" in c.allowed_type_strs for c in schema.type_constraints)


def _input_admits_bfloat16(node: gs.Node, index: int, opset: int) -> bool:
    """True unless ONNX's schema of ``node`` types its input ``index`` without bfloat16 (Resize's roi: T2)."""
    try:
        schema = onnx.defs.get_schema(node.op, opset, "")
    except onnx.defs.SchemaError:
        return True  # blocked_ops kept the node float32
    if not schema.inputs:
        return True
    formal = schema.inputs[min(index, len(schema.inputs) - 1)]
    allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    return "tensor(bfloat16)" in allowed.get(formal.type_str, [formal.type_str])


def _graphs(graph: gs.Graph) -> list[gs.Graph]:
    return [graph, *graph.subgraphs(recursive=True)]


def _bf16(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).astype(BFLOAT16)


class ToBf16(ToFp16):
    name = "to_bf16"
    narrow = "bfloat16"

    def __init__(self, keep_fp32: tuple[str, ...] = ()):
        super().__init__(keep_fp32, fp16_io=False)  # bfloat16 IO: numpy has no bfloat16 for callers to feed

    def prepare(self, graph: gs.Graph) -> dict:
        opset = graph.opset
        if opset >= BF16_OPSET:
            return {"opset": opset}
        try:
            model = onnx.version_converter.convert_version(export(graph), BF16_OPSET)
        except Exception as e:  # no adapter for some op: stay at this opset, and its ops without bfloat16 stay fp32
            return {"opset": opset, "opset_not_raised": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
        replace_graph(graph, model)
        return {"opset": [opset, BF16_OPSET]}

    def blocked_ops(self, graph: gs.Graph) -> dict[str, str]:
        reasons = {op: "default block list (8-bit mantissa)" for op in default_keep_ops()}
        reasons |= {op: "its body stays float32 (bfloat16 is emulated in the main graph only)" for op in CONTROL_FLOW}
        for g in _graphs(graph):
            for n in g.nodes:
                if n.op not in reasons and not admits_bfloat16(n.op, n.domain or "", graph.opset):
                    reasons[n.op] = f"no bfloat16 {n.op} in ONNX opset {graph.opset}"
        return reasons

    def exact_constants(self, graph: gs.Graph) -> dict:
        """The float32 values of every constant, by tensor name, and of node attributes, by (node, attribute)."""
        exact: dict = {}
        for g in _graphs(graph):
            for name, t in g.tensors().items():
                if isinstance(t, gs.Constant) and t.values.dtype == np.float32:
                    exact[name] = t.values
            for n in g.nodes:
                for key, value in n.attrs.items():
                    if isinstance(value, gs.Constant) and value.values.dtype == np.float32:
                        exact[(n.name, key)] = value.values
        return exact

    def retarget(self, graph: gs.Graph, exact: dict) -> None:
        """Every float16 the converter wrote becomes bfloat16: tensor types, Cast targets, dtype attributes, and
        constants, rounded from ``exact``'s float32 values."""
        for g in _graphs(graph):
            for name, t in g.tensors().items():
                if isinstance(t, gs.Constant):
                    if t.values.dtype == np.float16:
                        t.values = _bf16(exact.get(name, t.values))
                elif onnx_dtype(t.dtype) == F16:
                    t.dtype = BF16  # graphsurgeon's own spelling of a type numpy lacks
            for n in g.nodes:
                for key, value in n.attrs.items():
                    if key in ("to", "dtype") and not isinstance(value, bool) and value == F16:
                        n.attrs[key] = BF16
                    elif isinstance(value, gs.Constant) and value.values.dtype == np.float16:
                        value.values = _bf16(exact.get((n.name, key), value.values))
            _float32_where_required(g, graph.opset, exact)
        _widen_outer_reads(graph)


def _float32_where_required(graph: gs.Graph, opset: int, exact: dict) -> None:
    """Inputs that the converter made float16, where float16 is allowed but bfloat16 is not (Resize's roi), read
    float32: the constant's exact values, or a Cast of the tensor."""
    added = []
    for n in graph.nodes:
        for i, t in enumerate(n.inputs):
            if t is None or onnx_dtype(t.dtype) != BF16 or _input_admits_bfloat16(n, i, opset):
                continue
            if isinstance(t, gs.Constant):
                n.inputs[i] = gs.Constant(f"{t.name}__fp32", np.asarray(exact.get(t.name, t.values), np.float32))
            else:
                wide = gs.Variable(f"{t.name}__fp32_{n.name}", np.float32, t.shape)
                added.append(gs.Node("Cast", attrs={"to": onnx.TensorProto.FLOAT}, inputs=[t], outputs=[wide]))
                n.inputs[i] = wide
    graph.nodes.extend(added)


def _widen_outer_reads(graph: gs.Graph) -> None:
    """The float32 bodies of If/Loop/Scan read the outer tensors the converter made bfloat16 (it casts a kept
    node's inputs, not what its body reads from outside) through one Cast to float32 each, in the outer graph."""
    wide: dict[str, gs.Variable] = {}
    for node in [n for n in graph.nodes if n.op in CONTROL_FLOW]:
        for body in (v for v in node.attrs.values() if isinstance(v, gs.Graph)):
            inner = [body, *body.subgraphs(recursive=True)]
            local = {t.name for g in inner for t in g.inputs} | {t.name for g in inner for n in g.nodes
                                                                   for t in n.outputs}
            for n in (n for g in inner for n in g.nodes):
                for i, t in enumerate(n.inputs):
                    if isinstance(t, gs.Variable) and t.name not in local and onnx_dtype(t.dtype) == BF16:
                        if t.name not in wide:
                            wide[t.name] = gs.Variable(f"{t.name}__outer_fp32", np.float32, t.shape)
                            graph.nodes.append(gs.Node("Cast", attrs={"to": onnx.TensorProto.FLOAT}, inputs=[t],
                                                       outputs=[wide[t.name]]))
                        n.inputs[i] = wide[t.name]

