"""The lean runtime for a directory written by ``compiler.tftrt``'s ``Converter.save()``.

A serving box or a Jetson has TensorRT, numpy and pycuda (the ``deploy`` extra),
and neither TensorFlow nor tf2onnx nor Polygraphy. ``load(directory)`` runs the
saved engines there: it reads the manifest, picks for each call the first engine
whose optimization profile holds the input shapes (TF-TRT's rule) and runs it
through TensorRT's own API, with device buffers from pycuda. An onnxruntime
artifact (what CPU machines build) runs on onnxruntime, imported only then.

The object returned is used as users used ``tf.saved_model.load`` on a TF-TRT
output: ``model.signatures["serving_default"](**inputs)`` returns a dict keyed
by the SavedModel's output names. Inputs may be numpy arrays or TF tensors.
Outputs are numpy arrays that also have TensorFlow's ``.numpy()``.

Shapes outside every profile follow TF-TRT: with ``allow_build_at_runtime`` and
a builder (the full install; see ``compiler.runtime.load``) a new engine is
built, up to ``maximum_cached_engines``; otherwise the original SavedModel runs
in TensorFlow where TensorFlow is installed, with a warning; otherwise the call
fails naming the profiles. The binding layout, the profile choice and the
buffer sizes are pure functions, tested on any machine.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifacts import TensorSpec
from .errors import RunError

MANIFEST = "tf2trt_manifest.json"
FORMAT = "tf2trt-converted"
VERSION = 1
TENSORRT_PLAN = "tensorrt-plan"
ORT_FORMAT = "onnxruntime-ort"


class TftrtWarning(UserWarning):
    """What a TF-TRT option or fallback does here, said once (Python's default warning filter)."""


# --------------------------------------------------------------------------- manifest

def is_converted(path) -> bool:
    """True for a directory holding our manifest."""
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(path) -> dict:
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"'{path / MANIFEST}' cannot be read ({e})", "save the model again with Converter.save()") \
            from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise RunError(f"'{path}' holds a manifest of format {manifest.get('format')!r} version "
                       f"{manifest.get('version')!r}, not {FORMAT!r} version {VERSION}",
                       "save the model again with this compiler's Converter.save()")
    return manifest


def specs(entries) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(e["name"], e["dtype"], tuple(e["shape"])) for e in entries)


# --------------------------------------------------------------------------- pure parts

def profile_holds(profile: dict, shapes: dict) -> bool:
    """``profile`` in ShapeProfile.to_json form ({name: {min, opt, max}}) holds ``shapes``."""
    for name, dims in profile.items():
        shape = shapes.get(name)
        if shape is None or len(shape) != len(dims["min"]):
            return False
        if any(not lo <= s <= hi for lo, s, hi in zip(dims["min"], shape, dims["max"])):
            return False
    return True


def choose_profile(profiles, shapes: dict) -> int | None:
    """Index of the first profile that holds ``shapes`` (TF-TRT's rule); 0 for an engine without profiles."""
    if not profiles:
        return 0
    return next((i for i, p in enumerate(profiles) if profile_holds(p, shapes)), None)


@dataclass(frozen=True)
class Binding:
    """One IO tensor of an engine, in the engine's order."""

    name: str
    is_input: bool
    dtype: str  # numpy dtype name
    shape: tuple[int, ...]  # -1 = dynamic


def binding_layout(tensors) -> tuple[Binding, ...]:
    """Bindings from the engine's IO tensors ({name, mode, dtype, shape}); inputs first, each group in the
    engine's order. Refuses duplicate names and dtypes numpy cannot hold (they cannot be fed from the host)."""
    seen, out = set(), []
    for t in tensors:
        if t["name"] in seen:
            raise RunError(f"the engine has two IO tensors named '{t['name']}'", "rebuild the engine")
        seen.add(t["name"])
        try:
            dtype = np.dtype(t["dtype"]).name
        except TypeError:
            raise RunError(f"IO tensor '{t['name']}' has dtype {t['dtype']}, which numpy cannot hold",
                           "rebuild with that tensor in a numpy dtype (float32, float16, int32, ...)") from None
        out.append(Binding(t["name"], t["mode"] == "input", dtype, tuple(int(d) for d in t["shape"])))
    return tuple(b for b in out if b.is_input) + tuple(b for b in out if not b.is_input)


