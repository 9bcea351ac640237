"""TensorRT backend on Polygraphy's TensorRT loaders. Imports TensorRT lazily.

Networks are always built strongly typed: TensorRT 11 has no other kind, and
on TensorRT 10 it gives the same single path, with precision decided by the
ONNX graph (see DESIGN.md). Polygraphy's loaders absorb the API differences
between TensorRT 10 and 11 (``CreateConfig``, ``EngineBytesFromNetwork``,
``EngineFromBytes``, ``TrtRunner``).

The module has two halves. The pure half (``ParserIssue``/``explain_parser_errors``,
``config_options``, ``summarize_layers``, the profile logic in
``compiler/profiles.py``) holds every decision and is tested on any machine.
The TensorRT half (``build``, ``engine_summary``, ``TrtPlanRunner``,
``parser_verdict``) only calls TensorRT and Polygraphy with what the pure half
decided; it runs only where TensorRT and an NVIDIA GPU are present, and its
tests are marked ``tensorrt`` and skipped with that reason elsewhere.
"""
from __future__ import annotations

import ctypes
import importlib.util
import io
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import EngineArtifact, TensorSpec, atomic_output
from ..config import BuildConfig, Shape
from ..errors import BuildError, RunError
from ..sandbox import check_onnx_file

INSTALL_HINT = ("install TensorRT and its Python bindings on a machine with an NVIDIA GPU and driver "
                "(pip install 'tf2trt-compiler[tensorrt]'), or use --backend onnxruntime, which runs on CPU")

# --hardware-compatibility → trt.HardwareCompatibilityLevel member names (TensorRT 10: NONE, AMPERE_PLUS,
# SAME_COMPUTE_CAPABILITY).
HARDWARE_LEVELS = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}


# ---------------------------------------------------------------------------------------------- pure half


@dataclass(frozen=True)
class ParserIssue:
    """One error of TensorRT's ONNX parser (``trt.OnnxParser.get_error(i)``), as plain data."""

    code: str  # trt.ErrorCode name, e.g. UNSUPPORTED_NODE
    desc: str
    node: int = -1  # index into graph.node; -1 when the error is not about a node
    node_name: str = ""
    op: str = ""
    function_stack: tuple[str, ...] = ()  # ONNX local functions the node sits in, outermost first

    @classmethod
    def from_trt(cls, err) -> ParserIssue:
        """From a ``tensorrt.ParserError`` (TensorRT >= 10: code, desc, node, node_name, node_operator,
        local_function_stack)."""
        return cls(code=getattr(err.code(), "name", str(err.code())), desc=str(err.desc()), node=int(err.node()),
                   node_name=str(err.node_name()), op=str(err.node_operator()),
                   function_stack=tuple(str(f) for f in err.local_function_stack()))


def explain_parser_errors(issues: list[ParserIssue], model) -> list[dict]:
    """Each parser error with its ONNX node named (from the index where the parser gave none) and the pass that
    created the node (``passes.provenance``; absent = the exporter made it)."""
    from passes import provenance

    nodes = list(model.graph.node) if model is not None else []
    origin = provenance(model) if model is not None else {}
    out = []
    for issue in issues:
        name, op = issue.node_name, issue.op
        if 0 <= issue.node < len(nodes):
            name = name or nodes[issue.node].name
            op = op or nodes[issue.node].op_type
        entry = {"code": issue.code, "message": issue.desc, "node": name or None, "op": op or None,
                 "node_index": issue.node if issue.node >= 0 else None,
                 "created_by": (origin.get(name, "export") if name else None)}
        if issue.function_stack:
            entry["function_stack"] = list(issue.function_stack)
        out.append(entry)
    return out


def parser_failure(explained: list[dict], limit: int = 3) -> str:
    """One line naming the first ``limit`` parser errors: node, op, the pass that made it, message."""
    parts = []
    for e in explained[:limit]:
        where = f"{e['node']} ({e['op']}, from {e['created_by']})" if e["node"] else "the model"
        parts.append(f"{where}: {' '.join(e['message'].split())[:200]}")
    more = f"; and {len(explained) - limit} more (see the report's error.details)" if len(explained) > limit else ""
    return f"TensorRT's ONNX parser rejected {len(explained)} error(s): " + "; ".join(parts) + more


