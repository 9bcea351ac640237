#!/usr/bin/env python3
"""Wall time and peak memory of a full ``python -m compiler`` run versus tf2onnx's own CLI.

    python scripts/bench/compile_vs_tf2onnx.py MODEL_DIR [MODEL_DIR ...] [--runs 5] [--opset 17]
                                               [--compile-args "--backend onnxruntime"] [--json FILE]

What it measures. Two commands are run as separate processes on the same SavedModel:

  compile  python -m compiler MODEL_DIR <tmp>/model.engine --quiet --report <tmp>/report.json --opset N [args]
           (export with tf2onnx + graph passes + engine build + TensorFlow-vs-engine validation)
  tf2onnx  python -m tf2onnx.convert --saved-model MODEL_DIR --output <tmp>/model.onnx --opset N
           (the export step alone)

They run alternately (compile, tf2onnx, compile, tf2onnx, ...) so that slow drift in machine
load is spread over both tools instead of landing on one. Every run gets a fresh temporary
output directory. For each run:

  wall     time.perf_counter() from just before the process is spawned until it has been reaped,
           so interpreter start-up and imports (TensorFlow dominates both) are included.
  peak RSS ``ru_maxrss`` from ``os.wait4`` on the child: exact for the child itself. On Linux it is
           the maximum over the child and any descendants it reaped, never a sum of processes alive
           at the same time; neither tool is expected to start helper processes.
  cpu      user + system CPU seconds of the child (from the same rusage), to tell CPU-bound work
           from waiting when wall times are noisy.
  stages   for the compile, each stage's seconds and peak RSS from its report (``stages.*.peak_rss_mb``),
           to show where the memory and the time go.

The summary reports per tool the median and minimum wall time, the median peak RSS and the
median CPU time, the compile/tf2onnx ratios of the medians, and the compile's median per-stage
seconds and peak RSS. With several models, a last table gives each model's two ratios. The compile does strictly more
work than tf2onnx (passes, build and validation, which runs TensorFlow itself), so the ratio is
the cost of the whole pipeline relative to a bare export, not the overhead of the export step.

Reproduce (run nothing else on the machine meanwhile; the results are only comparable on the
same machine and the same package versions, which the script prints):

    .venv/bin/python scripts/bench/compile_vs_tf2onnx.py fixtures/cnn_nhwc --runs 5
    .venv/bin/python scripts/bench/make_mobilenetv2.py /tmp/bench/mobilenetv2
    .venv/bin/python scripts/bench/compile_vs_tf2onnx.py /tmp/bench/mobilenetv2 --runs 5 --json out.json
    for m in ResNet50 VGG16 ConvNeXtTiny; do
        .venv/bin/python scripts/bench/make_mobilenetv2.py /tmp/bench/$m --app $m; done
    .venv/bin/python scripts/bench/compile_vs_tf2onnx.py /tmp/bench/ResNet50 /tmp/bench/VGG16 \
        /tmp/bench/ConvNeXtTiny --runs 3

Exit status: 0 when every run succeeded; 1 when any child exited non-zero (its command, exit
status and the tail of its output are printed, and no summary is written); 2 for bad arguments.
Linux and macOS only (``os.wait4``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("compile", "tf2onnx")
VERSIONED_PACKAGES = ("tensorflow", "tf2onnx", "onnxruntime")
TMP = "<tmp>"  # stands for the per-run temporary directory in printed command lines
STDERR_TAIL_LINES = 40
FOOTER = ("note: compile = tf2onnx export + passes + build + TensorFlow-vs-engine validation; "
          "tf2onnx = export only, so the ratios include work tf2onnx does not do.")


class ChildFailed(Exception):
    """A benchmarked command exited non-zero; the message holds its command, status and output tail."""


@dataclass
class Run:
    tool: str
    index: int  # 1-based repetition number
    wall_s: float
    peak_rss_mib: float
    cpu_s: float  # user + system
    stages: dict | None = None  # compile only: stage -> {"seconds", "peak_rss_mb"} from its report


def build_commands(model_dir: Path, opset: int, compile_args: list[str]) -> dict[str, list[str]]:
    """Command lines with TMP standing for the per-run output directory."""
    return {
        # --opset goes before the user's arguments so that an --opset among them wins (argparse: last one).
        "compile": [sys.executable, "-m", "compiler", str(model_dir), f"{TMP}/model.engine", "--quiet",
                    "--report", f"{TMP}/report.json", "--opset", str(opset), *compile_args],
        "tf2onnx": [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(model_dir),
                    "--output", f"{TMP}/model.onnx", "--opset", str(opset)],
    }


def _maxrss_mib(ru_maxrss: int) -> float:
    # Linux reports KiB, macOS bytes.
    return ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else ru_maxrss / 1024


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    text = path.read_text(errors="replace").rstrip("\n").splitlines()
    return "\n".join(text[-lines:]) if text else "(empty)"


def run_once(tool: str, index: int, template: list[str], env: dict[str, str]) -> Run:
    """Run one command in a fresh temporary directory and measure it; raise ChildFailed on a non-zero exit."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-") as tmp:
        cmd = [arg.replace(TMP, tmp) for arg in template]
        out_path, err_path = Path(tmp, "stdout.log"), Path(tmp, "stderr.log")
        # Output goes to files, not pipes: nothing reads a pipe while we block in wait4, so a chatty
        # child could fill it and hang.
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=REPO_ROOT, env=env)
            try:
                # Reap the child ourselves to get its rusage; Popen.wait() would discard it.
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:  # e.g. Ctrl-C: do not leave the child running
                proc.kill()
                proc.wait()
                raise
            wall = time.perf_counter() - start
        # Tell Popen the child is gone so it never tries to wait for the reused pid.
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise ChildFailed(f"{tool} run {index} exited with status {proc.returncode}\n"
                              f"command: {shlex.join(cmd)}\n"
                              f"--- stderr (last {STDERR_TAIL_LINES} lines) ---\n{_tail(err_path)}\n"
                              f"--- stdout (last {STDERR_TAIL_LINES} lines) ---\n{_tail(out_path)}")
        report = Path(tmp, "report.json")
        stages = ({k: {"seconds": v["seconds"], "peak_rss_mb": v.get("peak_rss_mb")}
                   for k, v in json.loads(report.read_text())["stages"].items() if v["status"] == "ok"}
                  if report.is_file() else None)
        return Run(tool, index, wall, _maxrss_mib(usage.ru_maxrss), usage.ru_utime + usage.ru_stime, stages)


