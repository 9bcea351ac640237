#!/usr/bin/env python3
"""Our engines against the runtimes a user has without us, side by side: latency at batch 1, throughput at 16.

    python scripts/bench/runtime.py [--models fixtures|keras|all|NAME,...] [--precisions fp32,int8]
                                    [--runs 5] [--iterations 30] [--warmup 5] [--throughput-batch 16]
                                    [--keras-dir DIR] [--workdir DIR] [--json FILE]

Models: every compilable fixture (the default, a few minutes), and with ``--models keras`` (or ``all``, or
names) keras.applications MobileNetV2, ResNet50, ConvNeXtTiny and EfficientNetB0 (benchlib.keras_app:
weights=None, classifier_activation=None, seeded BatchNormalization statistics; made in ``--keras-dir`` once).

Columns, each on one seeded random feed per batch size (compiler.data.load_samples, seed 0; integer inputs
that index a table drawn from its range, as compile does):

  ours BACKEND[ BUILD] PREC  our engine: the export, our passes at the feed's shapes
                             (compiler.api.optimize_model), the precision stage for fp16/int8/bf16
                             (compiler.api.lower_precision; int8 calibrated on 32 seeded RANDOM samples), then
                             the backend's build (compiler.api.build_engine), run by compiler.runtime.load's
                             runner: what `python -m compiler MODEL OUT --precision PREC` builds. One column per
                             available backend of compiler.backends.REGISTRY (onnxruntime twice: its native
                             and portable builds) and precision of compiler.config.PRECISIONS.
  ort-default (raw)          onnxruntime's default session (ORT_ENABLE_ALL, default threads) on tf2onnx's
                             export as it comes: what a user gets from tf2onnx alone. THE BASELINE.
  openvino f32 (raw)         OpenVINO on the same export, CPU, INFERENCE_PRECISION_HINT f32 set explicitly
                             (not its bf16 default on CPUs with AMX), reshaped to the feed's static shapes.
  tensorflow                 the SavedModel's serving signature called eagerly on the CPU.

Timing. A run of a column is ``--warmup`` untimed calls, then ``--iterations`` timed calls (host to host,
perf_counter); its p50 and p90 are kept. ``--runs`` rounds alternate the columns, each round starting with the
next one (benchlib.alternating); the table shows the medians over the runs. ``b16/s`` is samples per second at
``--throughput-batch`` (batch / the median p50), for models whose inputs have a dynamic batch dimension.
``ratio`` = the column's time / ort-default's (p50 at batch 1; time per batch at 16): below 1 is faster.

Outputs. At batch 1 every column's outputs are compared with TensorFlow's: ``max err`` is the largest absolute
difference over all outputs; ``ok`` when fp32 columns are within 1e-4 abs or 1e-3 rel (the validate seam's
tolerance) and lowered ones within their documented tolerance (compiler.config.PRECISION_TOLERANCES, compiler.
precision.within's rule). Exit status: 1 when one of our fp32 engines failed or differs from TensorFlow (other
failures are results, printed), 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from scripts.bench import benchlib  # noqa: E402

BASELINE = "ort-default (raw)"
PACKAGES = ("tf2trt-compiler", "onnxruntime", "openvino", "tensorflow", "tf2onnx", "onnx", "numpy")
FP32_TOL = (1e-4, 1e-3)


@dataclass
class Column:
    name: str
    precision: str = "fp32"
    ours: bool = False
    calls: dict = field(default_factory=dict)  # batch -> (fn(feed) -> {name: array}, feed)
    error: str | None = None
    p50: dict = field(default_factory=dict)  # batch -> [ms per run]
    p90: dict = field(default_factory=dict)
    max_err: float | None = None
    agrees: bool | None = None


def _one_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:200]}"


def our_columns(raw: Path, feeds: dict, precisions: list[str], workdir: Path) -> list[Column]:
    """One column per engine variant; each batch size gets its own engine, built for that feed's shapes."""
    from compiler.api import build_engine
    from compiler.runtime import load, prepare_feed

    graphs: dict = {}
    columns = []
    for name, prec, cfg in benchlib.engine_variants(precisions):
        col = Column(name, prec, ours=True)
        columns.append(col)
        for batch, feed in feeds.items():
            shapes = {k: tuple(v.shape) for k, v in feed.items()}
            folder = workdir / f"{prec}-b{batch}"
            folder.mkdir(parents=True, exist_ok=True)
            try:
                if (prec, batch) not in graphs:
                    graphs[prec, batch] = benchlib.lowered_graph(raw, shapes, prec, folder / f"{prec}.onnx")
                slug = name.replace(" ", "-")
                runner = load(build_engine(graphs[prec, batch], folder / f"{slug}.engine", cfg, shapes).path)
                prepared = prepare_feed(runner.inputs, feed, runner.interface)
            except Exception as e:  # a CompilerError or a bug: this column's result, the others go on
                col.error, col.calls = f"build failed: {_one_line(e)}", {}
                print(f"  {name}: {col.error}", flush=True)
                break
            col.calls[batch] = (lambda f, r=runner, p=prepared: p.results(r.infer(f)), prepared.feed)
    return columns


