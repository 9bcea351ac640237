"""``compile_model``: the compile, as the list of its stages (``compiler/stages/``), each ``State -> State``.

    inspect → export → optimize → precision → build → validate

Each stage is also callable alone (``inspect_model``, ``export_model``, ``optimize_model``, ``lower_precision``,
``build_engine``, ``validate_artifacts``); the CLI's subcommands call these same functions. Files on disk are the
seams between stages; the report is filled from the state, in one place (``_fill``).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable

from .artifacts import atomic_output, check_writable, refuse_replacing_inputs, scratch_dir
from .common.memory import PeakSampler, release_freed_memory
from .common.samples import spec_paths
from .config import DUMP_NAMES, CompileConfig, calib_cache_path, precision_seam
from .errors import CompilerError, InternalError, OutputError, interruption, out_of_memory, raise_pending
from .limits import time_budget
from .report import Report, StageRecord
from .stages import build, export, inspect, optimize, precision, validate
from .stages.state import State
from .validate import quiet_polygraphy

Observer = Callable[[str, str, StageRecord | None], None]  # (event "start"|"end", stage, record)

INTERMEDIATE_NAMES = ("model.onnx", "model.*.onnx", "saved_model")  # what --keep-intermediates writes


def compile_model(model: Path, out: Path, cfg: CompileConfig = CompileConfig(),
                  observer: Observer | None = None) -> Report:
    """SavedModel (or ONNX) → validated engine at ``out`` and a JSON report.

    The engine appears at ``out`` only if every stage, validation included, succeeded. The report is always
    written (``cfg.report_path`` or ``OUT.report.json``), on failure too, with the error in it. A failure raises
    the ``CompilerError`` of its stage after the report is written.
    """
    model, out = Path(model), Path(out)
    report_path = Path(cfg.report_path) if cfg.report_path else out.with_name(out.name + ".report.json")
    report = Report(model=str(model), out=str(out))
    _guard_compile(model, out, report_path, cfg)  # no output replaces an input, before any work
    check_writable(out, "engine")
    check_writable(report_path, "report")
    quiet_polygraphy()
    # every evaluation the compile starts (folding, calibration, each seam's side) gets --validate-timeout
    with _workdir(cfg) as workdir, time_budget(cfg.validate.timeout_s), \
            _Stages(report, report_path, observer) as stage:
        state = State(cfg, out, workdir, model)
        state = stage("inspect", inspect.run, state)  # IO, shapes, profiles, backend: everything after needs them
        state = stage("export", export.run, state, skips=export.skips)  # tf2onnx, verified
        state = export.find_index_ranges(state)  # random ids that fit their tables
        state = stage("optimize", optimize.run, state, then=optimize.refuse_unparseable)  # the passes
        state = optimize.load_data(state)  # --data once, for the precision stage and every seam
        # fp16/bf16/int8 as graph rewrites (TensorRT 11 has no precision flags)
        state = stage("precision", precision.run, state, skips=precision.skips)
        # The engine is built into a temporary file beside OUT and renamed into place only after validation
        # passed: a failed run never leaves an engine behind.
        with atomic_output(out, "engine") as engine_path:
            state = stage("build", build.run, state.but(engine_path=engine_path))
            state = stage("validate", validate.run, state, skips=validate.skips, then=validate.refuse_failed)
    return report


def compile_inputs(model: Path, cfg: CompileConfig) -> list[Path]:
    """Every file or directory compile reads: the model, sample data, user rules, plugins (none may be replaced)."""
    return [Path(model), *spec_paths(cfg.validate.data), *spec_paths(cfg.precision.calib_data),
            *spec_paths(cfg.build.profile_data), cfg.optimize.rules_file, *cfg.build.plugins]


def _guard_compile(model: Path, out: Path, report_path: Path, cfg: CompileConfig) -> None:
    """compile's outputs, checked against its inputs before any work (``refuse_replacing_inputs``)."""
    refuse_replacing_inputs(compile_inputs(model, cfg),
                            [("engine", out), ("report", report_path), ("timing cache", cfg.build.timing_cache),
                             ("calibration cache", calib_cache_path(cfg.precision, out))],
                            [("intermediates directory", cfg.keep_intermediates, INTERMEDIATE_NAMES),
                             ("pass dump directory", cfg.optimize.dump_dir, DUMP_NAMES)])


@contextlib.contextmanager
def _workdir(cfg: CompileConfig):
    """--keep-intermediates DIR, or a temporary directory removed afterwards."""
    if cfg.keep_intermediates:
        yield _intermediates_dir(Path(cfg.keep_intermediates))
        return
    with scratch_dir("tf2trt-") as tmp:
        yield tmp


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


