"""Data-type rules: what TensorRT's parser cannot hold (UINT8 inside the network, DOUBLE, integer CumSum).

TensorRT takes UINT8 only at network inputs and outputs (through a Cast),
has no DOUBLE at all, and runs CumSum on floats only (the dtypes column of
``data/tensorrt_onnx_ops_10.15.csv``). INT64 is otherwise supported wherever
INT32 is in the 10.15 table (the one exception, TensorScatter, is opset 24,
which tf2onnx never emits), so there is no general INT64→INT32 rule. The rules
read dtypes off the graph, so ``infer_shapes`` must have run (the default
pipeline runs it first).
"""
from __future__ import annotations

import weakref

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto

from . import Builder, Rule, constant_value, replace_output

UINT8, INT32, INT64, FLOAT, DOUBLE = (TensorProto.UINT8, TensorProto.INT32, TensorProto.INT64, TensorProto.FLOAT,
                                      TensorProto.DOUBLE)


def elem_type(t: gs.Tensor) -> int | None:
    """``t``'s ONNX element type (TensorProto enum), or None when unknown."""
    dtype = t.export_dtype if isinstance(t, gs.Constant) else t.dtype
    if dtype is None:
        return None
    if isinstance(dtype, (int, np.integer)):
        return int(dtype)
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _type_strs(node: gs.Node, graph: gs.Graph) -> tuple[list[str], list[str]] | None:
    """The schema's type string (``T``, ``tensor(int64)``, ...) of each actual input and output, or None."""
    try:
        schema = onnx.defs.get_schema(node.op, graph.opset, node.domain or "")
    except onnx.defs.SchemaError:
        return None

    def expand(formals, n):
        return [formals[min(i, len(formals) - 1)].type_str for i in range(n)] if formals else [""] * n
    return expand(schema.inputs, len(node.inputs)), expand(schema.outputs, len(node.outputs))


def _drop_identity_cast(graph: gs.Graph, cast: gs.Node) -> None:
    """Bypass a Cast that now casts a tensor to its own type. When its output is a graph output, its input takes
    that name, so only an input made by a node of this graph and not itself a graph output (else keep the Cast)."""
    out, inp = cast.outputs[0], cast.inputs[0]
    if out in graph.outputs:
        producer = inp.inputs[0] if inp.inputs else None
        if inp in graph.outputs or not any(producer is n for n in graph.nodes):
            return
    replace_output(graph, out, inp)


# --- UINT8 -------------------------------------------------------------------------------------------------------

# Ops whose outputs only copy or select values of their T-typed inputs: exact in any dtype that holds those values.
DATA_MOVEMENT = frozenset({
    "Transpose", "Reshape", "Slice", "Concat", "Gather", "GatherElements", "GatherND", "Squeeze", "Unsqueeze",
    "Flatten", "Pad", "Identity", "ReverseSequence", "Resize", "Split", "Expand", "Tile", "DepthToSpace",
    "SpaceToDepth", "Max", "Min", "Where",
})
# Ops that read the values (or only the shape) without producing T: exact in float32, their outputs unchanged.
READERS = frozenset({"Shape", "Size", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "ArgMax",
                     "ArgMin"})
ARITHMETIC = frozenset({
    "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Sum", "Mean", "Pow", "MatMul", "Gemm", "Conv", "CumSum",
    "ReduceSum", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp",
    "AveragePool", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
})


class _Region:
    """A uint8 region: its graph-input sources, the nodes reading it, and the uint8 constants those read."""

    def __init__(self):
        self.sources: list[gs.Variable] = []
        self.nodes: list[gs.Node] = []
        self.tensors: list[gs.Tensor] = []  # outputs of data-movement nodes: uint8 now, float32 after
        self.consts: list[tuple[gs.Node, int]] = []