def ort_column(raw: Path, feeds: dict) -> Column:
    import onnxruntime as ort

    col = Column(BASELINE)
    session = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for batch, feed in feeds.items():
        col.calls[batch] = (lambda f: dict(zip(names, session.run(names, f))), feed)
    return col


def openvino_column(raw: Path, feeds: dict) -> Column:
    col = Column("openvino f32 (raw)")
    try:
        import openvino as ov

        core = ov.Core()
        for batch, feed in feeds.items():
            model = core.read_model(str(raw))
            model.reshape({k: list(v.shape) for k, v in feed.items()})
            compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            names = [o.get_any_name() for o in compiled.outputs]
            request = compiled.create_infer_request()
            col.calls[batch] = (lambda f, r=request, n=names: dict(zip(n, (np.array(v) for v in r.infer(f).values()))),
                                feed)
    except Exception as e:  # not installed, or cannot read/compile this export: a result
        col.error, col.calls = f"unavailable: {_one_line(e)}", {}
    return col


def tf_column(model_dir: Path, info, feeds: dict) -> tuple[Column, object]:
    from compiler.frontend.tfrun import TfSavedModelRunner

    tf = TfSavedModelRunner(model_dir, info.signature, "serve", info.inputs)
    tf.activate()
    col = Column("tensorflow")
    for batch, feed in feeds.items():
        col.calls[batch] = (lambda f: dict(tf.infer(f, check_inputs=False)), feed)
    return col, tf


def model_feeds(model_dir: Path, raw: Path, shapes: dict, throughput_batch: int):
    """(ModelInfo, {batch: feed}): batch 1 (the model's shapes where it fixes the batch) and, where every input
    has a dynamic batch dimension, ``throughput_batch``."""
    import onnx

    from compiler.api import inspect_model
    from compiler.common.index_ranges import index_ranges, merged_ranges
    from compiler.data import load_samples
    from compiler.validate import resolve_shapes

    info = inspect_model(model_dir)
    ranges = merged_ranges(index_ranges(onnx.load(str(raw), load_external_data=False)), {})
    dynamic = all(t.shape and t.shape[0] is None for t in info.inputs)
    batches = [1] + ([throughput_batch] if dynamic and throughput_batch > 1 else [])
    feeds = {}
    for batch in batches:
        given = {k: ((batch,) + tuple(v[1:]) if dynamic else tuple(v)) for k, v in shapes.items()}
        resolved = resolve_shapes(info.inputs, given, batch)
        feeds[batch] = load_samples(None, info.inputs, resolved, what="benchmark", seed=0, random_count=1,
                                    ranges=ranges)[0]
    return info, feeds


