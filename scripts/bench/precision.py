#!/usr/bin/env python3
"""The precision stage's FP16, BF16 and INT8 graphs against the float32 graph: size, CPU latency, error.

    python scripts/bench/precision.py [--fixtures a,b | --no-fixtures] [--mobilenet DIR | --no-mobilenet]
                                      [--runs 5] [--samples 64] [--seed 1] [--json FILE] [--workdir DIR]

What runs. Each model (the compilable fixtures of tests/conftest.py, and a random-weight Keras
MobileNetV2) is exported to ONNX once with ``compiler.api.export_model``, its input shapes are
fixed (a fixture's from its golden inputs, fixtures/golden/NAME.npz, else from its
``--input-shapes`` flag in COMPILABLE; MobileNetV2's static shape with batch 1), and four
graphs are made from that one export with those shapes frozen:

  fp32   compiler.api.optimize_model(model.onnx, fp32.onnx, OptimizeConfig(input_shapes=...)):
         the default pass pipeline; the reference
  fp16   compiler.api.lower_precision(model.onnx, fp16.onnx, OptimizeConfig(...),
         PrecisionConfig(mode="fp16"), ValidateConfig()): the same passes, then float16
  bf16   the same with PrecisionConfig(mode="bf16"): bfloat16 at opset 22
  int8   compiler.api.lower_precision(..., PrecisionConfig(mode="int8", calib_method="minmax",
         calib_cache=<fresh file>), ValidateConfig()): the same passes, then calibration and Q/DQ

The INT8 graphs are CALIBRATED ON RANDOM DATA: with no calibration data the library draws 32
seeded random samples (seed 0), and the fixtures have no real data. The numbers show what INT8
costs in speed and error on this machine, not the accuracy of a model calibrated on real inputs.
The calibration cache is deleted before each INT8 run, so calibration always runs; its time
(``result.calibration["seconds"]``: onnxruntime's calibrator running the float32 graph on the
samples) is printed under the table. A model with no Conv/MatMul/Gemm gets no Q/DQ nodes (the
``quantize_int8`` pass record says so), its int8 graph is the fp32 graph, and its int8 row says
``no Conv/MatMul/Gemm to quantize`` instead of repeating the fp32 numbers.

How latency is timed. Each graph runs in onnxruntime's CPUExecutionProvider with its DEFAULT
session options: graph optimizations ON (ORT_ENABLE_ALL, the fusions a deployment on
onnxruntime would get) and the default intra-op thread count. One fixed input (the first of the
error samples below) is fed. After warm-up, a run is the mean time of K ``session.run`` calls,
with K chosen per graph so that a run lasts at least about 0.2 s; ``--runs`` runs are taken, the
four precisions alternating within each round and each round starting with the next one in turn
(fp32/fp16/bf16/int8, then fp16/bf16/int8/fp32, ...) so drift in machine load is spread over all four.
The median is reported with the min beside it, in milliseconds per call; ratio = median /
fp32's median.

What those latencies mean. onnxruntime's CPU provider has few float16 kernels: it runs float16
nodes through Casts to float32 that it inserts around them, so fp16 is expected to be SLOWER than
fp32 here. That number is the cost of validating an fp16 graph on this machine, not the speed
TensorRT will give it on a GPU. It has no bfloat16 kernels at all, so a bf16 graph is timed as its
storage emulation (compiler/common/fp16_emulation.py: float32 arithmetic and a Cast pair per stored
bfloat16 tensor), which is what the onnxruntime backend builds: the cost of checking bf16 accuracy
here, not bfloat16 speed (AMX/AVX512_BF16 via OpenVINO, Ampere+ via TensorRT). INT8 Q/DQ graphs run with onnxruntime's int8 kernels where its
optimizer fuses the QuantizeLinear/DequantizeLinear pairs around Conv/MatMul (QLinearConv,
MatMulInteger, ...); Q/DQ pairs it does not fuse run as written and cost time.

How error is measured. ``--samples`` seeded random inputs (seed ``--seed``, default 1, so they
are not the calibration samples; floats uniform in [-1, 1], integers in [0, 8], booleans random,
as compiler.validate.input_ranges; drawn by compiler.data.load_samples) are fed, one at a time,
to every graph run AS WRITTEN (``compiler.validate.validation_session``: graph optimizations
off, and float16/bfloat16 graphs with the explicit rounding of compiler/emulate.py, because
onnxruntime's CPU provider otherwise skips it between nodes), the fp32 graph included, so the
error is that of the precision stage and not of onnxruntime's fusions. Each graph's ``tf2trt.interface`` record adapts the feed and the outputs (float64 IO
made float32, NCHW IO). ``max abs`` and ``max rel`` are the largest |fp32 - x| and
|fp32 - x| / |fp32| over every element of every output and sample (rel is ``inf`` where the
fp32 value is 0 and x is not; the JSON writes it as the string "inf"). ``tol`` is ``ok`` when every
element meets the documented tolerance of compiler.config.PRECISION_TOLERANCES (fp16: atol 1e-2 /
rtol 1e-2, bf16: 4e-2 / 4e-2, int8: 5e-2 / 5e-2) by the validation rule: |a - b| <= atol or |a - b| / |a| <= rtol, the atol scaled by the
output's peak |value| where that exceeds 1 (compiler.precision.within, the seams' verdict);
integer and boolean outputs must agree on 95% of their elements (PRECISION_MIN_AGREEMENT, the
seams' rule). ``top-1``: for each classifier-like output
(float, rank 2, at least 2 columns) the fraction of rows whose argmax agrees with fp32's
(compiler.validate.top1_agreement; rows = samples x batch), the lowest over such outputs; ``-``
for models without one.

Reproduce (nothing else running; results compare only on the same machine and package versions):

    .venv/bin/python scripts/bench/precision.py --runs 5
    .venv/bin/python scripts/bench/precision.py --no-fixtures --mobilenet /tmp/bench/mobilenetv2 --json out.json

``--mobilenet DIR`` uses the SavedModel made by scripts/bench/make_mobilenetv2.py, and makes it
there first if DIR does not exist; without it, one is made in the work directory;
``--no-mobilenet`` leaves it out.

Exit status: 0 when every precision of every model was made, run and measured (an error outside
the tolerance is a result: it is printed as ``FAIL`` and in a closing note); 1 when making,
running or measuring some graph failed (its row shows the error; the other rows still run);
2 for bad arguments.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# With this script's directory first on sys.path, `import passes` would find scripts/bench/passes.py instead of
# the package, and `tests` would not be found. Put the repository root there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402

from scripts.bench import benchlib  # noqa: E402
from scripts.bench.benchlib import BadInput, Model, Shapes  # noqa: E402

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
LOWERED = PRECISIONS[1:]
VERSIONED_PACKAGES = ("tf2trt-compiler", "onnx", "onnxruntime", "tf2onnx", "tensorflow", "numpy")
RUN_SECONDS = 0.2  # a timed run lasts at least about this long
WARMUP_CALLS = 3
NO_QUANTIZE = "no Conv/MatMul/Gemm to quantize"



@dataclass
class Row:
    model: str
    precision: str
    path: str | None = None
    nodes: int | None = None
    calls_per_run: int | None = None
    latency_runs_ms: list[float] = field(default_factory=list)
    median_ms: float | None = None
    min_ms: float | None = None
    ratio: float | None = None  # median / fp32's median
    max_abs: float | None = None
    max_rel: float | None = None
    within_tolerance: bool | None = None
    tolerance: dict | None = None  # {"atol", "rtol"} for fp16/bf16/int8
    top1: float | None = None
    top1_rows: int = 0
    calibration_s: float | None = None
    calibration: dict | None = None
    note: str | None = None  # e.g. NO_QUANTIZE
    error: str | None = None


# --------------------------------------------------------------------------------------------------------------
# Models

def count_nodes(model) -> int:
    """Every node, subgraphs (Loop/If bodies) included."""
    import onnx

    total, stack = 0, [model.graph]
    while stack:
        g = stack.pop()
        for n in g.node:
            total += 1
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    return total


def _shapes_of(path: Path, given: Shapes, label: str) -> Shapes:
    """Every input's concrete shape: ``given`` where named, else static with a dynamic batch of 1."""
    from compiler.errors import CompilerError
    from compiler.common.onnxutil import inspect_onnx
    from compiler.validate import resolve_shapes

    inputs = inspect_onnx(path).inputs
    names = {t.name for t in inputs}
    try:
        return {k: tuple(v) for k, v in resolve_shapes(inputs, {k: v for k, v in given.items() if k in names},
                                                        1).items()}
    except CompilerError as e:
        raise BadInput(f"{label}: {e}") from None