def summarize(runs: list[Run]) -> dict:
    stats = {}
    for tool in TOOLS:
        mine = [r for r in runs if r.tool == tool]
        stats[tool] = {
            "median_wall_s": statistics.median(r.wall_s for r in mine),
            "min_wall_s": min(r.wall_s for r in mine),
            "median_peak_rss_mib": statistics.median(r.peak_rss_mib for r in mine),
            "median_cpu_s": statistics.median(r.cpu_s for r in mine),
        }
    c, t = stats["compile"], stats["tf2onnx"]
    ratios = {key: c[key] / t[key] for key in ("median_wall_s", "median_peak_rss_mib", "median_cpu_s")}
    return {"per_tool": stats, "ratios_compile_over_tf2onnx": ratios, "compile_stages": stage_medians(runs)}


def stage_medians(runs: list[Run]) -> dict:
    """The compile's median seconds and peak RSS per stage, over the runs whose report had the stage."""
    recs = [r.stages for r in runs if r.tool == "compile" and r.stages]
    names = list(dict.fromkeys(name for rec in recs for name in rec))
    out = {}
    for name in names:
        mine = [rec[name] for rec in recs if name in rec]
        peaks = [m["peak_rss_mb"] for m in mine if m["peak_rss_mb"] is not None]
        out[name] = {"median_seconds": statistics.median(m["seconds"] for m in mine),
                     "median_peak_rss_mb": statistics.median(peaks) if peaks else None}
    return out


def versions() -> dict[str, str]:
    """Versions of the packages that decide the results ("not installed" where absent)."""
    from compiler.report import versions as installed

    found = installed(VERSIONED_PACKAGES)
    found.pop("python")
    return {pkg: v or "not installed" for pkg, v in found.items()}