def time_run(fn, feed, warmup: int, iterations: int) -> tuple[float, float]:
    """(p50, p90) in ms of ``iterations`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn(feed)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn(feed)
        times.append(time.perf_counter() - start)
    p50, p90 = np.percentile(np.asarray(times) * 1000, [50, 90])
    return float(p50), float(p90)


def check_outputs(columns: list[Column], want: dict) -> None:
    """Each column's batch-1 outputs against TensorFlow's: the largest abs difference, and the verdict."""
    from compiler.config import PRECISION_TOLERANCES
    from compiler.precision import within

    for col in columns:
        if 1 not in col.calls:
            continue
        fn, feed = col.calls[1]
        try:
            got = fn(feed)
        except Exception as e:
            col.error, col.calls = f"run failed: {_one_line(e)}", {}
            continue
        if set(want) - set(got):
            col.agrees, col.error = False, f"outputs missing: {', '.join(sorted(set(want) - set(got)))}"
            continue
        ref = [[np.asarray(want[k]) for k in sorted(want)]]
        cand = [[np.asarray(got[k]).reshape(np.shape(want[k])) for k in sorted(want)]]
        col.max_err = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0))
                          for a, b in zip(ref[0], cand[0]))
        if col.precision == "fp32":
            col.agrees = all(np.allclose(np.asarray(b, np.float64), np.asarray(a, np.float64), atol=FP32_TOL[0],
                                         rtol=FP32_TOL[1]) for a, b in zip(ref[0], cand[0]))
        else:
            col.agrees = within(ref, cand, *PRECISION_TOLERANCES[col.precision], scaled=True)


def bench_model(name: str, model_dir: Path, raw: Path, shapes: dict, a, workdir: Path) -> dict:
    info, feeds = model_feeds(model_dir, raw, shapes, a.throughput_batch)
    tf_col, tf = tf_column(model_dir, info, feeds)
    try:
        columns = [ort_column(raw, feeds), *our_columns(raw, feeds, a.precisions, workdir),
                   openvino_column(raw, feeds), tf_col]
        check_outputs(columns, tf_col.calls[1][0](feeds[1]))
        for batch in feeds:
            live = {c.name: c for c in columns if batch in c.calls}
            runs = benchlib.alternating({n: (lambda c=c: time_run(*c.calls[batch], a.warmup, a.iterations))
                                         for n, c in live.items()}, a.runs)
            for n, results in runs.items():
                live[n].p50[batch] = [r[0] for r in results]
                live[n].p90[batch] = [r[1] for r in results]
    finally:
        tf.deactivate()
    return {"model": name, "batches": list(feeds), "columns": [summarize(c, columns[0]) for c in columns],
            "shapes": {b: {k: list(v.shape) for k, v in f.items()} for b, f in feeds.items()}}


def summarize(col: Column, base: Column) -> dict:
    """A column's medians and ratios against the baseline column ``base``."""
    row = {"column": col.name, "precision": col.precision, "ours": col.ours, "error": col.error,
           "max_err_vs_tf": col.max_err, "outputs_agree": col.agrees}
    for batch, runs in col.p50.items():
        p50 = statistics.median(runs)
        ref = statistics.median(base.p50[batch]) if base.p50.get(batch) else None
        row[f"b{batch}"] = {"p50_ms": p50, "p90_ms": statistics.median(col.p90[batch]), "runs_p50_ms": runs,
                            "samples_per_s": batch * 1000 / p50, "ratio": p50 / ref if ref else None}
    return row


def _cell(v, spec: str, width: int) -> str:
    return f"{'-' if v is None else format(v, spec):>{width}}"


def print_model(result: dict, tb: int) -> None:
    print(f"\n{result['model']}  (shapes at batch 1: "
          + "; ".join(f"{k} {'x'.join(map(str, s))}" for k, s in result["shapes"][1].items()) + ")")
    print(f"{'column':28} {'p50 ms':>9} {'p90 ms':>9} {'ratio':>7} {f'b{tb}/s':>9} {f'b{tb} ratio':>9} "
          f"{'max err':>9}  outputs")
    for c in result["columns"]:
        b1, bt = c.get("b1", {}), c.get(f"b{tb}", {})
        verdict = {True: "ok", False: "DIFFER", None: "-"}[c["outputs_agree"]]
        print(f"{c['column']:28} {_cell(b1.get('p50_ms'), '.3f', 9)} {_cell(b1.get('p90_ms'), '.3f', 9)} "
              f"{_cell(b1.get('ratio'), '.2f', 6)}x {_cell(bt.get('samples_per_s'), '.1f', 9)} "
              f"{_cell(bt.get('ratio'), '.2f', 8)}x {_cell(c['max_err_vs_tf'], '.1e', 9)}  {verdict}"
              + (f"  ({c['error']})" if c["error"] else ""))
    sys.stdout.flush()  # a long run shows each model as it finishes, also when stdout is a file


