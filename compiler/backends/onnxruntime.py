"""The embedded default backend: a pre-optimized onnxruntime model in ORT format.

onnxruntime applies its graph optimizations once at build time (level
EXTENDED: fusions that are valid on any CPU, no hardware-specific layouts) and
serializes the result in its ORT flatbuffer format, which later loads without
re-optimizing. The file is recognisable from its content (``ORTM`` at bytes
4-8), so nothing mistakes it for a TensorRT plan.
"""
from __future__ import annotations

from pathlib import Path

from ..artifacts import EngineArtifact, atomic_output
from ..config import BuildConfig
from ..errors import BuildError
from ..runtime import ORT_FORMAT, detect_format
from ..sandbox import check_onnx_file

# onnxruntime rewrites we refuse, each with the reason. Pad_Fusion folds a
# constant-zero Pad into the next op's `pads`; for MaxPool those pads act as
# -inf, not 0, so on negative inputs (ResNetV2's stem: ZeroPadding2D then
# MaxPool, no ReLU between) the border maxima change: 3.7e-4 on a random-weight
# ResNet50V2, found by the engine seam. Without it the artifact matches the
# unoptimized graph exactly.
DISABLED_OPTIMIZERS = ("Pad_Fusion",)


def build(onnx_path: Path, out: Path, cfg: BuildConfig = BuildConfig()) -> EngineArtifact:
    import onnxruntime as ort

    out = Path(out)
    check_onnx_file(onnx_path)  # onnxruntime reads external data from beside the file
    with atomic_output(out, "engine") as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(tmp)
        so.add_session_config_entry("session.save_model_format", "ORT")
        try:
            ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"],
                                 disabled_optimizers=list(DISABLED_OPTIMIZERS))
        except Exception as e:  # onnxruntime's exception types are not importable portably
            raise BuildError(f"onnxruntime cannot build the model ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]})",
                             "run with --check-each-pass to find the pass that broke it, or --debug") from e
        if detect_format(tmp) != ORT_FORMAT:
            raise BuildError("onnxruntime did not write an ORT-format model", "report this as a bug")
    return EngineArtifact(path=out, backend="onnxruntime", format=ORT_FORMAT,
                          summary={"bytes": out.stat().st_size, "optimization_level": "extended",
                                   "disabled_optimizers": list(DISABLED_OPTIMIZERS),
                                   "onnxruntime": ort.__version__, "providers": ["CPUExecutionProvider"]})
