"""validate: every seam of the compile, as data (``validate.Seam``), compared on the same inputs; a failed
``onnx→optimized`` seam also names the first divergent node and the pass that made it (``localize``)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..artifacts import ONNX_MODEL, ModelInfo, detect_format, scratch_dir
from ..common.shapes import resolve_shapes
from ..config import PRECISION_SEAM_SAMPLES, ExportConfig, Shape, ValidateConfig, lowers, precision_seam
from ..common.samples import load_samples
from ..dynamic_dims import DYNAMIC_FIX, describe, second_shapes, with_second_size
from ..common.index_ranges import index_ranges, with_index_ranges
from ..common.onnxutil import load as load_onnx
from ..errors import RunError, ValidationError
from ..limits import time_budget
from ..tools.localize import localize_seam
from ..runtime import load
from ..seam_errors import RUNTIME_FIX
from ..validate import DEFAULT_FIX, SEAM_FIXES, Seam, SharedSessions, Side, compare, quiet_polygraphy
from .inspect import as_saved_model, inspect_model, require_safe
from .state import State


def side_of(path: Path, label: str, export_cfg: ExportConfig) -> Side:
    """A seam side for anything validate accepts: a SavedModel, an ONNX model or a built artifact (loaded once
    here; its runner is reused for the comparison). An ONNX file named ``.onnx`` is a model; one named otherwise
    is an artifact (the onnxruntime backend's form of a model with external data), run as the runtime runs it."""
    path = Path(path)
    if path.is_dir() or not path.exists() or (path.suffix.lower() == ".onnx" and _artifact_format(path) == ONNX_MODEL):
        info = inspect_model(path, export_cfg)
        require_safe(info, export_cfg)
        return Side(label, info)
    loaded = load(path)
    return Side(label, ModelInfo(path=path, format=loaded.format, signature=None, inputs=loaded.inputs,
                                 outputs=getattr(loaded, "outputs", ()), ops={}), loaded)


def _artifact_format(path: Path) -> str:
    """``path``'s format by content; a file named .onnx that is no artifact at all counts as ONNX, so inspect's
    input checks say what is wrong with it (empty, not a ModelProto) rather than "not a plan or ORT artifact"."""
    try:
        return detect_format(path)
    except RunError:
        if path.suffix.lower() != ".onnx":
            raise
        return ONNX_MODEL


def seam_samples(reference: ModelInfo, samples, random: int, inputs, shapes, cfg: ValidateConfig):
    """What a seam runs on, in its reference's interface: ``samples`` (--data) where the reference takes those
    inputs, else ``random`` (> 0) seeded random samples (precision seams), else None (Polygraphy's loader)."""
    if samples is not None and {t.name for t in reference.inputs} == set(samples.feeds[0]):
        return reference.change.feed_samples(samples)
    if random:
        return load_samples(None, inputs, shapes, what="validation", error=ValidationError, seed=cfg.seed,
                            random_count=max(random, cfg.iterations), ranges=cfg.val_ranges)
    return None


def make_seam(name: str, reference: Side, candidate: Side, shapes: dict, cfg: ValidateConfig, *,
              precision: str = "fp32", samples=None, random: int = 0) -> Seam:
    """The seam ``name`` between two sides: shapes resolved for the reference's inputs, the seam's tolerances
    (scaled on a seam that sees lowered precision) and its samples (``seam_samples``)."""
    draft = Seam(name, reference, candidate, {}, cfg.tolerances(name, precision))
    inputs = draft.inputs()
    shapes = resolve_shapes(inputs, dict(shapes or {}), cfg.batch)
    return Seam(name, reference, candidate, shapes, draft.tolerances,
                seam_samples(reference.info, samples, random, inputs, shapes, cfg), lowers(name, precision))


def validate_artifacts(reference: Path, candidate: Path, seam: str, cfg: ValidateConfig = ValidateConfig(),
                       shapes: dict[str, Shape] | None = None, *, tolerances: tuple[float, float] | None = None,
                       export_cfg: ExportConfig = ExportConfig(), labels: tuple[str, str] | None = None):
    """Compare ``candidate`` against ``reference`` on seeded inputs (or ``cfg.data``); returns a ``SeamResult``.

    ``reference`` may be a SavedModel directory, an ONNX file or a built artifact; so may ``candidate``. Input
    specs come from the reference. ``tolerances`` (atol, rtol) override the seam's defaults; ``labels`` name
    the two sides in the result.
    """
    quiet_polygraphy()
    with scratch_dir("tf2trt-keras-") as tmp, time_budget(cfg.timeout_s):
        reference = as_saved_model(Path(reference), tmp / "reference")
        candidate = as_saved_model(Path(candidate), tmp / "candidate")
        ref_label, cand_label = labels or (reference.name, candidate.name)
        ref, cand = side_of(reference, ref_label, export_cfg), side_of(candidate, cand_label, export_cfg)
        onnx_side = next((s.info.path for s in (ref, cand) if s.info.format == "onnx"), None)
        if onnx_side is not None:  # an ONNX side tells the index ranges (compile sets them itself)
            cfg = with_index_ranges(cfg, index_ranges(load_onnx(onnx_side)))
        draft = make_seam(seam, ref, cand, shapes, cfg)
        inputs = draft.inputs()
        data = load_samples(cfg.data, inputs, draft.shapes, what="validation", error=ValidationError,
                            seed=cfg.seed) if cfg.data else None  # --data, in the reference's interface
        return compare(replace(draft, tolerances=tolerances or draft.tolerances,
                               samples=seam_samples(ref.info, data, 0, inputs, draft.shapes, cfg)), cfg)


def seams(state: State) -> list[Seam]:
    """Compile's seams, in pipeline order, one line each: every artifact against the one it was made from."""
    cfg, mode = state.cfg.validate, state.cfg.precision.mode
    model, exported, before, optimized = state.model, state.exported, state.before_passes, state.optimized
    tf = Side("tensorflow", model)
    start = Side("cut.onnx" if before is not exported else "exported.onnx", before.info)
    opt = Side("optimized.onnx", optimized.info)
    lowered = Side(f"{mode}.onnx", state.lowered.info) if state.lowered else opt
    engine = side_of(state.engine_path, f"engine ({state.backend})", state.cfg.export)
    data = {"precision": mode, "samples": state.samples}
    return [s for s in (
        make_seam("tf→onnx", tf, Side("exported.onnx", exported.info), state.shapes, cfg, **data)
        if model.format == "saved_model" else None,
        make_seam("onnx→optimized", start, opt, state.pass_shapes, cfg, **data),
        make_seam(precision_seam(mode), opt, lowered, state.engine_shapes, cfg, random=PRECISION_SEAM_SAMPLES, **data)
        if state.lowered else None,
        make_seam("optimized→engine", lowered, engine, state.engine_shapes, cfg, **data),
    ) if s is not None]


def skips(state: State) -> str | None:
    return None if state.cfg.validate.enabled else "disabled with --no-validate"


def at_second_size(state: State, seam: Seam, result, sessions: SharedSessions | None = None):
    """The tf→onnx seam again with each dynamic batch the compiler chose at a second size (compiler/dynamic_dims.py):
    tf2onnx can export a dynamic dimension wrongly yet run at one size. --data fixes the sizes, so it runs once."""
    second = second_shapes(state.model.inputs, state.shapes, state.given_shapes)
    if seam.name != "tf→onnx" or second is None or state.samples is not None:
        return result
    at = describe(state.shapes, second)
    again = make_seam(seam.name, seam.reference, replace(seam.candidate, label=f"{seam.candidate.label} at {at}"),
                      second, state.cfg.validate)
    return with_second_size(result, compare(again, state.cfg.validate, sessions), at)


def run(state: State) -> State:
    cfg = state.cfg.validate
    quiet_polygraphy()
    planned = seams(state)
    sessions = SharedSessions(planned)  # each ONNX file loaded once for all its seams, dropped after the last
    results = []
    for seam in planned:
        results.append(at_second_size(state, seam, compare(seam, cfg, sessions), sessions))
        sessions.done(seam)
    results = tuple(results)
    warnings = [f"validation {r.seam}: {w}" for r in results for w in r.warnings]
    state = state.but(seams=results, notices=warnings)
    if any(r.seam == "onnx→optimized" and not r.passed and not r.run_error for r in results):
        # name the first divergent node (compiler/tools/localize.py)
        localization, where = localize_seam(state.before_passes.path, state.optimized.path, state.pass_shapes, cfg,
                                            state.samples, cfg.tolerances("onnx→optimized", state.cfg.precision.mode))
        state = state.but(localization=localization, localization_clause=where)
    return state


def refuse_failed(state: State) -> None:
    """A failed seam fails the compile, naming the first one (and the divergent node, where it is the passes')."""
    failed = [s for s in state.seams if not s.passed]
    if not failed:
        return
    cause = failed[0].failure_line()
    if failed[0].failed_at_second_size or failed[0].run_error:  # dynamic_dims.py, seam_errors.py
        raise ValidationError(cause, DYNAMIC_FIX if failed[0].failed_at_second_size else RUNTIME_FIX)
    if failed[0].seam == "onnx→optimized" and state.localization_clause:
        cause += f"; {state.localization_clause}"
    raise ValidationError(cause, SEAM_FIXES.get(failed[0].seam, DEFAULT_FIX))
