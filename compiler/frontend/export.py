"""The tf2onnx call. Every use of tf2onnx in this package lives in this file.

tf2onnx 1.17 has no public ``from_saved_model``; we follow the path its own
CLI takes (``tf_loader.from_saved_model`` then ``convert._convert_common``),
which freezes and optimizes the graph once. ``convert.from_graph_def`` would
freeze and run grappler a second time over the already frozen graph.

tf2onnx reports success even when it leaves TensorFlow ops in the graph, so
every export is verified before it is written: standard ops only, a model the
ONNX checker accepts.

A SavedModel whose variables exceed ``ExportConfig.large_model_bytes`` takes
tf2onnx's large-model path (``large_model=True``: its freeze without the 2 GB
GraphDef check, and its weights kept out of the ModelProto). tf2onnx would zip
one file per tensor; we write them into one external-data file beside the
model (``<name>.data``, the layout ``common.onnxutil.save`` writes), verify
the proto without its weights and load the file in onnxruntime from its path.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
from collections import Counter
from pathlib import Path

import onnx

from . import import_tensorflow, native_stderr_silenced
from ..artifacts import OnnxArtifact, atomic_output
from ..common.memory import release_freed_memory
from ..common.ort import AS_WRITTEN, session
from ..config import ExportConfig
from ..errors import ExportError, raise_pending
from ..common.onnxutil import DATA_SUFFIX, io_specs, nonstandard_nodes, op_histogram
from ..sandbox import external_tensors
from ..artifacts import companion_path
from .converters import CONVERTERS, Unconvertible
from .tf2onnx_fixes import fresh_node_protos, guard_reshape_merge, numpy_product, optimize_without_proto_updates


_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")
# Attributes that stop grappler's function inliner. Both are performance hints
# (compile this with XLA / keep this call), never semantics: clearing them keeps
# the computation and lets the frozen graph become one flat graph tf2onnx can map.
_NO_INLINE_ATTRS = ("_XlaMustCompile", "_noinline")


def inline_function_calls(graph_def, inputs: list[str], outputs: list[str]):
    """Inline function calls that survived tf2onnx's freeze; returns the graph (unchanged if there were none).

    Keras 3 on the TensorFlow backend routes grouped convolutions (ConvNeXt's
    depthwise ``Conv2D(groups=C)``) through an XLA-compiled ``_conv_xla``
    function marked ``_XlaMustCompile`` and ``_noinline``, which grappler
    refuses to inline; tf2onnx then leaves the call in the graph.
    """
    from tf2onnx import tf_loader

    def calls(nodes):
        return [n for n in nodes if n.op in _CALL_OPS]

    if not calls(graph_def.node) and not any(calls(f.node_def) for f in graph_def.library.function):
        return graph_def
    for node in list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]:
        for attr in _NO_INLINE_ATTRS:
            if attr in node.attr:
                del node.attr[attr]
    for fn in graph_def.library.function:
        for attr in _NO_INLINE_ATTRS:
            if attr in fn.attr:
                del fn.attr[attr]
    import tensorflow as tf

    with tf.Graph().as_default():  # grappler runs on a MetaGraph, which needs graph mode
        tf.import_graph_def(graph_def, name="")
        return tf_loader.tf_optimize(inputs, outputs, graph_def)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self.unconvertible: list[str] = []  # a converter's own words for a use it has no ONNX form for

    def emit(self, record):
        self.messages.append(record.getMessage())
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, Unconvertible):
            self.unconvertible.append(str(error))


def _tf2onnx_convert(model_dir: Path, signature: str, cfg: ExportConfig, large: bool = False):
    """(ModelProto, tf2onnx's external tensor storage or None, its error messages, our converters' refusals):
    the weights stay in the storage when ``large``."""
    tf = import_tensorflow()
    import tf2onnx
    from tf2onnx import tf_loader

    tf_logger = logging.getLogger("tf2onnx")
    collector = _Collect()
    old_level, old_propagate = tf_logger.level, tf_logger.propagate
    tf_logger.setLevel(logging.ERROR)
    tf_logger.propagate = False  # we report its errors ourselves, in one line
    tf_logger.addHandler(collector)
    try:
        with native_stderr_silenced():
            try:
                graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
                    str(model_dir), None, None, cfg.tag, [signature], None, large,
                    return_initialized_tables=True, return_tensors_to_rename=True)
            except Exception as e:
                raise ExportError(f"tf2onnx could not load the SavedModel ({type(e).__name__}: {_first_line(e)})",
                                  "check that TensorFlow can load it: tf.saved_model.load(dir); "
                                  "re-run with --debug for the traceback") from e
            gc.collect()  # the SavedModel tf2onnx loaded and froze is cyclic garbage now (ResNet50: 1.4 GB)
            raise_pending()  # a signal that arrived inside a finalizer the collection ran
            graph_def = inline_function_calls(graph_def, inputs, outputs)
            if large:
                graph_def = bypass_const_identities(graph_def, outputs)
            guard_reshape_merge()
            optimize_without_proto_updates()  # the optimizer loop: no proto rewrite per optimizer
            fresh_node_protos()  # every other proto rewrite: a new NodeProto, the old copy freed
            numpy_product()
            _refuse_known_miscompiles(graph_def)
            options = dict(continue_on_error=True, opset=cfg.opset, input_names=inputs, output_names=outputs,
                           tensors_to_rename=renames, initialized_tables=tables, extra_opset=[],
                           custom_op_handlers=dict(CONVERTERS))
            if large:
                light, values = compress_graph_def(graph_def)
                del graph_def  # its buffers (a copy of every weight) go with it
                gc.collect()  # and the SavedModel tf2onnx loaded to freeze it (TensorFlow's objects form cycles)
            try:
                if large:
                    with tf.device("/cpu:0"):
                        model, storage = _convert_large(light, values, str(model_dir), options)
                else:
                    model, storage = _convert(graph_def, dict(name=str(model_dir), **options)), None
            except Exception as e:
                raise ExportError(f"tf2onnx {tf2onnx.__version__} failed to convert ({type(e).__name__}: "
                                  f"{_first_line(e)})",
                                  "try another --opset, or re-run with --debug for the traceback") from e
    finally:
        tf_logger.removeHandler(collector)
        tf_logger.setLevel(old_level)
        tf_logger.propagate = old_propagate
    return model, storage, collector.messages, collector.unconvertible


LARGE_CONST = 1000  # Const contents of more bytes leave the GraphDef (tf2onnx's compress_graph_def threshold)


def compress_graph_def(graph_def):
    """(a new GraphDef without the large Const contents, {node name: content}): tf2onnx's ``compress_graph_def``,
    into a new message. tf2onnx empties the contents in place, but protobuf's upb runtime frees a message's
    buffers only with the whole message, so the emptied GraphDef would keep a copy of every weight."""
    from tensorflow.core.framework import attr_value_pb2, graph_pb2, node_def_pb2, tensor_pb2

    light = graph_pb2.GraphDef()
    light.versions.CopyFrom(graph_def.versions)
    light.library.CopyFrom(graph_def.library)
    values = {}
    for node in graph_def.node:
        tensor = node.attr["value"].tensor if node.op == "Const" else None
        if tensor is None or tensor.ByteSize() <= LARGE_CONST or len(tensor.tensor_content) <= LARGE_CONST:
            light.node.add().CopyFrom(node)
            continue
        values[node.name] = tensor.tensor_content
        copy = node_def_pb2.NodeDef(name=node.name, op=node.op, input=list(node.input), device=node.device)
        for key, attr in node.attr.items():
            if key != "value":
                copy.attr[key].CopyFrom(attr)
        copy.attr["value"].CopyFrom(attr_value_pb2.AttrValue(tensor=tensor_pb2.TensorProto(
            dtype=tensor.dtype, tensor_shape=tensor.tensor_shape)))
        light.node.append(copy)
    return light, values


def _convert_large(light, values: dict, name: str, options: dict):
    """tf2onnx's ``_convert_common`` with ``large_model=True`` (tf2onnx 1.17), holding one copy of each weight
    less: the Const contents (``values``) are dropped once tf2onnx's graph holds them. Returns (ModelProto whose
    large tensors are external references, tf2onnx's ExternalTensorStorage holding their bytes)."""
    import tensorflow as tf
    from tf2onnx import optimizer
    from tf2onnx.graph import ExternalTensorStorage
    from tf2onnx.tfonnx import process_tf_graph

    storage = ExternalTensorStorage()
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(light, name="")
        g = process_tf_graph(tf_graph, const_node_values=values, **options)
        values.clear()
        g = optimizer.optimize_graph(g, catch_errors=False)
        model = g.make_model(f"converted from {name}", external_tensor_storage=storage)
    return model, storage


