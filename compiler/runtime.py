"""Load any artifact the compiler produces, run it and benchmark it.

The format is recognised from the file's content, never its name: a TensorRT
plan starts with ``ftrt``; our onnxruntime artifact is onnxruntime's own ORT
format, a flatbuffer whose file identifier ``ORTM`` sits at bytes 4-8; an ONNX
model is a protobuf ``ModelProto`` (recognised by parsing).

Every runner has ``inputs``/``outputs`` (TensorSpecs), ``format``, ``backend``,
``interface`` (how the artifact's IO differs from the SavedModel's, see
compiler/interface.py) and ``infer(feed) -> dict``, which takes exactly what
the artifact takes. ``prepare_feed`` adapts what a user has to that, by fixed
rules (lossless or standard casts, the SavedModel's layout transposed), and
says what it did; ``run`` and ``benchmark`` use it.
"""
from __future__ import annotations

import difflib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import deploy, limits
from .artifacts import TensorSpec
from .errors import ConfigError, InspectError, RunError, ValidationError
from .sandbox import check_external_data

TENSORRT_PLAN = "tensorrt-plan"
ORT_FORMAT = "onnxruntime-ort"
ONNX_MODEL = "onnx"

_TRT_MAGIC = b"ftrt"
_ORT_IDENT = b"ORTM"

MEASURED = "host-to-host: feed copy, inference, output copy"


def detect_format(path: Path) -> str:
    path = Path(path)
    if deploy.is_converted(path):  # a directory written by compiler.tftrt's Converter.save()
        return deploy.FORMAT
    if not path.is_file():
        raise RunError(f"artifact '{path}' does not exist or is not a file", "pass the file written by compile/build")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise RunError(f"artifact '{path}' is empty", "pass the file written by compile/build, or rebuild it")
    if head[:4] == _TRT_MAGIC:
        return TENSORRT_PLAN
    if len(head) == 8 and head[4:8] == _ORT_IDENT:
        return ORT_FORMAT
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # any parse failure means "not ONNX"; we say what it is not, below
        model = None
    if model is not None and (model.graph.node or model.graph.output):
        check_external_data(model, path)  # onnxruntime reads it from the file: it must be inside the sandbox
        return ONNX_MODEL
    raise RunError(f"'{path}' is not a TensorRT plan, an onnxruntime ORT artifact or an ONNX model "
                   f"(first bytes: {head!r})", "pass an engine built by this compiler, or rebuild it")