class _Stages:
    """Runs each stage under its record (observer events, timing, status), fills the report from the state it
    returns, and knows the running stage, so any error, interruption or bug is reported against it. The report
    is written when the compile ends, however it ends."""

    def __init__(self, report: Report, path: Path, observer: Observer | None):
        self.report, self.path, self.observer, self.running = report, path, observer, "inspect"
        self.peaks = PeakSampler()  # each stage's peak resident memory, sampled while the compile runs

    def __call__(self, name: str, run: Callable[[State], State], state: State, *,
                 skips: Callable[[State], str | None] | None = None,
                 then: Callable[[State], None] | None = None) -> State:
        """``run`` the stage ``name``, unless ``skips`` says why it has nothing to do (then it keeps its
        "skipped" record, with that reason as its note); ``then`` may fail the stage on what it found, after the
        report holds it."""
        self.running = name
        why = skips(state) if skips is not None else None
        if why:
            state = state.skip(name, why)
            _fill(self.report, state)
            return state
        with self._stage(name):
            raise_pending()
            state = run(state)
            raise_pending()  # a signal whose raise a finalizer swallowed fails the stage it arrived in
            _fill(self.report, state)
            if then is not None:
                then(state)
        return state

    @contextlib.contextmanager
    def _stage(self, name: str):
        rec = self.report.stages[name]
        if self.observer:
            self.observer("start", name, None)
        start = time.perf_counter()
        self.peaks.start()
        try:
            yield rec
        except BaseException:
            rec.status = "failed"
            raise
        else:
            rec.status = "ok"
        finally:
            rec.seconds = time.perf_counter() - start
            rec.peak_rss_mb = self.peaks.stop()
            release_freed_memory()  # what the stage freed goes back to the system before the next one starts
            if self.observer:
                self.observer("end", name, rec)

    def __enter__(self):
        self.peaks.__enter__()
        return self

    def __exit__(self, kind, error, tb):
        report = self.report
        self.peaks.__exit__(kind, error, tb)
        try:
            if isinstance(error, MemoryError):  # one line naming the stage that ran out, not a bug
                error = out_of_memory(self.running)
                report.error = {"stage": error.stage, "message": error.one_line(), "exit_code": error.exit_code}
                raise error from None
            if isinstance(error, CompilerError):
                report.error = {"stage": error.stage, "message": error.one_line(), "exit_code": error.exit_code}
                if error.details is not None:
                    report.error["details"] = error.details
            elif isinstance(error, KeyboardInterrupt):  # Ctrl-C or SIGTERM (errors.Terminated)
                word, code = interruption(error)
                report.error = {"stage": self.running, "message": word, "exit_code": code}
            elif isinstance(error, Exception):  # a bug: report it as one, with the stage it happened in
                bug = InternalError(f"unexpected {type(error).__name__} in stage '{self.running}': {error}",
                                    "please report this with the --debug traceback")
                report.error = {"stage": self.running, "message": bug.one_line(), "exit_code": bug.exit_code}
                raise bug from error
        finally:
            report.write(self.path)
        return False


def _fill(report: Report, state: State) -> None:
    """The report, from the state: the one place it is written (after every stage; later states say more)."""
    model, cfg = state.model, state.cfg
    for name, note in state.notes.items():
        report.stages[name].note = note
    report.notices, report.intermediates = list(state.notices), dict(state.intermediates)
    if model is not None:
        report.safety, report.backend, report.backend_notice = model.safety, state.backend, state.backend_notice
        report.inputs = [t.to_json() | {"validation_shape": list(state.shapes[t.name])}
                         | ({"index_range": state.index_ranges[t.name]} if t.name in state.index_ranges else {})
                         for t in model.inputs]
        report.outputs = [t.to_json() for t in model.outputs]
    if state.exported is not None:
        report.set_graph("exported", state.exported.ops)
    if state.before_passes is not None and state.before_passes is not state.exported:
        report.set_graph("cut", state.before_passes.ops)
    if state.optimized is not None:
        report.set_graph("optimized", state.optimized.ops)
        report.interface = state.optimized.change.to_json() if state.optimized.change else {}
        report.passes = [r.to_json() for r in state.pass_records]
        report.trt_check = state.trt.to_json()
    if state.precision is not None:
        mode = cfg.precision.mode
        atol, rtol = cfg.validate.tolerances(precision_seam(mode), mode)
        report.precision = state.precision.to_json() | {"tolerances": {"atol": atol, "rtol": rtol},
                                                        "atol_scaled_by_peak": True}
        report.set_graph(mode, state.precision.op_histogram)
    if state.engine is not None:
        report.engine = {"path": str(state.out), "backend": state.engine.backend, "format": state.engine.format,
                         **state.engine.summary}
    report.validation, report.localization = list(state.seams), state.localization

