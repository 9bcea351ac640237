"""optimize: the pass pipeline (``compiler/optimize.py`` runs it over a file), after an optional cut; then
TensorRT's parser support of the result (``passes.analysis.trt_support``), which a TensorRT build requires."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from passes.analysis.trt_support import check_model

from ..artifacts import OnnxArtifact, refuse_replacing_inputs
from ..common.shapes import resolve_shapes
from ..config import DUMP_NAMES, OptimizeConfig, ValidateConfig
from ..common.samples import load_samples
from ..errors import BuildError, ValidationError
from ..optimize import cut, optimize
from ..common.onnxutil import load
from ..validate import PassNumericsCheck
from .state import State


def optimize_model(onnx_path: Path, out: Path, cfg: OptimizeConfig = OptimizeConfig(), check=None):
    """Returns (OnnxArtifact, [PassRecord]); ``check(model, pass_name)`` runs after each changing pass."""
    refuse_replacing_inputs([onnx_path, cfg.rules_file], [("ONNX model", out)],
                            [("pass dump directory", cfg.dump_dir, DUMP_NAMES)])
    return optimize(Path(onnx_path), Path(out), cfg, check)


def cut_model(onnx_path: Path, out: Path, cfg: OptimizeConfig):
    """Extract the subgraph between ``cfg.cut_inputs`` and ``cfg.cut_outputs``; returns (OnnxArtifact, cfg for
    the passes that follow)."""
    return cut(Path(onnx_path), Path(out), cfg)


def numerics_check(before: OnnxArtifact, shapes: dict, cfg: OptimizeConfig, vcfg: ValidateConfig):
    """``--check-each-pass``: the check that names the pass that changed the outputs, or None without the flag."""
    if not cfg.check_each_pass:
        return None
    return PassNumericsCheck(before.path, before.inputs, shapes, vcfg, vcfg.tolerances("onnx→optimized"))


def explain_refusals(trt, records):
    """Put the reason a rewrite rule refused a node beside that node's finding: the fix it would have made
    and why it could not. ``records`` are the pass records of the run that produced the checked graph."""
    refused = {}
    for r in records:
        for item in r.stats.get("refused", []) if isinstance(r.stats, dict) else []:
            refused.setdefault(item["node"], item)
    trt.findings = [replace(f, fix=f"rule '{refused[f.node]['rule']}' would rewrite it but refused: "
                                   f"{refused[f.node]['reason']}; otherwise: {f.fix}")
                    if f.node in refused else f for f in trt.findings]
    return trt


def _cut(state: State) -> State:
    """--cut-inputs/--cut-outputs: the passes and the seams after them start from the cut model, which has its
    own interface (and its own --input-shapes)."""
    cfg = state.cfg
    if not (cfg.optimize.cut_inputs or cfg.optimize.cut_outputs):
        return state.but(before_passes=state.exported, pass_shapes=state.shapes)
    before, ocfg = cut_model(state.exported.path, state.workdir / "model.cut.onnx", cfg.optimize)
    note = (f"cut to inputs {', '.join(t.name for t in before.inputs)}; outputs "
            f"{', '.join(t.name for t in before.outputs)}")
    return state.but(cfg=replace(cfg, optimize=ocfg), before_passes=before,
                     pass_shapes=resolve_shapes(before.inputs, {}, cfg.validate.batch), notes={"optimize": note},
                     intermediates={"cut": str(before.path)})


def run(state: State) -> State:
    state = _cut(state)
    cfg, vcfg = state.cfg, state.cfg.validate
    check = numerics_check(state.before_passes, state.pass_shapes, cfg.optimize, vcfg)
    optimized, records = optimize_model(state.before_passes.path, state.workdir / "model.opt.onnx", cfg.optimize,
                                        check)
    trt = explain_refusals(check_model(load(optimized.path), known_valid=True), records)  # optimize checked it
    notices = [f"the engine's {line} (feed and read it that way)" for line in optimized.change.describe()]
    if not trt.supported and state.backend != "tensorrt":
        notices.append(f"{trt.summary()}; a TensorRT build would stop here "
                       "(see `python -m compiler check-trt` or the report's trt_check)")
    return state.but(optimized=optimized, pass_records=tuple(records), trt=trt, notices=notices,
                     intermediates={"optimized": str(optimized.path)})


def pipeline_inputs(state: State):
    """The inputs the passes start from, with the static shapes --input-shapes froze."""
    frozen = state.cfg.optimize.input_shapes
    return tuple(replace(t, shape=frozen.get(t.name, t.shape)) for t in state.before_passes.inputs)


def load_data(state: State) -> State:
    """--data: real samples in the pipeline model's own interface, loaded once and shared by the precision stage
    (--auto-mixed, calibration when no --calib-data) and every seam whose reference takes those inputs."""
    vcfg = state.cfg.validate
    if not vcfg.data:
        return state
    return state.but(samples=load_samples(vcfg.data, pipeline_inputs(state), state.pass_shapes, what="validation",
                                          error=ValidationError, seed=vcfg.seed))


def refuse_unparseable(state: State) -> None:
    """A TensorRT build stops here when TensorRT's parser would reject nodes, naming them (after the report
    has the whole check)."""
    trt = state.trt
    if trt.supported or state.backend != "tensorrt":
        return
    listing = "; ".join(f.text() for f in trt.findings[:5])
    more = f"; and {len(trt.findings) - 5} more" if len(trt.findings) > 5 else ""
    raise BuildError(f"TensorRT's ONNX parser would reject {len(trt.findings)} node(s): {listing}{more}",
                     "apply the fixes named, or build for CPU with --backend onnxruntime")
