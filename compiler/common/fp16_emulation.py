"""Run a float16 graph on CPU with float16 rounding where the graph says float16.

onnxruntime's CPU provider has float16 kernels for few ops. For the rest it
inserts Casts and computes in float32, and then removes the Cast pairs it put
between two such nodes (float32 → float16 → float32), so an intermediate
tensor is never rounded: a MatMul whose result exceeds 65504 followed by a Mul
that scales it back gives a finite answer, where TensorRT (and any float16
storage) gives inf. A validation run that misses float16 overflow validates
nothing, so seams and ``--auto-mixed`` run the graph through ``fp16_storage``:

* every node computes in float32 (float16 constants widened exactly);
* every tensor the graph holds in float16 is rounded to float16 and back with
  an explicit Cast pair right after it is produced, which onnxruntime keeps
  (it only removes the pairs it inserted itself);
* float16 graph inputs and outputs stay float16 at the edge.

This is float16 storage with float32 arithmetic inside each node, which is
what TensorRT's float16 kernels do (float32 accumulation); TensorRT may also
fuse nodes and skip a rounding between them, so it can only be more precise
than this emulation, not less, at the boundaries emulated here.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from passes.infra import reconnect

F16, F32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT


def has_float16(model: onnx.ModelProto) -> bool:
    graph = model.graph
    if any(i.data_type == F16 for i in graph.initializer):
        return True
    values = list(graph.input) + list(graph.output) + list(graph.value_info)
    if any(v.type.tensor_type.elem_type == F16 for v in values):
        return True
    return any(n.op_type == "Cast" and any(a.name == "to" and a.i == F16 for a in n.attribute) for n in graph.node)


def fp16_storage(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float32-arithmetic, float16-storage twin of ``model`` (see the module docstring)."""
    model = onnx.shape_inference.infer_shapes(model)
    graph = gs.import_onnx(model)
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Constant) and tensor.values.dtype == np.float16:
            tensor.values = tensor.values.astype(np.float32)
    n = 0

    def rounded(source: gs.Variable, target: gs.Variable) -> list[gs.Node]:
        nonlocal n
        half = gs.Variable(f"{source.name}__fp16_round_{n}", np.float16, source.shape)
        n += 1
        return [gs.Node("Cast", attrs={"to": F16}, inputs=[source], outputs=[half]),
                gs.Node("Cast", attrs={"to": F32}, inputs=[half], outputs=[target])]

    added = []
    for inp in graph.inputs:
        if inp.dtype == np.float16:  # a float16 input: widen at the edge, exactly
            wide = gs.Variable(f"{inp.name}__fp32", np.float32, inp.shape)
            reconnect(inp.outputs, "inputs", inp, wide)
            added.append(gs.Node("Cast", attrs={"to": F32}, inputs=[inp], outputs=[wide]))
    for node in list(graph.nodes):
        fill = node.attrs.get("value")  # ConstantOfShape's fill value
        if isinstance(fill, gs.Constant) and fill.values.dtype == np.float16:
            fill.values = fill.values.astype(np.float32)
        if node.op == "Cast" and node.attrs.get("to") == F16:
            node.attrs["to"] = F32
        for i, out in enumerate(list(node.outputs)):
            if out.dtype != np.float16:
                continue
            raw = gs.Variable(f"{out.name}__fp32", np.float32, out.shape)
            node.outputs[i] = raw
            out.dtype = np.float32
            added.extend(rounded(raw, out))
    graph.nodes.extend(added)
    for i, out in enumerate(list(graph.outputs)):
        if out.dtype == np.float32 and any(o.name == out.name and o.type.tensor_type.elem_type == F16
                                           for o in model.graph.output):
            edge = gs.Variable(f"{out.name}__fp16_out", np.float16, out.shape)
            added_cast = gs.Node("Cast", attrs={"to": F16}, inputs=[out], outputs=[edge])
            graph.nodes.append(added_cast)
            out.name, edge.name = f"{out.name}__fp32_out", out.name
            graph.outputs[i] = edge
    graph.toposort()
    result = gs.export_onnx(graph, do_type_check=False)
    result.ir_version = model.ir_version
    del result.graph.value_info[:]
    return result