def ort_session(model: Path | bytes, fmt: str = ONNX_MODEL):
    """An onnxruntime CPU session that runs the model exactly as written: no graph optimizations.

    An ORT artifact was optimized when it was built. An ONNX model on either
    side of a validation seam must run as written: onnxruntime's own fusions
    (e.g. folding BatchNormalization into Conv) change float32 rounding, by
    3.7e-4 on a random-weight ResNet50V2, and would be blamed on the export
    or the passes.
    """
    import onnxruntime as ort

    limits.quiet_onnxruntime()
    so = ort.SessionOptions()
    so.log_severity_level = limits.ORT_QUIET
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if fmt == ORT_FORMAT:
        so.add_session_config_entry("session.load_model_format", "ORT")
    source = model if isinstance(model, bytes) else str(model)
    path = "<in-memory model>" if isinstance(model, bytes) else model
    try:
        return ort.InferenceSession(source, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise RunError(f"onnxruntime cannot load '{path}' ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                       "the file may be truncated or built by an incompatible onnxruntime; rebuild it") from None


def _ort_dtype(type_str: str) -> str:
    inner = type_str[len("tensor("):-1] if type_str.startswith("tensor(") else type_str
    return {"float": "float32", "double": "float64", "float16": "float16"}.get(inner, inner)


def _specs(args) -> tuple[TensorSpec, ...]:
    """TensorSpecs of onnxruntime's NodeArgs (symbolic dims become None)."""
    return tuple(TensorSpec(a.name, _ort_dtype(a.type), tuple(d if isinstance(d, int) else None for d in a.shape))
                 for a in args)


def session_io(session) -> list[dict]:
    """An onnxruntime session's IO as the engine summary lists it (TensorRT's form: -1 marks a dynamic dim)."""
    return [{"name": t.name, "mode": mode, "dtype": t.dtype,
             "shape": [d if isinstance(d, int) and d >= 0 else -1 for d in t.shape]}
            for mode, args in (("input", session.get_inputs()), ("output", session.get_outputs()))
            for t in _specs(args)]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OrtRunner:
    """Runs an ONNX model or an ORT-format artifact on onnxruntime's CPU provider."""

    def __init__(self, path: Path, fmt: str):
        from .interface import KEY, Interface

        self.path, self.format, self.backend = Path(path), fmt, "onnxruntime"
        self.session = limits.BoundedSession(ort_session(self.path, fmt), f"'{self.path}'", RunError,
                                             _onnx_proto(self.path) if fmt == ONNX_MODEL else None)
        self.inputs = _specs(self.session.get_inputs())
        self.outputs = _specs(self.session.get_outputs())
        raw = self.session.get_modelmeta().custom_metadata_map.get(KEY)
        try:
            import json

            self.interface = Interface.from_json(json.loads(raw)) if raw else Interface()
        except (ValueError, AttributeError) as e:
            raise RunError(f"'{path}' records an unreadable interface ({KEY}: {e})", "rebuild the artifact") from None
        intra = self.session.get_session_options().intra_op_num_threads
        # 0 is onnxruntime's default: one intra-op thread per physical core
        self.threads = {"intra_op_num_threads": intra, "cpus": _cpus()}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted({t.name for t in self.inputs} - set(feed))
        if missing:
            raise RunError(f"missing input(s) {', '.join(missing)}",
                           f"provide every input: {', '.join(t.name for t in self.inputs)}")
        names = [o.name for o in self.outputs]
        values = self.session.run(names, {t.name: feed[t.name] for t in self.inputs})
        return OrderedDict(zip(names, values))

    def polygraphy_runner(self, name: str):
        from polygraphy.backend.onnxrt import OnnxrtRunner

        session = limits.BoundedSession(self.session.session, f"'{name}'", ValidationError, self.session.model)
        return OnnxrtRunner(session, name=name)


def _onnx_proto(path: Path):
    """The ModelProto at ``path`` without its external data (for the memory estimate), or None."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception:  # onnxruntime loaded it; the estimate is only a guard
        return None


def load(path: Path, plugins=()):
    """A runner for the artifact at ``path``, chosen by its content.

    ``plugins`` (TensorRT plugin libraries) are loaded for a TensorRT plan; onnxruntime needs none.
    """
    fmt = detect_format(path)
    if fmt == deploy.FORMAT:  # its engines open through this function; missing ones are built by _build_converted
        return deploy.load(path, open_engine=lambda p: load(p, plugins), build=_build_converted)
    if fmt == TENSORRT_PLAN:
        from .backends import tensorrt

        ok, why = tensorrt.availability()
        if not ok:  # say what the file is: the user may not know it is a plan
            raise RunError(f"'{path}' is a TensorRT plan, but TensorRT cannot run here: {why}", tensorrt.INSTALL_HINT)
        return tensorrt.TrtPlanRunner(Path(path), plugins=tuple(plugins))  # its interface is empty: no metadata
    return OrtRunner(Path(path), fmt)


def _build_converted(graph: Path, out: Path, profiles: list[dict], manifest: dict):
    """A runner for an engine built from a converted directory's graph with ``profiles`` (ShapeProfile JSON):
    one saved without its plan, or one built at run time for shapes outside the saved profiles."""
    from .backends import build
    from .config import BuildConfig
    from .profiles import ShapeProfile

    shaped = tuple(ShapeProfile(*({n: tuple(d[w]) for n, d in p.items()} for w in ("min", "opt", "max")))
                   for p in profiles if p)
    art = build(Path(graph), Path(out), BuildConfig(workspace_mib=manifest.get("workspace_mib")), profiles=shaped)
    return load(art.path)


# --------------------------------------------------------------------------- feeds


@dataclass(frozen=True)
class PreparedFeed:
    """A user's feed made into what the artifact takes, with what was done to it."""

    feed: OrderedDict  # input name -> array, in the artifact's dtypes and layout
    notes: tuple[str, ...]
    mapping: object = None  # an Interface applied to the outputs (inputs fed in the SavedModel's layout), or None

    def results(self, outputs: dict) -> OrderedDict:
        """The artifact's outputs, in the layout the inputs were fed in."""
        return self.mapping.results(outputs) if self.mapping is not None else OrderedDict(outputs)


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) and d >= 0 else "?" for d in shape) + "]"


