"""Command line: parse flags into config, make one library call, print, map errors to exit codes.

    python -m compiler MODEL OUT [options]          (same as `compile`)
    python -m compiler {compile,inspect,export,optimize,build,validate} ...
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from . import __version__
from .config import (BACKENDS, CALIB_METHODS, CPU_MODES, HARDWARE_COMPATIBILITY, ORT_BUILDS, PRECISIONS,
                     PROFILE_STRATEGIES, BuildConfig, CompileConfig, ExportConfig, OptimizeConfig, PrecisionConfig,
                     ValidateConfig, check_tolerances, parse_names, parse_ranges, parse_shapes)
from .artifacts import check_writable, refuse_replacing_inputs, remove_leftovers, scratch_dir
from .errors import (CompilerError, ConfigError, InternalError, Terminated, clear_pending, interruption,
                     note_interruption, out_of_memory)
from .common.index_ranges import index_ranges
from .limits import DEFAULT_TIMEOUT_S, check_timeout, time_budget

SUBCOMMANDS = ("compile", "inspect", "export", "optimize", "build", "validate", "check-trt", "run", "bench", "record",
               "check", "localize", "batch")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code of the config stage
        words = self.prog.split()
        command = words[-1] if len(words) > 3 else "COMMAND"  # "python -m compiler" is the top parser
        raise ConfigError(message, f"see `python -m compiler {command} --help`")


def _export_flags(p):
    g = p.add_argument_group("export")
    g.add_argument("--signature", help="SavedModel signature to export (default: serving_default, or the only one)")
    g.add_argument("--tag", default="serve", help="MetaGraph tag (default: serve)")
    g.add_argument("--opset", type=int, default=17, help="ONNX opset for tf2onnx (default: 17)")
    g.add_argument("--allow-unsafe-ops", action="store_true",
                   help="load a SavedModel even if its graph reads/writes files or runs Python")


def _optimize_flags(p):
    g = p.add_argument_group("optimize")
    g.add_argument("--input-shapes", metavar="NAME:DxDx..,...",
                   help="freeze input shapes, e.g. image:1x224x224x3 (needed for dynamic dims beyond the batch)")
    g.add_argument("--passes", help="comma-separated passes to run instead of the default pipeline")
    g.add_argument("--skip-pass", action="append", default=[], metavar="NAME", help="skip a pass (repeatable)")
    g.add_argument("--check-each-pass", action="store_true",
                   help="run onnxruntime after every pass and name the pass that changes the outputs")
    g.add_argument("--dump-passes", type=Path, metavar="DIR", help="write NNN_<pass>.onnx after each pass")
    g.add_argument("--inputs-as-nchw", metavar="NAME,...",
                   help="make these channels-last inputs channels-first (the engine takes NCHW)")
    g.add_argument("--outputs-as-nchw", metavar="NAME,...", help="make these channels-last outputs channels-first")
    g.add_argument("--rules", type=Path, metavar="FILE.py",
                   help="your own rewrite rules (a file defining RULES = [...]), applied before the built-in ones")
    g.add_argument("--cut-inputs", metavar="TENSOR,...",
                   help="start the graph at these tensors (cut pre-processing off; it runs outside the engine)")
    g.add_argument("--cut-outputs", metavar="TENSOR,...",
                   help="end the graph at these tensors (cut post-processing off)")


def _precision_flags(p):
    g = p.add_argument_group("precision (decided in the ONNX graph; TensorRT builds it strongly typed)")
    g.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default), fp16 (float16 with a float32 block list), bf16 (bfloat16, likewise) or "
                        "int8 (Q/DQ, calibrated)")
    g.add_argument("--fp16-io", action="store_true", help="fp16: float16 graph inputs and outputs (default: float32)")
    g.add_argument("--keep-fp32", metavar="OP_OR_NODE,...", help="fp16/bf16: also keep these op types or nodes in float32")
    g.add_argument("--auto-mixed", action="store_true",
                   help="fp16/bf16: keep the fewest extra nodes in float32 that make the lowered graph meet the "
                        "tolerance")
    g.add_argument("--int8-skip", metavar="OP_OR_NODE,...", help="int8: leave these op types or nodes unquantized")
    g.add_argument("--calib-data", metavar="SPEC",
                   help="int8: calibration samples: a directory of .npy/.npz, an .npz/.npy with a sample axis, or "
                        "FILE.py:FUNCTION yielding feeds (default: --data, else random, with a warning)")
    g.add_argument("--calib-method", choices=CALIB_METHODS, default="minmax", help="int8: range calibration method")
    g.add_argument("--calib-samples", type=int, metavar="N", help="int8: use at most N calibration samples")
    g.add_argument("--calib-cache", type=Path, metavar="FILE",
                   help="int8: calibration cache, reused when model and data match (default: OUT.calib.json)")


def _precision_cfg(a) -> PrecisionConfig:
    return PrecisionConfig(mode=a.precision, fp16_io=a.fp16_io, keep_fp32=parse_names(a.keep_fp32),
                           auto_mixed=a.auto_mixed, int8_skip=parse_names(a.int8_skip), calib_data=a.calib_data,
                           calib_method=a.calib_method, calib_cache=a.calib_cache, calib_samples=a.calib_samples)


def _build_flags(p):
    g = p.add_argument_group("build")
    g.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto: TensorRT when it and a GPU are present, else OpenVINO (CPU), else onnxruntime (CPU)")
    g.add_argument("--workspace", type=int, metavar="MiB", help="TensorRT workspace memory pool limit")
    g.add_argument("--ort-build", choices=ORT_BUILDS, default="native",
                   help="onnxruntime artifact: native (default; every optimization for this CPU, runs only on "
                        "this CPU's instruction set with this onnxruntime version) or portable (any CPU)")
    o = p.add_argument_group("OpenVINO engine (ignored, with a notice, by the other backends)")
    o.add_argument("--cpu-mode", choices=CPU_MODES, default="latency",
                   help="latency: one request at a time, fastest each (default); throughput: parallel streams")
    o.add_argument("--cpu-threads", type=int, default=0, metavar="N",
                   help="inference threads (default 0: OpenVINO's choice, the cores available)")
    t = p.add_argument_group("TensorRT engine (ignored, with a notice, by the CPU backends)")
    t.add_argument("--min-shapes", action="append", default=[], metavar="NAME:DxD,...",
                   help="optimization profile minimum shapes; repeat --min/--opt/--max-shapes for more profiles")
    t.add_argument("--opt-shapes", action="append", default=[], metavar="NAME:DxD,...",
                   help="shapes the profile is tuned for (default: the max shapes)")
    t.add_argument("--max-shapes", action="append", default=[], metavar="NAME:DxD,...",
                   help="optimization profile maximum shapes")
    t.add_argument("--profile-strategy", choices=PROFILE_STRATEGIES,
                   help="derive profiles from sample inputs like TF-TRT: range (one spanning profile), optimal "
                        "(one per sample shape), range+optimal (both)")
    t.add_argument("--profile-data", metavar="SPEC",
                   help="samples for --profile-strategy (a directory of .npy/.npz, FILE.py:FUNCTION, ...; "
                        "default: --data)")
    t.add_argument("--timing-cache", type=Path, metavar="FILE",
                   help="TensorRT timing cache: loaded if it exists, saved after the build (faster rebuilds)")
    t.add_argument("--builder-opt-level", type=int, metavar="0-5",
                   help="TensorRT builder optimization level (default 3; higher builds slower, may run faster)")
    t.add_argument("--plugins", metavar="LIB.so,...", help="TensorRT plugin libraries to load before parsing")
    t.add_argument("--version-compatible", action="store_true",
                   help="plan that later TensorRT versions of the same major can run")
    t.add_argument("--exclude-lean-runtime", action="store_true",
                   help="with --version-compatible: leave the lean runtime out of the plan (smaller)")
    t.add_argument("--hardware-compatibility", choices=HARDWARE_COMPATIBILITY, default="none",
                   help="plan that runs on other GPU architectures: ampere+ or same-compute-capability")


def _build_cfg(a, backend: str | None = None) -> BuildConfig:
    from .profiles import parse_profiles

    return BuildConfig(backend=backend or a.backend, ort_build=a.ort_build, workspace_mib=a.workspace,
                       profiles=parse_profiles(a.min_shapes, a.opt_shapes, a.max_shapes),
                       profile_strategy=a.profile_strategy, profile_data=a.profile_data,
                       timing_cache=a.timing_cache, builder_opt_level=a.builder_opt_level,
                       plugins=tuple(Path(p) for p in parse_names(a.plugins)),
                       version_compatible=a.version_compatible, exclude_lean_runtime=a.exclude_lean_runtime,
                       hardware_compatibility=a.hardware_compatibility, cpu_mode=a.cpu_mode,
                       cpu_threads=a.cpu_threads)


def _validate_flags(p):
    g = p.add_argument_group("validate")
    g.add_argument("--atol", type=float, help="absolute tolerance for every seam (default: per seam)")
    g.add_argument("--rtol", type=float, help="relative tolerance for every seam (default: per seam)")
    g.add_argument("--seed", type=int, default=0, help="seed for the random validation inputs (default: 0)")
    g.add_argument("--val-iterations", type=int, default=1, metavar="N", help="batches of inputs to compare")
    g.add_argument("--batch", type=int, default=1, help="size used for a dynamic batch dimension (default: 1)")
    g.add_argument("--data", metavar="SPEC",
                   help="validate on these input samples instead of seeded random ones (same forms as --calib-data)")
    g.add_argument("--val-range", action="append", default=[], metavar="NAME:LO,HI",
                   help="range of the seeded random data for an input (repeatable; LO,HI alone: every input; "
                        "default floats -1,1, integers 0,8)")


def _common(p):
    p.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    p.add_argument("--validate-timeout", type=_seconds, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="how long any one model evaluation may run (constant folding, each validation seam, run, "
                        f"localize, calibration) before it is stopped (default: {DEFAULT_TIMEOUT_S:g})")


def _seconds(text: str) -> float:
    try:
        return check_timeout(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, not {text!r}") from None


def _golden_flags(p, golden_help: str, compare_help: str):
    """What record and check share: the model, the golden directory, compare modes, plugins, SavedModel flags."""
    p.add_argument("model", type=Path, help="SavedModel directory, .onnx file or built engine")
    p.add_argument("--golden", type=Path, required=True, metavar="DIR", help=golden_help)
    p.add_argument("--compare", action="append", default=[], metavar="NAME:MODE", help=compare_help)
    p.add_argument("--plugins", metavar="LIB.so,...", help="TensorRT plugin libraries (for a plan)")
    p.add_argument("--signature"), p.add_argument("--tag", default="serve")
    p.add_argument("--allow-unsafe-ops", action="store_true")
    _common(p)


def make_parser() -> argparse.ArgumentParser:
    top = _Parser(prog="python -m compiler", description="TensorFlow SavedModel → ONNX → passes → engine, validated.")
    top.add_argument("--version", action="version", version=f"tf2trt-compiler {__version__}")
    sub = top.add_subparsers(dest="command", parser_class=_Parser)

    _compile_parser(sub)
    _stage_parsers(sub)
    _runtime_parsers(sub)
    _golden_parsers(sub)
    _batch_parser(sub)
    return top


def _compile_parser(sub) -> None:
    """compile: the whole pipeline."""
    p = sub.add_parser("compile", help="the whole pipeline (the default command)")
    p.add_argument("model", type=Path, help="SavedModel directory or .onnx file")
    p.add_argument("out", type=Path, help="engine file to write")
    _export_flags(p), _optimize_flags(p), _precision_flags(p), _build_flags(p), _validate_flags(p), _common(p)
    p.add_argument("--no-validate", action="store_true", help="skip numerical validation (not recommended)")
    p.add_argument("--report", type=Path, metavar="FILE", help="JSON report path (default: OUT.report.json)")
    p.add_argument("--html", type=Path, metavar="FILE",
                   help="also write the report as one self-contained HTML page (tables, error histograms)")
    p.add_argument("--keep-intermediates", type=Path, metavar="DIR", help="keep model.onnx and model.opt.onnx")
    p.add_argument("--quiet", action="store_true", help="print only the result lines")
    p.add_argument("--triton-repo", type=Path, metavar="DIR",
                   help="also write DIR/<OUT's stem>/config.pbtxt and 1/model.<ext>: a Triton model repository entry")


def _stage_parsers(sub) -> None:
    """One stage at a time: inspect, export, optimize, build, validate; and check-trt."""
    p = sub.add_parser("inspect", help="signatures, inputs/outputs, dynamic dims, op histogram")
    p.add_argument("model", type=Path)
    p.add_argument("--signature"), p.add_argument("--tag", default="serve")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tensors", action="store_true",
                   help="ONNX only: list every tensor with its producer, dtype and shape (names for --cut-*)")
    _common(p)

    p = sub.add_parser("export", help="SavedModel → verified ONNX (tf2onnx)")
    p.add_argument("model", type=Path), p.add_argument("out", type=Path)
    _export_flags(p), _common(p)

    p = sub.add_parser("optimize", help="run the pass pipeline over an ONNX file")
    p.add_argument("model", type=Path, nargs="?"), p.add_argument("out", type=Path, nargs="?")
    p.add_argument("--list-passes", action="store_true", help="print the default pipeline and exit")
    p.add_argument("--list-rules", action="store_true", help="print the TensorRT rewrite catalogue and exit")
    _optimize_flags(p), _precision_flags(p), _validate_flags(p), _common(p)

    p = sub.add_parser("build", help="ONNX → engine with a backend")
    p.add_argument("model", type=Path), p.add_argument("out", type=Path)
    p.add_argument("--input-shapes", help="shapes for dynamic inputs (TensorRT profile)")
    _build_flags(p), _common(p)

    p = sub.add_parser("validate", help="compare a candidate with a reference on seeded inputs")
    p.add_argument("reference", type=Path, help="SavedModel, ONNX file or built engine")
    p.add_argument("candidate", type=Path, help="ONNX file or built engine")
    p.add_argument("--input-shapes"), p.add_argument("--signature"), p.add_argument("--tag", default="serve")
    p.add_argument("--allow-unsafe-ops", action="store_true", help="load SavedModels that fail the unsafe-op scan")
    p.add_argument("--json", action="store_true")
    _validate_flags(p), _common(p)

    p = sub.add_parser("check-trt", help="which nodes TensorRT's ONNX parser would reject, and why (no GPU needed)")
    p.add_argument("model", type=Path, help="SavedModel, .keras or .onnx (checked after the default passes)")
    p.add_argument("--trt-major", type=int, choices=(10, 11), default=10, help="TensorRT major version (default 10)")
    p.add_argument("--json", action="store_true")
    _export_flags(p), _optimize_flags(p), _common(p)


def _runtime_parsers(sub) -> None:
    # run / bench: any artifact the compiler writes (TensorRT plan, onnxruntime ORT artifact) or an .onnx file
    p_run = sub.add_parser("run", help="run a built artifact once on given or seeded random inputs")
    p_bench = sub.add_parser("bench", help="time a built artifact: latency p50/p90/p99 and throughput")
    for p in (p_run, p_bench):
        p.add_argument("engine", type=Path, help="TensorRT plan or onnxruntime artifact (from compile/build), or .onnx")
        p.add_argument("--inputs", type=Path, metavar="X.npz",
                       help="inputs: an .npz keyed by input name (default: seeded random inputs)")
        p.add_argument("--input-shapes", metavar="NAME:DxDx..,...",
                       help="random inputs: shapes for dynamic dims (all but a dynamic batch need one)")
        p.add_argument("--batch", type=int, metavar="N",
                       help="random inputs: size of a dynamic leading dim (default 1); must equal a fixed one")
        p.add_argument("--seed", type=int, default=0, help="seed for the random inputs (default: 0)")
        p.add_argument("--plugins", metavar="LIB.so,...", help="TensorRT plugin libraries to load (plans only)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        _common(p)
    p_run.add_argument("--outputs", type=Path, metavar="Y.npz", help="write the outputs to an .npz keyed by name")
    p_bench.add_argument("--warmup", type=int, default=10, metavar="N", help="untimed runs first (default: 10)")
    p_bench.add_argument("--iterations", type=int, default=100, metavar="N", help="timed runs (default: 100)")


def _golden_parsers(sub) -> None:
    """record / check (regression goldens) and localize."""
    # record / check: regression goldens (compiler/tools/goldens.py)
    p = sub.add_parser("record", help="run a model or engine on samples and record its outputs as goldens")
    _golden_flags(p, "directory to write (new or empty)",
                  "compare an output as elementwise (default), indices (sets per row) or boxes (matched)")
    p.add_argument("--inputs", metavar="SPEC",
                   help="samples: a directory of .npy/.npz, an .npz/.npy with a sample axis, FILE.py:FUNCTION, or "
                        "random (default: seeded random)")
    p.add_argument("--samples", type=int, default=8, metavar="N", help="random samples to record (default 8)")
    p.add_argument("--seed", type=int, default=0), p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input-shapes", help="shapes for random inputs with dynamic dimensions")
    p.add_argument("--val-range", action="append", default=[], metavar="NAME:LO,HI", help="random data range")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="what the model runs in, for the default tolerances (default: read from an ONNX model)")
    p.add_argument("--atol", type=float), p.add_argument("--rtol", type=float)
    p.add_argument("--force", action="store_true", help="replace an existing recording")

    p = sub.add_parser("check", help="re-run on recorded inputs; exit 1 when an output regressed")
    _golden_flags(p, "directory written by record", "override how an output is compared: elementwise, indices or boxes")
    p.add_argument("--atol", type=float, help="override the recorded absolute tolerance")
    p.add_argument("--rtol", type=float, help="override the recorded relative tolerance")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--junit", type=Path, metavar="FILE", help="also write a JUnit XML report")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML report")

    p = sub.add_parser("localize", help="the first node where two ONNX models diverge, and the pass that made it")
    p.add_argument("reference", type=Path, help="ONNX file taken as right (e.g. exported, or the fp32 graph)")
    p.add_argument("candidate", type=Path, help="ONNX file to check (e.g. optimized, or the fp16 graph)")
    p.add_argument("--input-shapes", metavar="NAME:DxD,...", help="shapes for random inputs with dynamic dimensions")
    p.add_argument("--batch", type=int, default=1, help="size used for a dynamic batch dimension (default: 1)")
    p.add_argument("--data", metavar="SPEC", help="input samples instead of one seeded random sample "
                   "(a directory of .npy/.npz, an .npz/.npy with a sample axis, FILE.py:FUNCTION)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random input (default: 0)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: the onnx→optimized seam's, 1e-5; "
                   "fp16/bf16/int8 candidates need e.g. 1e-2/4e-2/5e-2)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default: the onnx→optimized seam's, 1e-5)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N",
                   help="intermediate tensors marked as outputs per run (bounds memory; default: 64)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _common(p)


def _batch_parser(sub) -> None:
    p = sub.add_parser("batch", help="compile every model of a project file (tf2trt.toml), check goldens, index")
    p.add_argument("file", type=Path, nargs="?", help="project file (default: ./tf2trt.toml, else ./pyproject.toml)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="models built at once (default 1)")
    p.add_argument("--only", metavar="NAME,...", help="build only these models")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: child processes here; ray: one Ray task per model (the ray extra)")
    p.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default: start a local one)")
    p.add_argument("--force", action="store_true", help="rebuild models whose inputs did not change")
    p.add_argument("--build-dir", type=Path, metavar="DIR", help="default: build/ beside the project file")
    p.add_argument("--triton-repo", type=Path, metavar="DIR", help="write a Triton model repository of the passed models")
    _common(p)


def _validate_cfg(a, enabled=True) -> ValidateConfig:
    if a.val_iterations < 1 or a.batch < 1:
        raise ConfigError("--val-iterations and --batch must be at least 1", "pass a positive number")
    return ValidateConfig(enabled=enabled, atol=a.atol, rtol=a.rtol, seed=a.seed, iterations=a.val_iterations,
                          batch=a.batch, data=a.data, val_ranges=parse_ranges(a.val_range),
                          timeout_s=a.validate_timeout)


def _optimize_cfg(a) -> OptimizeConfig:
    return OptimizeConfig(input_shapes=parse_shapes(a.input_shapes), passes=parse_names(a.passes) or None,
                          skip_passes=tuple(a.skip_pass), check_each_pass=a.check_each_pass, dump_dir=a.dump_passes,
                          rules_file=a.rules, inputs_as_nchw=parse_names(a.inputs_as_nchw),
                          outputs_as_nchw=parse_names(a.outputs_as_nchw), cut_inputs=parse_names(a.cut_inputs),
                          cut_outputs=parse_names(a.cut_outputs))


def _export_cfg(a) -> ExportConfig:
    return ExportConfig(signature=a.signature, tag=a.tag, opset=getattr(a, "opset", 17),
                        allow_unsafe_ops=getattr(a, "allow_unsafe_ops", False))


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Progress:
    def __init__(self, quiet: bool):
        self.quiet, self.start = quiet, {}

    def __call__(self, event, stage, rec):
        if self.quiet:
            return
        if event == "start":
            self.start[stage] = time.perf_counter()
            _err(f"» {stage} ...")
        else:
            peak = "" if rec.peak_rss_mb is None else f", peak RSS {rec.peak_rss_mb:.0f} MiB"
            _err(f"  {stage}: {rec.status} ({rec.seconds:.2f} s{peak})")


def cmd_compile(a) -> int:
    from .api import compile_model
    from .report import summary_table

    cfg = CompileConfig(export=_export_cfg(a), optimize=_optimize_cfg(a), precision=_precision_cfg(a),
                        build=_build_cfg(a),
                        validate=_validate_cfg(a, enabled=not a.no_validate),
                        keep_intermediates=a.keep_intermediates, report_path=a.report)
    report_path = a.report or a.out.with_name(a.out.name + ".report.json")
    if a.html is not None:
        from .api import compile_inputs

        refuse_replacing_inputs(compile_inputs(a.model, cfg), [("HTML report", a.html)])
        check_writable(a.html, "HTML report")  # before the work, not after it
    if a.triton_repo is not None:
        from .backends import resolve_backend
        from .triton import check_backend

        check_backend(resolve_backend(cfg.build.backend)[0])  # before the work, not after it
    before = _file_id(report_path)
    try:
        report = compile_model(a.model, a.out, cfg, observer=_Progress(a.quiet))
    except CompilerError:
        written = report_path.exists() and _file_id(report_path) != before  # this run's report, not a stale one
        if written and not a.quiet:
            _err(f"report: {report_path}")
        if written and a.html is not None:
            try:
                _write_html(a.html, report_path)
            except Exception as html_error:  # the compile error is the one to report; say why the page is missing
                _err(f"WARNING: no HTML report: {html_error}")
            else:
                if not a.quiet:
                    _err(f"html: {a.html}")
        raise
    if a.html is not None:
        _write_html(a.html, report_path)
    if not a.quiet:
        print(summary_table(report))
        print()
    for notice in report.notices:
        print(f"{'WARNING' if notice.startswith(('validation', 'precision')) else 'NOTICE'}: {notice}")
    print(f"engine: {a.out} ({report.engine['format']}, {report.engine['bytes']} bytes)")
    print(f"report: {report_path}")
    if a.html is not None:
        print(f"html: {a.html}")
    if a.keep_intermediates:
        print(f"intermediates: {a.keep_intermediates}")
    if a.triton_repo is not None:
        from .triton import write_model

        print(f"triton: {write_model(a.triton_repo, a.out.stem, a.out, report.to_json())}")
    return 0


def cmd_batch(a) -> int:
    """Exit 0 only when every model passed (built, validated, matching its golden); 1 when one failed."""
    from .tools.batch import Options, run_batch, summary_table
    from .project import compile_subparser, find_project_file, load_project

    project = load_project(find_project_file(a.file), compile_subparser(make_parser()))
    try:
        index = run_batch(project, Options(jobs=a.jobs, only=a.only, executor=a.executor, ray_address=a.ray_address,
                                           force=a.force, triton_repo=a.triton_repo, build_dir=a.build_dir))
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): 130 or 143, as for every command
        word, code = interruption(e)
        _err(f"error: {word}; the models that finished are kept, and the same command resumes from them")
        return code
    print(summary_table(index))
    if a.triton_repo is not None:
        print(f"triton: {a.triton_repo}")
    return 0 if index["passed"] else 1


def _file_id(path: Path) -> tuple[int, int] | None:
    """Identity of a file (inode, mtime), None when absent: reports are renamed into place, so a new one differs."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _write_html(html_path: Path, report_path: Path) -> None:
    """The HTML report, rendered from the JSON report as written (the page a saved report would give)."""
    from .tools.html_report import render_compile, write_html

    write_html(html_path, render_compile(json.loads(report_path.read_text())))


