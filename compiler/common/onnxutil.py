"""Small helpers over ONNX protos shared by the stages (IO specs, histograms, loading, saving).

Saving (``save``/``write``): a protobuf file cannot exceed 2 GiB, so a model whose tensors hold more than
``EXTERNAL_DATA_BYTES`` is written with its tensors of ``EXTERNAL_MIN_BYTES`` or more in one external-data file
beside it, ``<file name>.data`` (README, "Models over 2 GB"); smaller models stay one file.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx

from ..artifacts import ModelInfo, TensorSpec, atomic_output, companion_path
from ..errors import CompilerError, InspectError
from .io_change import read
from ..sandbox import read_onnx


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
    """The ONNX model at ``path`` with its external data, which must lie inside its directory (compiler/sandbox.py)."""
    try:
        return read_onnx(path)
    except CompilerError:
        raise
    except Exception as e:  # onnx raises DecodeError, OSError, ValueError... for a bad file
        raise InspectError(f"'{path}' is not a readable ONNX model ({type(e).__name__}: {e})",
                           "pass a valid .onnx file or a SavedModel directory") from None


EXTERNAL_DATA_BYTES = 1 << 30  # tensors beyond 1 GiB in all: external data (well below protobuf's 2 GiB cap)
EXTERNAL_MIN_BYTES = 1024  # smaller tensors (shapes, scales, biases) stay inside the model file
DATA_SUFFIX = ".data"  # the external-data file: the model file's name plus this, in its directory
PROTOBUF_LIMIT = 2**31 - 1  # the most bytes one serialized protobuf message may hold


def tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes the main graph's initializers and Constant values take in the proto (external ones counted by their
    recorded length), without copying any of them."""
    total = 0
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node if n.op_type == "Constant"
                                                for a in n.attribute if a.HasField("t")]
    for t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            total += int(next((e.value for e in t.external_data if e.key == "length"), 0) or 0)
        else:
            total += t.ByteSize()
    return total


def needs_external_data(model: onnx.ModelProto) -> bool:
    """Whether ``model`` is saved with external data (its tensors exceed ``EXTERNAL_DATA_BYTES``)."""
    return tensor_bytes(model) > EXTERNAL_DATA_BYTES


def write(model: onnx.ModelProto, tmp: Path) -> None:
    """Write ``model`` to ``tmp``, a path ``atomic_output`` yielded; a big model's tensors go to its companion
    ``<final name>.data`` (``artifacts.companion_path``), and move out of ``model`` (its weights are freed)."""
    if not needs_external_data(model):
        onnx.save(model, str(tmp))
        return
    from onnx.external_data_helper import convert_model_to_external_data, write_external_data_tensors

    data = companion_path(tmp, DATA_SUFFIX)
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=data.name,
                                   size_threshold=EXTERNAL_MIN_BYTES, convert_attribute=True)
    write_external_data_tensors(model, str(data.parent))  # clears each tensor's raw_data once written
    onnx.save(model, str(tmp))


def save(model: onnx.ModelProto, path: Path, what: str = "ONNX model") -> None:
    """``write`` ``model`` to ``path`` atomically (the model and its external data appear together, or neither)."""
    with atomic_output(Path(path), what) as tmp:
        write(model, tmp)


def inspect_onnx(path: Path) -> ModelInfo:
    check_input_model(path)
    model = load(path)
    inputs, outputs = io_specs(model)

    return ModelInfo(path=Path(path), format="onnx", signature=None, inputs=inputs, outputs=outputs,
                     ops=op_histogram(model), change=read(model))


# ------------------------------------------------------------------------------ the input model's own checks

MIN_OPSET = 7  # the oldest ONNX opset onnxruntime runs
RUNNABLE_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")  # what onnxruntime runs without custom ops
INPUT_FIX = "fix or re-export the model; it is the input, not something a pass made"