def config_options(cfg: BuildConfig) -> dict:
    """``polygraphy.backend.trt.CreateConfig`` keyword arguments for ``cfg``, TensorRT enums given by name
    (``resolve_enums`` turns them into TensorRT's). Options left at TensorRT's default are not passed."""
    opts: dict = {}
    if cfg.workspace_mib:
        opts["memory_pool_limits"] = {"WORKSPACE": cfg.workspace_mib << 20}
    if cfg.builder_opt_level is not None:
        opts["builder_optimization_level"] = cfg.builder_opt_level
    if cfg.hardware_compatibility != "none":
        opts["hardware_compatibility_level"] = HARDWARE_LEVELS[cfg.hardware_compatibility]
    if cfg.version_compatible:
        opts["version_compatible"] = True
    if cfg.exclude_lean_runtime:
        opts["exclude_lean_runtime"] = True
    if cfg.timing_cache is not None and Path(cfg.timing_cache).is_file():
        opts["load_timing_cache"] = str(cfg.timing_cache)
    # DETAILED keeps layer names, types and precisions in the plan for engine_summary (Polygraphy's default too).
    opts["profiling_verbosity"] = "DETAILED"
    return opts


def resolve_enums(opts: dict, trt) -> dict:
    """``config_options`` with enum names replaced by the members of the ``trt`` module given."""
    out = dict(opts)
    if "memory_pool_limits" in out:
        out["memory_pool_limits"] = {getattr(trt.MemoryPoolType, k): v for k, v in out["memory_pool_limits"].items()}
    if "hardware_compatibility_level" in out:
        out["hardware_compatibility_level"] = getattr(trt.HardwareCompatibilityLevel,
                                                      out["hardware_compatibility_level"])
    out["profiling_verbosity"] = getattr(trt.ProfilingVerbosity, out["profiling_verbosity"])
    return out


# Substrings of the inspector's "Format/Datatype" (TensorRT 10) or "Datatype" (TensorRT 11) → our names.
# Longer names first: "BFLOAT16" contains "FLOAT", "UINT8" contains "INT8".
_PRECISIONS = (("BFLOAT16", "bf16"), ("FP8", "fp8"), ("FLOAT8", "fp8"), ("FP4", "fp4"), ("FLOAT4", "fp4"),
               ("FP16", "fp16"), ("HALF", "fp16"), ("FP32", "fp32"), ("FLOAT", "fp32"), ("UINT8", "uint8"),
               ("INT64", "int64"), ("INT32", "int32"), ("INT8", "int8"), ("INT4", "int4"), ("BOOL", "bool"))


def _precision_of(tensor: dict) -> str | None:
    text = tensor.get("Format/Datatype") or " ".join(str(tensor.get(k, "")) for k in ("Datatype", "Format"))
    upper = text.upper()
    return next((name for key, name in _PRECISIONS if key in upper), None)


def summarize_layers(layers: list) -> dict:
    """Layer count, layer types and the precision each layer outputs, from the engine inspector's per-layer
    JSON (``IEngineInspector.get_layer_information(i, LayerInformationFormat.JSON)``, parsed). A plan built
    without DETAILED profiling verbosity gives only names: then only the count is known."""
    types, precisions = Counter(), Counter()
    detailed = all(isinstance(layer, dict) for layer in layers)
    for layer in layers if detailed else ():
        types[layer.get("LayerType", "Unknown")] += 1
        outputs = layer.get("Outputs") or []
        precisions[(_precision_of(outputs[0]) if outputs else None) or "unknown"] += 1
    summary = {"layers": len(layers)}
    if detailed:
        summary["layer_types"] = dict(types.most_common())
        summary["layer_precisions"] = dict(precisions.most_common())
    return summary


def io_summary(tensors: list[dict]) -> list[dict]:
    """Engine IO bindings as the report shows them (already plain data: name, mode, dtype, shape, profiles)."""
    return [{k: t[k] for k in ("name", "mode", "dtype", "shape", "profiles") if k in t} for t in tensors]


# ------------------------------------------------------------------------------------------ TensorRT half


def _cuda_device_count() -> int:
    """GPUs visible to the CUDA driver, asked directly so no CUDA Python package is needed."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if lib.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        return count.value if lib.cuDeviceGetCount(ctypes.byref(count)) == 0 else 0
    return 0


def availability() -> tuple[bool, str]:
    """(True, version) when a TensorRT build can run here, else (False, the reason)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False, "the tensorrt Python package is not installed"
    try:
        import tensorrt as trt
    except Exception as e:  # the PyPI stub raises various errors when native libs are missing
        return False, f"the tensorrt package does not load ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    if _cuda_device_count() < 1:
        return False, "no NVIDIA GPU is visible to the CUDA driver"
    return True, trt.__version__


def _require(error=BuildError) -> None:
    ok, why = availability()
    if not ok:
        raise error(f"the TensorRT backend cannot run here: {why}", INSTALL_HINT)


def _load_plugins(plugins) -> None:
    """Load plugin libraries into the process (Polygraphy's ``LoadPlugins`` does the ctypes.CDLL), so the
    parser and the runtime find the plugin creators they register."""
    if plugins:
        from polygraphy.backend.trt import LoadPlugins

        LoadPlugins(plugins=[str(p) for p in plugins])()