def cmd_inspect(a) -> int:
    from .api import as_saved_model, inspect_model

    if a.tensors:
        return _list_tensors(a.model, a.json)
    with scratch_dir("tf2trt-keras-") as tmp:
        info = inspect_model(as_saved_model(a.model, tmp), ExportConfig(signature=a.signature, tag=a.tag))
    ranges = _index_ranges(info)
    if a.json:
        print(json.dumps(info.to_json() | {"index_ranges": {k: r.to_json() for k, r in ranges.items()}}, indent=2))
        return 0
    via = " via Keras model.export()" if Path(a.model).is_file() and info.format == "saved_model" else ""
    print(f"model: {a.model} ({info.format}{via})")
    if info.format == "saved_model":
        print(f"tags: {'; '.join(','.join(t) for t in info.tags)}")
        print(f"signatures: {', '.join(info.signatures)} (using: {info.signature})")
        print(f"safety: {_safety_line(info.safety)}")
    for kind, specs in (("inputs", info.inputs), ("outputs", info.outputs)):
        print(f"{kind}:")
        for t in specs:
            dyn = f"  dynamic axes: {t.dynamic_dims}" if t.dynamic_dims else ""
            print(f"  {t.name}: {t.dtype} {t.shape_text()}{dyn}")
    if ranges:
        print("index ranges (random validation data; --val-range overrides):")
        for name, r in ranges.items():
            print(f"  {name}: {r.text()}")
    elif info.format == "saved_model":
        print("index ranges: read from the exported ONNX graph (compile's report lists them per input)")
    ops = sorted(info.ops.items(), key=lambda kv: (-kv[1], kv[0]))
    print(f"ops ({sum(info.ops.values())} nodes): " + ", ".join(f"{k} {v}" for k, v in ops))
    return 0


