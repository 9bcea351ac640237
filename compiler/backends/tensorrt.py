"""TensorRT backend on Polygraphy's TensorRT loaders. Imports TensorRT lazily.

Networks are always built strongly typed: TensorRT 11 has no other kind, and
on TensorRT 10 it gives the same single path, with precision decided by the
ONNX graph (see DESIGN.md). Polygraphy's loaders absorb the API differences
between TensorRT 10 and 11.

Nothing in this module can run without TensorRT and an NVIDIA GPU; its tests
are marked ``tensorrt`` and skipped with that reason elsewhere.
"""
from __future__ import annotations

import ctypes
import importlib.util
from collections import OrderedDict
from pathlib import Path

from ..artifacts import EngineArtifact, TensorSpec, atomic_output
from ..config import BuildConfig, Shape
from ..errors import BuildError, RunError

INSTALL_HINT = ("install TensorRT and its Python bindings on a machine with an NVIDIA GPU and driver "
                "(pip install 'tf2trt-compiler[tensorrt]'), or use --backend onnxruntime, which runs on CPU")


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


def _require() -> None:
    ok, why = availability()
    if not ok:
        raise BuildError(f"the TensorRT backend cannot run here: {why}", INSTALL_HINT)


def _profile(inputs: tuple[TensorSpec, ...], shapes: dict[str, Shape]):
    """One optimization profile pinned to the validation shapes, for inputs with dynamic dims."""
    from polygraphy.backend.trt import Profile

    profile = Profile()
    for t in inputs:
        if t.dynamic_dims:
            shape = shapes.get(t.name)
            if shape is None:
                raise BuildError(f"input '{t.name}' has dynamic shape {t.shape_text()} and no shape was given",
                                 f"pass --input-shapes {t.name}:...")
            profile.add(t.name, min=shape, opt=shape, max=shape)
    return [profile] if profile else None


def build(onnx_path: Path, out: Path, cfg: BuildConfig = BuildConfig(),
          shapes: dict[str, Shape] | None = None, inputs: tuple[TensorSpec, ...] = ()) -> EngineArtifact:
    _require()
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath
    from polygraphy.exception import PolygraphyException

    pools = {trt.MemoryPoolType.WORKSPACE: cfg.workspace_mib << 20} if cfg.workspace_mib else None
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)
    config = CreateConfig(profiles=_profile(inputs, shapes or {}), memory_pool_limits=pools)
    try:
        plan = EngineBytesFromNetwork(network, config=config)()
    except PolygraphyException as e:
        raise BuildError(f"TensorRT could not build the engine: {str(e).splitlines()[0][:300]}",
                         "run `python -m compiler check-trt` on the model, or --debug for the parser log") from e
    with atomic_output(Path(out), "engine") as tmp:
        tmp.write_bytes(bytes(plan))
    return EngineArtifact(path=Path(out), backend="tensorrt", format="tensorrt-plan",
                          summary={"bytes": Path(out).stat().st_size, "tensorrt": trt.__version__,
                                   "strongly_typed": True})


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

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    supported = bool(parser.supports_model_v2(Path(onnx_path).read_bytes(), str(onnx_path)))
    subgraphs = [{"supported": bool(parser.is_subgraph_supported(i)), "nodes": list(parser.get_subgraph_nodes(i))}
                 for i in range(parser.num_subgraphs)]
    return {"supported": supported, "subgraphs": subgraphs, "tensorrt": trt.__version__}


class TrtPlanRunner:
    """Runs a serialized TensorRT plan through Polygraphy's TrtRunner (device buffers handled)."""

    backend, format = "tensorrt", "tensorrt-plan"

    def __init__(self, path: Path):
        ok, why = availability()
        if not ok:
            raise RunError(f"'{path}' is a TensorRT plan, but TensorRT cannot run here: {why}", INSTALL_HINT)
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        self.path = Path(path)
        self._runner = TrtRunner(EngineFromBytes(self.path.read_bytes()))
        self._runner.activate()
        meta = self._runner.get_input_metadata(use_numpy_dtypes=False)
        self.inputs = tuple(TensorSpec(n, m.dtype.numpy().name if m.dtype else "float32", tuple(m.shape))
                            for n, m in meta.items())

    def infer(self, feed):
        return OrderedDict((k, v.copy()) for k, v in self._runner.infer(feed).items())

    def polygraphy_runner(self, name: str):
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        return TrtRunner(EngineFromBytes(self.path.read_bytes()), name=name)
