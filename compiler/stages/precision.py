"""precision: the float32 optimized graph lowered to fp16, bf16 or int8 (``compiler/precision.py``), with the samples
that needs: --auto-mixed searches on --data or seeded random data; int8 calibrates on --calib-data, else --data,
else random data. TensorRT 11 has no precision flags, so the engine is built from the lowered graph."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..artifacts import OnnxArtifact, refuse_replacing_inputs, scratch_dir
from ..common.shapes import resolve_shapes
from ..config import (DUMP_NAMES, PRECISION_SEAM_SAMPLES, OptimizeConfig, PrecisionConfig, ValidateConfig, calib_cache_path,
                      precision_seam)
from ..common.samples import load_samples, spec_paths
from ..errors import PrecisionError, ValidationError
from ..common.index_ranges import index_ranges, with_index_ranges
from ..common.onnxutil import inspect_onnx, load
from ..precision import apply_precision
from .optimize import optimize_model, pipeline_inputs
from .state import State


@dataclass(frozen=True)
class Lowering:
    """What the precision stage lowers and the data it may use: the float32 graph, the inputs and validation
    shapes of the graph the passes started from (calibration samples are in its interface), and --data there."""

    optimized: OnnxArtifact
    inputs: tuple
    shapes: dict
    samples: object = None

    @property
    def engine_shapes(self) -> dict:
        return {k: self.optimized.change.candidate_shape(k, v) for k, v in self.shapes.items()}


def _search_samples(job: Lowering, vcfg: ValidateConfig):
    """--auto-mixed's samples, in the optimized graph's interface: --data, else seeded random."""
    if job.samples is not None:
        return job.optimized.change.feed_samples(job.samples)
    return load_samples(None, job.optimized.inputs, job.engine_shapes, what="validation", seed=vcfg.seed,
                        random_count=max(PRECISION_SEAM_SAMPLES, vcfg.iterations), ranges=vcfg.val_ranges)


def _calibration_samples(job: Lowering, pcfg: PrecisionConfig, vcfg: ValidateConfig):
    """int8's samples, in the optimized graph's interface: --calib-data, else --data, else seeded random."""
    if pcfg.calib_data:
        calib = load_samples(pcfg.calib_data, job.inputs, job.shapes, what="calibration", error=PrecisionError,
                             limit=pcfg.calib_samples, seed=vcfg.seed)
    elif job.samples is not None:
        calib = job.samples
    else:
        calib = load_samples(None, job.inputs, job.shapes, what="calibration", error=PrecisionError,
                             limit=pcfg.calib_samples, seed=vcfg.seed, random_count=pcfg.random_calib_samples,
                             ranges=vcfg.val_ranges)
    return job.optimized.change.feed_samples(calib)


def lower(job: Lowering, pcfg: PrecisionConfig, vcfg: ValidateConfig, out: Path, lowered_path: Path):
    """Write the ``pcfg.mode`` graph of ``job.optimized`` to ``lowered_path``; the calibration cache defaults to
    OUT.calib.json. Returns (OnnxArtifact, PrecisionResult, calibration cache path or None)."""
    samples = _search_samples(job, vcfg) if pcfg.auto_mixed else None
    calib = _calibration_samples(job, pcfg, vcfg) if pcfg.mode == "int8" else None
    cache = calib_cache_path(pcfg, out) if calib is not None else None
    art, result = apply_precision(job.optimized.path, lowered_path, pcfg, samples, calib,
                                  vcfg.tolerances(precision_seam(pcfg.mode), pcfg.mode), cache)
    return art, result, cache


def lower_precision(onnx_path: Path, out: Path, cfg: OptimizeConfig, pcfg, vcfg: ValidateConfig = ValidateConfig(),
                    check=None):
    """``optimize --precision``: the pass pipeline, then the precision stage; writes only ``out``.

    Returns (OnnxArtifact, [PassRecord] of the float32 passes, PrecisionResult).
    """
    onnx_path, out = Path(onnx_path), Path(out)
    refuse_replacing_inputs([onnx_path, cfg.rules_file, *spec_paths(vcfg.data), *spec_paths(pcfg.calib_data)],
                            [("ONNX model", out), ("calibration cache", calib_cache_path(pcfg, out))],
                            [("pass dump directory", cfg.dump_dir, DUMP_NAMES)])
    info = inspect_onnx(onnx_path)
    vcfg = with_index_ranges(vcfg, index_ranges(load(onnx_path)))  # random calibration ids fit their tables
    shapes = resolve_shapes(info.inputs, cfg.input_shapes, vcfg.batch)
    inputs = tuple(replace(t, shape=cfg.input_shapes.get(t.name, t.shape)) for t in info.inputs)
    user = load_samples(vcfg.data, inputs, shapes, what="validation", error=ValidationError, seed=vcfg.seed) \
        if vcfg.data else None
    with scratch_dir("tf2trt-opt-") as tmp:
        optimized, records = optimize_model(onnx_path, tmp / "model.opt.onnx", cfg, check)
        art, result, _ = lower(Lowering(optimized, inputs, shapes, user), pcfg, vcfg, out, out)
    return art, records, result


def skips(state: State) -> str | None:
    return "fp32: nothing to lower" if state.cfg.precision.mode == "fp32" else None


def run(state: State) -> State:
    pcfg = state.cfg.precision
    job = Lowering(state.optimized, pipeline_inputs(state), state.pass_shapes, state.samples)
    art, result, cache = lower(job, pcfg, state.cfg.validate, state.out, state.workdir / f"model.{pcfg.mode}.onnx")
    kept = len(result.kept_fp32)
    note = ", ".join(f"{sum(v.values())} node(s) {k}" for k, v in result.ops.items()) + \
        (f"; {kept} kept in fp32" if kept else "")
    files = {pcfg.mode: str(art.path)} | ({"calibration_cache": str(cache)} if cache is not None else {})
    return state.but(lowered=art, precision=result, calib_cache=cache, notices=result.notices,
                     notes={"precision": note}, intermediates=files)
