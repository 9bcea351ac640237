"""The embedded default backend: a pre-optimized onnxruntime model in ORT format.

onnxruntime applies its graph optimizations once at build time (level
EXTENDED: fusions that are valid on any CPU, no hardware-specific layouts) and
serializes the result in its ORT flatbuffer format, which later loads without
re-optimizing. The file is recognisable from its content (``ORTM`` at bytes
4-8), so nothing mistakes it for a TensorRT plan.
"""
from __future__ import annotations

from pathlib import Path

from ..artifacts import ORT_FORMAT, EngineArtifact, atomic_output, detect_format
from ..common.ort import BUILD, session
from ..config import BuildConfig
from ..errors import BuildError


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
    with atomic_output(out, "engine") as tmp:
        try:
            session(onnx_path, BUILD, save_ort_to=tmp, disabled_optimizers=DISABLED_OPTIMIZERS)
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
