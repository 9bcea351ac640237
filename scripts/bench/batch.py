#!/usr/bin/env python3
"""Batch throughput: the fixture zoo built with `batch --jobs 1`, `--jobs 2` and `--executor ray` (2 CPUs).

    python scripts/bench/batch.py [--models 12] [--configs jobs1,jobs2,ray] [--json FILE]

Writes a project file naming the first ``--models`` compilable fixtures (multi_io with its --input-shapes),
then runs `python -m compiler batch` once per configuration into a fresh build directory, timing the wall
clock and sampling the peak RSS of the whole process tree (driver, compile children, Ray's processes) every
0.1 s with psutil. Then it runs the first configuration again with nothing changed: every model is skipped
as unchanged, and that run must take under 5% of the first (exit 1 otherwise). Prints a table and the
ratios to `--jobs 1`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
MODELS = {"cnn_nhwc": {}, "multi_io": {"input_shapes": "x:2x5x8,scale:2x1"}, "topk_large": {}, "einsum": {},
          "uint8_image": {}, "depth_to_space": {}, "combined_nms": {}, "nms": {}, "resize_modes": {},
          "scatter_nd": {}, "control_flow": {}, "dtypes": {}}
CONFIGS = {"jobs1": ["--jobs", "1"], "jobs2": ["--jobs", "2"], "ray": ["--executor", "ray", "--jobs", "2"]}
RERUN_LIMIT = 0.05


def _project(directory: Path, count: int) -> Path:
    lines = []
    for name, settings in list(MODELS.items())[:count]:
        lines += [f"[models.{name}]", f'path = "{FIXTURES / name}"']
        lines += [f'{key} = "{value}"' for key, value in settings.items()] + [""]
    path = directory / "tf2trt.toml"
    path.write_text("\n".join(lines))
    return path


def _tree_rss(proc) -> int:
    import psutil

    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_batch(project: Path, build: Path, flags: list[str]) -> dict:
    """One `batch` run: wall seconds, peak RSS of its process tree (MiB), exit code, the index's counts."""
    import psutil

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "compiler", "batch", str(project), "--build-dir", str(build),
                             *flags], cwd=project.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    peak, watched = [0], psutil.Process(proc.pid)

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(watched))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    sampler.join()
    seconds = time.perf_counter() - start
    index = json.loads((build / "index.json").read_text()) if (build / "index.json").is_file() else {}
    return {"flags": flags, "seconds": round(seconds, 2), "peak_rss_mib": round(peak[0] / 2**20, 1),
            "exit_code": proc.returncode, "counts": index.get("counts"), "output_tail": output[-1500:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=len(MODELS), help=f"fixtures to build (default {len(MODELS)})")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    ap.add_argument("--rerun-limit", type=float, default=RERUN_LIMIT,
                    help=f"the unchanged rerun's largest allowed share of the first run (default {RERUN_LIMIT})")
    a = ap.parse_args()
    configs = [c.strip() for c in a.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not 1 <= a.models <= len(MODELS):
        print(f"error: bench: unknown config {unknown} or --models outside 1..{len(MODELS)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tf2trt-bench-batch-") as tmp:
        project = _project(Path(tmp), a.models)
        rows = {c: run_batch(project, Path(tmp) / f"build-{c}", CONFIGS[c]) for c in configs}
        rows["rerun"] = run_batch(project, Path(tmp) / f"build-{configs[0]}", CONFIGS[configs[0]])
    return report(rows, configs[0], a.models, a.json, a.rerun_limit)


def report(rows: dict, first: str, models: int, json_path: Path | None, limit: float) -> int:
    base = rows[first]["seconds"]
    print(f"batch over {models} fixture model(s), {os.cpu_count()} CPU(s)")
    print(f"{'run':8} {'seconds':>8} {'peak RSS MiB':>13} {'vs ' + first:>10}  exit  counts")
    for name, r in rows.items():
        print(f"{name:8} {r['seconds']:8.1f} {r['peak_rss_mib']:13.0f} {r['seconds'] / base:9.2f}x  "
              f"{r['exit_code']:4}  {r['counts']}")
    rerun = rows["rerun"]["seconds"] / base
    ok = rerun < limit and rows["rerun"]["counts"] and rows["rerun"]["counts"]["unchanged"] == models
    print(f"rerun with nothing changed: {rerun:.1%} of the first run ({'ok' if ok else 'FAIL'}: limit "
          f"{limit:.0%}, every model unchanged)")
    for name, r in rows.items():
        if r["exit_code"] != 0:
            print(f"--- {name} exited {r['exit_code']}:\n{r['output_tail']}")
    if json_path is not None:
        json_path.write_text(json.dumps({"models": models, "rows": rows, "rerun_ratio": rerun}, indent=2))
    return 0 if ok and all(r["exit_code"] == 0 for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