def buffer_bytes(binding: Binding, shape) -> int:
    """Bytes a device buffer for ``binding`` needs at ``shape`` (concrete; at least 1, so an empty tensor still
    gets an address)."""
    if len(shape) != len(binding.shape) or any(s < 0 for s in shape):
        raise RunError(f"tensor '{binding.name}' needs a concrete shape of rank {len(binding.shape)}, got "
                       f"{list(shape)}", "set every input's shape before sizing the buffers")
    return max(int(np.prod(shape, dtype=np.int64)) * np.dtype(binding.dtype).itemsize, 1)


def buffer_sizes(bindings, shapes: dict) -> dict[str, int]:
    """Bytes per binding at ``shapes`` (every binding's concrete shape, inputs and outputs)."""
    missing = [b.name for b in bindings if b.name not in shapes]
    if missing:
        raise RunError(f"no shape for tensor(s) {', '.join(missing)}", "give the shape of every binding")
    return {b.name: buffer_bytes(b, shapes[b.name]) for b in bindings}


def conform(feed: dict, inputs: tuple[TensorSpec, ...]) -> OrderedDict:
    """``feed`` (numpy arrays or anything with ``__array__``, e.g. TF tensors) as contiguous arrays in each
    input's dtype: floats to floats and integers to integers, as TensorFlow's conversion would; nothing else."""
    out = OrderedDict()
    for t in inputs:
        arr = np.asarray(feed[t.name])
        target = np.dtype(t.dtype)
        if arr.dtype != target:
            if not (arr.dtype.kind == target.kind == "f" or (arr.dtype.kind in "iu" and target.kind in "iu")
                    or arr.dtype.kind == target.kind == "b"):
                raise TypeError(f"input '{t.name}' has dtype {arr.dtype.name} but the signature takes {target.name}")
            arr = arr.astype(target)
        if len(arr.shape) != len(t.shape) or any(isinstance(d, int) and d >= 0 and d != s
                                                 for d, s in zip(t.shape, arr.shape)):
            raise ValueError(f"input '{t.name}' has shape {list(arr.shape)} but the signature takes "
                             f"{t.shape_text()}")
        out[t.name] = np.ascontiguousarray(arr)
    return out


def bind_arguments(names: tuple[str, ...], args: tuple, kwargs: dict, what: str = "the signature") -> dict:
    """A feed from a call: positional values in ``names``' order, keywords by name (TF's signature rules)."""
    if len(args) > len(names):
        raise TypeError(f"{what} takes {len(names)} input(s) ({', '.join(names)}), got {len(args)} positional")
    feed = dict(zip(names, args))
    for k, v in kwargs.items():
        if k not in names:
            raise TypeError(f"{what} has no input '{k}'; its inputs are: {', '.join(names)}")
        if k in feed:
            raise TypeError(f"{what} got input '{k}' twice (positionally and by name)")
        feed[k] = v
    missing = [n for n in names if n not in feed]
    if missing:
        raise TypeError(f"{what} is missing input(s) {', '.join(missing)}; its inputs are: {', '.join(names)}")
    return feed


class OutputArray(np.ndarray):
    """A numpy array with TensorFlow's ``.numpy()``, so ``outputs["logits"].numpy()`` keeps working."""

    def numpy(self) -> np.ndarray:
        return np.asarray(self)


def as_output(value) -> OutputArray:
    return np.asarray(value).view(OutputArray)


def runtime_profile(shapes: dict, implicit_batch: bool, inputs: tuple[TensorSpec, ...] = ()) -> dict:
    """The profile of an engine built at run time for ``shapes``: exactly those, or with implicit batch (TF-TRT
    without dynamic shape) any batch up to the one seen, for inputs whose batch is dynamic (all, without
    ``inputs``)."""
    static_batch = {t.name for t in inputs if t.shape and 0 not in t.dynamic_dims}
    out = {}
    for name, shape in shapes.items():
        lower = implicit_batch and len(shape) and name not in static_batch
        lo = [1] + list(shape[1:]) if lower else list(shape)
        out[name] = {"min": lo, "opt": list(shape), "max": list(shape)}
    return out


# --------------------------------------------------------------------------- engines and fallbacks