def fixture_models(names: list[str], workdir: Path) -> list[Model]:
    return [Model(name, path, _shapes_of(path, given, name))
            for name, path, given in benchlib.export_fixtures(names, workdir)]


def mobilenet_model(saved_model: Path, workdir: Path, env: dict) -> Model:
    from compiler.api import export_model

    if not saved_model.exists():
        print(f"making MobileNetV2 at {saved_model} ...", flush=True)
        subprocess.run([sys.executable, str(REPO_ROOT / "scripts/bench/make_mobilenetv2.py"), str(saved_model)],
                       check=True, env=env)
    if not (saved_model / "saved_model.pb").is_file():
        raise BadInput(f"{saved_model} is not a SavedModel directory; fix: give a directory made by "
                       "scripts/bench/make_mobilenetv2.py, or a path that does not exist yet")
    print(f"exporting {saved_model} ...", flush=True)
    path = export_model(saved_model, workdir / "mobilenetv2.onnx").path
    return Model("mobilenetv2", path, _shapes_of(path, {}, "mobilenetv2"))


# --------------------------------------------------------------------------------------------------------------
# Making, running and measuring the graphs

def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:400] if text else ''}"


def make_graphs(model: Model, workdir: Path, rows: dict[str, Row]) -> None:
    """Write fp32.onnx, fp16.onnx, bf16.onnx, int8.onnx under ``workdir``; a failure goes into its row."""
    import onnx

    from compiler.api import lower_precision, optimize_model
    from compiler.config import OptimizeConfig, PrecisionConfig, ValidateConfig

    ocfg = OptimizeConfig(input_shapes=dict(model.shapes))
    for prec in PRECISIONS:
        row, out = rows[prec], workdir / f"{prec}.onnx"
        start = time.perf_counter()
        try:
            if prec == "fp32":
                art, _ = optimize_model(model.onnx, out, ocfg)
            elif prec in ("fp16", "bf16"):
                art, _, result = lower_precision(model.onnx, out, ocfg, PrecisionConfig(mode=prec),
                                                 ValidateConfig())
            else:
                cache = workdir / "int8.calib.json"
                cache.unlink(missing_ok=True)  # calibrate every time, so its time is real
                art, _, result = lower_precision(model.onnx, out, ocfg,
                                                 PrecisionConfig(mode="int8", calib_method="minmax",
                                                                 calib_cache=cache), ValidateConfig())
                row.calibration = result.calibration
                row.calibration_s = (result.calibration or {}).get("seconds")
                quantize = [r for r in result.records if r.name == "quantize_int8"]
                if quantize and not any(r.changed for r in quantize):  # its stats say "no ... node to quantize"
                    row.note = NO_QUANTIZE
        except Exception as e:  # a CompilerError or a bug: a result of this row, the others go on
            row.error = f"making the graph failed: {_one_line(e)}"
            print(f"  {prec:<5} FAILED: {row.error}", flush=True)
            continue
        row.path = str(art.path)
        row.nodes = count_nodes(onnx.load(str(art.path)))
        extra = f", calibration {row.calibration_s:.2f} s" if row.calibration_s is not None else ""
        print(f"  {prec:<5} made in {time.perf_counter() - start:6.2f} s, {row.nodes} nodes{extra}"
              + (f" ({row.note})" if row.note else ""), flush=True)