def _matches(shape: tuple, spec_shape) -> bool:
    """Whether an array's shape fits a spec's (dynamic dims match any size)."""
    return len(shape) == len(spec_shape) and all(not (isinstance(d, int) and d >= 0) or d == s
                                                 for d, s in zip(spec_shape, shape))


def _cast(name: str, arr: np.ndarray, target: np.dtype) -> tuple[np.ndarray, str | None]:
    """``arr`` in ``target`` when that loses nothing or is the standard narrowing of floats, else RunError."""
    src = arr.dtype
    if src == target:
        return arr, None
    note = f"input '{name}': cast {src.name} → {target.name}"
    if src.kind == "f" and target.kind == "f":
        with np.errstate(over="ignore"):  # counted below
            out = arr.astype(target)
        if target.itemsize < src.itemsize:
            overflow = int(np.count_nonzero(np.isfinite(arr) & ~np.isfinite(out)))
            if overflow:
                raise RunError(f"input '{name}' has {overflow} value(s) beyond {target.name}'s range "
                               f"(±{float(np.finfo(target).max):g}); the artifact takes {target.name}",
                               f"scale the data into {target.name}'s range")
            note += ", the artifact's dtype"
        return out, note
    if src.kind in "iu" and target.kind in "iu":
        info = np.iinfo(target)
        if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
            raise RunError(f"input '{name}' has {src.name} values from {int(arr.min())} to {int(arr.max())}, which "
                           f"do not fit the artifact's {target.name} ({info.min}..{info.max})",
                           f"give '{name}' values that fit {target.name}")
        return arr.astype(target), note
    raise RunError(f"input '{name}' has dtype {src.name} but the artifact takes {target.name}",
                   f"convert it with .astype(np.{target.name}) if that is meant, or give the data the model expects")


