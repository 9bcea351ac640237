"""The library entry points. ``compile_model`` is the pipeline, straight-line:

    inspect → export → optimize → build → validate

Each stage is also callable alone (``inspect_model``, ``export_model``,
``optimize_model``, ``build_engine``, ``validate_artifacts``); the CLI's
subcommands call these same functions. Files on disk are the seams.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable

from .artifacts import (EngineArtifact, ModelInfo, OnnxArtifact, TensorSpec, atomic_output, check_writable,
                        refuse_replacing_inputs, scratch_dir)
from .config import CompileConfig, ExportConfig, OptimizeConfig, Shape, ValidateConfig
from .dynamic_dims import DYNAMIC_FIX, describe, second_shapes, with_second_size
from .errors import CompilerError, InternalError, OutputError, ValidationError, interruption, out_of_memory
from .index_ranges import index_ranges, with_index_ranges
from .limits import time_budget
from .report import Report, StageRecord
from .seam_errors import RUNTIME_FIX

Observer = Callable[[str, str, StageRecord | None], None]  # (event "start"|"end", stage, record)


INTERMEDIATE_NAMES = ("model.onnx", "model.*.onnx", "saved_model")  # what --keep-intermediates writes
DUMP_NAMES = ("[0-9][0-9][0-9]_*.onnx",)  # what --dump-passes writes (passes/infra.py)


def compile_inputs(model: Path, cfg: CompileConfig) -> list[Path]:
    """Every file or directory compile reads: the model, sample data, user rules, plugins (none may be replaced)."""
    from .data import spec_paths  # lazily: it imports the passes, which `import compiler` must not

    return [Path(model), *spec_paths(cfg.validate.data), *spec_paths(cfg.precision.calib_data),
            *spec_paths(cfg.build.profile_data), cfg.optimize.rules_file, *cfg.build.plugins]


def _guard_compile(model: Path, out: Path, report_path: Path, cfg: CompileConfig) -> None:
    """compile's outputs, checked against its inputs before any work (``refuse_replacing_inputs``)."""
    refuse_replacing_inputs(compile_inputs(model, cfg),
                            [("engine", out), ("report", report_path), ("timing cache", cfg.build.timing_cache),
                             ("calibration cache", calib_cache_path(cfg.precision, out))],
                            [("intermediates directory", cfg.keep_intermediates, INTERMEDIATE_NAMES),
                             ("pass dump directory", cfg.optimize.dump_dir, DUMP_NAMES)])


def calib_cache_path(pcfg, out: Path) -> Path | None:
    """Where int8 calibration is cached: the setting, else OUT.calib.json beside the output; None otherwise."""
    return (pcfg.calib_cache or out.with_name(out.name + ".calib.json")) if pcfg.mode == "int8" else None


def as_saved_model(model: Path, workdir: Path) -> Path:
    """``model`` itself, or for a .keras/.h5 file the SavedModel Keras exports from it into ``workdir``."""
    from .frontend.savedmodel import KERAS_SUFFIXES

    model = Path(model)
    if not (model.is_file() and model.suffix.lower() in KERAS_SUFFIXES):
        return model
    from .frontend.keras_file import keras_to_saved_model

    return keras_to_saved_model(Path(model), Path(workdir) / "saved_model")


def inspect_model(model: Path, cfg: ExportConfig = ExportConfig()) -> ModelInfo:
    """Signatures, IO specs and op histogram of a SavedModel (read, never executed) or an ONNX file.

    A .keras file must go through ``as_saved_model`` first (loading it runs Keras).
    """
    from .frontend.savedmodel import check_model_path

    kind = check_model_path(Path(model))
    if kind == "keras":
        from .errors import InspectError

        raise InspectError(f"'{model}' is a Keras file; it must be exported to a SavedModel first",
                           "use compile/export/inspect from the CLI, or compiler.api.as_saved_model()")
    if kind == "onnx":
        from .onnxutil import inspect_onnx

        return inspect_onnx(Path(model))
    from .frontend.savedmodel import inspect_saved_model

    return inspect_saved_model(Path(model), cfg.signature, cfg.tag)


def require_safe(info: ModelInfo, cfg: ExportConfig) -> None:
    """Refuse a SavedModel whose graph reads or writes files or runs Python, unless allowed."""
    from .errors import InspectError

    if info.safety is None or info.safety["safe"] or cfg.allow_unsafe_ops:
        return
    from .frontend.scan import ScanResult

    result = ScanResult.from_json(info.safety)
    raise InspectError(f"refusing to load '{info.path}': {result.summary()}",
                       "inspect the model's origin; if you trust it, pass --allow-unsafe-ops")