def bypass_const_identities(graph_def, outputs: list[str]):
    """Consumers of ``Identity(Const)`` read the Const itself, and those Identity nodes go (graph outputs and
    nodes with control inputs stay). Grappler does this on the ordinary path; the large-model path has no
    grappler (it would serialize the graph past 2 GB), and tf2onnx's constant folding would evaluate each such
    Identity in TensorFlow, holding another copy of the weight it forwards. Returns ``graph_def``, changed."""
    keep = {o.split(":")[0] for o in outputs}
    nodes = {n.name: n for n in graph_def.node}

    def root(name: str) -> str | None:
        seen = set()
        while name in nodes and name not in seen:
            seen.add(name)
            node = nodes[name]
            if node.op == "Const":
                return name
            if node.op != "Identity" or name in keep or len(node.input) != 1 or node.input[0].startswith("^"):
                return None
            name = node.input[0].split(":")[0]  # a Const and an Identity have one output each
        return None

    alias = {n.name: r for n in graph_def.node if n.op == "Identity" and (r := root(n.name)) is not None}
    if not alias:
        return graph_def
    for node in graph_def.node:
        for i, name in enumerate(node.input):
            base = name.lstrip("^").split(":")[0]
            if base in alias:
                node.input[i] = ("^" if name.startswith("^") else "") + alias[base]
    for i in reversed(range(len(graph_def.node))):  # in place: copying the nodes would copy the weights
        if graph_def.node[i].name in alias:
            del graph_def.node[i]
    return graph_def