def prepare_feed(inputs: tuple[TensorSpec, ...], feed: dict, interface=None) -> PreparedFeed:
    """Adapt ``feed`` to an artifact's ``inputs``; raise RunError naming the input, what it got and what is needed.

    Every input must be given, and nothing else. Dtypes: float64 → float32,
    float → float16 where the artifact takes float16, float widening, and
    integer casts whose values fit; nothing else is cast. Shapes: an array that
    fits the artifact's shape (dynamic dims fit anything) is used as is; one
    that fits the SavedModel's layout of an input the compiler transposed
    (``interface``'s ``perm``) is transposed, and then the outputs are mapped
    back into the SavedModel's layout too (``PreparedFeed.results``).
    """
    from .interface import Interface

    interface = interface or Interface()
    names = [t.name for t in inputs]
    expected = ", ".join(names)
    unknown = [k for k in feed if k not in names]
    if unknown:
        parts = []
        for u in unknown:
            near = difflib.get_close_matches(u, names, n=1, cutoff=0.5)
            parts.append(f"'{u}'" + (f" (did you mean '{near[0]}'?)" if near else ""))
        raise RunError(f"{', '.join(parts)} {'is not an input' if len(unknown) == 1 else 'are not inputs'} of the "
                       f"artifact; its inputs are: {expected}", "name each array after one of the artifact's inputs")
    missing = [n for n in names if n not in feed]
    if missing:
        raise RunError(f"missing input(s) {', '.join(repr(m) for m in missing)}; the artifact's inputs are: {expected}",
                       "give an array for every input")
    out, notes, layouts = OrderedDict(), [], {}
    for t in inputs:
        arr = np.asarray(feed[t.name])
        if arr.dtype.kind in "OUSV":
            held = "Python objects" if arr.dtype.kind == "O" else "strings or bytes"
            raise RunError(f"input '{t.name}' holds {held}, not numbers; the artifact takes {t.dtype}",
                           "give a numeric array")
        perm = interface.inputs.get(t.name, {}).get("perm")
        original = interface.reference_shape(t.name, t.shape) if perm else None
        fits, fits_original = _matches(arr.shape, t.shape), perm is not None and _matches(arr.shape, original)
        if not fits and fits_original:
            arr = np.ascontiguousarray(np.transpose(arr, perm))
            layouts[t.name] = "saved_model"
            notes.append(f"input '{t.name}': fed in the SavedModel's layout {_shape_text(original)}, transposed by "
                         f"{list(perm)} to the artifact's {_shape_text(t.shape)}")
        elif fits:
            if perm is not None:
                layouts[t.name] = "artifact"
                if fits_original:
                    notes.append(f"input '{t.name}': shape {list(arr.shape)} fits both the artifact's layout "
                                 f"{_shape_text(t.shape)} and the SavedModel's {_shape_text(original)}; taken as "
                                 "the artifact's")
        else:
            also = f" (or {_shape_text(original)} in the SavedModel's layout)" if perm is not None else ""
            raise RunError(f"input '{t.name}' has shape {list(arr.shape)} ({arr.dtype.name}) but the artifact takes "
                           f"{t.dtype} {_shape_text(t.shape)}{also}",
                           f"give '{t.name}' an array of shape {_shape_text(t.shape)} (? = any size)")
        arr, note = _cast(t.name, arr, np.dtype(t.dtype))
        if note:
            notes.append(note)
        out[t.name] = np.ascontiguousarray(arr)
    if len(set(layouts.values())) > 1:
        by = {k: sorted(n for n, v in layouts.items() if v == k) for k in ("saved_model", "artifact")}
        raise RunError(f"inputs are fed in two layouts: {', '.join(by['saved_model'])} in the SavedModel's, "
                       f"{', '.join(by['artifact'])} in the artifact's", "feed every input in the same layout")
    mapping = None
    if "saved_model" in layouts.values():
        mapping = Interface({}, interface.outputs)
        for name, change in interface.outputs.items():
            done = [text for key, text in (("perm", "transposed back"),
                                           ("from_dtype", f"cast back to {change.get('from_dtype')}")) if key in change]
            notes.append(f"output '{name}': {' and '.join(done)} into the SavedModel's interface")
    else:
        for name, change in interface.outputs.items():
            if "perm" in change:
                notes.append(f"output '{name}' is in the artifact's layout (the SavedModel's transposed by "
                             f"{change['perm']})")
            if "from_dtype" in change:
                notes.append(f"output '{name}' is {change['dtype']} (the SavedModel's is {change['from_dtype']})")
    return PreparedFeed(out, tuple(notes), mapping)