def error_samples(model: Model, count: int, seed: int):
    from compiler.data import load_samples
    from compiler.common.onnxutil import inspect_onnx

    return load_samples(None, inspect_onnx(model.onnx).inputs, model.shapes, what="validation", seed=seed,
                        random_count=count)


class Graph:
    """One artifact: its interface record, and a session run as written or one with default options."""

    def __init__(self, path: Path, optimized: bool):
        import onnxruntime as ort

        from compiler import interface
        from compiler.validate import validation_session

        self.change = interface.read(path)
        if optimized:
            import onnx

            from compiler.common.fp16_emulation import has_bfloat16, storage_emulation

            so = ort.SessionOptions()  # the defaults: ORT_ENABLE_ALL, default intra-op threads
            so.log_severity_level = 3
            model = onnx.load(str(path))  # bfloat16: no CPU kernels, so its emulation (what the backend builds)
            source = storage_emulation(model).SerializeToString() if has_bfloat16(model) else str(path)
            self.session = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
        else:
            self.session = validation_session(path)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def feed(self, sample: dict) -> dict:
        return {k: v for k, v in self.change.feed(dict(sample)).items() if k in self.inputs}

    def run(self, sample: dict) -> dict:
        out = self.session.run(None, self.feed(sample))
        return dict(self.change.results(dict(zip(self.outputs, out))))