def print_summary(results: list[dict], tb: int) -> None:
    """The README's table: per model, each column's p50 ratio at batch 1 (and time ratio at ``tb``)."""
    names = list(dict.fromkeys(c["column"] for r in results for c in r["columns"]))
    print(f"\nsummary: time / {BASELINE} time, p50 at batch 1 (batch {tb} in brackets); below 1 is faster\n")
    print("| model | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for r in results:
        cols = {c["column"]: c for c in r["columns"]}
        cells = []
        for n in names:
            c = cols.get(n, {})
            b1, bt = c.get("b1", {}).get("ratio"), c.get(f"b{tb}", {}).get("ratio")
            cells.append("-" if b1 is None else f"{b1:.2f}" + (f" ({bt:.2f})" if bt is not None else ""))
        print(f"| {r['model']} | " + " | ".join(cells) + " |")


def choose_models(spec: str) -> tuple[list[str], list[str]]:
    """(fixtures, keras models) that ``--models`` names: fixtures, keras, all, or NAME,... of either."""
    from tests.conftest import COMPILABLE

    groups = {"fixtures": (list(COMPILABLE), []), "keras": ([], list(benchlib.KERAS_APPS)),
              "all": (list(COMPILABLE), list(benchlib.KERAS_APPS))}
    if spec in groups:
        return groups[spec]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    keras = [n for n in names if n in benchlib.KERAS_APPS]
    fixtures = benchlib.fixture_names(",".join(n for n in names if n not in keras)) if len(keras) < len(names) \
        else []
    return fixtures, keras


def parse_args(argv):
    from compiler.config import PRECISIONS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="fixtures",
                   help="fixtures (default), keras, all, or NAME,... of fixtures and "
                        f"{', '.join(benchlib.KERAS_APPS)}")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help=f"our engines' precisions (default: "
                                                                      f"{','.join(PRECISIONS)})")
    p.add_argument("--runs", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--iterations", type=int, default=30, help="timed calls per run (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls before each run (default 5)")
    p.add_argument("--throughput-batch", type=int, default=16, help="batch of the throughput columns (default "
                                                                    "16; 1 leaves them out)")
    p.add_argument("--keras-dir", type=Path, help="where the keras SavedModels are made once (default: workdir)")
    p.add_argument("--workdir", type=Path, help="keep exports and engines here (default: a temp dir)")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    a.precisions = [s for s in a.precisions.split(",") if s]
    if set(a.precisions) - set(PRECISIONS):
        p.error(f"--precisions: choose from {', '.join(PRECISIONS)}")
    if a.runs < 1 or a.iterations < 1 or a.warmup < 0 or a.throughput_batch < 1:
        p.error("--runs and --iterations must be at least 1, --warmup 0 or more, --throughput-batch at least 1")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        fixtures, keras = choose_models(a.models)
    except benchlib.BadInput as e:
        print(f"error: bench: {e}", file=sys.stderr)
        return 2
    meta = benchlib.header(PACKAGES, f"{a.runs} alternating runs x {a.iterations} calls after {a.warmup} "
                                     "warm-up calls, medians; each library's default threads")
    from compiler.api import export_model
    from tests.conftest import FIXTURES

    results = []
    with benchlib.workspace(a.workdir, "bench-runtime-") as work:
        models = [(n, FIXTURES / n, raw, shapes) for n, raw, shapes in benchlib.export_fixtures(fixtures,
                                                                                                 work / "exported")]
        for name in keras:
            saved = benchlib.keras_app(name, (a.keras_dir or work / "keras") / name)
            print(f"exporting {name} ...", flush=True)
            models.append((name, saved, export_model(saved, work / "exported" / f"{name}.onnx").path, {}))
        for name, model_dir, raw, shapes in models:
            print(f"\n== {name}", flush=True)
            results.append(bench_model(name, model_dir, raw, shapes, a, work / "engines" / name))
            print_model(results[-1], a.throughput_batch)
    print_summary(results, a.throughput_batch)
    if a.json:
        a.json.write_text(json.dumps({**meta, "runs": a.runs, "iterations": a.iterations, "warmup": a.warmup,
                                      "baseline": BASELINE, "models": results}, indent=2, default=str) + "\n")
    bad = [f"{r['model']}: {c['column']}" for r in results for c in r["columns"]
           if c["ours"] and c["precision"] == "fp32" and (c["error"] or not c["outputs_agree"])]
    if bad:
        print(f"\nFAILED: our fp32 engine failed or differs from TensorFlow on {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