def _convert(graph_def, kwargs: dict) -> onnx.ModelProto:
    """tf2onnx's conversion and its ONNX optimizer, without a copy of the graph per optimizer.

    With its default ``catch_errors``, tf2onnx deep-copies the whole graph, weights included, before each of its
    optimizers (12, in a loop until none changes anything) so that it can go back to the copy if one fails; the
    copies are cyclic garbage that piles up until Python's collector runs (ResNet50: 1.5 GB after conversion,
    6.6 GB during the optimizer loop). Run the optimizers on the graph itself; only if one fails is the
    conversion redone the old way, which skips the optimizer that failed.
    """
    try:
        return _convert_once(graph_def, kwargs, catch=False)
    except Exception:
        gc.collect()  # the failed attempt's graph
    return _convert_once(graph_def, kwargs, catch=True)


def _convert_once(graph_def, kwargs: dict, catch: bool) -> onnx.ModelProto:
    import tensorflow as tf
    from tf2onnx import convert

    with _tf2onnx_catch_errors(catch), tf.device("/cpu:0"):
        model, _ = convert._convert_common(graph_def, **kwargs)
    gc.collect()  # the converter's graphs are cyclic: free them before the passes load theirs
    raise_pending()
    release_freed_memory()
    return model


@contextlib.contextmanager
def _tf2onnx_catch_errors(on: bool):
    """tf2onnx reads TF2ONNX_CATCH_ERRORS in ``_convert_common``; 1.17 treats any value as off (it compares the
    variable's name, not its value, with "TRUE"), so "on" is the variable unset (its default) and "off" is
    "FALSE", which means off however a later version reads it."""
    from tf2onnx.constants import ENV_TF2ONNX_CATCH_ERRORS as var

    saved = os.environ.pop(var, None)
    if not on:
        os.environ[var] = "FALSE"
    try:
        yield
    finally:
        os.environ.pop(var, None)
        if saved is not None:
            os.environ[var] = saved


def _refuse_known_miscompiles(graph_def) -> None:
    """Patterns tf2onnx 1.17 converts without error into something that computes different numbers.

    Soft-NMS: NonMaxSuppressionV5 with ``soft_nms_sigma`` > 0 decays overlapping
    scores instead of dropping the boxes; tf2onnx emits plain (hard) ONNX NMS.
    """
    from tensorflow import make_ndarray

    consts = {n.name: n for n in graph_def.node if n.op == "Const"}
    for node in graph_def.node:
        if node.op != "NonMaxSuppressionV5" or len(node.input) < 6:
            continue
        src = consts.get(node.input[5].split(":")[0].lstrip("^"))
        sigma = None if src is None else float(make_ndarray(src.attr["value"].tensor))
        if sigma is None or sigma != 0.0:
            what = "computed at run time" if sigma is None else f"{sigma:g}"
            raise ExportError(f"node '{node.name}' is soft-NMS (soft_nms_sigma {what}); tf2onnx exports it as hard "
                              "NMS, which selects different boxes and scores",
                              "use soft_nms_sigma=0, or keep NMS out of the engine with --cut-outputs and run it "
                              "in TensorFlow")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _verify(model: onnx.ModelProto, tf2onnx_errors: list[str], unconvertible: list[str] = (),
            path: Path | None = None) -> None:
    """Standard ops only, the full checker and a load in onnxruntime; ``path``: the file ``model`` was written to
    with external data, which the checker and onnxruntime read from there (a proto over 2 GB cannot be
    serialized)."""
    bad = nonstandard_nodes(model)
    if bad and unconvertible:  # a converter of ours said exactly which use has no ONNX form: no --opset hint
        more = f" (and {len(unconvertible) - 1} more)" if len(unconvertible) > 1 else ""
        raise ExportError(f"no ONNX conversion for {unconvertible[0]}{more}",
                          "rewrite that computation with ordinary ops (for a sign test: x < 0), or move it out "
                          "of the serving signature")
    if bad:
        by_op = Counter(n.op_type for n in bad)
        examples = {}
        for n in bad:
            examples.setdefault(n.op_type, n.name)
        listing = ", ".join(f"{op} ×{k} (e.g. node '{examples[op]}')" if k > 1 else
                            f"{op} (node '{examples[op]}')" for op, k in by_op.most_common())
        raise ExportError(f"tf2onnx has no ONNX conversion for TensorFlow op(s): {listing}",
                          "rewrite that part of the model with supported ops, move it out of the "
                          "serving signature (pre/post-processing), or use another --opset")
    hint = f" (tf2onnx said: {tf2onnx_errors[-1]})" if tf2onnx_errors else ""
    data = model.SerializeToString() if path is None else str(path)  # once, for the checker and onnxruntime
    try:  # full_check adds strict shape inference: a graph whose shapes contradict each other fails here
        onnx.checker.check_model(data, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"tf2onnx produced an invalid ONNX model: {_first_line(e)}{hint}",
                          "try another --opset, or re-run with --debug") from e
    try:  # load only, quickly: no optimizations
        session(data, AS_WRITTEN)
    except Exception as e:  # onnxruntime's error types differ across versions; we re-word it in one line
        raise ExportError(f"the exported ONNX model does not load in onnxruntime: {_ort_reason(model, e)}{hint}",
                          "try another --opset; if it persists, report the model to tf2onnx") from e


