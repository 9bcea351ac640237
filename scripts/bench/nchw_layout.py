#!/usr/bin/env python3
"""Transposes left and onnxruntime latency of an NCHW model: this checkout's passes against a base revision's.

    python scripts/bench/nchw_layout.py MODEL.onnx --input-shapes NAME:1x224x224x3 [--base 93b335c]
                                        [--runs 7] [--iterations 30] [--warmup 5] [--workdir DIR]

What runs. The same exported ONNX file (NHWC, as tf2onnx writes it) is optimized twice with
``python -m compiler optimize MODEL OUT --input-shapes SPEC --inputs-as-nchw NAME``: once by this
checkout ("after"), once by the revision ``--base`` ("before"), unpacked with ``git archive`` into
the work directory and run from there, so both sides are the real pipeline of their revision and
nothing else differs. NAME is the input named in ``--input-shapes``.

How it is timed. Each optimized graph runs in onnxruntime with its default session options
(``ORT_ENABLE_ALL``, the library's default thread count), one session each, on one seeded feed
(uniform in [0, 1), NCHW). A run is ``--warmup`` untimed calls and ``--iterations`` timed ones
(perf_counter); its p50 is kept. ``--runs`` runs alternate before/after, each round starting with
the other side, and the table gives the median of the run p50s, the smallest, and the ratio
after / before (below 1: this checkout is faster). Both graphs' outputs are compared
(atol 1e-4 / rtol 1e-3) and the largest difference printed.

To make ConvNeXtTiny at 224×224 (random weights, no download) and export it:

    python -c "import keras; keras.utils.set_random_seed(0); keras.applications.ConvNeXtTiny(weights=None,
        classifier_activation=None).export('/tmp/convnext')"
    python -m compiler export /tmp/convnext /tmp/convnext.onnx
    python scripts/bench/nchw_layout.py /tmp/convnext.onnx --input-shapes keras_tensor:1x224x224x3

Exit status: 0 when both sides optimized and their outputs agree; 1 otherwise; 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _checkout(ref: str, into: Path) -> Path:
    """The tree of ``ref`` unpacked under ``into`` (git archive: tracked files only)."""
    target = into / f"base-{ref.replace('/', '_')}"
    if not target.is_dir():
        archive = into / "base.tar"
        with archive.open("wb") as f:
            subprocess.run(["git", "-C", str(ROOT), "archive", ref], stdout=f, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        archive.unlink()
    return target


def _optimize(tree: Path, model: Path, out: Path, spec: str, name: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "compiler", "optimize", str(model), str(out), "--input-shapes", spec,
           "--inputs-as-nchw", name]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"optimize with {tree} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _p50(session, feed, warmup: int, iterations: int) -> float:
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _ops(path: Path) -> Counter:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _compare(sessions, feed) -> float:
    import numpy as np

    before, after = (s.run(None, feed) for s in sessions)
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-3)
    return max(float(np.abs(a - b).max()) for b, a in zip(before, after))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="exported (NHWC) ONNX file")
    ap.add_argument("--input-shapes", required=True, help="NAME:1xHxWxC, the input made NCHW")
    ap.add_argument("--base", default="93b335c", help="git revision to compare with (default: 93b335c, main before this pass work)")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workdir", type=Path)
    a = ap.parse_args(argv)
    name, _, dims = a.input_shapes.partition(":")
    if not a.model.is_file() or not dims:
        ap.error("MODEL must be an ONNX file and --input-shapes NAME:DxDxDxD")
    import numpy as np

    work = a.workdir or Path(tempfile.mkdtemp(prefix="nchw_layout_"))
    work.mkdir(parents=True, exist_ok=True)
    paths = {"before": work / "before.onnx", "after": work / "after.onnx"}
    _optimize(_checkout(a.base, work), a.model, paths["before"], a.input_shapes, name)
    _optimize(ROOT, a.model, paths["after"], a.input_shapes, name)
    n, h, w, c = (int(d) for d in dims.split("x"))
    feed = {name: np.random.default_rng(0).uniform(0, 1, (n, c, h, w)).astype(np.float32)}
    sessions = {side: _session(p) for side, p in paths.items()}
    diff = _compare([sessions["before"], sessions["after"]], feed)
    p50s = {"before": [], "after": []}
    for i in range(a.runs):
        for side in (("before", "after") if i % 2 == 0 else ("after", "before")):
            p50s[side].append(_p50(sessions[side], feed, a.warmup, a.iterations))
    med = {side: statistics.median(v) for side, v in p50s.items()}
    print(f"{a.model.name}, NCHW input {name} {n}x{c}x{h}x{w}; base {a.base}; onnxruntime ORT_ENABLE_ALL; "
          f"{a.runs} alternating runs of {a.iterations} calls")
    print(f"{'side':<8}{'Transpose':>10}{'nodes':>8}{'p50 ms (median)':>18}{'min':>9}")
    for side in ("before", "after"):
        ops = _ops(paths[side])
        print(f"{side:<8}{ops['Transpose']:>10}{sum(ops.values()):>8}{med[side]:>18.3f}{min(p50s[side]):>9.3f}")
    print(f"ratio after/before p50: {med['after'] / med['before']:.3f}; outputs agree (max abs diff {diff:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
