"""export: the SavedModel to ONNX with tf2onnx (``frontend/export.py``, the only module that calls it),
verified; an ONNX input skips it."""
from __future__ import annotations

from pathlib import Path

from ..artifacts import ModelInfo, OnnxArtifact, refuse_replacing_inputs, scratch_dir
from ..config import ExportConfig
from ..frontend.export import export
from .inspect import as_saved_model, inspect_model, require_safe
from .state import State


def export_model(model_dir: Path, out: Path, cfg: ExportConfig = ExportConfig(),
                 info: ModelInfo | None = None) -> OnnxArtifact:
    refuse_replacing_inputs([model_dir], [("ONNX model", out)])
    with scratch_dir("tf2trt-keras-") as tmp:
        model_dir = as_saved_model(model_dir, tmp)
        info = info or inspect_model(model_dir, cfg)
        require_safe(info, cfg)
        return export(Path(model_dir), Path(out), info.signature, cfg)


def skips(state: State) -> str | None:
    return "input is already ONNX" if state.exported is not None else None


def run(state: State) -> State:
    exported = export_model(state.model.path, state.workdir / "model.onnx", state.cfg.export, state.model)
    return state.but(exported=exported, intermediates={"exported": str(exported.path)})