def _index_ranges(info) -> dict:
    """The integer inputs of an ONNX model that index a table, and their ranges (compiler/common/index_ranges.py)."""
    if info.format != "onnx":
        return {}
    from .common.onnxutil import load

    return index_ranges(load(Path(info.path)))


def _list_tensors(model: Path, as_json: bool) -> int:
    from .common.onnxutil import load, tensor_table

    if Path(model).is_dir() or Path(model).suffix != ".onnx":
        raise ConfigError(f"--tensors needs an ONNX file, not {model}",
                          f"export it first: python -m compiler export {model} model.onnx")
    rows = tensor_table(load(Path(model)))
    if as_json:
        unknown = {"dtype": None, "shape": None}
        print(json.dumps([{"name": name, "producer": producer, **(spec.to_json() if spec else unknown)}
                          for name, producer, spec in rows], indent=2))
    else:
        for name, producer, spec in rows:
            print(f"  {name}: {f'{spec.dtype} {spec.shape_text()}' if spec else '? ?'}  ← {producer}")
    return 0


def _safety_line(safety: dict) -> str:
    from .frontend.scan import ScanResult

    return ScanResult.from_json(safety).summary()


def cmd_export(a) -> int:
    from .api import export_model

    art = export_model(a.model, a.out, _export_cfg(a))
    print(f"onnx: {art.path} (inputs: {', '.join(t.name for t in art.inputs)}; "
          f"outputs: {', '.join(t.name for t in art.outputs)})")
    return 0