_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\((\d+)\) node with name '([^']*)'")


def _ort_reason(model: onnx.ModelProto, e: Exception) -> str:
    """onnxruntime's load error in our words: which op, which node, which input types."""
    text = str(e)
    m = _NO_KERNEL.search(text)
    if m:
        op, version, node = m.groups()
        types = {vi.name: onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name
                 for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
                 if vi.type.tensor_type.elem_type}
        inputs = next((list(n.input) for n in model.graph.node if n.name == node), [])
        typed = ", ".join(types.get(i, "?") for i in inputs if i)
        return f"no CPU kernel for {op}-{version} (node '{node}') with input type(s) {typed or 'unknown'}"
    return f"{type(e).__name__}: {_first_line(e)}"


def export(model_dir: Path, out: Path, signature: str, cfg: ExportConfig = ExportConfig()) -> OnnxArtifact:
    """SavedModel at ``model_dir`` (signature already resolved by inspect) → verified ONNX at ``out``; a model
    over ``cfg.large_model_bytes`` keeps its weights in ``<out name>.data`` beside it."""
    large = weight_bytes(Path(model_dir)) > cfg.large_model_bytes
    model, storage, errors, unconvertible = _tf2onnx_convert(Path(model_dir), signature, cfg, large)
    if storage is None:
        _verify(model, errors, unconvertible)
    with atomic_output(Path(out), "ONNX model") as tmp:
        if storage is None:
            onnx.save(model, str(tmp))
        else:  # verified where it lies: nothing is left at ``out`` if it fails
            _write_external(model, storage.name_to_tensor_data, tmp)
            _verify(model, errors, unconvertible, path=tmp)
    inputs, outputs = io_specs(model)
    return OnnxArtifact(path=Path(out), inputs=inputs, outputs=outputs, ops=op_histogram(model))


def weight_bytes(model_dir: Path) -> int:
    """The bytes of a SavedModel's variables (its ``variables/`` files): what its weights take."""
    variables = Path(model_dir) / "variables"
    return sum(p.stat().st_size for p in variables.glob("variables.data-*") if p.is_file())


ALIGN = 4096  # each tensor starts at a page boundary of the data file, so onnxruntime can map it


def _write_external(model: onnx.ModelProto, blobs: dict, tmp: Path) -> None:
    """``model`` at ``tmp`` with the tensors tf2onnx kept aside (``blobs``: its location name -> bytes) in one
    external-data file, its companion ``<final name>.data``; each blob is dropped once written."""
    data = companion_path(tmp, DATA_SUFFIX)
    offset = 0
    with open(data, "wb") as f:
        for tensor, _ in list(external_tensors(model)):
            location = next(e.value for e in tensor.external_data if e.key == "location")
            blob = blobs.pop(location)
            pad = -offset % ALIGN
            f.write(b"\0" * pad)
            offset += pad
            f.write(blob)
            del tensor.external_data[:]
            for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(len(blob)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            offset += len(blob)
            del blob
    onnx.save(model, str(tmp))


def tf2onnx_version() -> str:
    import tf2onnx

    return tf2onnx.__version__