class Engine:
    """An opened engine (a runner with ``inputs`` and ``infer``) and the profiles it was built with."""

    def __init__(self, runner, profiles, origin: str):
        self.runner, self.profiles, self.origin = runner, list(profiles or ()), origin

    def holds(self, shapes: dict) -> bool:
        return choose_profile(self.profiles, {k: v for k, v in shapes.items()}) is not None

    def run(self, feed: dict) -> dict:
        return self.runner.infer(conform(feed, self.runner.inputs))


class NativeFallback:
    """The original SavedModel (the converted directory's ``native/`` copy) run in TensorFlow."""

    def __init__(self, directory: Path | None, tags, key: str):
        self.directory, self.tags, self.key, self._fn = directory, list(tags), key, None

    def why_not(self) -> str | None:
        import importlib.util

        if self.directory is None or not Path(self.directory).is_dir():
            return "the directory holds no copy of the original SavedModel"
        if importlib.util.find_spec("tensorflow") is None:
            return "TensorFlow is not installed"
        return None

    def run(self, feed: dict) -> dict:
        import tensorflow as tf

        if self._fn is None:
            self._fn = tf.saved_model.load(str(self.directory), tags=self.tags).signatures[self.key]
        result = self._fn(**{k: tf.convert_to_tensor(v) for k, v in feed.items()})
        return {k: v.numpy() for k, v in result.items()}


class Signature:
    """``signatures[key]``: called with keywords (or positionally, in the signature's order)."""

    def __init__(self, model: ConvertedModel, key: str):
        self._model, self.key = model, key

    @property
    def structured_input_signature(self):
        return (), {t.name: t for t in self._model.inputs}

    @property
    def structured_outputs(self):
        return {t.name: t for t in self._model.outputs}

    def __call__(self, *args, **kwargs) -> dict:
        feed = bind_arguments(self._model.positional, args, kwargs, f"signature '{self.key}'")
        return {k: as_output(v) for k, v in self._model.infer(feed).items()}


class ConvertedModel:
    """A loaded converted directory. Also a runtime runner (``inputs``, ``outputs``, ``format``, ``backend``,
    ``infer``), so ``python -m compiler run/bench DIR`` work on it."""

    format = FORMAT
    interface = None

    def __init__(self, path: Path, manifest: dict, engines: list[Engine], build=None, workdir: Path | None = None):
        self.path, self.manifest, self.engines, self._build = Path(path), manifest, engines, build
        self._workdir = workdir
        self.inputs, self.outputs = specs(manifest["inputs"]), specs(manifest["outputs"])
        self.positional = tuple(manifest["positional"])
        native = manifest.get("native_saved_model")
        self.fallback = NativeFallback(self.path / native if native else None, manifest["tags"],
                                       manifest["signature_key"])
        self.signatures = {manifest["signature_key"]: Signature(self, manifest["signature_key"])}
        self._warned: set = set()

    @property
    def backend(self) -> str:
        return self.engines[0].runner.backend if self.engines else "tensorflow"

    def __call__(self, *args, **kwargs) -> dict:
        return self.signatures[self.manifest["signature_key"]](*args, **kwargs)

    def infer(self, feed: dict) -> OrderedDict:
        feed = bind_arguments(self.positional, (), dict(feed), "the model")
        feed = conform(feed, self.inputs)
        shapes = {k: tuple(v.shape) for k, v in feed.items()}
        engine = next((e for e in self.engines if e.holds(shapes)), None) or self._miss(shapes)
        outputs = engine.run(feed) if engine is not None else self.fallback.run(feed)
        return self._named(outputs)

    def _named(self, outputs: dict) -> OrderedDict:
        names = [t.name for t in self.outputs]
        if set(names) <= set(outputs):
            return OrderedDict((n, outputs[n]) for n in names)
        return OrderedDict(zip(names, outputs.values()))  # an engine whose outputs were renamed: by position

    def _miss(self, shapes: dict) -> Engine | None:
        """An engine built for ``shapes`` (allow_build_at_runtime), or None for the TensorFlow fallback."""
        m = self.manifest
        room = len(self.engines) < m["maximum_cached_engines"]
        if m["allow_build_at_runtime"] and self._build is not None and room:
            return self._build_for(shapes)
        why = self.fallback.why_not()
        text = ", ".join(f"{k}: {list(v)}" for k, v in shapes.items())
        if not m["allow_build_at_runtime"]:
            reason = "allow_build_at_runtime was False"
        elif self._build is None:
            reason = "no engine builder here (the lean runtime)"
        else:
            reason = f"maximum_cached_engines={m['maximum_cached_engines']} engine(s) are cached already"
        if why is not None:
            held = "; ".join(json.dumps(p) for e in self.engines for p in e.profiles) or "none"
            raise RunError(f"no engine holds input shapes {text} ({reason}) and the TensorFlow fallback is "
                           f"unavailable: {why}; profiles: {held}",
                           "feed shapes inside a profile, or convert again with build() inputs of these shapes")
        key = tuple(sorted(shapes.items()))
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"input shapes {text} are outside every engine's optimization profiles and {reason}; "
                          "running the original SavedModel in TensorFlow, as TF-TRT did", TftrtWarning, stacklevel=4)
        return None

    def _build_for(self, shapes: dict) -> Engine:
        profile = runtime_profile(shapes, not self.manifest["use_dynamic_shape"], self.inputs)
        warnings.warn(f"building a new engine for input shapes {profile} (allow_build_at_runtime=True)",
                      TftrtWarning, stacklevel=5)
        runner = self._build(self.path / self.manifest["graph"], self._scratch() / f"runtime_{len(self.engines)}",
                             [profile], self.manifest)
        engine = Engine(runner, [profile], "built at run time")
        self.engines.append(engine)
        return engine

    def _scratch(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="tf2trt-engines-"))
            weakref.finalize(self, shutil.rmtree, self._workdir, True)
        return self._workdir


