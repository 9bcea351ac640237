"""The precision stage: float32 optimized graph → the FP16, BF16 or INT8 graph the engine is built from.

TensorRT 11 builds strongly typed networks only, so precision is decided in
the ONNX graph, by passes (``passes/precision/to_fp16.py``, ``to_bf16.py``,
``quantize_int8.py``, ``passes/cleanup_casts.py``) run through the same pass manager as the
optimize stage. What this module adds around them needs data:

* INT8 calibration: onnxruntime's calibrators (minmax, entropy, percentile)
  run the float32 graph on the calibration samples (``compiler/common/samples.py``) and
  give a range per tensor. The ranges are cached in a JSON file keyed by the
  model's and the data's hashes and the method, and reused when all match.
* Automatic mixed precision (``--auto-mixed``): the smallest set of nodes to
  keep in float32 so the FP16 or BF16 graph meets the tolerance against the float32
  graph, found by halving (delta debugging) rather than node by node.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from passes import PassError, PassManager
from passes.cleanup_casts import CleanupCasts
from passes.cleanup_toposort import CleanupToposort
from passes.precision.to_bf16 import ToBf16
from passes.quantize_int8 import INT8_OPS, QuantizeInt8, quantizable
from passes.to_fp16 import DATA_MOVEMENT, ToFp16, node_precision

from . import limits
from .common import io_change as interface
from .artifacts import OnnxArtifact, atomic_output, content_sha256, scratch_dir, write_text_atomic
from .config import MIXED_FLOATS, PRECISION_MIN_AGREEMENT, PrecisionConfig
from .errors import CompilerError, PrecisionError
from .sandbox import external_tensors, read_onnx
from .common.onnxutil import io_specs, load, needs_external_data, op_histogram, write
from .validate import effective_atol, mismatches, validation_session

CACHE_VERSION = 1
MAX_AUTO_EVALUATIONS = 64  # --auto-mixed gives up (keeping what it has) after this many trial graphs

# Ops that round nothing in float16 or bfloat16 that their input did not already carry: --auto-mixed never keeps
# them.
def _exact_in_fp16() -> frozenset:
    return DATA_MOVEMENT | {"MaxPool", "Relu", "Shape", "Size", "Cast"}


@dataclass
class PrecisionResult:
    mode: str
    ops: dict = field(default_factory=dict)  # precision -> {op: count}
    nodes: dict = field(default_factory=dict)  # node name -> precision it runs in
    kept_fp32: list = field(default_factory=list)  # [{"node", "op", "reason"}]
    records: list = field(default_factory=list)  # PassRecord
    calibration: dict | None = None
    auto_mixed: dict | None = None
    notices: list = field(default_factory=list)
    io_change: interface.Interface = field(default_factory=interface.Interface)  # lowered graph IO vs the exported
    op_histogram: dict = field(default_factory=dict)  # op -> count in the lowered graph

    def to_json(self) -> dict:
        return {"mode": self.mode, "ops": self.ops, "nodes": self.nodes, "kept_fp32": self.kept_fp32, "calibration": self.calibration,
                "auto_mixed": self.auto_mixed, "passes": [r.to_json() for r in self.records]}


def precision_summary(model: onnx.ModelProto) -> tuple[dict, dict]:
    """({precision: {op: count}}, {node: precision}) over the float nodes of ``model``
    (see ``passes.to_fp16.node_precision``)."""
    graph = gs.import_onnx(model)
    ops = {n.name: n.op for n in graph.nodes}
    table: dict[str, dict[str, int]] = {}
    nodes = node_precision(graph)
    for name, prec in nodes.items():
        row = table.setdefault(prec, {})
        row[ops[name]] = row.get(ops[name], 0) + 1
    return {p: dict(sorted(r.items())) for p, r in sorted(table.items())}, nodes


def _run_passes(model: onnx.ModelProto, passes):
    manager = PassManager(passes, max_iterations=2)
    try:
        return manager.run(model), manager.records
    except PassError as e:
        raise PrecisionError(str(e), "check --keep-fp32/--int8-skip against `python -m compiler inspect MODEL.onnx "
                             "--tensors`") from None


def to_fp16(model: onnx.ModelProto, cfg: PrecisionConfig, extra_keep: tuple[str, ...] = ()):
    """The ``cfg.mode`` (fp16 or bf16) graph of ``model``, with ``extra_keep`` kept in float32 too."""
    keep = tuple(cfg.keep_fp32) + tuple(extra_keep)
    lowering = ToBf16(keep) if cfg.mode == "bf16" else ToFp16(keep, cfg.fp16_io)
    return _run_passes(model, [lowering, CleanupCasts(), CleanupToposort()])


def to_int8(model: onnx.ModelProto, cfg: PrecisionConfig, ranges: dict):
    return _run_passes(model, [QuantizeInt8(ranges, tuple(cfg.int8_skip)), CleanupToposort()])


# ---------------------------------------------------------------- INT8 calibration

def _files_digest(path: Path) -> bytes:
    """The sha256 of an ONNX file and of each external-data file it names (read through the sandbox's check)."""
    proto = read_onnx(path, external_data=False)
    names = sorted({e.value for t, _ in external_tensors(proto) for e in t.external_data if e.key == "location"})
    return "".join(content_sha256(p) for p in [Path(path), *(Path(path).parent / n for n in names)]).encode()


def cache_key(model_bytes: bytes, data_digest: str, cfg: PrecisionConfig) -> str:
    """What the calibrated ranges depend on: the float32 graph, the samples, the method and its settings."""
    import onnxruntime

    h = hashlib.sha256()
    h.update(hashlib.sha256(model_bytes).digest())
    h.update(data_digest.encode())
    h.update(json.dumps([cfg.calib_method, cfg.percentile, INT8_OPS, onnxruntime.__version__]).encode())
    return h.hexdigest()


def calibrate(model: bytes | Path, samples, method: str, percentile: float) -> dict[str, tuple[float, float]]:
    """Per-tensor (low, high) ranges from onnxruntime's calibrator of ``method`` over ``samples``; ``model``: the
    serialized float32 graph, or the path of a file with external data (its augmented copy keeps them external)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, create_calibrator

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            return next(self.it, None)

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    options = {"symmetric": True}
    if method == "percentile":
        options["percentile"] = percentile
    limits.quiet_onnxruntime()  # the calibrator's sessions warn about initializers they drop
    external = isinstance(model, Path)
    with scratch_dir("tf2trt-calib-") as tmp:
        src = model if external else Path(tmp) / "model.onnx"
        if not external:
            src.write_bytes(model)
        try:
            calibrator = create_calibrator(src, list(INT8_OPS), augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                           calibrate_method=methods[method], providers=["CPUExecutionProvider"],
                                           use_external_data_format=external, extra_options=options)
            calibrator.infer_session = limits.BoundedSession(calibrator.infer_session,
                                                             f"calibration ({method})", PrecisionError)
            calibrator.collect_data(Reader())
            data = calibrator.compute_data()
        except CompilerError:  # the budget ran out, or memory: said in its own words
            raise
        except Exception as e:  # onnxruntime running the float graph on the samples failed
            raise PrecisionError(f"calibration ({method}) failed running the float32 graph on the samples "
                                 f"({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                                 "check that the samples match the model's inputs (`inspect` shows them)") from None
    ranges = {}
    for name, td in data.items():
        lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in td.range_value)
        ranges[name] = (lo, hi)
    return ranges


def cached_ranges(cache: Path | None, key: str) -> dict | None:
    if cache is None or not Path(cache).is_file():
        return None
    try:
        data = json.loads(Path(cache).read_text())
    except (OSError, ValueError):
        return None
    if data.get("version") != CACHE_VERSION or data.get("key") != key:
        return None
    return {k: tuple(v) for k, v in data["ranges"].items()}


def write_cache(cache: Path, key: str, ranges: dict, meta: dict) -> None:
    body = {"version": CACHE_VERSION, "key": key, **meta, "ranges": {k: list(v) for k, v in sorted(ranges.items())}}
    write_text_atomic(Path(cache), json.dumps(body, indent=1) + "\n", "calibration cache")


def int8_ranges(model: onnx.ModelProto, cfg: PrecisionConfig, samples, cache: Path | None, path: Path | None = None):
    """Calibrated ranges and a record of where they came from (the cache or a calibration run). A model saved
    with external data (``path``, the file it was loaded from) is calibrated from its file and keyed by its
    files' bytes: it may not fit one serialized protobuf."""
    external = path is not None and needs_external_data(model)
    body = path if external else model.SerializeToString()
    key = cache_key(_files_digest(path) if external else body, samples.digest, cfg)
    record = {"method": cfg.calib_method, "samples": len(samples), "source": samples.source,
              "random_data": samples.random, "cache": str(cache) if cache else None, "key": key}
    if cfg.calib_method == "percentile":
        record["percentile"] = cfg.percentile
    ranges = cached_ranges(cache, key)
    if ranges is not None:
        return ranges, record | {"reused_cache": True, "seconds": 0.0}
    start = time.perf_counter()
    ranges = calibrate(body, samples, cfg.calib_method, cfg.percentile)
    seconds = time.perf_counter() - start
    if cache is not None:
        write_cache(cache, key, ranges, {"method": cfg.calib_method, "samples": len(samples),
                                         "data_digest": samples.digest})
    return ranges, record | {"reused_cache": False, "seconds": round(seconds, 4)}


# ---------------------------------------------------------------- automatic mixed precision

def _outputs(model: onnx.ModelProto, samples, change=None, what: str = "the float32 graph") -> list[list[np.ndarray]]:
    session = validation_session(model, f"--auto-mixed: {what}", PrecisionError)
    results = []
    for feed in samples:
        feed = change.feed(feed) if change else feed
        outs = session.run(None, dict(feed))
        if change:
            outs = list(change.results(dict(zip([o.name for o in session.get_outputs()], outs))).values())
        results.append(outs)
    return results


def within(reference: list, candidate: list, atol: float, rtol: float, scaled: bool) -> bool:
    """The precision seam's verdict (validate.judge's rule) on plain arrays: every float element within atol
    (scaled by the peak) or rtol; integer outputs equal on PRECISION_MIN_AGREEMENT of their elements."""
    for k in range(len(reference[0])):
        ref = np.stack([np.asarray(r[k], dtype=np.float64) for r in reference])
        cand = np.stack([np.asarray(c[k], dtype=np.float64) for c in candidate])
        if np.asarray(reference[0][k]).dtype.kind in "iub":
            if ref.size and np.mean(ref == cand) < PRECISION_MIN_AGREEMENT:
                return False
            continue
        if mismatches(ref, cand, effective_atol(atol, ref, scaled), rtol).any():
            return False
    return True


def auto_mixed(model: onnx.ModelProto, cfg: PrecisionConfig, samples, tolerances: tuple[float, float]):
    """(``cfg.mode`` model, records, the nodes it keeps in float32, a report entry) meeting ``tolerances`` on
    ``samples``.

    Halving search for a 1-minimal set: if keeping S passes but keeping none does not, split S; keep the half
    that passes alone, or minimise each half with the other kept. Every trial is a real conversion run on
    onnxruntime; results are memoised, and after MAX_AUTO_EVALUATIONS trials the search stops with what passes.
    """
    atol, rtol = tolerances
    reference = _outputs(model, samples)
    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(model))
    candidates = [n.name for n in graph.nodes if n.op not in _exact_in_fp16()
                  and any(str(getattr(t, "dtype", "")) == "float32" for t in n.outputs)]
    trials: dict[frozenset, tuple] = {}

    def trial(keep: frozenset):
        if keep not in trials:
            if len(trials) >= MAX_AUTO_EVALUATIONS:
                raise _Budget()
            fp16, records = to_fp16(model, cfg, tuple(n for n in candidates if n in keep))
            outs = _outputs(fp16, samples, _fp16_io_change(model, fp16), f"a trial {cfg.mode} graph")
            trials[keep] = (within(reference, outs, atol, rtol, scaled=True), fp16, records)
        return trials[keep][0]

    def minimise(subset: list[str], kept: frozenset) -> list[str]:
        if trial(kept):
            return []
        if len(subset) == 1:
            return subset
        half = len(subset) // 2
        first, second = subset[:half], subset[half:]
        if trial(kept | frozenset(first)):
            return minimise(first, kept)
        if trial(kept | frozenset(second)):
            return minimise(second, kept)
        m1 = minimise(first, kept | frozenset(second))
        return m1 + minimise(second, kept | frozenset(m1))

    everything = frozenset(candidates)
    exhausted = False
    if not trial(frozenset()) and not trial(everything):
        raise PrecisionError(f"--auto-mixed: even with every float node in float32 the outputs miss atol {atol:g} / "
                             f"rtol {rtol:g} (the {cfg.mode} rounding of inputs/outputs alone does)",
                             "loosen --atol/--rtol" + (", or drop --fp16-io" if cfg.fp16_io else ""))
    try:
        kept = minimise(candidates, frozenset())
        trial(frozenset(kept))
    except _Budget:
        exhausted, kept = True, list(candidates)
    _, fp16, records = trials[frozenset(kept)]
    ops = {n.name: n.op for n in graph.nodes}
    entry = {"kept_fp32": [{"node": k, "op": ops[k]} for k in kept], "candidates": len(candidates),
             "trials": len(trials), "atol": atol, "rtol": rtol, "samples": len(samples),
             "budget_exhausted": exhausted}
    return fp16, records, kept, entry