def export_model(model_dir: Path, out: Path, cfg: ExportConfig = ExportConfig(),
                 info: ModelInfo | None = None) -> OnnxArtifact:
    from .frontend.export import export

    refuse_replacing_inputs([model_dir], [("ONNX model", out)])
    with scratch_dir("tf2trt-keras-") as tmp:
        model_dir = as_saved_model(model_dir, tmp)
        info = info or inspect_model(model_dir, cfg)
        require_safe(info, cfg)
        return export(Path(model_dir), Path(out), info.signature, cfg)


def optimize_model(onnx_path: Path, out: Path, cfg: OptimizeConfig = OptimizeConfig(), check=None):
    from .optimize import optimize

    refuse_replacing_inputs([onnx_path, cfg.rules_file], [("ONNX model", out)],
                            [("pass dump directory", cfg.dump_dir, DUMP_NAMES)])
    return optimize(Path(onnx_path), Path(out), cfg, check)


def cut_model(onnx_path: Path, out: Path, cfg: OptimizeConfig):
    """Extract the subgraph between ``cfg.cut_inputs`` and ``cfg.cut_outputs``; returns (OnnxArtifact, cfg for
    the passes that follow)."""
    from .optimize import cut

    return cut(Path(onnx_path), Path(out), cfg)


def build_engine(onnx_path: Path, out: Path, cfg=None, shapes: dict[str, Shape] | None = None,
                 profile_samples=None, profiles=None, profile_source: str | None = None) -> EngineArtifact:
    """Build an engine from an ONNX file. ``shapes`` are the shapes it must run with (its validation shapes);
    ``profile_samples`` (feeds) feed ``cfg.profile_strategy``; ``profiles`` (ShapeProfiles), when given, are
    used as they are, with ``profile_source`` saying where they came from (compile resolves them up front).
    The optimization profiles used, and how they were chosen, go into the artifact's summary."""
    from .backends import build, resolve_backend
    from .config import BuildConfig
    from .onnxutil import io_specs, load
    from .profiles import resolve_profiles
    from .validate import resolve_shapes

    cfg = cfg or BuildConfig()
    refuse_replacing_inputs([onnx_path, *cfg.plugins], [("engine", out), ("timing cache", cfg.timing_cache)])
    tensorrt = resolve_backend(cfg.backend)[0] == "tensorrt"
    inputs, _ = io_specs(load(Path(onnx_path)))
    run_shapes = dict(shapes) if shapes else None
    if profiles:
        from .profiles import check_profiles

        check_profiles(inputs, profiles, run_shapes)
        how = profile_source or "given"
    elif not cfg.profiles and not cfg.profile_strategy and not tensorrt:
        profiles, how = (), "none: onnxruntime runs any shape"
    else:  # given or derived profiles are checked on every backend, so a CPU run catches their mistakes
        if run_shapes is None and not cfg.profiles and not cfg.profile_strategy:
            run_shapes = resolve_shapes(inputs, {}, 1)
        sample_shapes = [{k: tuple(v.shape) for k, v in feed.items()} for feed in profile_samples or ()]
        profiles, how = resolve_profiles(inputs, cfg.profiles, cfg.profile_strategy, sample_shapes, run_shapes)
    art = build(Path(onnx_path), Path(out), cfg, profiles=profiles)
    art.summary["profile_source"] = how
    if not tensorrt:
        ignored = cfg.tensorrt_only()
        if profiles:
            art.summary["profiles"] = [p.to_json() for p in profiles]
        if ignored:
            art.summary["ignored_options"] = ignored
    return art


def _model_profiles(cfg: CompileConfig, info: ModelInfo):
    """(profiles in the model's own layout, how they were chosen, cfg) for compile: explicit, or derived from
    --profile-data (else --data) by --profile-strategy (``profiles.resolve_profiles``); ((), None, cfg) when
    neither. Inputs a profile lets vary are not frozen by the passes, even when --input-shapes names them:
    there --input-shapes only sets the shapes validation runs with."""
    from dataclasses import replace

    from .profiles import resolve_profiles

    bcfg = cfg.build
    profiles, how = (), None
    if bcfg.profiles or bcfg.profile_strategy:
        samples = load_profile_samples(bcfg, info.inputs, {}, cfg.validate.seed, cfg.validate.data)
        sample_shapes = [{k: tuple(v.shape) for k, v in f.items()} for f in samples or ()]
        profiles, how = resolve_profiles(info.inputs, bcfg.profiles, bcfg.profile_strategy, sample_shapes, None)
    varying = {n for p in profiles for n in p.min if p.min[n] != p.max[n]}
    frozen = {k: v for k, v in cfg.optimize.input_shapes.items() if k not in varying}
    if frozen != cfg.optimize.input_shapes:
        cfg = replace(cfg, optimize=replace(cfg.optimize, input_shapes=frozen))
    return profiles, how, cfg