def cmd_optimize(a) -> int:
    from passes import build_pipeline

    from .api import optimize_model
    from .common.onnxutil import inspect_onnx
    from .stages.optimize import numerics_check
    from .validate import quiet_polygraphy, resolve_shapes

    if a.list_passes:
        from passes import PRECISION_PASSES

        for p in build_pipeline():
            doc = (sys.modules[type(p).__module__].__doc__ or "").strip().splitlines()[0]
            print(f"{p.name}: {doc.removeprefix(p.name + ': ')}")
        print("with --precision, after the pipeline:")
        for name, cls in PRECISION_PASSES.items():
            doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
            print(f"  {name}: {doc.removeprefix(name + ': ')}")
        return 0
    if a.list_rules:
        from passes.rules.catalogue import CATALOGUE

        for rule in CATALOGUE:
            print(f"{rule.name} ({rule.op or 'any op'}): {rule.summary}")
        return 0
    if a.model is None or a.out is None:
        raise ConfigError("optimize needs MODEL.onnx and OUT.onnx", "python -m compiler optimize in.onnx out.onnx")
    cfg, vcfg = _optimize_cfg(a), _validate_cfg(a)
    check = None
    source = inspect_onnx(a.model)  # a bad input is blamed on the input, before any pass runs
    if cfg.check_each_pass:  # the same check as compile's
        quiet_polygraphy()
        check = numerics_check(source, resolve_shapes(source.inputs, cfg.input_shapes, vcfg.batch), cfg, vcfg)
    pcfg = _precision_cfg(a)
    if pcfg.mode == "fp32":
        art, records = optimize_model(a.model, a.out, cfg, check)
        _print_records(records)
        print(f"onnx: {art.path}")
        return 0
    from .api import lower_precision

    art, records, result = lower_precision(a.model, a.out, cfg, pcfg, vcfg, check)
    _print_records(records + result.records)
    for notice in result.notices:
        print(f"WARNING: {notice}")
    for prec, ops in result.ops.items():
        print(f"  {prec}: " + ", ".join(f"{op} {n}" for op, n in ops.items()))
    if result.calibration:
        c = result.calibration
        print(f"calibration: {c['method']} over {c['source']}; "
              + ("reused cache" if c["reused_cache"] else f"{c['seconds']:.2f} s") + f" ({c['cache']})")
    if result.auto_mixed:
        m = result.auto_mixed
        print(f"auto-mixed: {len(m['kept_fp32'])} node(s) kept in fp32 after {m['trials']} trial(s): "
              + ", ".join(k["node"] for k in m["kept_fp32"]))
    print(f"onnx: {art.path}")
    return 0