class _Budget(Exception):
    pass


def _fp16_io_change(before: onnx.ModelProto, after: onnx.ModelProto):
    change = interface.diff(before, after, {})
    return change if change else None


# ---------------------------------------------------------------- the stage

def apply_precision(fp32_path: Path, out: Path, cfg: PrecisionConfig, samples=None, calib_samples=None,
                    tolerances: tuple[float, float] | None = None, cache: Path | None = None):
    """Write the ``cfg.mode`` graph of the float32 model at ``fp32_path`` to ``out``.

    Seven parameters: the last four are optional data the caller has already loaded (or None).

    ``samples`` (validation data) drive --auto-mixed against ``tolerances``;
    ``calib_samples`` drive INT8 calibration, cached in ``cache``. Returns
    (OnnxArtifact, PrecisionResult).
    """
    model = load(Path(fp32_path))
    result = PrecisionResult(cfg.mode)
    if cfg.mode in MIXED_FLOATS:
        if cfg.auto_mixed:
            converted, records, kept, entry = auto_mixed(model, cfg, samples, tolerances)
            result.auto_mixed = entry
        else:
            converted, records = to_fp16(model, cfg)
    elif cfg.mode == "int8":
        try:
            targets = quantizable(gs.import_onnx(model), tuple(cfg.int8_skip))
        except PassError as e:
            raise PrecisionError(str(e), "name op types or nodes of the graph in --int8-skip") from None
        if targets:
            ranges, result.calibration = int8_ranges(model, cfg, calib_samples, cache, Path(fp32_path))
        else:
            ranges = {}
            result.notices.append(f"precision: no {'/'.join(INT8_OPS)} node with a constant weight to quantize, so "
                                  "the int8 graph is the float32 graph")
            calib_samples = None
        if calib_samples is not None and calib_samples.random:
            result.notices.append(f"precision: INT8 calibrated on RANDOM data ({calib_samples.source}): the scales do not "
                                  "reflect real inputs; pass --calib-data for an engine you will deploy")
        converted, records = to_int8(model, cfg, ranges)
    else:
        raise PrecisionError(f"precision '{cfg.mode}' needs no precision stage", "use fp16, bf16 or int8")
    result.records = records
    result.ops, result.nodes = precision_summary(converted)
    for r in records:
        if r.name in (ToFp16.name, ToBf16.name) and r.changed:
            # Block-list entries that hold float data (a blocked Range over int64 runs in no float precision).
            result.kept_fp32 = [k for k in r.stats.get("kept_fp32", []) if result.nodes.get(k["node"]) == "fp32"]
    if result.auto_mixed:
        result.kept_fp32 += [k | {"reason": "--auto-mixed"} for k in result.auto_mixed["kept_fp32"]]
    # The interface record stays relative to the exported model: compose the float32 model's with this stage's.
    result.io_change = interface.compose(interface.read(model), interface.diff(model, converted, {}))
    interface.write(converted, result.io_change)
    result.op_histogram = op_histogram(converted)
    with atomic_output(Path(out), f"{cfg.mode} ONNX model") as tmp:
        write(converted, tmp)  # a graph over 1 GiB of weights keeps them in external data beside it
        try:  # on the file, with its external data: a proto over 2 GB cannot be checked in memory
            onnx.checker.check_model(str(tmp))
        except onnx.checker.ValidationError as e:
            raise PrecisionError(f"the {cfg.mode} graph is not valid ONNX: {str(e).splitlines()[0][:300]}",
                                 "report this with the model; meanwhile use --precision fp32") from None
    inputs, outputs = io_specs(converted)
    return OnnxArtifact(Path(out), inputs, outputs, result.op_histogram, result.io_change), result
