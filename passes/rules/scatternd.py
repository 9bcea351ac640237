"""scatternd_reduction: ScatterND with reduction add/mul/max/min (TensorRT rejects reduction) without reduction."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from . import Builder, Refusal, Rule, constant_value, replace_output, static_shape

COMBINE = {"add": "Add", "mul": "Mul", "max": "Max", "min": "Min"}
MAX_LAYERS = 16  # sequential scatters for a constant index repeated this often; beyond, add goes one-hot
MAX_ONEHOT = 1 << 22  # elements of the one-hot matrix (M data rows × N updates)


def _reduction(node: gs.Node) -> str:
    r = node.attrs.get("reduction", "none")
    return r.decode() if isinstance(r, bytes) else str(r)


def _occurrences(rows: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    """For each index row, how many earlier rows name the same element (0 for its first occurrence)."""
    flat = np.ravel_multi_index(tuple(rows.T), dims)
    order = np.argsort(flat, kind="stable")
    ranked = flat[order]
    first = np.r_[True, ranked[1:] != ranked[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(ranked)), 0))
    occ = np.empty(len(flat), np.int64)
    occ[order] = np.arange(len(ranked)) - start
    return occ


class ScatterNDReduction(Rule):
    """ScatterND(data, indices, updates, reduction=r) → ScatterND without reduction.

    With k = indices.shape[-1], an index row names the slice ``data[i_1..i_k]``;
    ``⊕`` is Add/Mul/Max/Min for r = add/mul/max/min.

    Constant indices (negative ones normalised, range-checked): split the rows
    into layers by occurrence, layer j holding the j-th occurrence of every
    element named, so a layer has no duplicates. Per layer (unique indices:
    one layer, no Gather)::

        cur = ScatterND(cur, I_j, GatherND(cur, I_j) ⊕ Gather(updates, rows_j))

    Exact, bit for bit: each element still receives its updates in index
    order, as the ONNX reference and onnxruntime apply them. Beyond 16
    layers, add goes one-hot and the others are refused.

    add with run-time indices (or with a constant index repeated > 16 times):
    a one-hot matrix product. With M = prod(data.shape[:k]) element slices,
    N index rows and S the slice size, ``flat = Σ_c (I[:, c] mod d_c)·stride_c``
    (the ravel of each row over data's leading dims), ``H = Cast(Equal(arange(M)ᵀ,
    flat))`` of shape M×N, and ``out = data + Reshape(MatMul(H, Reshape(updates,
    N×S)), data.shape)``. Exact up to float summation order (updates to one
    element are summed first, then added to data). A ±inf or NaN in the
    updates becomes NaN in that column of every slice (0·inf = NaN), which the
    data decide at run time and no static check can refuse. Float32/float16
    only (TensorRT's MatMul is float-only); refused when H would exceed 2²²
    elements.

    Refused: mul/max/min with run-time indices (duplicates must be combined
    by product/max/min, which no TensorRT op does for indices known only at
    run time; a one-hot matrix product can only sum); mul/max/min with a
    constant index repeated more than 16 times (that many sequential
    scatters); constant indices out of range; shapes that are not static.
    """

    name = "scatternd_reduction"
    op = "ScatterND"

    def wants(self, node, graph):
        return _reduction(node) != "none"

    def check(self, node, graph) -> tuple | Refusal:
        """The plan: ("layers", rows, occurrences, layer count) or ("onehot",); else why not."""
        data, indices, updates = node.inputs
        red = _reduction(node)
        if red not in COMBINE:
            return Refusal(f"unknown reduction '{red}'")
        dshape, ishape = static_shape(data), static_shape(indices)
        if dshape is None or ishape is None or static_shape(updates) is None:
            return Refusal("data, indices and updates need static shapes")
        k = ishape[-1]
        if not 1 <= k <= len(dshape):
            return Refusal(f"indices rows of length {k} for data of rank {len(dshape)}")
        idx = constant_value(indices)
        if idx is not None:
            rows, dims = np.asarray(idx, np.int64).reshape(-1, k), np.array(dshape[:k])
            if ((rows < -dims) | (rows >= dims)).any():
                return Refusal(f"constant indices out of range for data of shape {dshape}")
            rows = rows % dims
            occ = _occurrences(rows, dshape[:k]) if len(rows) else np.zeros(0, np.int64)
            layers = int(occ.max()) + 1 if len(occ) else 1
            if layers <= MAX_LAYERS:
                return "layers", rows, occ, layers
            if red != "add":
                return Refusal(f"reduction '{red}': a constant index repeats {layers} times (more than "
                               f"{MAX_LAYERS} sequential scatters), and only a sum can be done as one one-hot "
                               "matrix product")
        elif red != "add":
            return Refusal(f"reduction '{red}' with indices computed at run time: duplicate indices must be "
                           f"combined by {red}, which no TensorRT op does (a one-hot matrix product can only sum)")
        if data.dtype is None or np.dtype(data.dtype) not in (np.float32, np.float16):
            return Refusal(f"add via a one-hot MatMul needs float32/float16 data (TensorRT's MatMul is "
                           f"float-only), not {data.dtype}")
        m, n = int(np.prod(dshape[:k])), int(np.prod(ishape[:-1]))
        if m * n > MAX_ONEHOT:
            return Refusal(f"the one-hot matrix would have {m}×{n} = {m * n} elements (limit {MAX_ONEHOT})")
        return ("onehot",)

    def apply(self, node, graph, plan):
        b = Builder(graph, node, self.name)
        (data, indices, updates), out = node.inputs, node.outputs[0]
        dshape, ishape = static_shape(data), static_shape(indices)
        k = ishape[-1]
        if plan[0] == "layers":
            _, rows, occ, layers = plan
            combine = COMBINE[_reduction(node)]
            flat_updates = updates if layers == 1 else b.op("Reshape", [updates, b.const((-1, *dshape[k:]), np.int64)])
            cur = data
            for j in range(layers):
                sel = np.flatnonzero(occ == j)
                idx = b.const(rows.reshape(ishape) if layers == 1 else rows[sel])
                upd = flat_updates if layers == 1 else b.op("Gather", [flat_updates, b.const(sel)], {"axis": 0})
                new = b.op(combine, [b.op("GatherND", [cur, idx]), upd])
                cur = b.op("ScatterND", [cur, idx, new], dtype=data.dtype, shape=list(dshape))
        else:
            m, n = int(np.prod(dshape[:k])), int(np.prod(ishape[:-1]))
            rows = b.op("Mod", [b.op("Reshape", [indices, b.const((n, k), np.int64)]), b.const(dshape[:k], np.int64)])
            if k > 1:
                strides = np.array([int(np.prod(dshape[c + 1:k])) for c in range(k)], np.int64)
                scaled = b.op("Mul", [rows, b.const(strides)])
                rows = (b.op("ReduceSum", [scaled, b.const([1], np.int64)], {"keepdims": 0}) if graph.opset >= 13
                        else b.op("ReduceSum", [scaled], {"axes": [1], "keepdims": 0}))
            flat = b.op("Reshape", [rows, b.const((1, n), np.int64)])
            hit = b.op("Equal", [b.const(np.arange(m, dtype=np.int64).reshape(m, 1)), flat])
            onehot = b.op("Cast", [hit], {"to": onnx.helper.np_dtype_to_tensor_dtype(np.dtype(data.dtype))})
            sums = b.op("MatMul", [onehot, b.op("Reshape", [updates, b.const((n, -1), np.int64)])])
            cur = b.op("Add", [data, b.op("Reshape", [sums, b.const(dshape, np.int64)])], dtype=data.dtype,
                       shape=list(dshape))
        replace_output(graph, out, cur)