def _print_records(records) -> None:
    for r in records:
        print(f"  {r.name:22} round {r.iteration}  {'changed' if r.changed else 'unchanged':9}  "
              f"{r.nodes_before:5} → {r.nodes_after:<5}  {r.seconds * 1000:8.1f} ms")


def cmd_build(a) -> int:
    from .api import build_engine
    from .backends import resolve_backend

    backend, notice = resolve_backend(a.backend)
    if notice:
        print(f"NOTICE: {notice}")
    cfg = _build_cfg(a, backend)
    refuse_replacing_inputs([a.model, *cfg.plugins], [("engine", a.out), ("timing cache", cfg.timing_cache)])
    shapes = parse_shapes(a.input_shapes)
    samples = None
    if cfg.profile_strategy:
        from .api import load_profile_samples
        from .common.onnxutil import inspect_onnx

        samples = load_profile_samples(cfg, inspect_onnx(a.model).inputs, shapes)
    art = build_engine(a.model, a.out, cfg, shapes or None, samples)
    _print_engine(art.summary)
    print(f"engine: {art.path} ({art.format}, {art.summary.get('bytes')} bytes)")
    return 0


def _print_engine(summary: dict) -> None:
    """The engine's summary (TF-TRT's ``summary()``): profiles, IO, layers and their precisions."""
    if summary.get("ort_build"):
        print(f"onnxruntime {summary['ort_build']} build (level {summary.get('optimization_level')}; "
              f"onnxruntime {summary.get('onnxruntime')}, CPU {', '.join(summary.get('isa', ())) or 'unknown'}): "
              f"{summary.get('portability')}")
    print(f"profiles: {summary.get('profile_source')}")
    for i, p in enumerate(summary.get("profiles", [])):
        print(f"  profile {i}: " + "; ".join(f"{n}: {'x'.join(map(str, s['min']))} / {'x'.join(map(str, s['opt']))}"
                                           f" / {'x'.join(map(str, s['max']))}" for n, s in p.items()))
    for t in summary.get("io", []):
        print(f"  {t['mode']} {t['name']}: {t['dtype']} {t['shape']}")
    if "layers" in summary:
        kinds = ", ".join(f"{k} {v}" for k, v in summary.get("layer_types", {}).items())
        print(f"layers: {summary['layers']}" + (f" ({kinds})" if kinds else ""))
    if "precision_hint" in summary:  # OpenVINO
        print(f"OpenVINO {summary['openvino']} on {summary['device']}: precision hint {summary['precision_hint']} "
              f"(runs in {summary['inference_precision']}), mode {summary['mode']}, threads {summary['threads_used']}, "
              f"streams {summary['streams']}")
    if summary.get("layer_precisions"):
        print("layer precisions: " + ", ".join(f"{k} {v}" for k, v in summary["layer_precisions"].items()))
    if summary.get("ignored_options"):
        print(f"NOTICE: options ignored by this backend: {', '.join(summary['ignored_options'])}")
    if summary.get("precision_notice"):
        print(f"WARNING: {summary['precision_notice']}")


