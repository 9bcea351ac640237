"""Small helpers over ONNX protos shared by the stages (IO specs, histograms, loading)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx

from .artifacts import ModelInfo, TensorSpec
from .errors import InspectError


def _value_spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    tt = vi.type.tensor_type
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
    except (KeyError, TypeError, ValueError):
        dtype = onnx.TensorProto.DataType.Name(tt.elem_type).lower()
    if not tt.HasField("shape"):
        return TensorSpec(vi.name, dtype, (None,), unknown_rank=True)
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
    return TensorSpec(vi.name, dtype, dims)


def io_specs(model: onnx.ModelProto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    inits = {i.name for i in model.graph.initializer}
    inputs = tuple(_value_spec(v) for v in model.graph.input if v.name not in inits)
    return inputs, tuple(_value_spec(v) for v in model.graph.output)


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Op types of the main graph (subgraph bodies of If/Loop count as their parent node)."""
    return dict(Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                        for n in model.graph.node))


def tensor_table(model: onnx.ModelProto) -> list[tuple[str, str, TensorSpec | None]]:
    """Every tensor of the main graph: (name, what produces it, its inferred spec or None)."""
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # still list names where inference fails
        pass
    infos = {v.name: _value_spec(v) for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]}
    inits = {i.name for i in model.graph.initializer}
    rows = [(v.name, "graph input", infos[v.name]) for v in model.graph.input if v.name not in inits]
    rows += [(out, f"{n.op_type} '{n.name}'", infos.get(out)) for n in model.graph.node for out in n.output]
    return rows


def load(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError, OSError, ValueError... for a bad file
        raise InspectError(f"'{path}' is not a readable ONNX model ({type(e).__name__}: {e})",
                           "pass a valid .onnx file or a SavedModel directory") from None


def inspect_onnx(path: Path) -> ModelInfo:
    model = load(path)
    inputs, outputs = io_specs(model)
    from .interface import read

    return ModelInfo(path=Path(path), format="onnx", signature=None, inputs=inputs, outputs=outputs,
                     ops=op_histogram(model), interface=read(model).to_json())


def nonstandard_nodes(model: onnx.ModelProto, allowed_domains=()) -> list[onnx.NodeProto]:
    """Nodes that are not ops of the ONNX standard (at the model's opset) nor of an allowed domain.

    tf2onnx leaves a TensorFlow op it cannot convert in the graph under its TF
    name and the default domain, and still returns "successfully".
    """
    opsets = {o.domain or "": o.version for o in model.opset_import}
    bad = []

    def visit(graph):
        for n in graph.node:
            domain = n.domain or ""
            if domain in allowed_domains:
                pass
            elif domain in ("", "ai.onnx", "ai.onnx.ml"):
                version = opsets.get(domain, opsets.get("", 1))
                try:
                    onnx.defs.get_schema(n.op_type, version, domain if domain != "ai.onnx" else "")
                except onnx.defs.SchemaError:
                    bad.append(n)
            else:
                bad.append(n)
            for attr in n.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(model.graph)
    return bad
