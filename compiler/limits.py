"""Bounded evaluation: a time budget for every model evaluation the tool starts, and caps on what it allocates.

Time. ``time_budget(seconds)`` sets the budget (``ValidateConfig.timeout_s``; the CLI's --validate-timeout)
for the evaluations started inside it: each one may run that long. onnxruntime stops a running
``session.run`` (a Loop included) when its ``RunOptions.terminate`` is set, so ``run_bounded`` sets it from a
timer thread. ``BoundedSession`` puts that behind the session interface for code that calls ``session.run``
itself (Polygraphy's OnnxrtRunner, onnxruntime's calibrators), and ``bounded_sessions`` does it for
onnx-graphsurgeon's constant folding, which creates its sessions itself (it takes no run options).
TensorFlow evaluations (the tf→onnx seam's reference) cannot be stopped from outside and are not bounded.

Memory. A feed is refused before it is drawn (``check_feed``), and an evaluation before it runs
(``largest_tensor``, from shape inference at the feed's shapes), when one tensor would exceed
``memory_cap``: a fixed cap, or less where the machine (MemAvailable, an address-space rlimit) has less.
"""
from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
import resource
import threading
import time
from pathlib import Path

from .errors import CompilerError, ConfigError

DEFAULT_TIMEOUT_S = 600.0  # per evaluation: a seam's side, a run, a folding session, a calibration
FEED_CAP_BYTES = 4 * 10**9  # the largest input feed drawn (random data is drawn in float64 first, so 8 B more each)
TENSOR_CAP_BYTES = 4 * 10**9  # the largest tensor an evaluation may materialize
FOLD_CAP_BYTES = 250 * 10**6  # the largest constant folding may materialize (larger stay computed at run time)
ORT_QUIET = 4  # onnxruntime log severity: fatal only (its errors reach the user inside our one-line errors)

TIMEOUT_FIX = ("the model may never finish (e.g. a Loop with a huge trip count); if it really needs longer, "
               "raise --validate-timeout SECONDS")
MEMORY_FIX = "give smaller --input-shapes or --batch, or run where more memory is available"

_budget: contextvars.ContextVar[float] = contextvars.ContextVar("evaluation_budget", default=DEFAULT_TIMEOUT_S)


class EvaluationTimeout(Exception):
    """An evaluation ran past its budget and was stopped."""

    def __init__(self, what: str, seconds: float):
        self.what, self.seconds = what, seconds
        super().__init__(f"{what} ran longer than {seconds:g} s (--validate-timeout) and was stopped")


