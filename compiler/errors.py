"""One error tree for every user-facing failure.

Each error names the stage that failed, the cause and the fix, and maps to a
distinct process exit code so scripts and CI can tell failures apart without
parsing text. Anything that is not a ``CompilerError`` is a bug: the CLI wraps
it as ``InternalError`` and shows the traceback.
"""
from __future__ import annotations

_DECLARED: list[type] = []  # CompilerError subclasses, as declared


class CompilerError(Exception):
    """A failure the user can act on. ``str(err)`` is one line: stage, cause, fix.

    A subclass declares its stage and exit code in its class line: ``class XError(CompilerError, stage="x",
    exit_code=N)``; ``ALL_ERRORS`` lists every subclass in the order they are declared."""

    stage = "compile"
    exit_code = 1

    def __init_subclass__(cls, stage: str | None = None, exit_code: int | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if stage is not None:
            cls.stage, cls.exit_code = stage, exit_code
            _DECLARED.append(cls)

    def __init__(self, cause: str, fix: str | None = None, *, stage: str | None = None, details=None):
        self.cause = cause.rstrip(".")
        self.fix = fix
        self.details = details  # structured detail for the report (e.g. every parser error), beyond the one line
        if stage is not None:
            self.stage = stage
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.stage}: {self.cause}"
        if self.fix:
            text += f"; fix: {self.fix}"
        return " ".join(text.split())  # one line, whatever the parts held


class ConfigError(CompilerError, stage="config", exit_code=2):
    """Bad command-line values or settings (malformed --input-shapes, unknown input names)."""


class InspectError(CompilerError, stage="inspect", exit_code=3):
    """The model cannot be read: missing path, not a SavedModel, unknown signature or tag."""


class ExportError(CompilerError, stage="export", exit_code=4):
    """tf2onnx failed or left something in the graph that is not standard ONNX."""


class OptimizeError(CompilerError, stage="optimize", exit_code=5):
    """A graph pass failed or broke the graph."""


class PrecisionError(CompilerError, stage="precision", exit_code=10):
    """The FP16/INT8 conversion failed: bad calibration data, unknown --keep-fp32 names, no mixed-precision fit."""


class BuildError(CompilerError, stage="build", exit_code=6):
    """The backend could not build an engine (or is not available here)."""


class ValidationError(CompilerError, stage="validate", exit_code=7):
    """Outputs differ beyond tolerance, or the comparison could not run."""


class OutputError(CompilerError, stage="output", exit_code=8):
    """An output path cannot be written."""


class InternalError(CompilerError, stage="internal", exit_code=70):
    """A bug in the compiler. Always shown with its traceback."""


EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2, as shells report it
EXIT_TERMINATED = 143  # SIGTERM (timeout, CI runners, container stops): 128 + 15


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was so it unwinds like Ctrl-C: partial outputs and temp directories
    are removed on the way out (the CLI turns the signal into this)."""


_pending: list[type] = []  # the interruption the CLI's signal handler raised, whether or not it got through


def note_interruption(kind: type) -> None:
    """The CLI's signal handler records the interruption it is about to raise (``raise_pending``)."""
    _pending[:] = [kind]


def clear_pending() -> None:
    """The run that was interrupted is over (the CLI's ``main`` returns)."""
    _pending.clear()


def raise_pending() -> None:
    """Raise again an interruption whose first raise was lost. A signal handler runs between any two bytecodes,
    also inside a finalizer that ``gc.collect()`` calls (TensorFlow's objects have them), where an exception is
    "unraisable": printed at most, never propagated. The stages call this at their boundaries."""
    if _pending:
        raise _pending[0]()


def interruption(e: KeyboardInterrupt) -> tuple[str, int]:
    """(the word for it, the exit code) of a KeyboardInterrupt: "terminated"/143 for SIGTERM, else 130."""
    return ("terminated", EXIT_TERMINATED) if isinstance(e, Terminated) else ("interrupted", EXIT_INTERRUPTED)



class RunError(CompilerError, stage="run", exit_code=9):
    """A built artifact cannot be loaded or run (unknown format, truncated file, wrong inputs)."""


class GoldenError(CompilerError, stage="golden", exit_code=11):
    """A golden directory cannot be used: missing, corrupted, or recorded for a different model interface."""


ALL_ERRORS = tuple(_DECLARED)


def error_for_stage(stage: str) -> type[CompilerError]:
    """The error class of ``stage`` (e.g. "validate" → ValidationError); CompilerError for an unknown one."""
    return next((cls for cls in ALL_ERRORS if cls.stage == stage), CompilerError)


def out_of_memory(stage: str, what: str = "") -> CompilerError:
    """The one-line error for a MemoryError in ``stage`` (what ran out, when known)."""
    return error_for_stage(stage)(f"{what or 'the ' + stage + ' stage'} ran out of memory",
                                  "give smaller --input-shapes or --batch, or run where more memory is available",
                                  stage=stage)
