"""Numerical validation of every seam with Polygraphy's Comparator.

One seeded data loader feeds both sides of a seam; results carry, per output,
max/mean/p99 absolute and relative error, the tolerance used and the
tolerance that would have passed, so a failure explains itself.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from . import limits
from .common import io_change as interface
from .artifacts import ModelInfo, TensorSpec, scratch_dir
from .common.onnxutil import PROTOBUF_LIMIT, write
from .common.shapes import FLOAT_RANGE, INT_RANGE, input_ranges, merge_specs, resolve_shapes  # noqa: F401 (re-exported)
from .config import PRECISION_MIN_AGREEMENT, Shape, ValidateConfig, check_tolerances
from .common.fp16_emulation import narrow_floats, storage_emulation
from .backends.onnxruntime import ort_session
from .errors import CompilerError, OptimizeError, ValidationError
from .frontend.tfrun import TfSavedModelRunner
from .common.io_change import Interface
from .sandbox import read_onnx
from .seam_errors import SeamRunError, run_sides


def data_loader(inputs: tuple[TensorSpec, ...], shapes: dict[str, Shape], cfg: ValidateConfig):
    from polygraphy.common import TensorMetadata  # polygraphy is heavy: lazy
    from polygraphy.comparator import DataLoader

    meta = TensorMetadata()
    for t in inputs:
        meta.add(t.name, np.dtype(t.dtype), shapes[t.name])
    return DataLoader(seed=cfg.seed, iterations=cfg.iterations, input_metadata=meta,
                      val_range=input_ranges(inputs, cfg.val_ranges))


@dataclass
class OutputDiff:
    name: str
    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float
    mean_rel: float
    p99_rel: float
    atol: float
    rtol: float
    passed: bool
    shape: tuple = ()
    top1: float | None = None  # classifier-like outputs: fraction of rows whose argmax agrees with the reference
    top1_rows: int = 0
    agreement: float | None = None  # integer outputs on a precision seam: fraction of equal elements
    histogram: dict | None = None  # |a-b| counts per decade (error_histogram), for plots

    def to_json(self) -> dict:
        data = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in self.__dict__.items()
                if k not in ("name", "top1", "top1_rows", "agreement", "histogram")} | {"shape": list(self.shape)}
        if self.histogram is not None:
            data["histogram"] = self.histogram
        if self.agreement is not None:
            data["agreement"] = self.agreement
        if self.top1 is not None:
            data |= {"top1_agreement": self.top1, "top1_rows": self.top1_rows}
        return data


@dataclass
class SeamResult:
    seam: str
    reference: str
    candidate: str
    passed: bool
    outputs: dict[str, OutputDiff] = field(default_factory=dict)
    seed: int = 0
    iterations: int = 1
    shapes: dict = field(default_factory=dict)
    note: str | None = None
    warnings: list[str] = field(default_factory=list)
    data: str | None = None  # where the inputs came from when not seeded random (--data, a precision seam)
    atol_scaled: bool = False  # a precision seam: each output's atol is scaled by its peak magnitude
    run_error: dict | None = None  # a side failed to run (compiler/seam_errors.py): {side, node, message}
    other_sizes: list = field(default_factory=list)  # the same seam at a second size (compiler/dynamic_dims.py)
    failed_at_second_size: bool = False

    def __bool__(self):
        return self.passed

    def to_json(self) -> dict:
        return {"seam": self.seam, "reference": self.reference, "candidate": self.candidate, "passed": self.passed,
                "seed": self.seed, "iterations": self.iterations,
                "shapes": {k: list(v) for k, v in self.shapes.items()}, "note": self.note,
                "warnings": self.warnings, "data": self.data or f"seeded random (seed {self.seed})",
                "atol_scaled_by_peak": self.atol_scaled, "run_error": self.run_error, "other_sizes": self.other_sizes,
                "outputs": {k: v.to_json() for k, v in self.outputs.items()}}

    def failure_line(self) -> str:
        if self.note:
            return f"seam {self.seam}: {self.note}"
        bad = [o for o in self.outputs.values() if not o.passed]
        parts = [f"'{o.name}' agrees on {o.agreement:.1%} of its elements (needs {PRECISION_MIN_AGREEMENT:.0%})"
                 if o.agreement is not None else
                 f"'{o.name}' max abs {o.max_abs:.3g} (atol {o.atol:.3g}), max rel {o.max_rel:.3g} (rtol {o.rtol:g})"
                 for o in bad]
        return f"seam {self.seam}: {self.candidate} differs from {self.reference}: " + "; ".join(parts)


# What to do when a seam fails, by seam: each points at the component it measures.
SEAM_FIXES = {
    "tf→onnx": "the conversion changed the numbers: check the report's ops; loosen --atol/--rtol only if the "
               "difference is expected",
    "onnx→optimized": "a pass changed the numbers: skip the pass named above with --skip-pass (or find it with "
                      "--check-each-pass), and please report it",
    "optimized→engine": "the backend's own optimizations changed the numbers; if that is acceptable for this model, "
                        "loosen --atol/--rtol",
}
DEFAULT_FIX = "loosen --atol/--rtol if the difference is expected"


def _is_exact(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "iub"


POLYGRAPHY_EPSILON = 2.220446049250313e-16  # added to zeros in the denominator, as Polygraphy does


def same_values(ref, cand) -> np.ndarray:
    """Where both sides hold the same value, the same NaN and the same-signed infinity included."""
    a, b = np.asarray(ref, dtype=np.float64), np.asarray(cand, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (a == b) | (np.isnan(a) & np.isnan(b))


def mismatches(ref, cand, atol: float, rtol: float) -> np.ndarray:
    """The elements outside tolerance, by the one rule every comparison uses (seams, goldens, localize, the
    precision search): Polygraphy's elementwise rule, |a-b| <= atol or |a-b| <= rtol*|b| (``a`` the reference,
    ``b`` the candidate, in float64; a zero ``b`` gets Polygraphy's epsilon), except that NaN agrees only with NaN
    at the same place and an infinity only with the same-signed one (Polygraphy counts two NaNs as a mismatch,
    and any difference as a match under a NaN tolerance). Integer and boolean references must be equal."""
    ref, cand = np.asarray(ref), np.asarray(cand)
    same = same_values(ref, cand)
    if ref.dtype.kind in "iub":
        return ~same
    a, b = ref.astype(np.float64), cand.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        absdiff = np.abs(a - b)
        rel = absdiff / np.abs(np.where(b == 0, POLYGRAPHY_EPSILON, b))
        return ~same & ((absdiff > atol) | np.isnan(absdiff)) & ((rel > rtol) | np.isnan(rel))


def _absdiff(ref, cand) -> np.ndarray:
    """|a-b| in float64, 0 where both hold the same NaN or infinity (see ``mismatches``)."""
    ref64, cand64 = np.asarray(ref, dtype=np.float64), np.asarray(cand, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(same_values(ref64, cand64), 0.0, np.abs(ref64 - cand64))


def nonfinite_matches(ref, cand) -> int:
    """How many elements are the same NaN or infinity on both sides (they agree, but prove nothing)."""
    ref64 = np.asarray(ref, dtype=np.float64)
    return int(np.sum(same_values(ref64, cand) & ~np.isfinite(ref64)))


def error_stats(ref: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    """max/mean/p99 of absolute and relative error; relative error is |a-b| / |ref| (0 where both are equal, the
    same NaN or infinity included)."""
    ref64 = np.asarray(ref, dtype=np.float64)
    absdiff = _absdiff(ref, cand)
    denom = np.abs(ref64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(absdiff == 0, 0.0, absdiff / denom)
    if absdiff.size == 0:
        return dict.fromkeys(("max_abs", "mean_abs", "p99_abs", "max_rel", "mean_rel", "p99_rel"), 0.0)
    return {"max_abs": float(absdiff.max()), "mean_abs": float(absdiff.mean()),
            "p99_abs": float(np.quantile(absdiff, 0.99)), "max_rel": float(rel.max()),
            "mean_rel": float(rel.mean()), "p99_rel": float(np.quantile(rel, 0.99))}


HISTOGRAM_DECADES = (-12, 2)  # |a-b| histogram range, as powers of ten (exact matches get their own bin)


def error_histogram(ref: np.ndarray, cand: np.ndarray) -> dict:
    """Counts of |a-b| per decade from 1e-12 to 1e2, plus exact matches (``zero``) and anything beyond
    (``over``; inf/nan too): small enough for every report, enough to draw the error distribution."""
    absdiff = _absdiff(np.ravel(ref), np.ravel(cand))
    lo, hi = HISTOGRAM_DECADES
    edges = [10.0 ** e for e in range(lo, hi + 1)]
    finite = absdiff[np.isfinite(absdiff)]
    nonzero = finite[finite > 0]
    counts, _ = np.histogram(np.clip(nonzero, edges[0], None), bins=edges)
    return {"edges": edges, "counts": [int(c) for c in counts], "zero": int(np.sum(finite == 0)),
            "over": int(absdiff.size - finite.size + np.sum(nonzero > edges[-1]))}


@dataclass(frozen=True)
class Side:
    """One side of a seam: its name in the results, its specs and interface change (``ModelInfo.change``), and,
    for a built artifact, the runner ``runtime.load`` already gave (reused, never loaded twice)."""

    label: str
    info: ModelInfo | None = None
    loaded: object = None


@dataclass(frozen=True)
class Seam:
    """One comparison as data: ``candidate`` against ``reference`` at ``shapes`` (the reference's layout), judged
    with ``tolerances`` = (atol, rtol). ``samples`` (``common.samples.Samples`` in the reference's interface) feed
    both sides; None means Polygraphy's seeded DataLoader. ``scaled``: a precision seam (each output's atol is
    scaled by its peak, integer outputs are judged by agreement)."""

    name: str
    reference: Side
    candidate: Side
    shapes: dict
    tolerances: tuple[float, float]
    samples: object = None
    scaled: bool = False

    def change(self) -> Interface:
        """How the candidate's interface differs from the reference's (see compiler/common/io_change.py).

        An engine carries no ONNX metadata; it has the interface of the ONNX model it was built from, so
        only an ONNX candidate whose recorded change the reference lacks needs adapting."""
        try:
            return interface.between(self.reference.info.change, self.candidate.info.change)
        except ValueError as e:
            raise ValidationError(f"seam {self.name}: {self.candidate.info.path.name} and "
                                  f"{self.reference.info.path.name} both changed the interface, differently ({e})",
                                  "validate each against the exported model instead") from None

    def inputs(self) -> tuple[TensorSpec, ...]:
        """The reference's input specs, with the dimensions the candidate fixed made static."""
        change = self.change()
        cand = tuple(TensorSpec(t.name, t.dtype, change.reference_shape(t.name, t.shape))
                     for t in self.candidate.info.inputs)
        return merge_specs(self.reference.info.inputs, cand)


def side_runner(side: Side, sessions: SharedSessions | None = None):
    """A Polygraphy runner for one side: the loaded artifact's, TensorFlow's for a SavedModel, else onnxruntime's
    (its session from ``sessions`` when given: loaded once for every seam the file is on)."""
    if side.loaded is not None:
        return side.loaded.polygraphy_runner(side.label)
    if side.info.format == "saved_model":
        return TfSavedModelRunner(side.info.path, side.info.signature, side.info.tag, side.info.inputs,
                                  name=side.label)
    if sessions is None:
        return onnx_runner(side.info.path, side.label)
    from polygraphy.backend.onnxrt import OnnxrtRunner

    return OnnxrtRunner(sessions.get_or_load(side), name=side.label)


def _onnx_paths(seam: Seam) -> list[Path]:
    return [s.info.path for s in (seam.reference, seam.candidate)
            if s.loaded is None and s.info.format != "saved_model"]


class SharedSessions:
    """The ONNX sides' sessions of a list of seams: each file is loaded once, for every seam it is on (the
    candidate of one seam is the reference of the next), and dropped after the last of them (``done``)."""

    def __init__(self, seams: list[Seam]):
        self.uses = Counter(p for seam in seams for p in _onnx_paths(seam))
        self.sessions: dict[Path, object] = {}

    def get_or_load(self, side: Side):
        path = side.info.path
        if path not in self.sessions:
            self.sessions[path] = validation_session(path, f"'{side.label}'")
        return self.sessions[path]

    def done(self, seam: Seam) -> None:
        for path in _onnx_paths(seam):
            self.uses[path] -= 1
            if self.uses[path] <= 0:
                self.sessions.pop(path, None)


def compare(seam: Seam, cfg: ValidateConfig, sessions: SharedSessions | None = None) -> SeamResult:
    """Run both sides of ``seam`` on the same data and judge every output of the reference (``judge``); the
    candidate is fed through its interface change, so it takes the reference's data and answers in its layout."""
    reference, candidate = side_runner(seam.reference, sessions), side_runner(seam.candidate, sessions)
    change = seam.change()
    if change:
        candidate = interface.adapted(candidate, change, seam.reference.info.inputs)
    if reference.name == candidate.name:
        candidate.name = seam.candidate.label + " (candidate)"
    loader = seam.samples if seam.samples is not None else data_loader(seam.inputs(), seam.shapes, cfg)
    try:
        results = run_sides(reference, candidate, loader, (seam.reference.label, seam.candidate.label))
    except SeamRunError as e:  # a side that cannot run on these inputs: a failed seam that says where
        return SeamResult(seam.name, seam.reference.label, seam.candidate.label, False, seed=cfg.seed,
                          iterations=cfg.iterations, shapes=dict(seam.shapes), note=e.note(),
                          data=seam.samples.source if seam.samples is not None else None,
                          run_error={"side": e.side, "node": e.node, "message": e.message})
    result = judge(results, seam, cfg)
    if seam.samples is not None:
        result.iterations, result.data = len(seam.samples), seam.samples.source
    return result


def effective_atol(atol: float, reference: np.ndarray, scaled: bool) -> float:
    """The absolute tolerance for one output: ``atol``, or where ``scaled`` (precision seams) ``atol`` times the
    output's peak magnitude when that exceeds 1, since float16 and int8 errors grow with the values' scale."""
    if not scaled or reference.size == 0:
        return atol
    peak = float(np.max(np.abs(reference[np.isfinite(reference)]), initial=0.0))
    return atol * max(1.0, peak)


def top1_agreement(refs: list[np.ndarray], cands: list[np.ndarray]) -> tuple[float | None, int]:
    """For a classifier-like output (float, rank 2: rows of at least 2 scores), the fraction of rows whose
    argmax is the same in both; (None, 0) for any other output."""
    if refs[0].ndim != 2 or refs[0].shape[-1] < 2 or refs[0].dtype.kind != "f":
        return None, 0
    ref, cand = np.concatenate(refs), np.concatenate(cands)
    return float(np.mean(ref.argmax(-1) == cand.argmax(-1))), int(ref.shape[0])


def judge(results, seam: Seam, cfg: ValidateConfig) -> SeamResult:
    """Compare the candidate's outputs in Polygraphy ``RunResults`` (reference first) with the reference's.

    The verdict is ``mismatches``' (Polygraphy's elementwise rule, NaN-aware); the error statistics are
    computed here over all iterations.
    """
    (ref_name, _), (cand_name, _) = results.lst[0], results.lst[1]
    name_, ref_label, cand_label, scaled = seam.name, seam.reference.label, seam.candidate.label, seam.scaled
    check_tolerances(*seam.tolerances)
    atol, rtol = seam.tolerances
    ref_iters, cand_iters = results[ref_name], results[cand_name]
    names = list(ref_iters[0].keys())
    missing = sorted(set(names) - set(cand_iters[0].keys()))
    if missing:
        raise ValidationError(f"seam {name_}: {cand_label} lacks output(s) {', '.join(missing)} of {ref_label}",
                              "outputs were renamed or dropped; check the export and the passes")
    # Integer and boolean outputs (argmax, masks) must match exactly.
    exact = {n: _is_exact(np.asarray(ref_iters[0][n])) for n in names}
    per_atol = {n: 0.0 if exact[n] else
                effective_atol(atol, np.concatenate([np.asarray(it[n], dtype=np.float64).ravel() for it in ref_iters]),
                               scaled) for n in names}
    per_rtol = {n: 0.0 if exact[n] else rtol for n in names}
    outputs: dict[str, OutputDiff] = {}
    note, warnings = None, []
    for name in names:
        refs = [np.asarray(it[name]) for it in ref_iters]
        cands = [np.asarray(it[name]) for it in cand_iters]
        histogram = None
        if any(r.shape != c.shape for r, c in zip(refs, cands)):
            stats = dict.fromkeys(("max_abs", "mean_abs", "p99_abs", "max_rel", "mean_rel", "p99_rel"), float("inf"))
            note = (f"output '{name}' has shape {cands[0].shape} in {cand_label} but {refs[0].shape} in {ref_label}")
            passed = False
        else:
            flat_ref, flat_cand = np.concatenate([r.ravel() for r in refs]), np.concatenate([c.ravel() for c in cands])
            passed = not mismatches(flat_ref, flat_cand, per_atol[name], per_rtol[name]).any()
            stats = error_stats(flat_ref, flat_cand)
            histogram = error_histogram(flat_ref, flat_cand)
            same_nonfinite = nonfinite_matches(flat_ref, flat_cand)
            if same_nonfinite:
                warnings.append(f"output '{name}' is NaN or infinite at {same_nonfinite} of {flat_ref.size} "
                                f"element(s) in both {ref_label} and {cand_label}; they count as equal there, so "
                                "this seam checks only its finite values")
        if not exact[name] and _constant(refs):
            warnings.append(f"output '{name}' of {ref_label} is the same value everywhere for every validation "
                            "input, so this seam cannot detect errors in it (untrained weights?)")
        top1, rows = top1_agreement(refs, cands) if not note else (None, 0)
        agreement = None
        if scaled and exact[name] and not note:  # a precision seam: see PRECISION_MIN_AGREEMENT
            agreement = float(np.mean(np.concatenate([(r == c).ravel() for r, c in zip(refs, cands)]))) \
                if refs[0].size else 1.0
            passed = agreement >= PRECISION_MIN_AGREEMENT
        outputs[name] = OutputDiff(name=name, atol=per_atol[name], rtol=per_rtol[name], passed=passed,
                                   shape=tuple(refs[0].shape), top1=top1, top1_rows=rows, agreement=agreement,
                                   histogram=histogram, **stats)
    return SeamResult(name_, ref_label, cand_label, all(o.passed for o in outputs.values()), outputs, cfg.seed,
                      cfg.iterations, dict(seam.shapes), note, warnings, atol_scaled=scaled)


def _constant(arrays: list[np.ndarray]) -> bool:
    """True when a multi-element output holds a single value across all iterations (a degenerate reference)."""
    flat = np.concatenate([a.ravel() for a in arrays])
    return flat.size > 1 and bool(np.all(flat == flat[0]))


def onnx_runner(model: Path | bytes | onnx.ModelProto, name: str, error=ValidationError):
    """A Polygraphy runner over an ONNX model that onnxruntime runs as written (see backends.onnxruntime.ort_session
    and, for float16/bfloat16 graphs, compiler.common.fp16_emulation), bounded in time and memory (compiler.limits); a failure
    is ``error``."""
    from polygraphy.backend.onnxrt import OnnxrtRunner

    return OnnxrtRunner(validation_session(model, f"'{name}'", error), name=name)


def validation_session(model, what: str = "the model", error=ValidationError):
    """An onnxruntime session running ``model`` (path, bytes or ModelProto) as written, float16 and
    bfloat16 rounding included (compiler.common.fp16_emulation); its ``run`` is bounded (``limits.BoundedSession``): failures are
    ``error``."""
    proto = model if isinstance(model, onnx.ModelProto) else None
    if proto is None:
        try:  # a file's weights are not read here: onnxruntime reads them (external data too) from its path
            proto = onnx.load_from_string(model) if isinstance(model, bytes) else read_onnx(model, False)
        except CompilerError:  # external data outside the model's directory
            raise
        except Exception:  # not an ONNX file: ort_session says so in its own words
            return limits.BoundedSession(ort_session(model), what, error)
        if not isinstance(model, bytes) and not narrow_floats(proto):
            return limits.BoundedSession(ort_session(Path(model)), what, error, proto)
        if not isinstance(model, bytes):
            proto = read_onnx(model)
    if narrow_floats(proto):
        proto = storage_emulation(proto)
    if proto.ByteSize() > PROTOBUF_LIMIT:  # one message cannot hold it: onnxruntime reads it from a file
        return _session_via_file(proto, what, error)
    return limits.BoundedSession(ort_session(proto.SerializeToString()), what, error, proto)


def _session_via_file(proto: onnx.ModelProto, what: str, error):
    """A bounded session over a model too big to serialize: written with external data to a scratch directory
    (a copy: writing moves the weights out of the proto written), loaded, and the files removed."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    with scratch_dir("tf2trt-session-") as tmp:
        write(copy, tmp / "model.onnx")
        del copy
        return limits.BoundedSession(ort_session(tmp / "model.onnx"), what, error, proto)


def quiet_polygraphy() -> None:
    """Polygraphy logs every comparison; our report says the same in one place."""
    from polygraphy import config as pconfig
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.CRITICAL
    G_LOGGER.colors = False
    pconfig.AUTOINSTALL_DEPS = False


class PassNumericsCheck:
    """``--check-each-pass``: compare the graph after each pass with the pipeline's input on onnxruntime.

    The reference runs once; each pass's output runs on the same seeded data.
    A mismatch raises an error that names the pass that broke semantics.
    """

    def __init__(self, reference_path: Path, inputs: tuple[TensorSpec, ...], shapes: dict[str, Shape],
                 cfg: ValidateConfig, tolerances: tuple[float, float]):
        from polygraphy.comparator import Comparator

        self.inputs, self.shapes, self.cfg, self.tolerances = inputs, shapes, cfg, tolerances
        self.reference = onnx_runner(reference_path, "before-passes", OptimizeError)
        self.ref_results = Comparator.run([self.reference], data_loader=data_loader(inputs, shapes, cfg))

    def __call__(self, model, pass_name: str) -> None:
        from polygraphy.comparator import Comparator, RunResults

        try:
            cand = onnx_runner(model, f"after-{pass_name}", OptimizeError)
            change = interface.read(model)
            if change:  # e.g. layout_io made an input NCHW: feed it the same data, transposed
                cand = interface.adapted(cand, change, self.inputs)
            cand_results = Comparator.run([cand], data_loader=data_loader(self.inputs, self.shapes, self.cfg))
        except CompilerError:  # the budget ran out, or the graph would not fit: said in its own words
            raise
        except Exception as e:  # onnxruntime rejecting the graph is the pass's fault: name it
            raise OptimizeError(f"after pass '{pass_name}' onnxruntime cannot run the graph "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                                f"skip it with --skip-pass {pass_name} and report the bug") from e
        # RunResults.update() in Polygraphy 0.53.6 indexes its list by name and fails; append pairs.
        merged = RunResults()
        merged.lst.extend(list(self.ref_results.lst) + list(cand_results.lst))
        seam = Seam("onnx→optimized", Side("the graph before the passes"), Side(f"the graph after pass '{pass_name}'"),
                    self.shapes, self.tolerances)
        result = judge(merged, seam, self.cfg)
        if not result.passed:
            raise OptimizeError(f"pass '{pass_name}' changed the model's outputs: {result.failure_line()}",
                                f"skip it with --skip-pass {pass_name} and report the bug")