def check_timeout(seconds) -> float:
    """``seconds`` as a budget, or ConfigError: it must be a finite number > 0."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--validate-timeout must be a finite number of seconds > 0, not {seconds!r}",
                          f"e.g. --validate-timeout {DEFAULT_TIMEOUT_S:g} (the default)")
    return value


@contextlib.contextmanager
def time_budget(seconds: float | None):
    """Evaluations started inside get ``seconds`` each (None: keep the budget already set)."""
    if seconds is None:
        yield
        return
    token = _budget.set(check_timeout(seconds))
    try:
        yield
    finally:
        _budget.reset(token)


def budget() -> float:
    return _budget.get()


def quiet_onnxruntime() -> None:
    import onnxruntime

    onnxruntime.set_default_logger_severity(ORT_QUIET)


class _Watchdog:
    """One daemon thread that sets ``terminate`` on the RunOptions of runs past their deadline. A Timer thread per
    run cost about 0.9 ms a call on a loaded 2-core machine (starting a thread waits until it runs), ten times a
    small model's whole inference; this thread is woken only when a deadline earlier than its next wake-up comes."""

    def __init__(self):
        self._cond = threading.Condition()
        self._runs: dict[int, tuple[float, object, threading.Event]] = {}
        self._ids = itertools.count()
        self._wake = math.inf  # when the thread looks next
        self._thread: threading.Thread | None = None

    def arm(self, options, seconds: float) -> tuple[int, threading.Event]:
        fired = threading.Event()
        deadline = time.monotonic() + seconds
        with self._cond:
            key = next(self._ids)
            self._runs[key] = (deadline, options, fired)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="evaluation-watchdog", daemon=True)
                self._thread.start()
            if deadline < self._wake:
                self._cond.notify()
        return key, fired

    def disarm(self, key: int) -> None:
        with self._cond:
            self._runs.pop(key, None)

    def _watch(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for key, (deadline, options, fired) in list(self._runs.items()):
                    if deadline <= now:
                        fired.set()
                        options.terminate = True
                        del self._runs[key]
                self._wake = min((d for d, _, _ in self._runs.values()), default=math.inf)
                self._cond.wait(None if self._wake == math.inf else max(self._wake - now, 0.001))


_WATCHDOG = _Watchdog()


def run_bounded(session, names, feed, what: str, options=None) -> list:
    """``session.run(names, feed)``, stopped after the budget with EvaluationTimeout."""
    import onnxruntime

    seconds = budget()
    options = options or onnxruntime.RunOptions()
    options.log_severity_level = ORT_QUIET
    key, fired = _WATCHDOG.arm(options, seconds)
    try:
        return session.run(names, feed, options)
    except Exception:
        if fired.is_set():
            raise EvaluationTimeout(what, seconds) from None
        raise
    finally:
        _WATCHDOG.disarm(key)


def is_out_of_memory(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, MemoryError) or any(s in text for s in ("bad_alloc", "bad allocation",
                                                                 "Failed to allocate memory"))


def first_line(e: BaseException, limit: int = 300) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:limit]}" if lines else type(e).__name__


class BoundedSession:
    """An onnxruntime session whose ``run`` is bounded in time (``run_bounded``) and refused up front when a
    tensor would exceed the memory cap (``largest_tensor`` at the feed's shapes, when ``model`` is given);
    every failure is ``error`` naming ``what`` (e.g. ValidationError, "the reference 'exported.onnx'")."""

    def __init__(self, session, what: str, error: type[CompilerError], model=None):
        self.session, self.what, self.error, self.model = session, what, error, model
        self._checked: set = set()

    def __getattr__(self, name):  # get_inputs, get_outputs, get_modelmeta, ... of the session
        return getattr(self.session, name)

    def run(self, names, feed, options=None):
        self._check_memory(feed)
        try:
            return run_bounded(self.session, names, feed, self.what, options)
        except EvaluationTimeout as e:
            raise self.error(str(e), TIMEOUT_FIX) from None
        except CompilerError:
            raise
        except Exception as e:  # onnxruntime's own types (Fail, RuntimeException, InvalidArgument, ...)
            if is_out_of_memory(e):
                raise self.error(f"{self.what} ran out of memory ({first_line(e)})", MEMORY_FIX) from None
            raise self.error(f"{self.what} failed in onnxruntime ({first_line(e)})",
                             "check the inputs' shapes and values; rerun with --debug for details") from e

    def _check_memory(self, feed) -> None:
        if self.model is None:
            return
        shapes = {k: tuple(getattr(v, "shape", ())) for k, v in feed.items()}
        key = tuple(sorted(shapes.items()))
        if key in self._checked:
            return
        self._checked.add(key)
        found = largest_tensor(self.model, shapes)
        cap, why = memory_cap(TENSOR_CAP_BYTES)
        if found is not None and found[1] > cap:
            name, size, shape = found
            raise self.error(f"{self.what} would materialize tensor '{name}' {list(shape)} of {human(size)} at "
                             f"these input shapes, more than {why} ({human(cap)}); refused before running it",
                             MEMORY_FIX)