class Uint8InputRegion(Rule):
    """A uint8 graph input read by anything but a Cast: run its data-movement region in float32.

    Rewrite::

        x:u8 → Transpose → ReverseSequence → … → Cast(to=T)
        x:u8 → Cast(to=f32) → Transpose → ReverseSequence → … → Cast(to=T)   (the Cast dropped when T is f32)

    The region is everything reachable from the input through data-movement
    ops (Transpose, Reshape, Slice, Concat, Gather*, (Un)Squeeze, Flatten, Pad,
    Identity, ReverseSequence, Resize nearest, Split, Expand, Tile,
    Depth/SpaceToDepth, and the selections Max, Min, Where); it ends at Casts
    and at readers (Shape, Size, comparisons, ArgMax/ArgMin). Other uint8
    graph inputs it meets (a Concat of two images) join it. uint8 constants
    it reads (a Pad value, a Where branch) become float32 constants; a region
    tensor that is a graph output gets ``Cast(f32→u8)`` before the output and
    keeps its name. Exact: every uint8 value is an integer float32 holds, and
    these ops only copy, select or compare values.

    Refuses (one reason) when the region holds arithmetic (uint8 wraps at 256,
    float32 would not), Resize other than nearest (it would round differently),
    an op not known to be pure data movement, a uint8 tensor entering from
    elsewhere than a graph input or constant, or a read inside a subgraph.
    """

    name = "uint8_input_region"

    def wants(self, node, graph):
        if node.op == "Cast":
            return False
        return any(elem_type(t) == UINT8 and t in graph.inputs for t in node.inputs)

    def _region(self, node: gs.Node, graph: gs.Graph) -> _Region | str:
        region, seen, queue = _Region(), set(), []

        def add(t, source=False):
            seen.add(id(t))
            queue.append(t)
            (region.sources if source else region.tensors).append(t)

        for t in node.inputs:
            if elem_type(t) == UINT8 and t in graph.inputs and id(t) not in seen:
                add(t, source=True)
        inside, members = {id(n) for n in graph.nodes}, set()
        while queue:
            t = queue.pop(0)
            for c in t.outputs:
                if id(c) in members:
                    continue
                where = f"uint8 region of input '{region.sources[0].name}': {c.op} '{c.name}'"
                if id(c) not in inside:
                    return f"{where} reads it inside a subgraph"
                if c.op in ARITHMETIC:
                    return f"{where} is arithmetic; uint8 wraps at 256 where float32 would not"
                if c.op not in DATA_MOVEMENT | READERS | {"Cast"}:
                    return f"{where} is not known to be pure data movement"
                if c.op == "Resize" and c.attrs.get("mode", "nearest") != "nearest":
                    return f"{where} interpolates (mode '{c.attrs['mode']}'); uint8 rounds where float32 would not"
                types = _type_strs(c, graph)
                if types is None:
                    return f"{where} has no ONNX schema at opset {graph.opset}"
                ins, outs = types
                data_type = outs[0] if c.op in DATA_MOVEMENT else ins[0]
                members.add(id(c))
                region.nodes.append(c)
                for i, inp in enumerate(c.inputs):
                    if ins[i] != data_type or id(inp) in seen or not inp.name:
                        continue
                    if constant_value(inp) is not None:
                        region.consts.append((c, i))
                    elif inp in graph.inputs and elem_type(inp) == UINT8:
                        add(inp, source=True)
                    else:
                        maker = f"{inp.inputs[0].op} '{inp.inputs[0].name}'" if inp.inputs else "nothing"
                        return f"{where} also reads uint8 tensor '{inp.name}' made by {maker}, outside the region"
                if c.op in DATA_MOVEMENT:
                    for o, ty in zip(c.outputs, outs):
                        if ty == data_type and id(o) not in seen:
                            add(o)
        return region

    def check(self, node, graph):
        return self._region(node, graph)  # the plan: the region to run in float32, or why not

    def apply(self, node, graph, region):
        b = Builder(graph, node, self.name)
        floats = {id(s): b.op("Cast", [s], {"to": FLOAT}, dtype=np.float32, shape=s.shape) for s in region.sources}
        consts = {(id(n), i) for n, i in region.consts}
        for n in region.nodes:
            for i, t in enumerate(n.inputs):
                if id(t) in floats:
                    n.inputs[i] = floats[id(t)]
                elif (id(n), i) in consts:
                    n.inputs[i] = b.const(np.asarray(constant_value(t)).astype(np.float32))
        converted = {id(t) for t in region.tensors}
        for t in region.tensors:
            t.dtype = np.float32
        for i, t in enumerate(graph.outputs):
            if id(t) in converted:
                u8 = b.op("Cast", [t], {"to": UINT8}, dtype=np.uint8, shape=t.shape)
                u8.name, t.name = t.name, u8.name
                graph.outputs[i] = u8
        for n in region.nodes:
            if n.op == "Cast" and n.attrs["to"] == FLOAT:
                _drop_identity_cast(graph, n)