def print_report(summary: dict, n_runs: int) -> None:
    per_tool, ratios = summary["per_tool"], summary["ratios_compile_over_tf2onnx"]
    header = f"{'tool':<10}{'median wall s':>15}{'min wall s':>12}{'median peak RSS MiB':>21}{'median CPU s':>14}"
    print(f"\nresults ({n_runs} runs each, alternating compile/tf2onnx):")
    print(header)
    print("-" * len(header))
    for tool in TOOLS:
        s = per_tool[tool]
        print(f"{tool:<10}{s['median_wall_s']:>15.2f}{s['min_wall_s']:>12.2f}"
              f"{s['median_peak_rss_mib']:>21.0f}{s['median_cpu_s']:>14.2f}")
    print("-" * len(header))
    print(f"{'ratio':<10}{ratios['median_wall_s']:>14.2f}x{'':>12}"
          f"{ratios['median_peak_rss_mib']:>20.2f}x{ratios['median_cpu_s']:>13.2f}x")
    print("(ratio = compile / tf2onnx, of the medians)")
    stages = summary.get("compile_stages") or {}
    if stages:
        print(f"\ncompile by stage (medians):\n{'stage':<10}{'seconds':>10}{'peak RSS MiB':>14}")
        for name, st in stages.items():
            peak = "" if st["median_peak_rss_mb"] is None else f"{st['median_peak_rss_mb']:.0f}"
            print(f"{name:<10}{st['median_seconds']:>10.2f}{peak:>14}")
    print(FOOTER)


def print_ratios(by_model: dict[str, dict]) -> None:
    """One line per model: compile/tf2onnx wall and peak RSS ratios of the medians."""
    print(f"\n{'model':<24}{'wall ratio':>12}{'peak RSS ratio':>16}")
    for name, summary in by_model.items():
        r = summary["ratios_compile_over_tf2onnx"]
        print(f"{name:<24}{r['median_wall_s']:>11.2f}x{r['median_peak_rss_mib']:>15.2f}x")


def bench_model(model_dir: Path, a, env: dict) -> tuple[list[Run], dict]:
    """``a.runs`` alternating runs of both tools on one SavedModel; (runs, summary). Raises ChildFailed."""
    commands = build_commands(model_dir, a.opset, shlex.split(a.compile_args))
    print(f"model: {model_dir}")
    for tool, cmd in commands.items():
        print(f"{tool:<8} $ {shlex.join(cmd)}")
    runs: list[Run] = []
    for i in range(1, a.runs + 1):
        for tool in TOOLS:
            r = run_once(tool, i, commands[tool], env)
            runs.append(r)
            print(f"[{i}/{a.runs}] {tool:<8} wall {r.wall_s:7.2f} s   peak RSS {r.peak_rss_mib:7.0f} MiB   "
                  f"cpu {r.cpu_s:7.2f} s", flush=True)
    summary = summarize(runs)
    print_report(summary, a.runs)
    print()
    return runs, {"commands": {tool: shlex.join(cmd) for tool, cmd in commands.items()}, **summary}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dirs", type=Path, nargs="+", metavar="MODEL_DIR", help="TensorFlow SavedModel directory")
    ap.add_argument("--runs", type=int, default=5, help="runs per tool (default: 5)")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset for both tools (default: 17)")
    ap.add_argument("--compile-args", default="", metavar='"ARGS"',
                    help='extra arguments for `python -m compiler`, one shell-quoted string, '
                         'e.g. "--backend onnxruntime"')
    ap.add_argument("--json", type=Path, metavar="FILE", help="write the per-run numbers and the summary as JSON")
    a = ap.parse_args(argv)
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    for model_dir in a.model_dirs:
        if not (model_dir / "saved_model.pb").is_file():
            ap.error(f"{model_dir} is not a SavedModel directory (no saved_model.pb)")
    if not hasattr(os, "wait4"):
        ap.error("os.wait4 is not available on this platform (Linux/macOS only)")
    if a.json:
        # Create the directory now, so a bad path fails before minutes of runs rather than after them.
        a.json.parent.mkdir(parents=True, exist_ok=True)

    # The same environment for both tools; quiet TensorFlow's C++ logging unless the caller chose otherwise.
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    vers = versions()
    print(f"versions: {', '.join(f'{k} {v}' for k, v in vers.items())}; python {platform.python_version()}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"cwd for both commands: {REPO_ROOT}; {TMP} is a fresh temporary directory per run\n")

    results = {}
    try:
        for model_dir in a.model_dirs:
            # Absolute path: the children run from the repository root, so `-m compiler` is this checkout's.
            runs, summary = bench_model(model_dir.resolve(), a, env)
            results[str(model_dir.resolve())] = {"runs": [asdict(r) for r in runs], **summary}
    except ChildFailed as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 1
    if len(results) > 1:
        print_ratios({Path(k).name: v for k, v in results.items()})
    if a.json:
        single = next(iter(results.items())) if len(results) == 1 else None
        a.json.write_text(json.dumps({
            **({"model_dir": single[0], **single[1]} if single else {"models": results}),
            "runs_per_tool": a.runs,
            "versions": {**vers, "python": platform.python_version()},
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "note": FOOTER,
        }, indent=2) + "\n")
        print(f"json: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