def load_profile_samples(cfg, inputs: tuple[TensorSpec, ...], shapes: dict[str, Shape], seed: int = 0,
                         fallback: str | None = None):
    """The samples ``--profile-strategy`` derives profiles from: ``--profile-data``, else ``fallback``
    (compile's --data), loaded with the one sample loader (compiler/data.py); None without a strategy."""
    if not cfg.profile_strategy:
        return None
    spec = cfg.profile_data or fallback
    if spec is None:
        return None
    from .data import load_samples
    from .errors import ConfigError

    return load_samples(spec, inputs, shapes, what="profile", error=ConfigError, seed=seed)


def check_trt(model: Path, cfg: CompileConfig = CompileConfig(), trt_major: int = 10):
    """TensorRT capability pre-flight of what compile would hand TensorRT: export (if needed), passes, check.

    Returns ``(TrtCheck, parser_verdict)``; the verdict of TensorRT's own
    parser is None where TensorRT is not installed.
    """
    from passes.trt_support import check_model

    from .backends.tensorrt import parser_verdict
    from .onnxutil import load

    with scratch_dir("tf2trt-check-") as tmp:
        source = as_saved_model(Path(model), tmp)
        info = inspect_model(source, cfg.export)
        onnx_path = source if info.format == "onnx" else export_model(source, tmp / "model.onnx", cfg.export,
                                                                        info).path
        optimized, records = optimize_model(onnx_path, tmp / "model.opt.onnx", cfg.optimize)
        return explain_refusals(check_model(load(optimized.path), trt_major), records), \
            parser_verdict(optimized.path)


def explain_refusals(trt, records):
    """Put the reason a rewrite rule refused a node beside that node's finding: the fix it would have made
    and why it could not. ``records`` are the pass records of the run that produced the checked graph."""
    from dataclasses import replace

    refused = {}
    for r in records:
        for item in r.stats.get("refused", []) if isinstance(r.stats, dict) else []:
            refused.setdefault(item["node"], item)
    trt.findings = [replace(f, fix=f"rule '{refused[f.node]['rule']}' would rewrite it but refused: "
                                   f"{refused[f.node]['reason']}; otherwise: {f.fix}")
                    if f.node in refused else f for f in trt.findings]
    return trt


def _runner_for(path: Path, label: str, info: ModelInfo, loaded, tag: str):
    """A Polygraphy runner for a SavedModel (TensorFlow), an ONNX file or a built artifact (``loaded``)."""
    from .validate import onnx_runner

    if loaded is not None:
        return loaded.polygraphy_runner(label)
    if Path(path).is_dir():
        from .frontend.tfrun import TfSavedModelRunner

        return TfSavedModelRunner(path, info.signature, tag, info.inputs, name=label)
    return onnx_runner(path, label)


def validate_artifacts(reference: Path, candidate: Path, seam: str, cfg: ValidateConfig = ValidateConfig(),
                       shapes: dict[str, Shape] | None = None, tolerances: tuple[float, float] | None = None,
                       export_cfg: ExportConfig = ExportConfig(), labels: tuple[str, str] | None = None):
    """Compare ``candidate`` against ``reference`` on seeded inputs; returns a ``SeamResult``.

    ``reference`` may be a SavedModel directory, an ONNX file or a built
    artifact; so may ``candidate``. Input specs come from the reference.
    """
    from .validate import quiet_polygraphy

    quiet_polygraphy()
    with scratch_dir("tf2trt-keras-") as tmp, time_budget(cfg.timeout_s):
        reference = as_saved_model(Path(reference), tmp / "reference")
        candidate = as_saved_model(Path(candidate), tmp / "candidate")
        return _validate(reference, candidate, seam, cfg, shapes, tolerances, export_cfg, labels, load_data=True)