# --- DOUBLE ------------------------------------------------------------------------------------------------------

class GraphRule(Rule):
    """A rewrite of a whole graph at once, all or nothing (e.g. a dtype that must change everywhere together).

    Subclasses implement ``concerns(node, graph)`` (the node takes part in the
    problem), ``check_graph(graph)`` (None, or why not) and
    ``apply_graph(graph) -> dict`` (facts for the pass stats). ``apply_rules``
    knows node rules only, so the node API below anchors the rewrite on the
    first node of the graph it concerns: that node's name is what the stats and
    ``check-trt`` show, once, and ``apply`` returns ``apply_graph``'s facts.
    """

    def concerns(self, node: gs.Node, graph: gs.Graph) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_graph(self, graph: gs.Graph) -> str | None:
        return None

    def apply_graph(self, graph: gs.Graph) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    _anchor = None  # (weakref to the graph, its node count, its first concerned node): one scan per graph state

    def wants(self, node, graph):
        if not self.concerns(node, graph):
            return False
        memo = self._anchor
        if memo is None or memo[0]() is not graph or memo[1] != len(graph.nodes) or not self.concerns(memo[2], graph):
            memo = self._anchor = (weakref.ref(graph), len(graph.nodes),
                                   next(n for n in graph.nodes if self.concerns(n, graph)))
        return memo[2] is node

    def check(self, node, graph):
        reason = self.check_graph(graph)
        return reason if reason else True

    def apply(self, node, graph, plan):
        return self.apply_graph(graph)


def _is_f64_const(v) -> bool:
    return isinstance(v, gs.Constant) and elem_type(v) == DOUBLE


class Float64ToFloat32(GraphRule):
    """DOUBLE → FLOAT everywhere in the graph (and its subgraphs): TensorRT has no float64, not even at IO.

    Rewrite: float64 initializers and Constant values become float32
    (``float32(v)``, the nearest float32); Cast ``to=DOUBLE`` and ``dtype=DOUBLE``
    attributes become FLOAT; every float64 tensor, graph inputs and outputs
    included, is declared float32; a Cast that now casts float32 to float32
    (it cast to or from float64) is dropped. The interface changes (callers
    feed and read float32); ``apply`` returns the graph IO that changed dtype.
    Results differ from float64 by float32 rounding, which is what TensorRT
    would compute anyway.

    Refuses when a finite float64 constant lies beyond float32's range (it
    would become inf). All or nothing: a half-converted graph mixes types.
    """

    name = "float64_to_float32"

    def concerns(self, node, graph):
        return (any(elem_type(t) == DOUBLE for t in (*node.inputs, *node.outputs))
                or any(_is_f64_const(v) or (k in ("to", "dtype") and v == DOUBLE) for k, v in node.attrs.items()))

    @staticmethod
    def _constants(graph):
        for g in [graph, *graph.subgraphs(recursive=True)]:
            yield from (t for t in g.tensors().values() if _is_f64_const(t))
            yield from (v for n in g.nodes for v in n.attrs.values() if _is_f64_const(v))

    def check_graph(self, graph):
        for c in self._constants(graph):
            v = np.asarray(c.values)
            with np.errstate(over="ignore"):
                bad = np.isfinite(v) & np.isinf(v.astype(np.float32))
            if bad.any():
                return (f"float64 constant '{c.name}' holds {v[bad].flat[0]:.4g}, beyond float32's range "
                        f"(±{np.finfo(np.float32).max:.4g}): as float32 it would be inf")
        return None

    def apply_graph(self, graph):
        changed = {kind: [t.name for t in ts if elem_type(t) == DOUBLE]
                   for kind, ts in (("inputs", graph.inputs), ("outputs", graph.outputs))}
        for c in list(self._constants(graph)):
            c.values = np.asarray(c.values).astype(np.float32)
            c.export_dtype = None
        for g in [graph, *graph.subgraphs(recursive=True)]:
            casts = [n for n in g.nodes if n.op == "Cast" and DOUBLE in (n.attrs["to"], elem_type(n.inputs[0]))]
            for t in g.tensors().values():
                if isinstance(t, gs.Variable) and elem_type(t) == DOUBLE:
                    t.dtype = np.float32
            for n in g.nodes:
                for k in ("to", "dtype"):
                    if n.attrs.get(k) == DOUBLE:
                        n.attrs[k] = FLOAT
            for n in casts:
                if n.attrs["to"] == FLOAT and elem_type(n.inputs[0]) == FLOAT:
                    _drop_identity_cast(g, n)
        return {"float32_io": changed}


