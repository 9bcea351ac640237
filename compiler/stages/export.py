"""export: the SavedModel to ONNX with tf2onnx (``frontend/export.py``, the only module that calls it),
verified; an ONNX input skips it."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..artifacts import ModelInfo, OnnxArtifact, refuse_replacing_inputs, scratch_dir
from ..config import ExportConfig
from ..frontend.export import export
from ..common.index_ranges import index_ranges, with_index_ranges
from ..common.onnxutil import load
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


def find_index_ranges(state: State) -> State:
    """Integer inputs that index a table get the table's range for random validation and calibration data
    (compiler/common/index_ranges.py), unless --val-range gives one; the report's inputs and a notice say which."""
    ranges = index_ranges(load(state.exported.path))
    if not ranges:
        return state
    cfg, given = state.cfg, state.cfg.validate.val_ranges
    used = {name: not (name in given or "" in given) for name in ranges}
    notices = [f"validation: integer input '{name}' draws random values from {r.text()}; "
               f"override with --val-range {name}:LO,HI" for name, r in ranges.items() if used[name]]
    return state.but(cfg=replace(cfg, validate=with_index_ranges(cfg.validate, ranges)), notices=notices,
                     index_ranges={name: r.to_json() | {"used": used[name]} for name, r in ranges.items()})
