"""inspect: what the model is (signature, IO, ops, the unsafe-op scan), the shapes validation runs with, the
optimization profiles and the backend. Everything after it needs these, so it runs first."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..artifacts import ModelInfo, OnnxArtifact
from ..backends import resolve_backend
from ..common.shapes import resolve_shapes
from ..config import ExportConfig
from ..errors import InspectError
from ..frontend.keras_file import keras_to_saved_model
from ..frontend.savedmodel import KERAS_SUFFIXES, check_model_path, inspect_saved_model
from ..frontend.scan import ScanResult
from ..common.onnxutil import inspect_onnx
from ..profiles import check_profiles
from .build import model_profiles
from .state import State


def as_saved_model(model: Path, workdir: Path) -> Path:
    """``model`` itself, or for a .keras/.h5 file the SavedModel Keras exports from it into ``workdir``."""
    model = Path(model)
    if not (model.is_file() and model.suffix.lower() in KERAS_SUFFIXES):
        return model
    return keras_to_saved_model(Path(model), Path(workdir) / "saved_model")


def inspect_model(model: Path, cfg: ExportConfig = ExportConfig()) -> ModelInfo:
    """Signatures, IO specs and op histogram of a SavedModel (read, never executed) or an ONNX file.

    A .keras file must go through ``as_saved_model`` first (loading it runs Keras).
    """
    kind = check_model_path(Path(model))
    if kind == "keras":
        raise InspectError(f"'{model}' is a Keras file; it must be exported to a SavedModel first",
                           "use compile/export/inspect from the CLI, or compiler.api.as_saved_model()")
    if kind == "onnx":
        return inspect_onnx(Path(model))
    return replace(inspect_saved_model(Path(model), cfg.signature, cfg.tag), tag=cfg.tag)


def require_safe(info: ModelInfo, cfg: ExportConfig) -> None:
    """Refuse a SavedModel whose graph reads or writes files or runs Python, unless allowed."""
    if info.safety is None or info.safety["safe"] or cfg.allow_unsafe_ops:
        return
    result = ScanResult.from_json(info.safety)
    raise InspectError(f"refusing to load '{info.path}': {result.summary()}",
                       "inspect the model's origin; if you trust it, pass --allow-unsafe-ops")


def run(state: State) -> State:
    cfg = state.cfg
    model = as_saved_model(state.source, state.workdir)
    keras = model != state.source
    info = inspect_model(model, cfg.export)
    require_safe(info, cfg.export)
    given = dict(cfg.optimize.input_shapes)  # validation's shapes, even where a profile keeps them unfrozen
    profiles, profile_source, cfg = model_profiles(cfg, info)
    shapes = resolve_shapes(info.inputs, {**(dict(profiles[0].opt) if profiles else {}), **given},
                            cfg.validate.batch)
    if profiles:
        check_profiles(info.inputs, profiles, shapes)
    backend, notice = resolve_backend(cfg.build.backend)
    # An ONNX input is its own export.
    exported = OnnxArtifact(info.path, info.inputs, info.outputs, info.ops, info.change) \
        if info.format == "onnx" else None
    return state.but(
        cfg=cfg, model=info, backend=backend, backend_notice=notice, profiles=profiles,
        profile_source=profile_source, shapes=shapes, given_shapes=given, exported=exported, notices=(notice,) if notice else (),
        notes={"inspect": f"Keras file exported to a SavedModel with model.export() ({model})"} if keras else {},
        intermediates=({"saved_model": str(model)} if keras else {}) | ({"exported": str(model)} if exported else {}))
