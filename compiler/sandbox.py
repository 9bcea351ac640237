"""Trust boundaries on what the compiler reads (DESIGN.md, "Trust boundaries"): a model's directory is a sandbox.

- ONNX external data: every tensor that keeps its bytes in a file (initializers, sparse initializers, Constant
  and other tensor attributes, in the main graph, in every If/Loop/Scan body and in model-local functions) must
  name a relative location that, after symlinks, lies inside the model file's directory. ``read_onnx`` is the one
  loader: it parses without external data, checks every location, and only then reads the bytes. Code that hands
  a path to a library that reads external data itself (onnxruntime, TensorRT's parser) calls
  ``check_onnx_file`` first.
- SavedModels: no file or directory inside (variables, assets, saved_model.pb itself) may be a symlink that
  resolves outside the SavedModel directory; asset file names must stay inside ``assets/``.
- Directories of files named by a manifest (goldens): ``member`` accepts only a plain file name and never touches
  the path before it has been accepted, so its errors cannot reveal whether some other path exists.

A refusal is an ``InspectError`` (exit 3) naming the tensor or file, where it points and the fix. This module
checks paths; it does not make running an untrusted SavedModel safe (see README, "Trust model").
"""
from __future__ import annotations

import os
from pathlib import Path

import onnx

from .errors import CompilerError, InspectError

EXTERNAL_FIX = ("move the data file into the model's directory and name it relative to the model "
                "(external data outside it is never read)")


def read_onnx(path: Path, external_data: bool = True) -> onnx.ModelProto:
    """The model at ``path``, its external data read only after every location passed ``check_external_data``.

    A file that is not ONNX raises what onnx raises (callers word that failure their own way); a location
    outside the sandbox raises ``InspectError``.
    """
    model = onnx.load(str(path), load_external_data=False)
    check_external_data(model, path)
    if external_data and any(True for _ in _external(model)):
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(Path(path).absolute().parent))
    return model


def check_onnx_file(path: Path) -> None:
    """``check_external_data`` for a file about to be handed to a library that reads it itself; a file that does
    not parse is left to that library to reject in its own words."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX (an engine, a truncated file): nothing of ours to check
        return
    check_external_data(model, path)


def check_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Refuse the first external-data location of ``model`` (loaded from ``path``) outside ``path``'s directory."""
    base = Path(path).absolute().parent
    root = base.resolve()
    for tensor, where in _external(model):
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        reason = None
        if not location:
            reason = "names no location"
        elif os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
            reason = "is an absolute path, outside the model's directory"
        else:
            target = (base / location).resolve()
            if target != root and root not in target.parents:
                inside = os.path.normpath(base / location).startswith(str(base) + os.sep)
                reason = (f"resolves through a symlink to '{target}', outside the model's directory" if inside
                          else "lies outside the model's directory")
        if reason:
            raise InspectError(f"'{path}': tensor '{tensor.name}' ({where}) keeps its external data at "
                               f"'{location}', which {reason} '{base}'", EXTERNAL_FIX)


def external_tensors(model: onnx.ModelProto):
    """(tensor, where it is) for every tensor of ``model`` that keeps its bytes in an external file."""
    return _external(model)


def _external(model: onnx.ModelProto):
    """(tensor, where it is) for every tensor of ``model`` that keeps its bytes in an external file."""
    for tensor, where in _all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            yield tensor, where


def _all_tensors(model: onnx.ModelProto):
    yield from _graph_tensors(model.graph)
    for fn in model.functions:
        for node in fn.node:
            yield from _node_tensors(node, f"function '{fn.name}'")


def _graph_tensors(graph: onnx.GraphProto):
    where = f"graph '{graph.name}'"
    for t in graph.initializer:
        yield t, f"initializer of {where}"
    for s in graph.sparse_initializer:
        yield s.values, f"sparse initializer of {where}"
        yield s.indices, f"indices of a sparse initializer of {where}"
    for node in graph.node:
        yield from _node_tensors(node, where)


def _node_tensors(node: onnx.NodeProto, where: str):
    here = f"attribute of {node.op_type} node '{node.name}' in {where}"
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t, f"'{attr.name}' {here}"
        for t in attr.tensors:
            yield t, f"'{attr.name}' {here}"
        sparse = ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors)
        for s in sparse:
            yield s.values, f"sparse '{attr.name}' {here}"
            yield s.indices, f"sparse '{attr.name}' indices {here}"
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for g in attr.graphs:
            yield from _graph_tensors(g)


def check_saved_model_tree(path: Path) -> None:
    """Refuse a SavedModel directory holding a symlink (variables, assets, any file) that resolves outside it."""
    root = Path(path).resolve()
    for current, dirs, files in os.walk(path, followlinks=False):
        for name in sorted(dirs + files):
            entry = Path(current) / name
            if entry.is_symlink():
                target = entry.resolve()
                if target != root and root not in target.parents:
                    raise InspectError(f"'{entry}' is a symlink to '{target}', outside the SavedModel directory "
                                       f"'{path}'", "copy what it points to into the SavedModel directory "
                                       "(files outside it are never read)")


def check_asset(path: Path, filename: str) -> None:
    """Refuse an asset file name of a SavedModel's MetaGraph that leaves its ``assets/`` directory."""
    assets = Path(path).resolve() / "assets"
    target = (assets / filename).resolve()
    if os.path.isabs(filename) or assets not in target.parents:
        raise InspectError(f"SavedModel '{path}' names asset file '{filename}', outside its assets directory",
                           "re-save the model with its assets inside it")


def member(directory: Path, name, what: str, error: type[CompilerError], fix: str) -> Path:
    """``directory / name`` for a plain file name that stays inside ``directory`` after symlinks; anything else
    (separators, absolute, '.', '..', empty, not a string) raises ``error`` before the path is touched, so the
    refusal reads the same whether or not that path exists."""
    text = name if isinstance(name, str) else None
    plain = bool(text) and text not in (".", "..") and not any(c in text for c in "/\\\0") \
        and not os.path.isabs(text)
    if not plain:
        raise error(f"{what} '{name}' is not a plain file name inside '{directory}'", fix)
    root = Path(directory).resolve()
    if (root / text).resolve().parent != root:
        raise error(f"{what} '{name}' is a symlink that leads outside '{directory}'", fix)
    return Path(directory) / text
