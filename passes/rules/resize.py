"""resize_supported: a Resize TensorRT rejects (mode, coordinates, antialias) as an exact supported equivalent."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from . import Builder, Rule, constant_value, replace_output, static_shape

SUPPORTED_COORD = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
MAX_MATRIX = 1 << 22  # elements of one interpolation matrix
CHECK_TOL = 1e-5  # matrices vs the Resize itself, on random data in [-1, 1]


def _s(node: gs.Node, name: str, default: str) -> str:
    v = node.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def _problem(node: gs.Node, coord: str | None = None) -> str | None:
    """What TensorRT's parser rejects in this Resize (with ``coord`` in place of its own), or None."""
    coord = coord or _s(node, "coordinate_transformation_mode", "half_pixel")
    if coord not in SUPPORTED_COORD:
        return f"coordinate_transformation_mode '{coord}'"
    if _s(node, "mode", "nearest") not in ("nearest", "linear"):
        return f"mode '{_s(node, 'mode', 'nearest')}'"
    if node.attrs.get("antialias", 0):
        return "antialias=1"
    if _s(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        return f"keep_aspect_ratio_policy '{_s(node, 'keep_aspect_ratio_policy', 'stretch')}'"
    return None


def _optional(node: gs.Node, i: int):
    """Input ``i``: None when absent or empty, its value when constant, else the tensor itself."""
    if len(node.inputs) <= i or not node.inputs[i].name:
        return None
    value = constant_value(node.inputs[i])
    if value is None:
        return node.inputs[i]
    return None if value.size == 0 else np.asarray(value)


def _axis_params(node: gs.Node) -> dict | str:
    """Per axis: input and output length, scale, roi start and end; or why they are not all static."""
    x, y = node.inputs[0], node.outputs[0]
    in_shape, out_shape = static_shape(x), static_shape(y)
    if in_shape is None or out_shape is None:
        return "input and output shapes must be static (run infer_shapes on frozen input shapes first)"
    r = len(in_shape)
    axes = [a % r for a in node.attrs.get("axes", range(r))]
    roi, scales, sizes = (_optional(node, i) for i in (1, 2, 3))
    for name, v in (("roi", roi), ("scales", scales), ("sizes", sizes)):
        if isinstance(v, gs.Tensor):
            return f"{name} is computed at run time; the rewrite needs it constant"
    scale = [1.0] * r
    start, end = [0.0] * r, [1.0] * r
    for j, a in enumerate(axes):
        if sizes is not None:
            scale[a] = float(np.float32(sizes[j]) / np.float32(in_shape[a]))
        elif scales is not None:
            scale[a] = float(np.float32(scales[j]))
        if roi is not None:
            start[a], end[a] = float(roi[j]), float(roi[len(axes) + j])
    return {"in": in_shape, "out": out_shape, "scale": scale, "start": start, "end": end, "axes": axes,
            "uses_sizes": sizes is not None, "roi": roi, "scales": scales, "sizes": sizes}


def _equivalent_coord(node: gs.Node, p: dict) -> str | None:
    """A supported coordinate mode computing exactly what this node's does, or None."""
    coord = _s(node, "coordinate_transformation_mode", "half_pixel")
    axes = range(len(p["in"]))
    if coord == "tf_crop_and_resize":
        # x_orig = start·(L−1) + x·(end−start)·(L−1)/(l−1), and 0.5·(start+end)·(L−1) when l = 1: with the
        # whole image (start 0, end 1) that is align_corners' x·(L−1)/(l−1), except at l = 1 (center vs 0).
        whole = all(p["in"][a] == 1 or (p["start"][a], p["end"][a]) == (0.0, 1.0) for a in axes)
        if whole and all(p["out"][a] > 1 or p["in"][a] == 1 for a in axes):
            return "align_corners"
    if coord == "half_pixel_symmetric":
        # x_orig = L/2·(1 − l/(s·L)) + (x + 0.5)/s − 0.5: the first term vanishes when s·L = l (in float32,
        # as runtimes compute it).
        if all(p["uses_sizes"] or np.float32(p["scale"][a]) * np.float32(p["in"][a]) == p["out"][a] for a in axes):
            return "half_pixel"
    return None


def _ort_resize(node: gs.Node, opset: int, x: np.ndarray, roi, scales, sizes, axes=None) -> np.ndarray:
    """Evaluate a Resize with ``node``'s attributes, ``axes`` replaced (None: dropped), on ``x`` with onnxruntime.

    Seven parameters: one per Resize input and attribute the two callers vary."""
    import onnxruntime as ort

    given = [("roi", roi, np.float32), ("scales", scales, np.float32)] + ([] if sizes is None else [
        ("sizes", sizes, np.int64)])
    inits = [onnx.numpy_helper.from_array(np.asarray(v, dtype), name) for name, v, dtype in given]
    attrs = {k: v for k, v in node.attrs.items() if k != "axes"} | ({} if axes is None else {"axes": axes})
    resize = onnx.helper.make_node("Resize", ["x"] + [name for name, _, _ in given], ["y"], **attrs)
    graph = onnx.helper.make_graph(
        [resize], "resize", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape))],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=inits)
    opsets = [onnx.helper.make_opsetid("", opset)]
    model = onnx.helper.make_model(graph, opset_imports=opsets,
                                   ir_version=onnx.helper.find_min_ir_version_for(opsets))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x.astype(np.float32)})[0]


