#!/usr/bin/env python3
"""Top-1 accuracy on real data: our engines at each precision on the digits fixture's held-out test set.

    python scripts/bench/accuracy.py [--precisions fp32,fp16,int8] [--calib real|random] [--json FILE]

The model is fixtures/digits, a small CNN trained at fixture-build time (scripts/make_fixtures.py) on 1437 of
scikit-learn's bundled 8x8 digits; fixtures/digits_data.npz holds the 360 held-out images and labels, and 64
training images. One engine per available backend of compiler.backends.REGISTRY (onnxruntime: its native and
portable builds) and precision of compiler.config.PRECISIONS (benchlib.engine_variants), built as `compile`
builds it (benchlib.lowered_graph, with a dynamic batch), runs the 360 images in one call. INT8 is
calibrated on the 64 training images (``--calib real``, the default: what a user with data does) or on 32
seeded random samples (``--calib random``: what compile does without --calib-data). TensorFlow's own accuracy
on the SavedModel is the first row.

Columns: top-1 accuracy against the labels, points against the same backend's fp32 engine, and agreement
(the fraction of images whose top-1 class equals the fp32 engine's). Exit status 1 when an engine fails to build
or run, or an int8 engine's accuracy is more than 1 point below its fp32 engine's; 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from scripts.bench import benchlib  # noqa: E402

DATA = benchlib.REPO_ROOT / "fixtures" / "digits_data.npz"
MODEL = benchlib.REPO_ROOT / "fixtures" / "digits"
MAX_INT8_DROP = 1.0  # points


def engine_rows(raw: Path, data, precisions: list[str], calib: str | None, workdir: Path) -> list[dict]:
    from compiler.api import build_engine
    from compiler.runtime import load, prepare_feed

    images, labels = data["test_images"], data["test_labels"]
    rows, fp32 = [], {}
    for name, prec, cfg in benchlib.engine_variants(precisions):
        backend = name.rsplit(" ", 1)[0]
        row = {"engine": name, "precision": prec, "error": None}
        rows.append(row)
        try:
            graph = benchlib.lowered_graph(raw, {}, prec, workdir / f"{prec}.onnx", calib)
            runner = load(build_engine(graph, workdir / f"{name.replace(' ', '-')}.engine", cfg).path)
            prepared = prepare_feed(runner.inputs, {"image": images}, runner.interface)
            logits = np.asarray(next(iter(prepared.results(runner.infer(prepared.feed)).values())))
        except Exception as e:  # a CompilerError or a bug: this row's result
            row["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
            continue
        top1 = logits.argmax(-1)
        fp32.setdefault(backend, top1) if prec == "fp32" else None
        row["accuracy"] = float(np.mean(top1 == labels))
        ref = fp32.get(backend)
        row["agreement_with_fp32"] = float(np.mean(top1 == ref)) if ref is not None else None
    for row in rows:
        base = next((r for r in rows if r["engine"].rsplit(" ", 1)[0] == row["engine"].rsplit(" ", 1)[0]
                     and r["precision"] == "fp32" and "accuracy" in r), None)
        row["points_vs_fp32"] = (row["accuracy"] - base["accuracy"]) * 100 if base and "accuracy" in row else None
    return rows


def tf_accuracy(data) -> float:
    from compiler.api import inspect_model
    from compiler.frontend.tfrun import TfSavedModelRunner

    info = inspect_model(MODEL)
    tf = TfSavedModelRunner(MODEL, info.signature, "serve", info.inputs)
    tf.activate()
    try:
        logits = next(iter(tf.infer({"image": data["test_images"]}, check_inputs=False).values()))
    finally:
        tf.deactivate()
    return float(np.mean(np.asarray(logits).argmax(-1) == data["test_labels"]))


def main(argv=None) -> int:
    from compiler.api import export_model
    from compiler.config import PRECISIONS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--calib", choices=("real", "random"), default="real", help="int8 calibration data")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    precisions = [s for s in a.precisions.split(",") if s]
    if set(precisions) - set(PRECISIONS) or "fp32" not in precisions:
        p.error(f"--precisions: fp32 and any of {', '.join(PRECISIONS)}")
    meta = benchlib.header(("tf2trt-compiler", "onnxruntime", "openvino", "tensorflow", "tf2onnx"),
                           f"digits: {MODEL.name}, 360 held-out images; int8 calibrated on {a.calib} data")
    data = np.load(DATA)
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        work = Path(tmp)
        calib = None
        if a.calib == "real":
            calib = str(work / "calib.npz")
            np.savez(calib, image=data["calib_images"])
        raw = export_model(MODEL, work / "digits.onnx").path
        rows = engine_rows(raw, data, precisions, calib, work)
    reference = tf_accuracy(data)
    print(f"\n{'engine':32} {'top-1':>7} {'vs fp32':>8} {'agree':>7}")
    print(f"{'tensorflow (SavedModel)':32} {reference * 100:6.2f}% {'-':>8} {'-':>7}")
    for r in rows:
        if r["error"]:
            print(f"{r['engine']:32} FAILED: {r['error']}")
            continue
        agree = r["agreement_with_fp32"]
        print(f"{r['engine']:32} {r['accuracy'] * 100:6.2f}% {r['points_vs_fp32']:+7.2f} "
              f"{'-' if agree is None else f'{agree * 100:6.2f}%':>7}")
    bad = [r["engine"] for r in rows if r["error"] or (r["precision"] == "int8" and r["points_vs_fp32"] is not None
                                                       and r["points_vs_fp32"] < -MAX_INT8_DROP)]
    if a.json:
        a.json.write_text(json.dumps({**meta, "calib": a.calib, "tensorflow_accuracy": reference, "rows": rows},
                                     indent=2) + "\n")
    if bad:
        print(f"\nFAILED: {', '.join(bad)} (build/run error, or int8 more than {MAX_INT8_DROP:g} point below fp32)",
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