def _parse(onnx_path: Path):
    """(builder, network, parser) for the model, strongly typed; every parser error raised as one BuildError
    whose details list them all, each with its node and the pass that created it."""
    import onnx
    import tensorrt as trt
    from polygraphy.backend.trt import CreateNetwork
    from polygraphy.backend.trt.util import get_trt_logger

    check_onnx_file(onnx_path)  # the parser reads external data from beside the file
    builder, network = CreateNetwork(strongly_typed=True)()
    trt.init_libnvinfer_plugins(get_trt_logger(), "")
    parser = trt.OnnxParser(network, get_trt_logger())
    ok = parser.parse_from_file(str(onnx_path))  # from the file, so external weights resolve
    issues = [ParserIssue.from_trt(parser.get_error(i)) for i in range(parser.num_errors)]
    if ok and not issues:
        return builder, network, parser
    if not issues:
        issues = [ParserIssue("UNKNOWN", "parse_from_file returned False without an error")]
    explained = explain_parser_errors(issues, onnx.load(str(onnx_path), load_external_data=False))
    raise BuildError(parser_failure(explained),
                     "fix or rewrite the nodes named (`python -m compiler check-trt MODEL` explains known limits; "
                     "--rules FILE.py adds a rewrite), or load the plugin that implements them with --plugins",
                     details={"parser_errors": explained})


def _polygraphy_profiles(profiles):
    from polygraphy.backend.trt import Profile

    out = []
    for p in profiles:
        profile = Profile()
        for name in p.min:
            profile.add(name, min=p.min[name], opt=p.opt[name], max=p.max[name])
        out.append(profile)
    return out or None


def build(onnx_path: Path, out: Path, cfg: BuildConfig = BuildConfig(), profiles: tuple = ()) -> EngineArtifact:
    """Parse, build and serialize a plan to ``out`` (atomically); ``profiles`` are checked ShapeProfiles."""
    _require()
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, EngineFromBytes
    from polygraphy.exception import PolygraphyException

    _load_plugins(cfg.plugins)
    network = _parse(Path(onnx_path))
    options = config_options(cfg)
    config = CreateConfig(profiles=_polygraphy_profiles(profiles), **resolve_enums(options, trt))
    cache = io.BytesIO() if cfg.timing_cache is not None else None
    try:
        plan = EngineBytesFromNetwork(network, config=config, save_timing_cache=cache)()
    except PolygraphyException as e:
        raise BuildError(f"TensorRT could not build the engine: {str(e).splitlines()[0][:300]}",
                         "try a larger --workspace, simpler profiles, or --debug for TensorRT's log") from e
    with atomic_output(Path(out), "engine") as tmp:
        tmp.write_bytes(bytes(plan))
    if cache is not None and cache.getbuffer().nbytes:
        with atomic_output(Path(cfg.timing_cache), "timing cache") as tmp:
            tmp.write_bytes(cache.getvalue())
    summary = {"bytes": Path(out).stat().st_size, "tensorrt": trt.__version__, "strongly_typed": True,
               "options": {k: v for k, v in options.items() if k != "load_timing_cache"},
               "profiles": [p.to_json() for p in profiles],
               "plugins": [str(p) for p in cfg.plugins],
               "timing_cache": None if cfg.timing_cache is None else
               {"path": str(cfg.timing_cache), "loaded": "load_timing_cache" in options, "saved": cache is not None}}
    summary.update(engine_summary(EngineFromBytes(bytes(plan))()))
    return EngineArtifact(path=Path(out), backend="tensorrt", format="tensorrt-plan", summary=summary)


def engine_io(engine) -> list[dict]:
    """Every IO tensor of a deserialized engine: name, mode, dtype, shape (-1 = dynamic), per-profile shapes."""
    import numpy as np
    import tensorrt as trt

    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        dtype = engine.get_tensor_dtype(name)
        try:
            dtype_name = np.dtype(trt.nptype(dtype)).name
        except TypeError:  # bf16 / fp8 / fp4 have no numpy type
            dtype_name = dtype.name.lower()
        entry = {"name": name, "mode": "input" if is_input else "output", "dtype": dtype_name,
                 "shape": [int(d) for d in engine.get_tensor_shape(name)]}
        if is_input and any(d < 0 for d in entry["shape"]):
            entry["profiles"] = [[list(s) for s in engine.get_tensor_profile_shape(name, k)]
                                 for k in range(engine.num_optimization_profiles)]
        tensors.append(entry)
    return tensors


