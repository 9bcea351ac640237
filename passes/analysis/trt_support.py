"""TensorRT capability pre-flight: which nodes TensorRT's ONNX parser would reject, and why. No GPU needed.

An analysis, not a rewrite. Every node, including those in Loop/If bodies, is
checked against the parser's support table (``data/tensorrt_onnx_ops_10.15.csv``,
transcribed from onnx-tensorrt's operators.md for TensorRT 10.15):

- the op is listed and supported;
- the node's data type (its first input's, else its first output's) is one
  the table lists for that op; DOUBLE is never one, on any input or output
  (TensorRT has no float64); UINT8 only in a Cast that reads a network input
  or writes a network output (TensorRT allows UINT8 at IO only);
- attribute restrictions the table states: Resize modes (no
  tf_crop_and_resize, half_pixel_symmetric, cubic, antialias), TopK with
  constant K ≤ 3840 and sorted=1, ScatterND without reduction, MaxPool 2D/3D
  without dilation or an Indices output.

TensorRT 11 adds Swish to the table. Each finding names the node, the reason
and the fix.
"""
from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

TABLE = Path(__file__).parents[1] / "data" / "tensorrt_onnx_ops_10.15.csv"  # passes/data/
TABLE_VERSION = "10.15"
TOPK_MAX = 3840

_DTYPE_NAMES = {
    onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64", onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.INT8: "INT8", onnx.TensorProto.BOOL: "BOOL", onnx.TensorProto.DOUBLE: "DOUBLE",
    onnx.TensorProto.INT4: "INT4", onnx.TensorProto.FLOAT8E4M3FN: "FP8",
}
_RESIZE_COORD = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}

# What to do about an unsupported op, where there is something better than cutting it out.
FIXES = {
    "Resize": "use a supported mode: tf_crop_and_resize over the whole image is align_corners and "
              "half_pixel_symmetric with integral sizes is half_pixel; rewrite_tensorrt (resize_supported) "
              "does both and turns cubic/antialias on static shapes into interpolation MatMuls",
    "TopK": f"take it in rounds of at most {TOPK_MAX}, masking what earlier rounds picked; rewrite_tensorrt "
            "(topk_split) does this when K is constant and the axis static",
    "ScatterND": "gather the current values, reduce them with the updates, then ScatterND(reduction='none'); "
                 "rewrite_tensorrt (scatternd_reduction) does this for constant indices, and add with a one-hot "
                 "MatMul otherwise",
    "MaxPool": "use dilation 1 and do not consume the Indices output",
}
DEFAULT_FIX = ("keep it out of the TensorRT graph (--cut-inputs/--cut-outputs, run it before or after the "
               "engine) or replace it with a TensorRT plugin")


@dataclass(frozen=True)
class OpSupport:
    supported: bool
    dtypes: frozenset
    restrictions: str


@functools.lru_cache(maxsize=2)
def load_table(trt_major: int = 10) -> dict[str, OpSupport]:
    table = {}
    with open(TABLE, newline="") as f:
        for row in csv.DictReader(f):
            table[row["op"]] = OpSupport(row["supported"] == "Y", frozenset(filter(None, row["dtypes"].split(";"))),
                                         row["restrictions"])
    if trt_major >= 11:  # TensorRT 11.0 adds Swish
        table["Swish"] = OpSupport(True, frozenset({"FP32", "FP16", "BF16"}), "")
    return table


@dataclass(frozen=True)
class Finding:
    node: str
    op: str
    reason: str
    fix: str
    where: str = "main graph"

    def text(self) -> str:
        return f"{self.op} '{self.node}' ({self.where}): {self.reason}; fix: {self.fix}"


