"""Run a float16 or bfloat16 graph on CPU with that rounding where the graph says float16 or bfloat16.

onnxruntime's CPU provider has float16 kernels for few ops. For the rest it
inserts Casts and computes in float32, and then removes the Cast pairs it put
between two such nodes (float32 → float16 → float32), so an intermediate
tensor is never rounded: a MatMul whose result exceeds 65504 followed by a Mul
that scales it back gives a finite answer, where TensorRT (and any float16
storage) gives inf. For bfloat16 it has no kernels at all beyond Cast and data
movement (Add, Mul, MatMul, Conv, Relu: "Could not find an implementation"),
so a bfloat16 graph does not run there as written. A validation run that
misses the rounding validates nothing, so seams, ``--auto-mixed`` and the
onnxruntime backend's bfloat16 artifact run the graph through
``storage_emulation``:

* every node computes in float32 (float16 and bfloat16 constants widened
  exactly);
* every tensor the graph holds in float16 or bfloat16 is rounded to that type
  and back with an explicit Cast pair right after it is produced, which
  onnxruntime implements for both types and keeps (it only removes the pairs
  it inserted itself); its float32 → bfloat16 Cast rounds to nearest even;
* float16 graph inputs and outputs stay float16 at the edge.

This is narrow storage with float32 arithmetic inside each node, which is
what TensorRT's float16 and bfloat16 kernels do (float32 accumulation), and
OpenVINO's bf16 kernels on AMX; TensorRT may also fuse nodes and skip a
rounding between them, so it can only be more precise than this emulation,
not less, at the boundaries emulated here.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .dtypes import LOW_FLOATS, has_bfloat16, has_float16, narrow_floats, np_dtype, onnx_dtype  # noqa: F401

F16, BF16, F32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT
_NARROW = frozenset(np_dtype(t) for t in LOW_FLOATS)  # numpy float16 and ml_dtypes' bfloat16


def _narrow(dtype) -> int | None:
    code = onnx_dtype(dtype)
    return code if code in LOW_FLOATS else None


def storage_emulation(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float32-arithmetic, float16/bfloat16-storage twin of ``model`` (see the module docstring)."""
    # graphsurgeon warns on reading each bfloat16 constant (numpy lacks the type); widening them is the point here
    gs.logger.G_LOGGER.severity = max(gs.logger.G_LOGGER.severity, gs.logger.G_LOGGER.ERROR)
    model = onnx.shape_inference.infer_shapes(model)
    graph = gs.import_onnx(model)
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Constant) and tensor.values.dtype in _NARROW:
            tensor.values = tensor.values.astype(np.float32)
    n = 0

    def rounded(source: gs.Variable, target: gs.Variable, to: int) -> list[gs.Node]:
        nonlocal n
        half = gs.Variable(f"{source.name}__{LOW_FLOATS[to]}_round_{n}", to, source.shape)
        n += 1
        return [gs.Node("Cast", attrs={"to": to}, inputs=[source], outputs=[half]),
                gs.Node("Cast", attrs={"to": F32}, inputs=[half], outputs=[target])]

    added = []
    for i, inp in enumerate(list(graph.inputs)):
        if _narrow(inp.dtype):  # a narrow input: widen at the edge, exactly (its readers keep the widened tensor)
            edge = gs.Variable(inp.name, inp.dtype, inp.shape)
            inp.name, inp.dtype = f"{inp.name}__fp32", np.float32
            added.append(gs.Node("Cast", attrs={"to": F32}, inputs=[edge], outputs=[inp]))
            graph.inputs[i] = edge
    for node in list(graph.nodes):
        fill = node.attrs.get("value")  # ConstantOfShape's fill value
        if isinstance(fill, gs.Constant) and fill.values.dtype in _NARROW:
            fill.values = fill.values.astype(np.float32)
        if node.op == "Cast" and node.attrs.get("to") in LOW_FLOATS:
            node.attrs["to"] = F32
        for i, out in enumerate(list(node.outputs)):
            to = _narrow(out.dtype)
            if to is None:
                continue
            raw = gs.Variable(f"{out.name}__fp32", np.float32, out.shape)
            node.outputs[i] = raw
            out.dtype = np.float32
            added.extend(rounded(raw, out, to))
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


fp16_storage = storage_emulation  # its name before bfloat16