def measure_errors(rows: dict[str, Row], samples) -> None:
    """max abs/rel error, tolerance verdict and top-1 of fp16/bf16/int8 against fp32, all run as written."""
    import numpy as np

    from compiler.config import PRECISION_TOLERANCES
    from compiler.precision import within
    from compiler.validate import top1_agreement

    ref_graph = Graph(Path(rows["fp32"].path), optimized=False)
    reference = [ref_graph.run(s) for s in samples]
    names = list(reference[0])
    for prec in PRECISIONS:
        row = rows[prec]
        if row.error or row.note:
            continue
        try:
            cands = reference if prec == "fp32" else [Graph(Path(row.path), optimized=False).run(s) for s in samples]
            # fp32 is the reference: its error is 0 by construction (it shows the comparison itself works);
            # it has no tolerance or top-1 of its own.
            atol, rtol = PRECISION_TOLERANCES.get(prec, (0.0, 0.0))
            if prec != "fp32":
                row.tolerance = {"atol": atol, "rtol": rtol, "atol_scaled_by_peak": True}
            worst_abs = worst_rel = 0.0
            top1 = []
            for name in names:
                missing = [i for i, c in enumerate(cands) if name not in c]
                if missing:
                    raise RuntimeError(f"output '{name}' missing from the {prec} graph")
                refs = [np.asarray(r[name]) for r in reference]
                got = [np.asarray(c[name]) for c in cands]
                if any(a.shape != b.shape for a, b in zip(refs, got)):
                    raise RuntimeError(f"output '{name}' has shape {got[0].shape} in the {prec} graph, "
                                       f"{refs[0].shape} in fp32")
                ref64 = np.concatenate([a.astype(np.float64).ravel() for a in refs])
                got64 = np.concatenate([b.astype(np.float64).ravel() for b in got])
                if ref64.size == 0:
                    continue
                err = np.abs(ref64 - got64)
                with np.errstate(divide="ignore", invalid="ignore"):
                    rel = np.where(err == 0, 0.0, err / np.abs(ref64))
                worst_abs = max(worst_abs, float(np.nanmax(err)))
                worst_rel = max(worst_rel, float(np.nanmax(rel)))
                agree, count = top1_agreement(refs, got)
                if agree is not None:
                    top1.append((agree, count))
            row.max_abs, row.max_rel = worst_abs, worst_rel
            if prec != "fp32":  # the precision seams' own verdict
                row.within_tolerance = within([[r[n] for n in names] for r in reference],
                                              [[c[n] for n in names] for c in cands], atol, rtol, scaled=True)
            if top1 and prec != "fp32":
                row.top1, row.top1_rows = min(top1)
        except Exception as e:
            row.error = f"measuring the error failed: {_one_line(e)}"


def time_latency(rows: dict[str, Row], sample: dict, runs: int) -> None:
    """``runs`` timed runs per graph (each the mean of K calls, default session options), interleaved."""
    graphs: dict[str, tuple[Graph, dict]] = {}
    for prec in PRECISIONS:
        row = rows[prec]
        if row.error or row.note:
            continue
        try:
            g = Graph(Path(row.path), optimized=True)
            feed = g.feed(sample)
            for _ in range(WARMUP_CALLS):
                g.session.run(None, feed)
            calls, start = 0, time.perf_counter()
            while calls < 1 or time.perf_counter() - start < RUN_SECONDS / 4:  # estimate the cost of one call
                g.session.run(None, feed)
                calls += 1
            per_call = (time.perf_counter() - start) / calls
            row.calls_per_run = max(1, math.ceil(RUN_SECONDS / per_call))
            graphs[prec] = (g, feed)
        except Exception as e:
            row.error = f"onnxruntime (default options) cannot run it: {_one_line(e)}"
    order = [p for p in PRECISIONS if p in graphs]
    for i in range(runs):
        k = i % len(order) if order else 0
        for prec in order[k:] + order[:k]:
            g, feed = graphs[prec]
            row = rows[prec]
            if row.error:
                continue
            run = g.session.run
            try:
                start = time.perf_counter()
                for _ in range(row.calls_per_run):
                    run(None, feed)
                row.latency_runs_ms.append((time.perf_counter() - start) / row.calls_per_run * 1e3)
            except Exception as e:
                row.error = f"onnxruntime (default options) failed in a timed run: {_one_line(e)}"
    for prec in order:
        row = rows[prec]
        if row.latency_runs_ms and not row.error:
            row.median_ms = statistics.median(row.latency_runs_ms)
            row.min_ms = min(row.latency_runs_ms)
    base = rows["fp32"].median_ms
    for row in rows.values():
        if row.median_ms is not None and base:
            row.ratio = row.median_ms / base