def _validate(reference: Path, candidate: Path, seam: str, cfg: ValidateConfig, shapes, tolerances, export_cfg,
              labels, known: dict[Path, ModelInfo] | None = None, samples=None, scaled: bool = False,
              random_count: int = 0, load_data: bool = False):
    """The comparison itself. ``known`` holds specs the caller already has (compile does), so
    nothing is inspected or loaded twice; only what is missing goes through ``_model_info``.

    ``samples`` (--data, in the model's own interface) feed the seam where the reference takes those inputs;
    otherwise ``random_count`` > 0 draws that many seeded random samples (precision seams), else Polygraphy's
    seeded DataLoader runs ``cfg.iterations`` times."""
    from .validate import compare, merge_specs, resolve_shapes

    known = known or {}
    info, ref_loaded = (known[reference], None) if reference in known else _model_info(reference, export_cfg)
    cand_info, cand_loaded = (known[candidate], None) if candidate in known else _model_info(candidate, export_cfg)
    require_safe(info, export_cfg)
    require_safe(cand_info, export_cfg)
    if load_data:  # the `validate` subcommand: an ONNX side tells the index ranges (compile sets them itself)
        from .onnxutil import load

        onnx_side = next((p for p, i in ((reference, info), (candidate, cand_info)) if i.format == "onnx"), None)
        cfg = with_index_ranges(cfg, index_ranges(load(onnx_side))) if onnx_side else cfg
    ref_label, cand_label = labels or (reference.name, candidate.name)
    change = _interface_change(reference, info, candidate, cand_info, seam)
    cand_inputs = tuple(TensorSpec(t.name, t.dtype, change.reference_shape(t.name, t.shape))
                        for t in cand_info.inputs)
    inputs = merge_specs(info.inputs, cand_inputs)
    shapes = resolve_shapes(inputs, shapes or {}, cfg.batch)
    if load_data and cfg.data:  # the `validate` subcommand's --data, in the reference's interface
        from .data import load_samples

        samples = load_samples(cfg.data, inputs, shapes, what="validation", error=ValidationError, seed=cfg.seed)
    ref_runner = _runner_for(reference, ref_label, info, ref_loaded, export_cfg.tag)
    cand_runner = _runner_for(candidate, cand_label, cand_info, cand_loaded, export_cfg.tag)
    if change:
        from .interface import adapted

        cand_runner = adapted(cand_runner, change, info.inputs)
    if ref_runner.name == cand_runner.name:
        cand_runner.name = cand_label + " (candidate)"
    return compare(ref_runner, cand_runner, seam, ref_label, cand_label, inputs, shapes, cfg,
                   tolerances or cfg.tolerances(seam), _seam_samples(samples, info, inputs, shapes, cfg, random_count),
                   scaled)


def _seam_samples(samples, info: ModelInfo, inputs, shapes, cfg: ValidateConfig, random_count: int):
    """The samples one seam runs on, in its reference's interface (see ``_validate``), or None."""
    from .data import load_samples
    from .interface import Interface

    if samples is not None and {t.name for t in info.inputs} == set(samples.feeds[0]):
        return Interface.from_json(info.interface).feed_samples(samples)
    if random_count:
        return load_samples(None, inputs, shapes, what="validation", error=ValidationError, seed=cfg.seed,
                            random_count=max(random_count, cfg.iterations), ranges=cfg.val_ranges)
    return None


def _interface_change(reference: Path, info: ModelInfo, candidate: Path, cand_info: ModelInfo, seam: str):
    """How the candidate's interface differs from the reference's (see compiler/interface.py).

    An engine carries no ONNX metadata; it has the interface of the ONNX model it was built from, so
    only an ONNX candidate whose recorded change the reference lacks needs adapting. The changes come
    from the ModelInfo (read when the ONNX file was inspected), so no file is parsed again here.
    """
    from .interface import Interface

    ref, cand = Interface.from_json(info.interface), Interface.from_json(cand_info.interface)
    if not cand or cand == ref:
        return Interface()
    if ref:
        from .interface import relative

        try:
            return relative(ref, cand)
        except ValueError as e:
            raise ValidationError(f"seam {seam}: {candidate.name} and {reference.name} both changed the interface, "
                                  f"differently ({e})", "validate each against the exported model instead") from None
    return cand


def _model_info(path: Path, export_cfg: ExportConfig):
    """(IO specs, loaded runtime runner or None) of anything validate accepts: SavedModel, ONNX, built artifact.

    A built artifact is loaded once here, and its runner reused for the comparison.
    """
    from .runtime import ONNX_MODEL, load

    path = Path(path)
    if path.is_dir() or not path.exists() or _artifact_format(path) == ONNX_MODEL:
        return inspect_model(path, export_cfg), None
    loaded = load(path)
    return ModelInfo(path=path, format=loaded.format, signature=None, inputs=loaded.inputs,
                     outputs=getattr(loaded, "outputs", ()), ops={}), loaded


def _artifact_format(path: Path) -> str:
    """``path``'s format by content; a file named .onnx that is no artifact at all counts as ONNX, so inspect's
    input checks say what is wrong with it (empty, not a ModelProto) rather than "not a plan or ORT artifact"."""
    from .errors import RunError
    from .runtime import ONNX_MODEL, detect_format

    try:
        return detect_format(path)
    except RunError:
        if path.suffix.lower() != ".onnx":
            raise
        return ONNX_MODEL