def engine_summary(engine) -> dict:
    """What TF-TRT's ``summary()`` showed, for our plan: IO bindings, layers, their precisions, profiles."""
    import json

    import tensorrt as trt

    inspector = engine.create_engine_inspector()
    # TensorRT 10+ lists each layer once however many profiles the engine has (Polygraphy reads it the same way).
    count = engine.num_layers // max(engine.num_optimization_profiles, 1)
    layers = []
    for i in range(count):
        text = inspector.get_layer_information(i, trt.LayerInformationFormat.JSON)
        try:
            layers.append(json.loads(text))
        except ValueError:  # a plan without DETAILED verbosity gives the bare layer name
            layers.append(text)
    return {"io": io_summary(engine_io(engine)), "num_optimization_profiles": engine.num_optimization_profiles,
            "device_memory_bytes": int(engine.device_memory_size_v2 if hasattr(engine, "device_memory_size_v2")
                                       else engine.device_memory_size),
            **summarize_layers(layers)}


def parser_verdict(onnx_path: Path) -> dict | None:
    """TensorRT's own parser on the model, where TensorRT is installed (else None).

    Uses ``OnnxParser.supports_model_v2`` and its subgraph queries (TensorRT
    10+); the result lists, per subgraph the parser carved out, whether it is
    supported and the ONNX node indices in it.
    """
    ok, _ = availability()
    if not ok:
        return None
    import tensorrt as trt
    from polygraphy.backend.trt import CreateNetwork
    from polygraphy.backend.trt.util import get_trt_logger

    check_onnx_file(onnx_path)  # the parser may read external data from beside the file
    _, network = CreateNetwork(strongly_typed=True)()
    parser = trt.OnnxParser(network, get_trt_logger())
    supported = bool(parser.supports_model_v2(Path(onnx_path).read_bytes(), str(onnx_path)))
    subgraphs = [{"supported": bool(parser.is_subgraph_supported(i)), "nodes": list(parser.get_subgraph_nodes(i))}
                 for i in range(parser.num_subgraphs)]
    return {"supported": supported, "subgraphs": subgraphs, "tensorrt": trt.__version__}


class TrtPlanRunner:
    """Runs a serialized TensorRT plan through Polygraphy's TrtRunner (device buffers handled), choosing for
    each feed the first optimization profile that holds its shapes (TF-TRT's rule)."""

    backend, format = "tensorrt", "tensorrt-plan"

    def __init__(self, path: Path, plugins=()):
        _require(RunError)
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        from ..interface import Interface
        from ..profiles import ShapeProfile

        self.path, self.plugins = Path(path), tuple(plugins)
        self.interface = Interface()  # a plan carries no ONNX metadata
        _load_plugins(self.plugins)
        try:
            engine = EngineFromBytes(self.path.read_bytes())()
        except Exception as e:  # Polygraphy raises PolygraphyException; TensorRT its own errors
            raise RunError(f"TensorRT cannot deserialize '{path}' ({str(e).splitlines()[0][:200]})",
                           "a plan runs only on the TensorRT version (or, with --version-compatible, the major) "
                           "and GPU it was built for, with its --plugins loaded; rebuild it here") from None
        io_tensors = engine_io(engine)
        self.inputs = tuple(TensorSpec(t["name"], t["dtype"], tuple(d if d >= 0 else None for d in t["shape"]))
                            for t in io_tensors if t["mode"] == "input")
        self.outputs = tuple(TensorSpec(t["name"], t["dtype"], tuple(d if d >= 0 else None for d in t["shape"]))
                             for t in io_tensors if t["mode"] == "output")
        dynamic = [t for t in io_tensors if "profiles" in t]
        self.profiles = tuple(
            ShapeProfile(*({t["name"]: tuple(t["profiles"][k][j]) for t in dynamic} for j in range(3)))
            for k in range(engine.num_optimization_profiles)) if dynamic else ()
        self._engine = engine
        self._runner = TrtRunner(engine)
        self._runner.activate()
        self._profile = 0

    def infer(self, feed):
        from ..profiles import choose_profile

        if self.profiles:
            shapes: dict[str, Shape] = {k: tuple(v.shape) for k, v in feed.items()}
            index = choose_profile(self.profiles, shapes)
            if index is None:
                raise RunError(f"no optimization profile of '{self.path.name}' holds input shapes "
                               + ", ".join(f"{k}: {list(v)}" for k, v in shapes.items()),
                               "feed shapes within a profile: " + " | ".join(p.text() for p in self.profiles))
            if index != self._profile:
                self._runner.set_profile(index)
                self._profile = index
        return OrderedDict((k, v.copy()) for k, v in self._runner.infer(feed).items())

    def polygraphy_runner(self, name: str):
        """A second Polygraphy runner (its own execution context) on the engine already deserialized here."""
        from polygraphy.backend.trt import TrtRunner

        return TrtRunner(self._engine, name=name)