def cmd_validate(a) -> int:
    from .api import validate_artifacts
    from .errors import ValidationError

    result = validate_artifacts(a.reference, a.candidate, "validate", _validate_cfg(a), parse_shapes(a.input_shapes),
                                export_cfg=_export_cfg(a))
    if a.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        for o in result.outputs.values():
            print(f"  {o.name}: max abs {o.max_abs:.3e}  max rel {o.max_rel:.3e}  p99 abs {o.p99_abs:.3e}  "
                  f"atol {o.atol:g} rtol {o.rtol:g}  {'ok' if o.passed else 'FAIL'}")
    for w in result.warnings:
        print(f"WARNING: {w}")
    if not result.passed:
        from .validate import DEFAULT_FIX

        raise ValidationError(result.failure_line(), DEFAULT_FIX)
    print("validation: passed")
    return 0


def cmd_check_trt(a) -> int:
    """Exit 0 when every node is supported, 1 when some are not (errors keep their own codes)."""
    from .api import check_trt

    cfg = CompileConfig(export=_export_cfg(a), optimize=_optimize_cfg(a))
    result, parser = check_trt(a.model, cfg, a.trt_major)
    if a.json:
        print(json.dumps(result.to_json() | {"tensorrt_parser": parser}, indent=2))
    else:
        for f in result.findings:
            print(f"  {f.text()}")
        print(f"check-trt: {result.summary()}")
        print("tensorrt parser: " + ("not installed here; the table-based verdict above is the only one" if parser is None
                                     else f"{'supports' if parser['supported'] else 'REJECTS'} the model "
                                          f"(TensorRT {parser['tensorrt']})"))
    both = result.supported and (parser is None or parser["supported"])
    return 0 if both else 1