def _onnx_info(art: OnnxArtifact, interface=None) -> ModelInfo:
    return ModelInfo(path=art.path, format="onnx", signature=None, inputs=art.inputs, outputs=art.outputs, ops={},
                     interface=interface.to_json() if interface else {})


@contextlib.contextmanager
def _stage(report: Report, name: str, observer: Observer | None):
    rec = report.stages[name]
    if observer:
        observer("start", name, None)
    start = time.perf_counter()
    try:
        yield rec
    except BaseException:
        rec.status = "failed"
        rec.seconds = time.perf_counter() - start
        if observer:
            observer("end", name, rec)
        raise
    rec.seconds = time.perf_counter() - start
    if rec.status != "failed":
        rec.status = "ok"
    if observer:
        observer("end", name, rec)


def _intermediates_dir(path: Path) -> Path:
    """``--keep-intermediates DIR``, created if needed; OutputError when it cannot be a directory."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"--keep-intermediates '{path}' is a file, not a directory",
                          "give a directory (new or existing) for the intermediate files")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--keep-intermediates '{path}' cannot be created ({e.strerror or e})",
                          "give a directory path whose parents are directories you can write") from None
    return path


def compile_model(model: Path, out: Path, cfg: CompileConfig = CompileConfig(),
                  observer: Observer | None = None) -> Report:
    """SavedModel (or ONNX) → validated engine at ``out`` and a JSON report.

    The engine appears at ``out`` only if every stage, validation included,
    succeeded. The report is always written (``cfg.report_path`` or
    ``OUT.report.json``), on failure too, with the error in it. A failure
    raises the ``CompilerError`` of its stage after the report is written.
    """
    model, out = Path(model), Path(out)
    report_path = Path(cfg.report_path) if cfg.report_path else out.with_name(out.name + ".report.json")
    report = Report(model=str(model), out=str(out))
    _guard_compile(model, out, report_path, cfg)
    check_writable(out, "engine")
    check_writable(report_path, "report")
    with contextlib.ExitStack() as stack:
        if cfg.keep_intermediates:
            workdir = _intermediates_dir(Path(cfg.keep_intermediates))
        else:
            workdir = stack.enter_context(scratch_dir("tf2trt-"))
        stack.enter_context(time_budget(cfg.validate.timeout_s))
        current = ["inspect"]
        try:
            try:
                _run_pipeline(model, out, cfg, report, workdir, observer, current)
            except MemoryError:
                raise out_of_memory(current[0]) from None
        except CompilerError as e:
            report.error = {"stage": e.stage, "message": e.one_line(), "exit_code": e.exit_code}
            if e.details is not None:
                report.error["details"] = e.details
            raise
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (errors.Terminated)
            word, code = interruption(e)
            report.error = {"stage": current[0], "message": word, "exit_code": code}
            raise
        except Exception as e:  # a bug: report it as one, with the stage it happened in
            err = InternalError(f"unexpected {type(e).__name__} in stage '{current[0]}': {e}",
                                "please report this with the --debug traceback")
            report.error = {"stage": current[0], "message": err.one_line(), "exit_code": err.exit_code}
            raise err from e
        finally:
            report.write(report_path)
    return report


def _index_ranges(model, vcfg: ValidateConfig, report: Report) -> ValidateConfig:
    """Integer inputs that index a table get the table's range for random data (compiler/index_ranges.py),
    unless --val-range gives one; the report's inputs and a notice say which."""
    ranges = index_ranges(model)
    given = vcfg.val_ranges
    for entry in report.inputs:
        r = ranges.get(entry["name"])
        if r is not None:
            overridden = entry["name"] in given or "" in given
            entry["index_range"] = r.to_json() | {"used": not overridden}
            if not overridden:
                report.notices.append(f"validation: integer input '{entry['name']}' draws random values from "
                                      f"{r.text()}; override with --val-range {entry['name']}:LO,HI")
    return with_index_ranges(vcfg, ranges)