# --- INT64 -------------------------------------------------------------------------------------------------------

class CumSumIntegerScan(Rule):
    """CumSum on INT32/INT64 data (TensorRT's CumSum takes floats only) → a prefix-sum scan of Slice, Pad, Add.

    Rewrite (Hillis–Steele scan along the axis, length L)::

        y₀ = x;  y_{j+1} = y_j + shift(y_j, 2^j)  for 2^j < L;   then y[i] = Σ_{m ≤ i} x[m]
        shift(y, k) = Pad(Slice(y, 0, L−k), k zeros before)       (reverse=1: Pad(Slice(y, k, L), k zeros after))

    ``exclusive=1`` is ``shift(y, 1)`` of the inclusive result. ⌈log₂ L⌉ steps
    of three nodes, all in the original integer dtype, which TensorRT's Add,
    Slice and Pad take. Exact: integer addition is associative, wrap-around
    included, so any summation order gives the same bits. (Casting to float32
    would be exact only below 2^24.)

    Refuses when the axis is not a constant, the rank is unknown, or the
    axis length is not static (the number of steps is fixed at build time).
    """

    name = "cumsum_integer_scan"
    op = "CumSum"

    def wants(self, node, graph):
        return elem_type(node.inputs[0]) in (INT32, INT64)

    @staticmethod
    def _axis(node) -> tuple[int, int] | str:
        x, axis = node.inputs[0], constant_value(node.inputs[1])
        if axis is None:
            return "the CumSum axis is not a constant"
        if x.shape is None:
            return "the rank of the CumSum input is unknown"
        axis = int(np.asarray(axis).reshape(-1)[0]) % len(x.shape)
        n = x.shape[axis]
        if not isinstance(n, (int, np.integer)) or n < 0:
            return f"the CumSum axis {axis} has no static length (it sets the number of scan steps)"
        return axis, int(n)

    def check(self, node, graph):
        return self._axis(node)  # the plan: (axis, its length), or why not

    def apply(self, node, graph, plan):
        (axis, n), x = plan, node.inputs[0]
        rank, reverse = len(x.shape), bool(node.attrs.get("reverse", 0))
        b = Builder(graph, node, self.name)

        def shift(y, k):
            start, end = (k, n) if reverse else (0, n - k)
            part = b.op("Slice", [y, b.const([start], np.int64), b.const([end], np.int64),
                                  b.const([axis], np.int64)], dtype=x.dtype)
            pads = np.zeros(2 * rank, np.int64)
            pads[axis + (rank if reverse else 0)] = k
            return b.op("Pad", [part, b.const(pads)], dtype=x.dtype, shape=x.shape)

        y, k = x, 1
        while k < n:
            y = b.op("Add", [y, shift(y, k)], dtype=x.dtype, shape=x.shape)
            k *= 2
        if node.attrs.get("exclusive", 0) and n > 0:
            y = shift(y, 1)
        if y is x:
            y = b.op("Identity", [x], dtype=x.dtype, shape=x.shape)
        replace_output(graph, node.outputs[0], y)