def read_feed(path: Path, inputs: tuple[TensorSpec, ...]) -> tuple[dict, str]:
    """The arrays of an .npz keyed by input name (or one .npy for a single-input artifact), and a description.

    An .npz in the fixtures' golden form (``in:NAME``/``out:NAME`` keys) gives its ``in:`` arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"inputs file '{path}' does not exist", "give an .npz file keyed by input name")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            arrays = {"": data}
        else:
            with data:
                arrays = {k: data[k] for k in data.files}
    except Exception as e:  # numpy raises ValueError/OSError/BadZipFile... for a file it cannot read
        raise RunError(f"inputs file '{path}' cannot be read ({type(e).__name__}: {str(e)[:200]})",
                       "save the inputs with numpy.savez(path, name=array, ...)") from None
    if "" in arrays:
        if len(inputs) != 1:
            raise RunError(f"inputs file '{path}' is one .npy array but the artifact has {len(inputs)} inputs "
                           f"({', '.join(t.name for t in inputs)})", "save an .npz keyed by input name")
        return {inputs[0].name: arrays[""]}, str(path)
    if any(k.startswith("in:") for k in arrays) and not any(k in {t.name for t in inputs} for k in arrays):
        return {k[3:]: v for k, v in arrays.items() if k.startswith("in:")}, f"{path} (its in: arrays)"
    return arrays, str(path)


def random_feed(inputs: tuple[TensorSpec, ...], shapes: dict | None = None, batch: int | None = None,
                seed: int = 0) -> tuple[dict, str]:
    """Seeded random inputs (floats in [-1, 1], integers in [0, 8]) and a description.

    ``shapes`` gives concrete shapes (needed for dynamic dims beyond the
    batch); ``batch`` sets every dynamic leading dim, also in ``shapes``, and
    must equal a static one.
    """
    from .data import load_samples
    from .validate import resolve_shapes

    shapes = dict(shapes or {})
    if batch is not None:
        if batch < 1:
            raise ConfigError(f"--batch must be at least 1, got {batch}", "pass a positive batch size")
        ranked = [t for t in inputs if len(t.shape) > 0]
        if not ranked:
            raise RunError(f"the artifact's inputs are scalars; there is no batch dimension to set to {batch}",
                           "drop --batch")
        for t in ranked:
            lead = t.shape[0]
            if isinstance(lead, int) and lead >= 0:
                if lead != batch:
                    raise RunError(f"the artifact has a fixed batch of {lead} (input '{t.name}' is "
                                   f"{_shape_text(t.shape)}), not {batch}",
                                   f"drop --batch or pass --batch {lead}, or rebuild with a dynamic batch")
            elif t.name in shapes and len(shapes[t.name]) == len(t.shape):
                shapes[t.name] = (batch,) + tuple(shapes[t.name][1:])
    try:
        resolved = resolve_shapes(inputs, shapes, batch or 1)
    except InspectError as e:  # a dynamic dim beyond the batch: the user's flag is missing, not the model broken
        raise RunError(e.cause, e.fix) from None
    samples = load_samples(None, inputs, resolved, what="run", error=RunError, seed=seed, random_count=1)
    return samples[0], f"random (seed {seed})"


@dataclass(frozen=True)
class RunResult:
    outputs: OrderedDict
    notes: tuple[str, ...]


def run(runner, feed: dict) -> RunResult:
    """Adapt ``feed`` (``prepare_feed``), run it once, and return outputs in the layout it was fed in."""
    prepared = prepare_feed(runner.inputs, feed, getattr(runner, "interface", None))
    return RunResult(prepared.results(runner.infer(prepared.feed)), prepared.notes)


def output_stats(value) -> dict:
    """dtype, shape and min/max/mean over the finite values (None where there are none) of an output."""
    arr = np.asarray(value)
    stats = {"dtype": arr.dtype.name, "shape": list(arr.shape), "min": None, "max": None, "mean": None,
             "nonfinite": 0}
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.dtype.kind in "iu":
        if arr.size:
            stats.update(min=int(arr.min()), max=int(arr.max()), mean=float(arr.mean(dtype=np.float64)))
    elif arr.dtype.kind in "fc":
        finite = np.isfinite(arr)
        vals = arr[finite].astype(np.float64)
        stats["nonfinite"] = int(arr.size - vals.size)
        if vals.size:
            stats.update(min=float(vals.min()), max=float(vals.max()), mean=float(vals.mean()))
    return stats


# --------------------------------------------------------------------------- benchmark


def check_bench_counts(warmup: int, iterations: int) -> None:
    if warmup < 0:
        raise ConfigError(f"--warmup must be 0 or more, got {warmup}", "pass a non-negative number of warm-up runs")
    if iterations < 1:
        raise ConfigError(f"--iterations must be at least 1, got {iterations}", "pass a positive number of timed runs")


def feed_batch(feed: dict) -> int:
    """The batch a feed holds: the leading dimension of its first input with one (1 for scalars only)."""
    for arr in feed.values():
        if np.ndim(arr) > 0:
            return int(np.shape(arr)[0])
    return 1


@dataclass(frozen=True)
class BenchResult:
    artifact: str
    format: str
    backend: str
    batch: int
    warmup: int
    latencies_ms: tuple[float, ...]  # one per timed run
    input_shapes: dict = field(default_factory=dict)  # what the artifact was fed: name -> shape
    notes: tuple[str, ...] = ()
    threads: dict | None = None  # onnxruntime: {"intra_op_num_threads": N (0 = default), "cpus": N}
    measured: str = MEASURED

    @property
    def iterations(self) -> int:
        return len(self.latencies_ms)

    @property
    def total_s(self) -> float:
        return float(sum(self.latencies_ms)) / 1000.0

    @property
    def latency(self) -> dict[str, float]:
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        return {"mean": float(lat.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
                "min": float(lat.min()), "max": float(lat.max())}

    @property
    def throughput(self) -> float:
        """Samples per second: batch × iterations / the timed runs' total time."""
        return self.batch * self.iterations / self.total_s if self.total_s > 0 else float("inf")

    def threads_text(self) -> str:
        if self.threads is None:
            return ""
        n = self.threads["intra_op_num_threads"]
        return (f"intra-op threads: {'onnxruntime default (one per physical core)' if n == 0 else n}, "
                f"{self.threads['cpus']} CPU(s) available")

    def to_json(self) -> dict:
        return {"artifact": self.artifact, "format": self.format, "backend": self.backend, "batch": self.batch,
                "warmup": self.warmup, "iterations": self.iterations,
                "input_shapes": {k: list(v) for k, v in self.input_shapes.items()}, "notes": list(self.notes),
                "measured": self.measured, "threads": self.threads, "latency_ms": self.latency,
                "throughput_samples_per_s": self.throughput,
                "throughput_inferences_per_s": self.iterations / self.total_s if self.total_s > 0 else float("inf"),
                "total_s": self.total_s}


def benchmark(runner, feed, warmup: int = 10, iterations: int = 100) -> BenchResult:
    """Time ``runner.infer`` on one feed: ``warmup`` untimed runs, then ``iterations`` timed with perf_counter.

    ``feed`` is a user's feed (adapted by ``prepare_feed``, once, outside the
    timing) or a ``PreparedFeed``. Each timed run is one ``infer`` call:
    host to host, so it includes copying the feed in and the outputs out.
    """
    check_bench_counts(warmup, iterations)
    prepared = feed if isinstance(feed, PreparedFeed) else prepare_feed(runner.inputs, feed,
                                                                       getattr(runner, "interface", None))
    data = prepared.feed
    for _ in range(warmup):
        runner.infer(data)
    times = []
    clock = time.perf_counter
    for _ in range(iterations):
        start = clock()
        runner.infer(data)
        times.append((clock() - start) * 1000.0)
    return BenchResult(artifact=str(getattr(runner, "path", "")), format=runner.format, backend=runner.backend,
                       batch=feed_batch(data), warmup=warmup, latencies_ms=tuple(times),
                       input_shapes={k: tuple(v.shape) for k, v in data.items()}, notes=prepared.notes,
                       threads=getattr(runner, "threads", None))