def open_engines(path: Path, manifest: dict, open_engine, build=None) -> tuple[list[Engine], Path | None]:
    """The saved engines, opened; those saved without their plan (``save_gpu_specific_engines=False``) or that
    cannot run here (a plan from another GPU or TensorRT) rebuilt from the saved graph when a builder is given.
    Returns (engines, the scratch directory rebuilt engines live in, or None)."""
    engines, scratch = [], None
    for k, entry in enumerate(manifest["engines"]):
        failure = None
        if entry.get("file"):
            try:
                engines.append(Engine(open_engine(path / entry["file"]), entry["profiles"], "saved"))
                continue
            except RunError as e:
                failure = e
        if build is None:
            if failure is not None:
                raise failure
            raise RunError(f"engine {k} of '{path}' was saved without its plan (save_gpu_specific_engines=False) "
                           "and this runtime cannot build engines",
                           "load it with compiler.tftrt.load (the full install builds it from the saved graph)")
        if failure is not None:
            warnings.warn(f"saved engine {entry['file']} cannot run here ({failure.cause}); rebuilding it from "
                          "the saved graph", TftrtWarning, stacklevel=3)
        if scratch is None:
            scratch = Path(tempfile.mkdtemp(prefix="tf2trt-engines-"))
        runner = build(path / manifest["graph"], scratch / f"engine_{k}", entry["profiles"], manifest)
        engines.append(Engine(runner, entry["profiles"], "rebuilt at load"))
    return engines, scratch


def load(path, open_engine=None, build=None) -> ConvertedModel:
    """Load a converted directory. ``open_engine(path) -> runner`` opens one engine file (default: this module's
    lean runners); ``build(graph, out, profiles, manifest) -> runner`` builds one (default: none, as on a box with
    only the TensorRT runtime)."""
    path = Path(path)
    if not is_converted(path):
        raise RunError(f"'{path}' is not a directory written by Converter.save() (no {MANIFEST})",
                       "pass the output_saved_model_dir given to save()")
    manifest = read_manifest(path)
    engines, scratch = open_engines(path, manifest, open_engine or open_lean, build)
    model = ConvertedModel(path, manifest, engines, build, scratch)
    if scratch is not None:
        weakref.finalize(model, shutil.rmtree, scratch, True)
    return model


# --------------------------------------------------------------------------- lean runners

def detect(path: Path) -> str:
    head = Path(path).read_bytes()[:8]
    if head[:4] == b"ftrt":
        return TENSORRT_PLAN
    if head[4:8] == b"ORTM":
        return ORT_FORMAT
    raise RunError(f"'{path}' is neither a TensorRT plan nor an onnxruntime artifact", "save the model again")


def open_lean(path: Path):
    return TrtDeployRunner(path) if detect(path) == TENSORRT_PLAN else OrtDeployRunner(path)