@contextlib.contextmanager
def bounded_sessions(what: str):
    """Inside, every ``onnxruntime.InferenceSession`` created by code we do not control (onnx-graphsurgeon's
    folding) runs bounded and quiet; yields the list of EvaluationTimeouts that stopped one.

    Swaps the class on the onnxruntime module for the duration (graphsurgeon looks it up at call time and
    passes no run options): the one place this is worked around."""
    import onnxruntime

    original = onnxruntime.InferenceSession
    stopped: list[EvaluationTimeout] = []

    class Bounded(original):
        def __init__(self, model, sess_options=None, *args, **kwargs):
            sess_options = sess_options or onnxruntime.SessionOptions()
            sess_options.log_severity_level = ORT_QUIET
            super().__init__(model, sess_options, *args, **kwargs)

        def run(self, names, feed, options=None):
            try:
                return run_bounded(super(), names, feed, what, options)
            except EvaluationTimeout as e:
                stopped.append(e)
                raise

    onnxruntime.InferenceSession = Bounded
    try:
        yield stopped
    finally:
        onnxruntime.InferenceSession = original


# ------------------------------------------------------------------------------------------------ memory


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left() -> int | None:
    """What an RLIMIT_AS leaves this process (None: no limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, soft - int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return soft


def memory_cap(fixed: int) -> tuple[int, str]:
    """(bytes, what limits it): ``fixed``, or the memory available when that is less."""
    cap, why = fixed, "the cap"
    for limit, what in ((_meminfo_available(), "the memory available (MemAvailable)"),
                        (_address_space_left(), "what the address-space limit leaves")):
        if limit is not None and limit < cap:
            cap, why = limit, what
    return cap, why


def human(nbytes: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} B"


def tensor_bytes(shape, itemsize: int) -> int | None:
    """Bytes of a tensor of ``shape`` (None when a dimension is unknown)."""
    if shape is None or any(not isinstance(d, int) or d < 0 for d in shape):
        return None
    return math.prod(shape) * itemsize


def check_feed(inputs, shapes: dict, what: str = "the inputs") -> None:
    """ConfigError before drawing a feed of ``shapes`` for ``inputs`` (TensorSpecs) that would not fit."""
    import numpy as np

    total, largest = 0, None
    for t in inputs:
        try:
            itemsize = np.dtype(t.dtype).itemsize
        except TypeError:
            continue
        size = tensor_bytes(tuple(shapes.get(t.name, ())), itemsize + 8)
        if size is not None:
            total += size
            largest = max(largest or (0, t.name), (size, t.name))
    cap, why = memory_cap(FEED_CAP_BYTES)
    if largest is not None and total > cap:
        name = largest[1]
        shape = "x".join(map(str, shapes[name])) or "scalar"
        raise ConfigError(f"{what} would need {human(total)} to draw (input '{name}' is {shape}), more than {why} "
                          f"({human(cap)})", "give smaller --input-shapes or --batch")


def largest_tensor(model, shapes: dict | None = None):
    """(name, bytes, shape) of the largest tensor shape inference finds in ``model`` (an onnx ModelProto) with
    its inputs set to ``shapes``; None when inference cannot tell."""
    sizes = tensor_sizes(model, shapes)
    if not sizes:
        return None
    name = max(sizes, key=lambda k: sizes[k][0])
    return name, *sizes[name]


def tensor_sizes(model, shapes: dict | None = None) -> dict[str, tuple[int, tuple]]:
    """name -> (bytes, shape) of every tensor of ``model``'s main graph whose shape inference makes static, with
    the graph inputs set to ``shapes`` (restored afterwards); {} when inference fails."""
    import onnx

    saved = []
    try:
        for vi in model.graph.input:
            if vi.name in (shapes or {}):
                saved.append((vi, onnx.TypeProto.FromString(vi.type.SerializeToString())))
                shape = vi.type.tensor_type.shape
                del shape.dim[:]
                for d in shapes[vi.name]:
                    shape.dim.add().dim_value = int(d)
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # custom ops, >2 GB protos: no estimate, the time budget still applies
        return {}
    finally:
        for vi, original in saved:
            vi.type.CopyFrom(original)
    sizes = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output]:
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or not tt.elem_type:
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).itemsize
        except (KeyError, TypeError, ValueError):
            continue
        size = tensor_bytes(dims, itemsize)
        if size is not None:
            sizes[vi.name] = (size, dims)
    return sizes