def _runtime_inputs(a):
    """run/bench: (runner, the feed as given, the feed adapted to the artifact, where it came from, notes)."""
    from .runtime import load, prepare_feed, random_feed, read_feed

    shapes = parse_shapes(a.input_shapes)
    if a.inputs is not None and (shapes or a.batch is not None):
        flag = "--input-shapes" if shapes else "--batch"
        raise ConfigError(f"{flag} applies to random inputs only, and --inputs gives the inputs (with its shapes)",
                          f"drop {flag} or --inputs")
    if a.batch is not None and a.batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {a.batch}", "pass a positive batch size")
    plugins = parse_names(a.plugins)
    runner = load(a.engine, plugins=plugins)
    notes = [f"--plugins ignored: {runner.backend} needs no TensorRT plugins"] if plugins and \
        runner.backend != "tensorrt" else []
    if a.inputs is not None:
        feed, source = read_feed(a.inputs, runner.inputs)
    else:
        feed, source = random_feed(runner.inputs, shapes, a.batch, a.seed)
    prepared = prepare_feed(runner.inputs, feed, runner.interface)
    return runner, feed, prepared, source, notes + list(prepared.notes)


def _runtime_header(runner, feed, source, notes, extra: str = "") -> None:
    print(f"artifact: {runner.path} ({runner.format}, backend {runner.backend}{extra})")
    print(f"inputs: {source}: " + ", ".join(f"{k} {v.dtype.name} {list(v.shape)}" for k, v in feed.items()))
    for note in notes:
        print(f"note: {note}")


def cmd_run(a) -> int:
    """Run an artifact once; print each output's dtype, shape and min/max/mean over its finite values."""
    import numpy as np

    from .artifacts import atomic_output
    from .runtime import output_stats

    if a.outputs is not None:
        refuse_replacing_inputs([a.engine, a.inputs], [("outputs file", a.outputs)])
        check_writable(a.outputs, "outputs")  # before any work
    runner, feed, prepared, source, notes = _runtime_inputs(a)
    outputs = prepared.results(runner.infer(prepared.feed))
    if a.outputs is not None:
        with atomic_output(a.outputs, "outputs") as tmp, open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in outputs.items()})
    stats = {k: output_stats(v) for k, v in outputs.items()}
    if a.json:
        print(json.dumps({"artifact": str(runner.path), "format": runner.format, "backend": runner.backend,
                          "inputs": {"source": source, "tensors": {k: {"dtype": v.dtype.name, "shape": list(v.shape)}
                                                                   for k, v in feed.items()}},
                          "notes": notes, "outputs": stats,
                          "outputs_file": str(a.outputs) if a.outputs is not None else None}, indent=2))
        return 0
    _runtime_header(runner, feed, source, notes)
    print("outputs:")
    for name, s in stats.items():
        values = (f"min {s['min']:.6g}  max {s['max']:.6g}  mean {s['mean']:.6g}" if s["min"] is not None
                  else "empty" if 0 in s["shape"] else "no finite values")
        bad = f"  ({s['nonfinite']} non-finite)" if s["nonfinite"] else ""
        print(f"  {name}: {s['dtype']} {s['shape']}  {values}{bad}")
    if a.outputs is not None:
        print(f"outputs written: {a.outputs}")
    return 0


def cmd_bench(a) -> int:
    """Time an artifact's inference: latency mean/p50/p90/p99/min/max and throughput."""
    from .runtime import benchmark, check_bench_counts

    check_bench_counts(a.warmup, a.iterations)
    runner, feed, prepared, source, notes = _runtime_inputs(a)
    result = benchmark(runner, prepared, warmup=a.warmup, iterations=a.iterations)
    if a.json:
        print(json.dumps(result.to_json() | {"inputs": source, "notes": notes}, indent=2))
        return 0
    threads = result.threads_text()
    _runtime_header(runner, feed, source, notes, f"; {threads}" if threads else "")
    lat = result.latency
    print(f"measured: {result.measured}; batch {result.batch}, {result.warmup} warm-up + {result.iterations} "
          "timed runs")
    print("latency (ms): " + "  ".join(f"{k} {v:.3f}" for k, v in lat.items()))
    print(f"throughput: {result.throughput:.1f} samples/s ({result.iterations / result.total_s:.1f} inferences/s)")
    return 0


def cmd_record(a) -> int:
    from .tools.goldens import parse_compare, record

    if a.samples < 1 or a.batch < 1:
        raise ConfigError("--samples and --batch must be at least 1", "pass a positive number")
    manifest = record(a.model, a.golden, inputs=a.inputs, shapes=parse_shapes(a.input_shapes), batch=a.batch,
                      seed=a.seed, samples=a.samples, ranges=parse_ranges(a.val_range), precision=a.precision,
                      tolerances=(a.atol, a.rtol), compare=parse_compare(a.compare), export_cfg=_export_cfg(a),
                      plugins=tuple(Path(p) for p in parse_names(a.plugins)), force=a.force)
    t = manifest["tolerances"]
    print(f"recorded {len(manifest['samples'])} sample(s) of {a.model} ({manifest['model']['kind']} on "
          f"{manifest['backend']}, precision {manifest['precision']}); inputs: {manifest['inputs_source']}")
    print(f"outputs: {', '.join(o['name'] for o in manifest['outputs'])}; tolerances atol {t['atol']:g} "
          f"rtol {t['rtol']:g}")
    print(f"golden: {a.golden}")
    return 0


