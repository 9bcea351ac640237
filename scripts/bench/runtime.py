#!/usr/bin/env python3
"""Inference latency of a compiled artifact against TensorFlow's own inference of the same SavedModel.

    python scripts/bench/runtime.py [--fixtures a,b | --no-fixtures] [--mobilenet DIR] [--batch 1]
                                    [--backends auto | openvino,onnxruntime] [--runs 5] [--iterations 50]
                                    [--warmup 10] [--json FILE]

These runners per model, on one seeded random feed (compiler.data.load_samples, seed 0):

  ours         the artifact `python -m compiler MODEL OUT` builds here (auto: the OpenVINO engine where
               TensorRT is absent), timed by compiler.runtime.benchmark, i.e. what `python -m compiler bench`
               reports; with --backends a,b one row per backend, `ours-a`, `ours-b`
  tensorflow   the SavedModel's serving signature called eagerly (tf.saved_model.load, CPU), the way a
               TF-TRT user ran the model before converting it
  ort-onnx     onnxruntime on the exported (unoptimized) ONNX with its default session options
               (ORT_ENABLE_ALL), the peer a user would get from tf2onnx alone

A run is ``--iterations`` timed calls after ``--warmup`` untimed ones (host to host, perf_counter),
and its p50 is kept; ``--runs`` runs alternate the three runners, each round starting with the next
one, and the table shows the median of the run p50s, the smallest run p50, ratio = median / the
tensorflow median and vs ort = median / the ort-onnx median. All three must give the same outputs within 1e-4 abs / 1e-3 rel (checked, printed).
Every runner uses its library's default thread count on this machine's cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _p50(fn, feed, warmup, iterations):
    for _ in range(warmup):
        fn(feed)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn(feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def bench_model(name, model_dir, shapes, args, workdir):
    import onnxruntime as ort

    from compiler import BuildConfig, CompileConfig, OptimizeConfig, ValidateConfig, compile_model
    from compiler.api import export_model, inspect_model
    from compiler.data import load_samples
    from compiler.frontend.tfrun import TfSavedModelRunner
    from compiler.runtime import benchmark, load, prepare_feed
    from compiler.validate import resolve_shapes

    info = inspect_model(model_dir)
    fixed = {t.name for t in info.inputs if t.shape and isinstance(t.shape[0], int) and t.shape[0] >= 0}
    shapes = {k: v if k in fixed or not v else (args.batch,) + tuple(v[1:]) for k, v in shapes.items()}
    resolved = resolve_shapes(info.inputs, shapes, args.batch)
    feed = load_samples(None, info.inputs, resolved, what="benchmark", seed=0, random_count=1)[0]
    backends = args.backends.split(",")
    ours = {}
    for backend in backends:
        engine = workdir / f"{name}.{backend}.engine"
        compile_model(model_dir, engine, CompileConfig(optimize=OptimizeConfig(input_shapes=shapes),
                                                       build=BuildConfig(backend=backend),
                                                       validate=ValidateConfig(enabled=False)))
        runner = load(engine)
        ours["ours" if len(backends) == 1 else f"ours-{backend}"] = (runner, prepare_feed(runner.inputs, feed,
                                                                                          runner.interface))
    onnx_path = export_model(model_dir, workdir / f"{name}.onnx").path
    tf = TfSavedModelRunner(model_dir, info.signature, "serve", info.inputs)
    tf.activate()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in session.get_outputs()]

    def timed(runner, prepared):
        return lambda f: benchmark(runner, prepared, warmup=args.warmup, iterations=args.iterations).latency["p50"]

    runners = {key: timed(*value) for key, value in ours.items()}
    runners["tensorflow"] = lambda f: _p50(lambda x: tf.infer(x, check_inputs=False), f, args.warmup, args.iterations)
    runners["ort-onnx"] = lambda f: _p50(lambda x: session.run(out_names, x), f, args.warmup, args.iterations)
    want = dict(tf.infer(feed, check_inputs=False))
    agree = {}
    got = {key: prepared.results(runner.infer(prepared.feed)) for key, (runner, prepared) in ours.items()}
    got["ort-onnx"] = dict(zip(out_names, session.run(out_names, feed)))
    for runner, outputs in got.items():
        agree[runner] = all(np.allclose(np.asarray(outputs[k], np.float64), np.asarray(v, np.float64), atol=1e-4,
                                        rtol=1e-3) for k, v in want.items())
    order = list(runners)
    p50s = {r: [] for r in order}
    for i in range(args.runs):
        for r in order[i % len(order):] + order[:i % len(order)]:
            p50s[r].append(runners[r](feed))
    tf.deactivate()
    base, peer = statistics.median(p50s["tensorflow"]), statistics.median(p50s["ort-onnx"])
    rows = [{"runner": r, "median_p50_ms": statistics.median(v), "min_p50_ms": min(v),
             "ratio_to_tensorflow": statistics.median(v) / base, "ratio_to_ort_onnx": statistics.median(v) / peer,
             "outputs_agree": agree.get(r, True)}
            for r, v in p50s.items()]
    return {"model": name, "batch": args.batch, "shapes": {k: list(v) for k, v in resolved.items()}, "rows": rows,
            "backends": {key: runner.backend for key, (runner, _) in ours.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fixtures", default="cnn_nhwc,multi_io", help="fixtures to run (default: cnn_nhwc,multi_io)")
    p.add_argument("--no-fixtures", action="store_true")
    p.add_argument("--mobilenet", type=Path, help="a SavedModel from scripts/bench/make_mobilenetv2.py")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--backends", default="auto", help="backends to build ours with, comma-separated (default: auto)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from tests.conftest import FIXTURES, fixture_input_shapes

    models = [] if args.no_fixtures else [(n, FIXTURES / n, fixture_input_shapes(n))  # batch set by bench_model
                                          for n in args.fixtures.split(",") if n]
    if args.mobilenet:
        models.append(("MobileNetV2", args.mobilenet, {}))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        for name, path, shapes in models:
            result = bench_model(name, path, shapes, args, Path(tmp))
            results.append(result)
            print(f"\n{name}  (batch {args.batch}; {args.runs} runs x {args.iterations} calls; "
                  f"{os.cpu_count()} CPUs)")
            print(f"{'runner':16} {'median p50 ms':>13} {'min p50 ms':>10} {'ratio':>7} {'vs ort':>7}  outputs")
            for r in result["rows"]:
                print(f"{r['runner']:16} {r['median_p50_ms']:13.3f} {r['min_p50_ms']:10.3f} "
                      f"{r['ratio_to_tensorflow']:6.2f}x {r['ratio_to_ort_onnx']:6.2f}x  "
                      f"{'agree' if r['outputs_agree'] else 'DIFFER'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["outputs_agree"] for m in results for r in m["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