@dataclass
class TrtCheck:
    findings: list[Finding] = field(default_factory=list)
    nodes_checked: int = 0
    table: str = f"TensorRT {TABLE_VERSION} ONNX parser support table"
    # Why the graph cannot be built at all (fails onnx.checker's full check or does not load in onnxruntime);
    # such a graph is never "supported", whatever its ops (passes/contract.py).
    graph_problem: str | None = None

    @property
    def supported(self) -> bool:
        return not self.findings and self.graph_problem is None

    def summary(self) -> str:
        if self.graph_problem:
            return f"not buildable: the graph does not load or infer shapes ({self.graph_problem})"
        if self.supported:
            return f"all {self.nodes_checked} nodes supported by TensorRT's ONNX parser (table {TABLE_VERSION})"
        return f"{len(self.findings)} of {self.nodes_checked} nodes unsupported by TensorRT's ONNX parser"

    def to_json(self) -> dict:
        return {"supported": self.supported, "nodes_checked": self.nodes_checked, "table": self.table,
                "loads": {"ok": self.graph_problem is None, "reason": self.graph_problem},
                "findings": [f.__dict__ for f in self.findings]}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _s(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _restriction(node: onnx.NodeProto, consts: dict[str, np.ndarray], used: set[str]) -> str | None:
    """The stated restriction this node violates, or None."""
    a = _attrs(node)
    if node.op_type == "Resize":
        coord = _s(a.get("coordinate_transformation_mode"), "half_pixel")
        mode = _s(a.get("mode"), "nearest")
        nearest = _s(a.get("nearest_mode"), "round_prefer_floor")
        if coord not in _RESIZE_COORD:
            return f"coordinate_transformation_mode '{coord}' is not supported"
        if mode not in ("nearest", "linear"):
            return f"mode '{mode}' is not supported (nearest and linear are)"
        if mode == "nearest" and nearest not in _RESIZE_NEAREST:
            return f"nearest_mode '{nearest}' is not supported"
        if a.get("antialias", 0):
            return "antialiasing is not supported"
        if _s(a.get("keep_aspect_ratio_policy"), "stretch") != "stretch":
            return "only keep_aspect_ratio_policy 'stretch' is supported"
    elif node.op_type == "TopK":
        if a.get("sorted", 1) != 1:
            return "sorted must be 1"
        k = consts.get(node.input[1]) if len(node.input) > 1 else None
        if k is not None and int(np.asarray(k).reshape(-1)[0]) > TOPK_MAX:
            return f"K = {int(np.asarray(k).reshape(-1)[0])} exceeds TensorRT's limit of {TOPK_MAX}"
    elif node.op_type == "ScatterND":
        if _s(a.get("reduction"), "none") != "none":
            return f"reduction '{_s(a.get('reduction'), 'none')}' is not supported"
    elif node.op_type == "MaxPool":
        if any(d != 1 for d in a.get("dilations", [])):
            return "dilations other than 1 are not supported"
        if len(a.get("kernel_shape", [])) not in (2, 3):
            return "only 2D and 3D pooling is supported"
        if len(node.output) > 1 and node.output[1] in used:
            return "the Indices output is not supported"
    return None


def check_model(model: onnx.ModelProto, trt_major: int = 10, known_valid: bool = False) -> TrtCheck:
    """Check every node of ``model`` (shape inference supplies the dtypes), and unless ``known_valid`` (the
    optimize stage already enforced it) that the graph passes the full checker and loads in onnxruntime."""
    from ..contract import violation

    problem = None if known_valid else violation(model)
    table = load_table(trt_major)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # dtypes stay unknown where inference fails; ops and attributes are still checked
        pass
    result = TrtCheck(graph_problem=problem)
    io_names = ({v.name for v in model.graph.input}, {v.name for v in model.graph.output})
    _check_graph(model.graph, table, result, "main graph", io_names, {}, {})
    return result


def _check_graph(graph, table, result: TrtCheck, where: str, io_names: tuple[set, set], outer_types: dict,
                 outer_consts: dict) -> None:
    """Check every node of ``graph`` (and, recursively, its subgraphs) against ``table`` into ``result``.

    Seven parameters: the recursion carries where it is (``where``), the graph IO names and the types and
    constants the enclosing graphs define, which a subgraph reads."""
    types = dict(outer_types)
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    consts = dict(outer_consts)
    for init in graph.initializer:
        types[init.name] = init.data_type
        consts[init.name] = onnx.numpy_helper.to_array(init)
    for n in graph.node:
        if n.op_type == "Constant":
            for attr in n.attribute:
                if attr.name == "value":
                    consts[n.output[0]] = onnx.numpy_helper.to_array(attr.t)
                    types[n.output[0]] = attr.t.data_type
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for node in graph.node:
        result.nodes_checked += 1
        name = node.name or f"<unnamed {node.op_type}>"
        finding = _check_node(node, table, types, consts, used, io_names)
        if finding:
            reason, fix = finding
            result.findings.append(Finding(name, node.op_type, reason, fix, where))
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _check_graph(attr.g, table, result, f"{node.op_type} '{name}' {attr.name}", io_names, types, consts)


def _check_node(node, table, types, consts, used, io_names) -> tuple[str, str] | None:
    if node.domain not in ("", "ai.onnx"):
        return (f"custom domain '{node.domain}': needs a TensorRT plugin registered under that name",
                "load the plugin with --plugins, or rewrite the node")
    support = table.get(node.op_type)
    if support is None or not support.supported:
        known = "not in" if support is None else "marked unsupported in"
        return (f"{known} the parser's support table", FIXES.get(node.op_type, DEFAULT_FIX))
    data = node.input[0] if node.input and node.input[0] else (node.output[0] if node.output else None)
    dtype = _DTYPE_NAMES.get(types.get(data)) if data else None
    if onnx.TensorProto.DOUBLE in [types.get(t) for t in (*node.input, *node.output) if t]:
        return ("float64 data: TensorRT has no DOUBLE", "cast to float32 at the graph boundary")
    inputs, outputs = io_names
    u8_in = {t for t in node.input if t and types.get(t) == onnx.TensorProto.UINT8}
    u8_out = {t for t in node.output if t and types.get(t) == onnx.TensorProto.UINT8}
    if (u8_in or u8_out) and not (node.op_type == "Cast" and u8_in <= inputs and u8_out <= outputs):
        return ("UINT8 inside the network: TensorRT allows UINT8 only at network inputs and outputs",
                "cast the uint8 input to float32 (or int32) right after the input")
    if dtype is not None and support.dtypes and dtype not in support.dtypes:
        return (f"data type {dtype} is not supported (supported: {', '.join(sorted(support.dtypes))})",
                "cast to a supported type around this node")
    restriction = _restriction(node, consts, used)
    if restriction:
        return (restriction, FIXES.get(node.op_type, DEFAULT_FIX))
    return None