def cmd_check(a) -> int:
    """Exit 0 when every output matches the golden, 1 when one regressed (errors keep their own codes)."""
    from .artifacts import write_text_atomic
    from .tools.goldens import check, junit_xml, parse_compare, table

    refuse_replacing_inputs([a.model, a.golden], [("JUnit report", a.junit), ("HTML report", a.html)])
    for path, what in ((a.junit, "JUnit report"), (a.html, "HTML report")):
        if path is not None:
            check_writable(path, what)
    result = check(a.model, a.golden, atol=a.atol, rtol=a.rtol, compare=parse_compare(a.compare),
                   export_cfg=_export_cfg(a), plugins=tuple(Path(p) for p in parse_names(a.plugins)))
    if a.junit:
        write_text_atomic(a.junit, junit_xml(result), "JUnit report")
    if a.html:
        from .tools.html_report import render_check, write_html

        write_html(a.html, render_check(result))
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        m = result["manifest"]
        print(f"check: {a.model} ({result['format']} on {result['backend']}) against {a.golden}: "
              f"{result['samples']} sample(s) recorded {m.get('created')} from {m['model']['kind']}")
        print(table(result))
        for note in result["notes"]:
            print(f"note: {note}")
        if a.junit:
            print(f"junit: {a.junit}")
        if a.html:
            print(f"html: {a.html}")
        bad = [o["name"] for o in result["outputs"] if not o["passed"]]
        print(f"check: {'passed' if not bad else 'REGRESSION in ' + ', '.join(bad)}")
    return 0 if result["passed"] else 1


def cmd_localize(a) -> int:
    """Exit 0 when no common tensor diverges, 1 when a divergent node is found (errors keep their own codes)."""
    from .config import DEFAULT_TOLERANCES
    from .tools.localize import localize, random_feeds
    from .validate import quiet_polygraphy

    if a.batch < 1 or a.batch_size < 1:
        raise ConfigError("--batch and --batch-size must be at least 1", "pass a positive number")
    check_tolerances(a.atol, a.rtol)
    quiet_polygraphy()
    default_atol, default_rtol = DEFAULT_TOLERANCES["onnx→optimized"]
    tolerances = (default_atol if a.atol is None else a.atol, default_rtol if a.rtol is None else a.rtol)
    samples = random_feeds(a.reference, a.candidate, parse_shapes(a.input_shapes), a.batch, a.data, a.seed)
    result = localize(a.reference, a.candidate, samples, tolerances, a.batch_size)
    if a.json:
        print(json.dumps(result.to_json() | {"data": samples.source}, indent=2))
    else:
        skipped = "; ".join(f"{n} {reason}" for reason, n in result.skipped_reasons.items())
        print(f"localize: {a.candidate} against {a.reference} on {samples.source}: {result.compared} common "
              f"tensor(s) compared in {result.batches} batch(es) of at most {a.batch_size}"
              + (f", {result.skipped} skipped ({skipped})" if result.skipped else "")
              + (f", {result.candidate_only} only in the candidate" if result.candidate_only else "")
              + f" ({result.seconds:.2f} s)")
        d = result.first_divergence
        if d is not None and len(d.suspects) > 1:
            print("suspects (nodes since the last matching common tensors):")
            for s in d.suspects:
                print(f"  {s.text()}")
        print(result.line())
    return 0 if result else 1


# The stage a command's failures belong to, where they do not say (out of memory).
COMMAND_STAGES = {"inspect": "inspect", "export": "export", "optimize": "optimize", "build": "build",
                  "validate": "validate", "check-trt": "optimize", "run": "run", "bench": "run", "record": "run",
                  "check": "run", "localize": "validate"}

COMMANDS = {"compile": cmd_compile, "inspect": cmd_inspect, "export": cmd_export, "optimize": cmd_optimize,
            "build": cmd_build, "validate": cmd_validate, "check-trt": cmd_check_trt, "record": cmd_record,
            "check": cmd_check, "run": cmd_run,
            "bench": cmd_bench, "localize": cmd_localize, "batch": cmd_batch}


def main(argv: list[str] | None = None) -> int:
    """Run one command; SIGINT and SIGTERM unwind it like Ctrl-C (exit 130/143), and whatever temporary it
    made is removed on every way out."""
    argv = list(sys.argv[1:] if argv is None else argv)
    handlers = _catch_signals(quiet="--debug" not in argv)
    try:
        return _main(argv)
    finally:
        for sig in handlers:  # a signal now would cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        remove_leftovers()
        clear_pending()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _catch_signals(quiet: bool) -> dict:
    """Make SIGTERM raise ``Terminated`` (and SIGINT KeyboardInterrupt) once; a repeat while the run unwinds
    is ignored, so the cleanup finishes. Returns the handlers to restore (none off the main thread).

    Interrupting library code can leave half-built objects whose finalizers then fail ("Exception ignored
    in ... Traceback", e.g. TensorFlow's ApiDefMap mid-import); unless ``quiet`` is off (--debug) those
    consequences of the interruption are not printed."""
    def raise_once(signum, frame):
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        if quiet:
            sys.unraisablehook = lambda unraisable: None
        kind = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        note_interruption(kind)  # raised again at the next stage boundary if this raise is lost (raise_pending)
        raise kind()

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, raise_once)
    except ValueError:  # not the main thread: leave signals to the caller
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return {}
    return previous


def _main(argv: list[str]) -> int:
    if argv and argv[0] not in SUBCOMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "compile")  # `python -m compiler MODEL OUT` is the main job
    debug = "--debug" in argv
    if not debug:
        import logging
        import warnings

        warnings.filterwarnings("ignore")
        logging.getLogger().setLevel(logging.ERROR)
    a = None
    try:
        a = make_parser().parse_args(argv)
        if a.command is None:
            make_parser().print_help()
            return 2
        with time_budget(a.validate_timeout):
            return COMMANDS[a.command](a)
    except CompilerError as e:
        if debug or isinstance(e, InternalError):
            traceback.print_exc()
        _err(f"error: {e.one_line()}")
        return e.exit_code
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
        word, code = interruption(e)
        _err(f"error: {word}; partial outputs and temporary files were removed")
        return code
    except MemoryError:  # a stage that did not say which: name the command's
        if debug:
            traceback.print_exc()
        err = out_of_memory(COMMAND_STAGES.get(getattr(a, "command", None), "compile"))
        _err(f"error: {err.one_line()}")
        return err.exit_code
    except Exception as e:  # a bug: say so, with the traceback
        traceback.print_exc()
        _err(f"error: {InternalError(f'unexpected {type(e).__name__}: {e}', 'please report this').one_line()}")
        return InternalError.exit_code