def _lower(optimized: OnnxArtifact, change, pcfg, vcfg: ValidateConfig, user_samples, pipeline_inputs,
           pass_shapes, engine_shapes, out: Path, precision_out: Path):
    """Run the precision stage on the float32 ``optimized`` graph: the samples it needs (--auto-mixed: --data or
    seeded random; int8: --calib-data, else --data, else random), in the optimized graph's interface.
    Returns (artifact, PrecisionResult, calibration cache path or None)."""
    from .config import PRECISION_SEAM_SAMPLES, precision_seam
    from .data import load_samples
    from .errors import PrecisionError
    from .precision import apply_precision

    samples = calib = None
    if pcfg.auto_mixed:
        samples = change.feed_samples(user_samples) if user_samples is not None else load_samples(
            None, optimized.inputs, engine_shapes, what="validation", seed=vcfg.seed,
            random_count=max(PRECISION_SEAM_SAMPLES, vcfg.iterations), ranges=vcfg.val_ranges)
    if pcfg.mode == "int8":
        if pcfg.calib_data:
            calib = load_samples(pcfg.calib_data, pipeline_inputs, pass_shapes, what="calibration",
                                 error=PrecisionError, limit=pcfg.calib_samples, seed=vcfg.seed)
        elif user_samples is not None:
            calib = user_samples
        else:
            calib = load_samples(None, pipeline_inputs, pass_shapes, what="calibration", error=PrecisionError,
                                 limit=pcfg.calib_samples, seed=vcfg.seed, random_count=pcfg.random_calib_samples,
                                 ranges=vcfg.val_ranges)
        calib = change.feed_samples(calib)
    cache = calib_cache_path(pcfg, out) if calib is not None else None
    art, result = apply_precision(optimized.path, precision_out, pcfg, samples, calib,
                                  vcfg.tolerances(precision_seam(pcfg.mode), pcfg.mode), cache)
    return art, result, cache


def lower_precision(onnx_path: Path, out: Path, cfg: OptimizeConfig, pcfg, vcfg: ValidateConfig = ValidateConfig(),
                    check=None):
    """``optimize --precision``: the pass pipeline, then the precision stage; writes only ``out``.

    Returns (OnnxArtifact, [PassRecord] of the float32 passes, PrecisionResult).
    """
    from .data import load_samples, spec_paths
    from .interface import read as interface_of
    from .onnxutil import inspect_onnx, load
    from .validate import resolve_shapes

    onnx_path, out = Path(onnx_path), Path(out)
    refuse_replacing_inputs([onnx_path, cfg.rules_file, *spec_paths(vcfg.data), *spec_paths(pcfg.calib_data)],
                            [("ONNX model", out), ("calibration cache", calib_cache_path(pcfg, out))],
                            [("pass dump directory", cfg.dump_dir, DUMP_NAMES)])
    info = inspect_onnx(onnx_path)
    vcfg = with_index_ranges(vcfg, index_ranges(load(onnx_path)))  # random calibration ids fit their tables
    shapes = resolve_shapes(info.inputs, cfg.input_shapes, vcfg.batch)
    inputs = tuple(TensorSpec(t.name, t.dtype, cfg.input_shapes.get(t.name, t.shape)) for t in info.inputs)
    user = load_samples(vcfg.data, inputs, shapes, what="validation", error=ValidationError, seed=vcfg.seed) \
        if vcfg.data else None
    with scratch_dir("tf2trt-opt-") as tmp:
        optimized, records = optimize_model(onnx_path, tmp / "model.opt.onnx", cfg, check)
        change = interface_of(optimized.path)
        engine_shapes = {k: change.candidate_shape(k, v) for k, v in shapes.items()}
        art, result, _ = _lower(optimized, change, pcfg, vcfg, user, inputs, shapes, engine_shapes, out, out)
    return art, records, result


def _precision_stage(optimized: OnnxArtifact, change, pcfg, vcfg: ValidateConfig, user_samples, pipeline_inputs,
                     pass_shapes, engine_shapes, out: Path, workdir: Path, report: Report, rec):
    """Lower the float32 graph to ``pcfg.mode``; returns (artifact, its interface change) for the build."""
    from .config import precision_seam

    art, result, cache = _lower(optimized, change, pcfg, vcfg, user_samples, pipeline_inputs, pass_shapes,
                                engine_shapes, out, workdir / f"model.{pcfg.mode}.onnx")
    report.precision = result.to_json() | {"tolerances": dict(zip(("atol", "rtol"),
                                                                   vcfg.tolerances(precision_seam(pcfg.mode),
                                                                                   pcfg.mode))),
                                           "atol_scaled_by_peak": True}
    report.notices.extend(result.notices)
    report.set_graph(pcfg.mode, result.op_histogram)
    report.intermediates[pcfg.mode] = str(art.path)
    if cache is not None:
        report.intermediates["calibration_cache"] = str(cache)
    kept = len(result.kept_fp32)
    ops = result.ops
    rec.note = ", ".join(f"{sum(v.values())} node(s) {k}" for k, v in ops.items()) + \
        (f"; {kept} kept in fp32" if kept else "")
    return art, result.io_change