class OrtDeployRunner:
    """An onnxruntime artifact (the CPU engine) on onnxruntime's CPU provider."""

    backend, format = "onnxruntime", ORT_FORMAT

    def __init__(self, path: Path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.add_session_config_entry("session.load_model_format", "ORT")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        kinds = {"float": "float32", "double": "float64"}

        def spec(a):
            inner = a.type[len("tensor("):-1]
            return TensorSpec(a.name, kinds.get(inner, inner), tuple(d if isinstance(d, int) else None
                                                                     for d in a.shape))

        self.inputs = tuple(spec(a) for a in self.session.get_inputs())
        self.outputs = tuple(spec(a) for a in self.session.get_outputs())

    def infer(self, feed: dict) -> OrderedDict:
        names = [t.name for t in self.outputs]
        return OrderedDict(zip(names, self.session.run(names, dict(feed))))


class TrtDeployRunner:
    """A TensorRT plan run with TensorRT's tensor API and pycuda buffers; the profile is chosen per call."""

    backend, format = "tensorrt", TENSORRT_PLAN

    def __init__(self, path: Path):
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda
        import tensorrt as trt

        self.path, self._cuda = Path(path), cuda
        self._trt_runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._trt_runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise RunError(f"TensorRT cannot deserialize '{path}'",
                           "a plan runs only on the TensorRT version and GPU it was built for; rebuild it here")
        engine = self._engine
        tensors = [{"name": n, "mode": "input" if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT else "output",
                    "dtype": np.dtype(trt.nptype(engine.get_tensor_dtype(n))).name,
                    "shape": list(engine.get_tensor_shape(n))}
                   for n in (engine.get_tensor_name(i) for i in range(engine.num_io_tensors))]
        self.bindings = binding_layout(tensors)
        spec = lambda b: TensorSpec(b.name, b.dtype, tuple(d if d >= 0 else None for d in b.shape))  # noqa: E731
        self.inputs = tuple(spec(b) for b in self.bindings if b.is_input)
        self.outputs = tuple(spec(b) for b in self.bindings if not b.is_input)
        dynamic = [b.name for b in self.bindings if b.is_input and -1 in b.shape]
        self.profiles = [{n: dict(zip(("min", "opt", "max"), map(list, engine.get_tensor_profile_shape(n, k))))
                          for n in dynamic} for k in range(engine.num_optimization_profiles)] if dynamic else []
        self._context = engine.create_execution_context()
        self._stream = cuda.Stream()
        self._profile, self._device = 0, {}

    def _buffer(self, name: str, nbytes: int):
        held = self._device.get(name)
        if held is None or held[1] < nbytes:
            held = (self._cuda.mem_alloc(nbytes), nbytes)
            self._device[name] = held
        return held[0]

    def infer(self, feed: dict) -> OrderedDict:
        cuda, ctx = self._cuda, self._context
        shapes = {k: tuple(v.shape) for k, v in feed.items()}
        index = choose_profile(self.profiles, shapes)
        if index is None:
            raise RunError(f"no optimization profile of '{self.path.name}' holds {shapes}", "feed shapes in a profile")
        if index != self._profile:
            ctx.set_optimization_profile_async(index, self._stream.handle)
            self._profile = index
        for b in self.bindings:
            if b.is_input:
                ctx.set_input_shape(b.name, shapes[b.name])
        all_shapes = {**shapes, **{b.name: tuple(ctx.get_tensor_shape(b.name)) for b in self.bindings
                                   if not b.is_input}}
        sizes = buffer_sizes(self.bindings, all_shapes)
        results = OrderedDict()
        for b in self.bindings:
            ptr = self._buffer(b.name, sizes[b.name])
            ctx.set_tensor_address(b.name, int(ptr))
            if b.is_input:
                cuda.memcpy_htod_async(ptr, np.ascontiguousarray(feed[b.name], dtype=b.dtype), self._stream)
            else:
                results[b.name] = np.empty(all_shapes[b.name], dtype=b.dtype)
        if not ctx.execute_async_v3(self._stream.handle):
            raise RunError(f"TensorRT failed to run '{self.path.name}'", "check the inputs' shapes and values")
        for name, host in results.items():
            cuda.memcpy_dtoh_async(host, self._buffer(name, sizes[name]), self._stream)
        self._stream.synchronize()
        return results