def bench_model(model: Model, workdir: Path, runs: int, samples: int, seed: int) -> dict[str, Row]:
    workdir.mkdir(parents=True, exist_ok=True)
    rows = {p: Row(model.name, p) for p in PRECISIONS}
    make_graphs(model, workdir, rows)
    if rows["fp32"].error:
        for p in LOWERED:
            if not rows[p].error:
                rows[p].error = "no fp32 graph to compare with"
        return rows
    try:
        data = error_samples(model, samples, seed)
    except Exception as e:
        for row in rows.values():
            row.error = row.error or f"drawing the random samples failed: {_one_line(e)}"
        return rows
    print(f"  measuring error on {len(data)} samples ...", flush=True)
    try:
        measure_errors(rows, data)
    except Exception as e:  # the fp32 graph itself does not run as written
        for row in rows.values():
            row.error = row.error or f"onnxruntime cannot run the fp32 graph: {_one_line(e)}"
        return rows
    print(f"  timing {runs} run(s) per graph ...", flush=True)
    time_latency(rows, data[0], runs)
    return rows


# --------------------------------------------------------------------------------------------------------------
# Output

def _fmt(v, spec: str, width: int) -> str:
    if v is None:
        return f"{'-':>{width}}"
    if isinstance(v, float) and not math.isfinite(v):
        return f"{str(v):>{width}}"
    return f"{v:>{width}{spec}}"


HEADER = (f"{'precision':<10}{'nodes':>7}{'median ms':>11}{'min ms':>10}{'ratio':>8}{'max abs':>11}{'max rel':>11}"
          f"{'tol':>6}{'top-1':>8}")


def print_table(model: Model, rows: dict[str, Row]) -> None:
    shapes = ", ".join(f"{k}:{'x'.join(map(str, v)) or 'scalar'}" for k, v in model.shapes.items())
    print(f"\n{model.name}  ({shapes})")
    print(HEADER)
    print("-" * len(HEADER))
    for prec in PRECISIONS:
        r = rows[prec]
        head = f"{prec:<10}{_fmt(r.nodes, 'd', 7)}"
        if r.error and r.max_abs is None:
            print(f"{head}  ERROR: {r.error}")
            continue
        if r.note:
            print(f"{head}  {r.note} (its graph is the fp32 graph)")
            continue
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        tol = "-" if r.within_tolerance is None else ("ok" if r.within_tolerance else "FAIL")
        top1 = "-" if r.top1 is None else f"{r.top1 * 100:.1f}%"
        print(f"{head}{_fmt(r.median_ms, '.3f', 11)}{_fmt(r.min_ms, '.3f', 10)}{ratio:>8}"
              f"{_fmt(r.max_abs, '.2e', 11)}{_fmt(r.max_rel, '.2e', 11)}{tol:>6}{top1:>8}")
        if r.error:  # measured as written, then failed with onnxruntime's default options
            print(f"  {prec}: ERROR: {r.error}")
    parts = []
    for prec in LOWERED:
        r = rows[prec]
        parts.append(f"{prec}/fp32 latency " + ("-" if r.ratio is None else f"{r.ratio:.2f}x"))
    print("  ".join(parts))
    i8 = rows["int8"]
    if i8.calibration:
        c = i8.calibration
        print(f"int8 calibration: {c.get('method')} on {c.get('source')}"
              f"{' (RANDOM data)' if c.get('random_data') else ''}: {i8.calibration_s:.2f} s"
              + (" (reused cache)" if c.get("reused_cache") else ""))
    tops = [rows[p] for p in LOWERED if rows[p].top1 is not None]
    if tops:
        print(f"top-1 over {tops[0].top1_rows} row(s) of each classifier-like output")