def _run_pipeline(model: Path, out: Path, cfg: CompileConfig, report: Report, workdir: Path,
                  observer: Observer | None, current: list[str]) -> None:
    from passes.trt_support import check_model

    from .backends import resolve_backend
    from .onnxutil import load, op_histogram
    from .interface import read as interface_of
    from .config import PRECISION_SEAM_SAMPLES, lowers, precision_seam
    from .validate import DEFAULT_FIX, SEAM_FIXES, PassNumericsCheck, quiet_polygraphy, resolve_shapes

    quiet_polygraphy()
    vcfg = cfg.validate
    with _stage(report, "inspect", observer) as rec:
        source = model
        model = as_saved_model(model, workdir)
        if model != source:
            rec.note = f"Keras file exported to a SavedModel with model.export() ({model})"
            report.intermediates["saved_model"] = str(model)
        info = inspect_model(model, cfg.export)
        report.safety = info.safety
        require_safe(info, cfg.export)
        given = dict(cfg.optimize.input_shapes)  # validation's shapes, even where a profile keeps them unfrozen
        profiles, profile_source, cfg = _model_profiles(cfg, info)
        shapes = resolve_shapes(info.inputs, {**(dict(profiles[0].opt) if profiles else {}), **given}, vcfg.batch)
        if profiles:
            from .profiles import check_profiles

            check_profiles(info.inputs, profiles, shapes)
        backend, notice = resolve_backend(cfg.build.backend)
        report.backend, report.backend_notice = backend, notice
        if notice:
            report.notices.append(notice)
        report.inputs = [t.to_json() | {"validation_shape": list(shapes[t.name])} for t in info.inputs]
        report.outputs = [t.to_json() for t in info.outputs]

    current[0] = "export"
    if info.format == "saved_model":
        with _stage(report, "export", observer):
            exported = export_model(model, workdir / "model.onnx", cfg.export, info)
    else:
        report.stages["export"].note = "input is already ONNX"
        exported = OnnxArtifact(model, info.inputs, info.outputs)
    exported_model = load(exported.path)
    report.set_graph("exported", op_histogram(exported_model))
    report.intermediates["exported"] = str(exported.path)
    vcfg = _index_ranges(exported_model, vcfg, report)

    current[0] = "optimize"
    with _stage(report, "optimize", observer) as rec:
        ocfg, before_passes, pass_shapes = cfg.optimize, exported, shapes
        if ocfg.cut_inputs or ocfg.cut_outputs:
            # The passes and the seams after them start from the cut model, which has its own interface.
            before_passes, ocfg = cut_model(exported.path, workdir / "model.cut.onnx", ocfg)
            pass_shapes = resolve_shapes(before_passes.inputs, {}, vcfg.batch)
            report.intermediates["cut"] = str(before_passes.path)
            report.set_graph("cut", op_histogram(load(before_passes.path)))
            rec.note = (f"cut to inputs {', '.join(t.name for t in before_passes.inputs)}; outputs "
                        f"{', '.join(t.name for t in before_passes.outputs)}")
        check = None
        if ocfg.check_each_pass:
            check = PassNumericsCheck(before_passes.path, before_passes.inputs, pass_shapes, vcfg,
                                      vcfg.tolerances("onnx→optimized"))
        optimized, records = optimize_model(before_passes.path, workdir / "model.opt.onnx", ocfg, check)
        optimized_model = load(optimized.path)
        change = interface_of(optimized_model)
        report.interface = change.to_json() if change else {}
        report.notices.extend(f"the engine's {line} (feed and read it that way)" for line in change.describe())
        report.passes = [r.to_json() for r in records]
        report.set_graph("optimized", op_histogram(optimized_model))
        trt = explain_refusals(check_model(optimized_model, known_valid=True), records)  # optimize checked it
        report.trt_check = trt.to_json()
        if not trt.supported:
            if backend == "tensorrt":
                from .errors import BuildError

                listing = "; ".join(f.text() for f in trt.findings[:5])
                more = f"; and {len(trt.findings) - 5} more" if len(trt.findings) > 5 else ""
                raise BuildError(f"TensorRT's ONNX parser would reject {len(trt.findings)} node(s): {listing}{more}",
                                 "apply the fixes named, or build for CPU with --backend onnxruntime")
            report.notices.append(f"{trt.summary()}; a TensorRT build would stop here "
                                  "(see `python -m compiler check-trt` or the report's trt_check)")
        report.intermediates["optimized"] = str(optimized.path)

    # --data: real samples in the pipeline model's own interface, loaded once and shared by the precision
    # stage (--auto-mixed, calibration when no --calib-data) and every seam whose reference takes those inputs.
    pipeline_inputs = tuple(TensorSpec(t.name, t.dtype, ocfg.input_shapes.get(t.name, t.shape))
                            for t in before_passes.inputs)
    user_samples = None
    if vcfg.data:
        from .data import load_samples

        user_samples = load_samples(vcfg.data, pipeline_inputs, pass_shapes, what="validation",
                                    error=ValidationError, seed=vcfg.seed)

    engine_source, engine_change, pcfg = optimized, change, cfg.precision
    engine_shapes = {k: change.candidate_shape(k, v) for k, v in pass_shapes.items()}
    pseam = precision_seam(pcfg.mode)
    if pcfg.mode == "fp32":
        report.stages["precision"].note = "fp32: nothing to lower"
    else:
        current[0] = "precision"
        with _stage(report, "precision", observer) as rec:
            engine_source, engine_change = _precision_stage(optimized, change, pcfg, vcfg, user_samples,
                                                            pipeline_inputs, pass_shapes, engine_shapes, out,
                                                            workdir, report, rec)

    # The engine is built into a temporary file beside OUT and renamed into place
    # only after validation passed: a failed run never leaves an engine behind.
    with atomic_output(out, "engine") as tmp_engine:
        current[0] = "build"
        with _stage(report, "build", observer):
            # Profiles were set in the model's layout; the engine's inputs may be transposed (--inputs-as-nchw).
            engine_profiles = tuple(p.map(engine_change.candidate_shape) for p in profiles) if profiles else None
            engine = build_engine(engine_source.path, tmp_engine, cfg.build, engine_shapes, profiles=engine_profiles,
                                  profile_source=profile_source)
            report.engine = {"path": str(out), "backend": engine.backend, "format": engine.format,
                             **engine.summary}
            if engine.summary.get("ignored_options"):
                report.notices.append(f"TensorRT-only options ignored by the {engine.backend} backend: "
                                      + ", ".join(engine.summary["ignored_options"]))

        current[0] = "validate"
        if not vcfg.enabled:
            report.stages["validate"].note = "disabled with --no-validate"
        else:
            with _stage(report, "validate", observer) as rec:
                # Specs compile already holds: no seam re-inspects the SavedModel or re-loads an ONNX file.
                known = {model: info, exported.path: _onnx_info(exported),
                         optimized.path: _onnx_info(optimized, change),
                         before_passes.path: _onnx_info(before_passes),
                         engine_source.path: _onnx_info(engine_source, engine_change)}
                seams = []
                if info.format == "saved_model":
                    seams.append((model, exported.path, "tf→onnx", ("tensorflow", "exported.onnx"), shapes))
                label = "cut.onnx" if before_passes is not exported else "exported.onnx"
                seams.append((before_passes.path, optimized.path, "onnx→optimized", (label, "optimized.onnx"),
                              pass_shapes))
                engine_label = "optimized.onnx"
                if pcfg.mode != "fp32":
                    engine_label = f"{pcfg.mode}.onnx"
                    seams.append((optimized.path, engine_source.path, pseam, ("optimized.onnx", engine_label),
                                  engine_shapes))
                seams.append((engine_source.path, tmp_engine, "optimized→engine",
                              (engine_label, f"engine ({backend})"),
                              engine_shapes))
                for ref, cand, seam, labels, seam_shapes in seams:
                    result = _validate(ref, cand, seam, vcfg, seam_shapes, vcfg.tolerances(seam, pcfg.mode),
                                       cfg.export, labels, known, user_samples, scaled=lowers(seam, pcfg.mode),
                                       random_count=PRECISION_SEAM_SAMPLES if seam == pseam else 0)
                    second = second_shapes(info.inputs, shapes, given) if seam == "tf→onnx" else None
                    if second and user_samples is None:  # dynamic dims at a second size (compiler/dynamic_dims.py)
                        result = with_second_size(result, _validate(
                            ref, cand, seam, vcfg, second, vcfg.tolerances(seam), cfg.export,
                            (labels[0], f"{labels[1]} at {describe(shapes, second)}"), known), describe(shapes, second))
                    report.validation.append(result)
                    report.notices.extend(f"validation {seam}: {w}" for w in result.warnings)
                failed = [s for s in report.validation if not s.passed]
                if failed:
                    rec.status = "failed"
                    cause = failed[0].failure_line()
                    if failed[0].failed_at_second_size or failed[0].run_error:  # dynamic_dims.py, seam_errors.py
                        raise ValidationError(cause, DYNAMIC_FIX if failed[0].failed_at_second_size else RUNTIME_FIX)
                    if any(s.seam == "onnx→optimized" and not s.run_error for s in failed):  # name the node
                        from .localize import localize_seam

                        report.localization, where = localize_seam(
                            before_passes.path, optimized.path, pass_shapes, vcfg, user_samples,
                            vcfg.tolerances("onnx→optimized", pcfg.mode))
                        cause += f"; {where}" if failed[0].seam == "onnx→optimized" else ""
                    raise ValidationError(cause, SEAM_FIXES.get(failed[0].seam, DEFAULT_FIX))
    report.engine["path"] = str(out)