def _apply_matrices(x: np.ndarray, matrices: dict[int, np.ndarray]) -> np.ndarray:
    for a, m in matrices.items():
        x = np.moveaxis(np.tensordot(m, x, axes=(1, a)), 0, a)
    return x


class ResizeSupported(Rule):
    """Resize with a mode TensorRT rejects → the same Resize in a supported mode, or interpolation MatMuls.

    Exact identities first (only the coordinate mode changes):

    - ``tf_crop_and_resize`` with a constant whole-image roi (start 0, end 1 on
      every axis longer than 1) and no axis shrunk to length 1 is
      ``align_corners``: ``start·(L−1) + x·(end−start)·(L−1)/(l−1) = x·(L−1)/(l−1)``.
    - ``half_pixel_symmetric`` where every output length is exactly scale ×
      input length (always, given ``sizes``) is ``half_pixel``: its offset
      ``L/2·(1 − l/(s·L))`` is 0. onnxruntime evaluates the two formulas in
      different precisions (double vs float), so the results differ by the
      rounding of the source coordinate (≤ 1 ulp of L, times the gradient:
      3e-5 at 997 → 1503 on data in [-1, 1], 0 for power-of-two scales).

    Otherwise (cubic, antialias, another roi, …) with static shapes, constant
    roi/scales/sizes and at most two axes that change: Resize is linear in X
    and separable per axis, ``Y = X ×_h A_h ×_w A_w``, with ``A_a`` (out × in)
    the same Resize applied along axis a to the identity matrix (evaluated
    with onnxruntime). The last axis becomes ``MatMul(X, A_wᵀ)``, the one
    before it ``MatMul(A_h, X)`` (tf2onnx resizes NCHW after a Transpose, so
    no Transpose is needed); any other axis is reshaped to (pre, in, post)
    around ``MatMul(A, ·)``. The matrices are checked against the Resize itself
    on random data before the rewrite, which is refused if they disagree.
    MatMul multiplies every input by its weight, zero included, so a ±inf or
    NaN in X turns its whole row/column of the output into NaN where Resize
    would not read it.

    Refused: shapes or roi/scales/sizes not static; more than two changing
    axes; a matrix over 2²² elements; ``keep_aspect_ratio_policy`` other than
    stretch (one scale shared by the axes has no per-axis equivalent); a
    nonzero ``extrapolation_value`` with a roi reaching outside the image (the
    resize is then affine, not linear); data other than float32/float16.
    """

    name = "resize_supported"
    op = "Resize"


    def wants(self, node, graph):
        return _problem(node) is not None

    def _plan(self, node, graph) -> tuple | str:
        if graph.opset < 11:
            return f"Resize-{graph.opset} has no coordinate modes to rewrite"
        p = _axis_params(node)
        if isinstance(p, str):
            return p
        coord = _equivalent_coord(node, p)
        if coord and _problem(node, coord) is None:
            return "coord", coord
        if _s(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
            return "keep_aspect_ratio_policy other than stretch: the axes share one scale, no per-axis matrices"
        if node.inputs[0].dtype is None or np.dtype(node.inputs[0].dtype) not in (np.float32, np.float16):
            return f"interpolation matrices need float32/float16 data, not {node.inputs[0].dtype}"
        crop = _s(node, "coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize"
        acting = [a for a in range(len(p["in"])) if p["out"][a] != p["in"][a] or p["scale"][a] != 1.0
                  or (crop and p["in"][a] > 1 and (p["start"][a], p["end"][a]) != (0.0, 1.0))]
        if len(acting) > 2:
            return f"resizes {len(acting)} axes {acting}; interpolation matrices are applied to at most two"
        if crop and float(node.attrs.get("extrapolation_value", 0.0)) != 0.0 and any(
                p["start"][a] < 0 or p["end"][a] > 1 for a in acting):
            return "extrapolation_value ≠ 0 with a roi outside the image: the resize is affine, not linear"
        for a in acting:
            if p["in"][a] * p["out"][a] > MAX_MATRIX:
                return (f"axis {a}: the {p['out'][a]}×{p['in'][a]} interpolation matrix exceeds {MAX_MATRIX} "
                        "elements")
        matrices = {a: self._matrix(node, graph, p, a, crop) for a in acting}
        for a, m in matrices.items():
            if m.shape != (p["out"][a], p["in"][a]):
                return f"axis {a}: the Resize gives length {m.shape[0]}, the graph says {p['out'][a]}"
        err = self._disagreement(node, graph, p, matrices)
        if err > CHECK_TOL:
            return f"interpolation matrices do not reproduce this Resize (max abs error {err:.2e})"
        return "matrices", matrices

    @staticmethod
    def _matrix(node, graph, p, a, crop) -> np.ndarray:
        """A_a (out × in): Resize along the last axis of eye(in), transposed; eye's rows go in batches."""
        n, o = p["in"][a], p["out"][a]
        roi = [0.0, p["start"][a], 1.0, p["end"][a]] if crop else []
        rows = max(1, MAX_MATRIX // max(n, o))
        parts = []
        for first in range(0, n, rows):
            c = min(rows, n - first)
            basis = np.zeros((c, n), np.float32)
            basis[np.arange(c), first + np.arange(c)] = 1
            scales, sizes = ([], [c, o]) if p["uses_sizes"] else ([1.0, p["scale"][a]], None)
            parts.append(_ort_resize(node, graph.opset, basis, roi, scales, sizes))
        return np.concatenate(parts).T

    @staticmethod
    def _disagreement(node, graph, p, matrices) -> float:
        """Max abs difference of the matrices from this very Resize on random data, other axes cut to 1."""
        shape = [p["in"][a] if a in matrices else 1 for a in range(len(p["in"]))]
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        sizes = p["sizes"]
        if sizes is not None:
            sizes = [p["out"][a] if a in matrices else 1 for a in p["axes"]]
        ref = _ort_resize(node, graph.opset, x, [] if p["roi"] is None else p["roi"],
                          [] if p["scales"] is None else p["scales"], sizes,
                          p["axes"] if "axes" in node.attrs else None)  # non-negative: onnxruntime 1.23 fails on -1
        mine = _apply_matrices(x.astype(np.float64), {a: m.astype(np.float64) for a, m in matrices.items()})
        return float(np.abs(mine - ref).max()) if ref.shape == mine.shape else np.inf

    def check(self, node, graph):
        return self._plan(node, graph)

    def apply(self, node, graph, plan):
        b = Builder(graph, node, self.name)
        x, y = node.inputs[0], node.outputs[0]
        if plan[0] == "coord":
            inputs = list(node.inputs)
            if _s(node, "coordinate_transformation_mode", "") == "tf_crop_and_resize":
                inputs[1] = b.const(np.zeros(0, np.float32))  # align_corners reads no roi
            new = b.op("Resize", inputs, {**node.attrs, "coordinate_transformation_mode": plan[1]},
                       dtype=y.dtype, shape=y.shape)
        else:
            dtype, shape = np.dtype(x.dtype), list(static_shape(x))
            new = x
            for a, m in sorted(plan[1].items(), key=lambda am: am[1].shape[0] / am[1].shape[1]):  # shrink first
                r, (o, n) = len(shape), m.shape
                after = shape[:a] + [o] + shape[a + 1:]
                if a == r - 1:
                    new = b.op("MatMul", [new, b.const(m.T.astype(dtype))], dtype=dtype, shape=after)
                elif a == r - 2:
                    new = b.op("MatMul", [b.const(m.astype(dtype)), new], dtype=dtype, shape=after)
                else:
                    pre, post = int(np.prod(shape[:a])), int(np.prod(shape[a + 1:]))
                    flat = b.op("Reshape", [new, b.const([pre, n, post], np.int64)])
                    mixed = b.op("MatMul", [b.const(m.astype(dtype)), flat])
                    new = b.op("Reshape", [mixed, b.const(after, np.int64)], dtype=dtype, shape=after)
                shape = after
            if new is x:  # no axis changes: the Resize is an identity
                new = b.op("Identity", [x], dtype=dtype, shape=shape)
        replace_output(graph, y, new)