def _finite(v):
    return v if not isinstance(v, float) or math.isfinite(v) else str(v)  # JSON has no inf


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.model_args(ap, "MobileNetV2")
    ap.add_argument("--mobilenet", type=Path, metavar="DIR",
                    help="the random-weight Keras MobileNetV2 SavedModel at DIR (made there if missing; "
                         "default: made in the work directory)")
    ap.add_argument("--no-mobilenet", action="store_true", help="leave MobileNetV2 out")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per graph (default: 5)")
    ap.add_argument("--samples", type=int, default=64, help="random inputs the error is measured on (default: 64)")
    ap.add_argument("--seed", type=int, default=1,
                    help="seed of those inputs (default: 1; INT8 calibration uses seed 0)")
    a = ap.parse_args(argv)
    if a.samples < 1:
        ap.error("--samples must be at least 1")
    env = benchlib.checked_args(ap, a)
    if a.no_mobilenet and a.mobilenet:
        ap.error("--mobilenet and --no-mobilenet contradict each other")
    if a.no_fixtures and a.no_mobilenet:
        ap.error("no models: drop --no-fixtures or --no-mobilenet")
    from compiler.config import PRECISION_TOLERANCES

    meta = benchlib.header(VERSIONED_PACKAGES, f"latency: onnxruntime CPUExecutionProvider, default session "
                                               f"options (graph optimizations ON, default threads), {a.runs} run(s) "
                                               f"of >= {RUN_SECONDS:g} s each; error: {a.samples} random samples "
                                               f"(seed {a.seed}), graphs run as written")

    with benchlib.workspace(a.workdir, "bench-precision-") as workdir:
        models: list[Model] = []
        try:
            if not a.no_fixtures:
                models += fixture_models(benchlib.fixture_names(a.fixtures), workdir / "exported")
            if not a.no_mobilenet:
                saved = (a.mobilenet or workdir / "mobilenetv2").resolve()
                models.append(mobilenet_model(saved, workdir / "exported", env))
        except BadInput as e:
            print(f"error: bench: {e}", file=sys.stderr)
            return 2

        results = []
        for m in models:
            print(f"\n== {m.name}", flush=True)
            results.append((m, bench_model(m, workdir / "graphs" / m.name, a.runs, a.samples, a.seed)))

    tol = ", ".join(f"{p} atol {t[0]:g} / rtol {t[1]:g}" for p, t in PRECISION_TOLERANCES.items())
    print(f"\nresults: latency = ms per session.run, median (and min) of {a.runs} run(s), onnxruntime CPU with "
          f"graph optimizations ON; ratio = median / fp32 median. Error vs the fp32 graph on {a.samples} random "
          f"samples, every graph run as written; tol: {tol} (atol x max(1, peak |fp32 output|)), integer "
          "outputs equal on 95% of elements; fp16/bf16 graphs with explicit float16/bfloat16 rounding "
          "(compiler/emulate.py).")
    print("note: INT8 graphs are calibrated on RANDOM data (32 seeded samples): their error says what random "
          "calibration gives, not what real calibration data would.")
    print("note: onnxruntime's CPU provider runs most float16 nodes through Casts to float32, so fp16 is expected "
          "to be slower here; it is not TensorRT's fp16 speed. It has no bfloat16 kernels: bf16 is timed as its "
          "storage emulation (float32 plus a Cast pair per tensor), the cost of checking bf16 accuracy here.")
    for m, rows in results:
        print_table(m, rows)

    all_rows = [r for _, rows in results for r in rows.values()]
    failed = [f"{r.model} {r.precision}" for r in all_rows if r.error]
    outside = [f"{r.model} {r.precision}" for r in all_rows if r.within_tolerance is False]
    if outside:
        print(f"\nnote: outside the documented tolerance (a result, not a benchmark error): {', '.join(outside)}")
    return benchlib.finish(a.json, {
        "runs": a.runs, "samples": a.samples, "seed": a.seed, "run_seconds": RUN_SECONDS,
        "tolerances": {p: {"atol": t[0], "rtol": t[1]} for p, t in PRECISION_TOLERANCES.items()},
        "timing": "onnxruntime CPUExecutionProvider, default session options (graph optimizations on); "
                  "each run = mean of calls_per_run session.run calls on one input; ms per call",
        "error": "every graph run as written (graph optimizations off) on seeded random samples, vs fp32",
        "int8_calibration": "random data (seeded, 32 samples), minmax",
        **meta,
        "models": [{"model": m.name, "input_shapes": {k: list(v) for k, v in m.shapes.items()}}
                   for m, _ in results],
        "rows": [{k: _finite(v) for k, v in asdict(r).items()} for r in all_rows]}, failed, "making or running")


if __name__ == "__main__":
    sys.exit(main())