def check_input_model(path: Path) -> onnx.ModelProto:
    """The ONNX file a user gave, parsed without its external data and checked as an input: not empty, a
    ModelProto, an opset onnxruntime and onnx support, ops they know, outputs, unique names, a DAG, and
    ``onnx.checker`` (full). Raises InspectError naming the node or tensor; returns the parsed model."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise InspectError(f"'{path}' is empty (0 bytes)", "pass the .onnx file the exporter wrote; this one was "
                           "truncated or never written")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # DecodeError, OSError...
        raise InspectError(f"'{path}' is not an ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                           "pass an .onnx file (a serialized onnx.ModelProto)") from None
    if not model.HasField("graph") or not model.ir_version:
        raise InspectError(f"'{path}' is not an ONNX model (it parses, but holds no graph or IR version)",
                           "pass an .onnx file (a serialized onnx.ModelProto)")
    _check_opset(model, path)
    graph = model.graph
    if not graph.output:
        raise InspectError(f"'{path}' has no outputs", "export the model with at least one graph output")
    _check_ops(model, path)
    _check_names(graph, path)
    order = _topological_order(graph, path)
    _run_checker(model, order, path)
    return model


def _check_opset(model: onnx.ModelProto, path: Path) -> None:
    newest = onnx.defs.onnx_opset_version()
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise InspectError(f"'{path}' imports no ONNX opset (opset_import lacks the default domain)",
                           f"re-export it with an opset between {MIN_OPSET} and {newest}")
    if not MIN_OPSET <= versions[0] <= newest:
        raise InspectError(f"'{path}' uses ONNX opset {versions[0]}; supported are opsets {MIN_OPSET} to {newest}",
                           f"re-export it at an opset in that range (the exporter's default is 17), or convert it "
                           "with onnx.version_converter")


def _check_ops(model: onnx.ModelProto, path: Path) -> None:
    for node in nonstandard_nodes(model, allowed_domains=RUNNABLE_DOMAINS[3:]):
        name = node.name or (node.output[0] if node.output else "?")
        domain = node.domain or ""
        if domain in RUNNABLE_DOMAINS:
            version = next((o.version for o in model.opset_import if o.domain == domain), "?")
            raise InspectError(f"'{path}': node '{name}' is op '{node.op_type}', which ONNX opset {version} does "
                               "not define", "replace it with standard ONNX ops, or re-export the model")
        raise InspectError(f"'{path}': node '{name}' is op '{node.op_type}' of the custom domain '{domain}', "
                           "which onnxruntime cannot run (validation needs it)",
                           "export without custom ops, or replace the node with standard ONNX ops")


def _check_names(graph: onnx.GraphProto, path: Path) -> None:
    seen: dict[str, str] = {}
    for vi in graph.input:
        if vi.name in seen:
            raise InspectError(f"'{path}' lists graph input '{vi.name}' twice", INPUT_FIX)
        seen[vi.name] = "a graph input"
    inits = {i.name for i in graph.initializer}
    for node in graph.node:
        label = f"node '{node.name or node.op_type}'"
        for out in node.output:
            if not out:
                continue
            if out in seen or out in inits:
                first = seen.get(out, "an initializer")
                raise InspectError(f"'{path}': tensor '{out}' is written by {label} and by {first} (names must be "
                                   "unique)", INPUT_FIX)
            seen[out] = label
    for node in graph.node:
        missing = [t for t in node.input if t and t not in seen and t not in inits]
        if missing:
            raise InspectError(f"'{path}': node '{node.name or node.op_type}' reads tensor '{missing[0]}', which is "
                               "no graph input, initializer or node output", INPUT_FIX)


def _topological_order(graph: onnx.GraphProto, path: Path) -> list[int] | None:
    """Node indices in a topological order (None when the file's order already is one); InspectError naming
    the nodes of a cycle when there is none."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    deps = [{producer[t] for t in _reads(node) if t in producer} for node in graph.node]
    if all(d < i for i, ds in enumerate(deps) for d in ds):
        return None
    order, state = [], [0] * len(deps)  # 0 new, 1 on the path, 2 done
    for start in range(len(deps)):
        stack = [(start, iter(sorted(deps[start])))] if not state[start] else []
        state[start] = state[start] or 1
        while stack:
            i, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[i] = 2
                order.append(i)
                stack.pop()
            elif state[nxt] == 1:
                ring = [j for j, _ in stack][[j for j, _ in stack].index(nxt):]
                names = ", ".join(f"'{graph.node[j].name or graph.node[j].op_type}'" for j in ring)
                raise InspectError(f"'{path}': the graph is not a DAG: nodes {names} form a cycle",
                                   f"break the cycle; {INPUT_FIX}")
            elif not state[nxt]:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(deps[nxt]))))
    return order


def _reads(node: onnx.NodeProto) -> set[str]:
    """What ``node`` reads: its inputs and the outer-scope names its subgraphs (Loop/If bodies) use."""
    names = {t for t in node.input if t}
    for attr in node.attribute:
        for g in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            local = {v.name for v in [*g.input, *g.initializer]} | {o for n in g.node for o in n.output}
            names |= {t for n in g.node for t in _reads(n)} - local
    return names


def _run_checker(model: onnx.ModelProto, order: list[int] | None, path: Path) -> None:
    """onnx.checker (full) on ``model`` with external initializers made inputs (their bytes stay unread) and the
    nodes in ``order`` (a file whose nodes are merely unsorted is sorted by the passes, not refused)."""
    external = [i for i in model.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
    if external or order is not None:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        graph = model.graph
        if order is not None:
            nodes = [graph.node[i] for i in order]
            graph.ClearField("node")
            graph.node.extend(nodes)
        listed = {v.name for v in graph.input}
        for init in [i for i in graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]:
            if init.name not in listed:
                graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
            graph.initializer.remove(init)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise InspectError(f"'{path}' fails the ONNX checker: {str(e).strip().splitlines()[0][:300]}",
                           INPUT_FIX) from None


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
