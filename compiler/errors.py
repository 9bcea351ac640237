"""One error tree for every user-facing failure.

Each error names the stage that failed, the cause and the fix, and maps to a
distinct process exit code so scripts and CI can tell failures apart without
parsing text. Anything that is not a ``CompilerError`` is a bug: the CLI wraps
it as ``InternalError`` and shows the traceback.
"""
from __future__ import annotations


class CompilerError(Exception):
    """A failure the user can act on. ``str(err)`` is one line: stage, cause, fix."""

    stage = "compile"
    exit_code = 1

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


class ConfigError(CompilerError):
    """Bad command-line values or settings (malformed --input-shapes, unknown input names)."""

    stage = "config"
    exit_code = 2


class InspectError(CompilerError):
    """The model cannot be read: missing path, not a SavedModel, unknown signature or tag."""

    stage = "inspect"
    exit_code = 3


class ExportError(CompilerError):
    """tf2onnx failed or left something in the graph that is not standard ONNX."""

    stage = "export"
    exit_code = 4


class OptimizeError(CompilerError):
    """A graph pass failed or broke the graph."""

    stage = "optimize"
    exit_code = 5


class PrecisionError(CompilerError):
    """The FP16/INT8 conversion failed: bad calibration data, unknown --keep-fp32 names, no mixed-precision fit."""

    stage = "precision"
    exit_code = 10


class BuildError(CompilerError):
    """The backend could not build an engine (or is not available here)."""

    stage = "build"
    exit_code = 6


class ValidationError(CompilerError):
    """Outputs differ beyond tolerance, or the comparison could not run."""

    stage = "validate"
    exit_code = 7


class OutputError(CompilerError):
    """An output path cannot be written."""

    stage = "output"
    exit_code = 8


class InternalError(CompilerError):
    """A bug in the compiler. Always shown with its traceback."""

    stage = "internal"
    exit_code = 70


EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2, as shells report it
EXIT_TERMINATED = 143  # SIGTERM (timeout, CI runners, container stops): 128 + 15


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was so it unwinds like Ctrl-C: partial outputs and temp directories
    are removed on the way out (the CLI turns the signal into this)."""


def interruption(e: KeyboardInterrupt) -> tuple[str, int]:
    """(the word for it, the exit code) of a KeyboardInterrupt: "terminated"/143 for SIGTERM, else 130."""
    return ("terminated", EXIT_TERMINATED) if isinstance(e, Terminated) else ("interrupted", EXIT_INTERRUPTED)


ALL_ERRORS = (ConfigError, InspectError, ExportError, OptimizeError, PrecisionError, BuildError,
              ValidationError, OutputError, InternalError)


class RunError(CompilerError):
    """A built artifact cannot be loaded or run (unknown format, truncated file, wrong inputs)."""

    stage = "run"
    exit_code = 9


ALL_ERRORS = ALL_ERRORS + (RunError,)


class GoldenError(CompilerError):
    """A golden directory cannot be used: missing, corrupted, or recorded for a different model interface."""

    stage = "golden"
    exit_code = 11


ALL_ERRORS = ALL_ERRORS + (GoldenError,)


def error_for_stage(stage: str) -> type[CompilerError]:
    """The error class of ``stage`` (e.g. "validate" → ValidationError); CompilerError for an unknown one."""
    return next((cls for cls in ALL_ERRORS if cls.stage == stage), CompilerError)


def out_of_memory(stage: str, what: str = "") -> CompilerError:
    """The one-line error for a MemoryError in ``stage`` (what ran out, when known)."""
    return error_for_stage(stage)(f"{what or 'the ' + stage + ' stage'} ran out of memory",
                                  "give smaller --input-shapes or --batch, or run where more memory is available",
                                  stage=stage)
