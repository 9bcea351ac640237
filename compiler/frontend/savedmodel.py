"""Read a SavedModel's metadata from ``saved_model.pb`` without executing anything.

Parsing the protobuf is enough for signatures, input/output specs and the op
histogram, and it never runs the model's code, so it is safe on untrusted
models and fast (no variable restore, no tracing).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from google.protobuf import message, text_format

from . import import_tensorflow
from ..artifacts import ModelInfo, TensorSpec
from ..errors import InspectError
from ..sandbox import check_asset, check_saved_model_tree
from .scan import scan_meta_graph

INIT_OP_KEY = "__saved_model_init_op"
DEFAULT_SIGNATURE = "serving_default"
KERAS_SUFFIXES = (".keras", ".h5")


def is_saved_model(path: Path) -> bool:
    return path.is_dir() and ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file())


def check_model_path(path: Path) -> str:
    """Return "saved_model", "onnx" or "keras", or raise an InspectError saying what to pass instead."""
    path = Path(path)
    if not path.exists():
        raise InspectError(f"model path '{path}' does not exist",
                           "pass a SavedModel directory (the one holding saved_model.pb), a .keras file or an .onnx file")
    if path.is_file() and path.suffix.lower() == ".onnx":
        return "onnx"
    if path.is_file() and path.suffix.lower() in KERAS_SUFFIXES:
        return "keras"
    if path.is_file():
        raise InspectError(f"'{path}' is a file, not a SavedModel directory, .keras or .onnx model",
                           "pass the directory that holds saved_model.pb, a .keras file, or an .onnx file")
    if not is_saved_model(path):
        nested = sorted(p.parent for p in path.glob("*/saved_model.pb"))
        hint = f"did you mean '{nested[0]}'?" if nested else \
            "pass the directory written by model.export() or tf.saved_model.save()"
        raise InspectError(f"'{path}' is not a SavedModel: it has no saved_model.pb", hint)
    check_saved_model_tree(path)  # before TensorFlow reads a byte of it
    return "saved_model"


def _read_proto(path: Path):
    pb = path / "saved_model.pb"
    if pb.is_file() and pb.stat().st_size == 0:  # before TensorFlow loads: it would parse as an empty SavedModel
        raise InspectError(f"'{pb}' is empty (0 bytes)",
                           "re-save the model; the file was truncated or never written")
    import_tensorflow()
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    try:
        if pb.is_file():
            sm.ParseFromString(pb.read_bytes())
        else:
            text_format.Parse((path / "saved_model.pbtxt").read_text(), sm)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as e:
        raise InspectError(f"'{pb}' is not a valid SavedModel protobuf ({e})",
                           "re-save the model; the file may be truncated or not a SavedModel") from None
    return sm


def _np_dtype(tf_enum: int) -> str:
    import tensorflow as tf

    dt = tf.dtypes.as_dtype(tf_enum)
    if dt == tf.string:
        return "string"
    try:
        return np.dtype(dt.as_numpy_dtype).name
    except TypeError:
        return dt.name


def _tensor_spec(name: str, info) -> TensorSpec:
    unknown = bool(info.tensor_shape.unknown_rank)
    shape = (None,) if unknown else tuple(d.size if d.size >= 0 else None for d in info.tensor_shape.dim)
    return TensorSpec(name=name, dtype=_np_dtype(info.dtype), shape=shape, unknown_rank=unknown)


def _signature_json(sig) -> dict:
    return {
        "inputs": [_tensor_spec(k, v).to_json() for k, v in sorted(sig.inputs.items())],
        "outputs": [_tensor_spec(k, v).to_json() for k, v in sorted(sig.outputs.items())],
    }


def choose_signature(available: list[str], requested: str | None) -> str:
    listing = ", ".join(available) if available else "none"
    if requested is not None:
        if requested not in available:
            raise InspectError(f"signature '{requested}' not found; available signatures: {listing}",
                               f"pass --signature {available[0]}" if available else
                               "re-save the model with signatures")
        return requested
    if DEFAULT_SIGNATURE in available:
        return DEFAULT_SIGNATURE
    if len(available) == 1:
        return available[0]
    if not available:
        raise InspectError("the SavedModel has no serving signatures",
                           "save it with model.export(dir) or tf.saved_model.save(obj, dir, signatures=fn)")
    raise InspectError(f"several signatures and none is '{DEFAULT_SIGNATURE}': {listing}",
                       f"choose one with --signature {available[0]}")


def inspect_saved_model(path: Path, signature: str | None = None, tag: str = "serve") -> ModelInfo:
    path = Path(path)
    sm = _read_proto(path)
    tag_sets = tuple(tuple(mg.meta_info_def.tags) for mg in sm.meta_graphs)
    meta = next((mg for mg in sm.meta_graphs if tag in mg.meta_info_def.tags), None)
    if meta is None:
        listing = "; ".join(",".join(t) for t in tag_sets) or "none"
        raise InspectError(f"no MetaGraph with tag '{tag}'; tag sets present: {listing}",
                           f"pass --tag {tag_sets[0][0]}" if tag_sets and tag_sets[0] else "re-save the model")
    for asset in meta.asset_file_def:
        check_asset(path, asset.filename)
    sigs = {k: v for k, v in meta.signature_def.items() if k != INIT_OP_KEY}
    chosen = choose_signature(sorted(sigs), signature)
    sig = sigs[chosen]

    ops: Counter = Counter(n.op for n in meta.graph_def.node)
    for fn in meta.graph_def.library.function:
        ops.update(n.op for n in fn.node_def)
    return ModelInfo(
        path=path, format="saved_model", signature=chosen,
        inputs=tuple(_tensor_spec(k, v) for k, v in sorted(sig.inputs.items())),
        outputs=tuple(_tensor_spec(k, v) for k, v in sorted(sig.outputs.items())),
        ops=dict(ops), signatures={k: _signature_json(v) for k, v in sorted(sigs.items())},
        tags=tag_sets, safety=scan_meta_graph(meta).to_json(),
    )
