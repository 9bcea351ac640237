"""infer_shapes: annotate every tensor with the shape and dtype ONNX shape inference derives.

Rewrite: none structural; tensors without (or with less specific) shape or
dtype information get it from ``onnx.shape_inference`` with data propagation,
so ``fold_constants`` can fold ``Shape`` subgraphs and later passes can reason
about ranks. A known dimension is never replaced by an unknown one.
"""
from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs

from .infra import Pass, PassResult


def _more_specific(new, old) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    if len(new) != len(old):
        return False
    gained = False
    for n, o in zip(new, old):
        n_static, o_static = isinstance(n, int) and n >= 0, isinstance(o, int) and o >= 0
        if o_static and (not n_static or n != o):
            return False  # never lose or contradict a static dim
        if n_static and not o_static:
            gained = True
    return gained


# Constants at least this big are weights, not shape arithmetic: inference needs their type and shape only.
LARGE = 4096


def _without_weights(graph: gs.Graph) -> onnx.ModelProto:
    """The graph as a model whose large main-graph constants are typed inputs without data.

    Inference reads values only to propagate shapes, which never come from weights, so
    exporting hundreds of MiB of them (VGG's 550 MiB, every round) would be pure cost.
    """
    large = [t for t in graph.tensors().values()
             if isinstance(t, gs.Constant) and t.values.size >= LARGE and not t.inputs]
    saved = [(t, t.values) for t in large]
    inputs = list(graph.inputs)
    try:
        for t, values in saved:
            t.to_variable(dtype=values.dtype, shape=list(values.shape))
            t.type = "tensor_type"  # to_variable leaves it unset, and the exporter reads it
        graph.inputs = inputs + large
        return gs.export_onnx(graph, do_type_check=False)
    finally:
        graph.inputs = inputs
        for t, values in saved:
            t.to_constant(values)
            t.__dict__.pop("type", None)


class InferShapes(Pass):
    name = "infer_shapes"

    def run(self, graph: gs.Graph) -> PassResult:
        inferred = onnx.shape_inference.infer_shapes(_without_weights(graph), data_prop=True)
        infos = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
        updated = 0
        for name, t in graph.tensors().items():
            if isinstance(t, gs.Constant) or name not in infos:
                continue
            tt = infos[name].type.tensor_type
            changed = False
            if tt.elem_type and t.dtype is None:
                t.dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
                changed = True
            if tt.HasField("shape"):
                shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
                if _more_specific(shape, t.shape):
                    t.shape = shape
                    changed = True
            updated += changed
        return PassResult(changed=updated > 0, stats={"tensors_updated": updated})
